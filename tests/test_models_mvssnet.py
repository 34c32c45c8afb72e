"""MVSS-Net baseline: the authors' checkpoint layout loads and reproduces their outputs."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import torch

from sdfl_lib.models import (
    build_model,
    extract_intermediates,
    load_checkpoint,
    load_model,
    make_checkpoint,
)
from sdfl_lib.models import mvssnet as mvss_module
from sdfl_lib.models.base import ModelOutput, get_constructor
from sdfl_lib.models.encoder import PretrainedWeightsUnavailable
from sdfl_lib.models.mvssnet import DilatedResNet50, MVSSNet, mvssnet
from sdfl_lib.models.sobel import SobelFilter


@pytest.fixture(scope="module")
def reference(synth_weights):
    """The model at image_size=128 with the synthetic authors' weights, in eval mode."""
    manifest = synth_weights.load_manifest("mvssnet")
    model = build_model("mvssnet", image_size=128)
    report = load_checkpoint(model, synth_weights.synth_state_dict(manifest))
    return model.eval(), manifest, report


def test_reproduces_authors_outputs(reference, synth_weights, shared):
    model, manifest, report = reference
    expected = np.load(shared / "reference" / "outputs_mvssnet.npz")
    with torch.no_grad():
        out = model(synth_weights.reference_input())
    assert out.edge_logit.shape == (2, 1, 32, 32)
    assert out.mask_logit.shape == (2, 1, 128, 128)
    assert np.abs(out.edge_logit.numpy() - expected["first"]).max() <= 1e-4
    assert np.abs(out.mask_logit.numpy() - expected["second"]).max() <= 1e-4
    # The loaded tensors are the manifest's, so the comparison above exercised real weights.
    key = "head.conv_p1.0.weight"
    entry = manifest[key]
    loaded = synth_weights.synth_tensor(key, tuple(entry["shape"]), entry["dtype"])
    assert torch.equal(model.state_dict()[key], loaded)
    assert torch.allclose(model.constrain_conv.kernel.sum(-1), torch.ones(1, 3))


def test_every_manifest_key_is_consumed(reference):
    model, manifest, report = reference
    assert report.layout == "authors" and report.variant == "mvssnet"
    assert report.consumed == set(manifest)
    assert set(report.loaded) == set(model.state_dict())
    assert set(report.ignored) == {
        "model.fc.weight", "model.fc.bias",
        "noise_extractor.model.fc.weight", "noise_extractor.model.fc.bias",
    }


def test_any_size_and_intermediates(reference):
    """Any H, W comes back at its own size; the image logit is the mask maximum; parts are named."""
    model, *_ = reference
    x = torch.rand(2, 3, 45, 70, generator=torch.Generator().manual_seed(0))
    parts = extract_intermediates(model, x)
    out = ModelOutput(parts["image_logit"], parts["mask_logit"], parts["edge_logit"])
    assert out.image_logit.shape == (2, 1)
    assert out.mask_logit.shape == (2, 1, 45, 70)
    assert out.edge_logit.shape == (2, 1, 12, 18)
    assert torch.equal(out.image_logit, out.mask_logit.flatten(1).amax(1, keepdim=True))
    assert torch.allclose(out.image_score, out.mask_prob.flatten(1).amax(1))
    assert parts["noise_residual"].shape == (2, 3, 45, 70)
    assert [parts[f"rgb.C{i}"].shape[1] for i in (2, 3, 4, 5)] == [256, 512, 1024, 2048]
    assert parts["rgb.C5"].shape[-2:] == (4, 6)  # padded to 64x96, output stride 16
    assert parts["noise.C5"].shape == parts["rgb.C5"].shape
    assert parts["head_logit"].shape == (2, 1, 4, 6)
    assert parts["sobel.C2"].shape == (2, 1, 16, 24) and parts["sobel.C5"].shape == (2, 1, 4, 6)
    assert ((parts["sobel.C3"] >= 0.5) & (parts["sobel.C3"] <= 1)).all()


def test_spec_and_registry(reference):
    model, *_ = reference
    assert model.sdfl_spec == {
        "name": "mvssnet", "image_size": 128, "backbone": "resnet50", "pretrained": False
    }
    assert get_constructor("mvssnet") is mvssnet


def test_bad_inputs_fail_clearly(reference):
    model, *_ = reference
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image_size"):
        MVSSNet(image_size=0)


def test_backbone_layout():
    net = DilatedResNet50()
    assert [b.conv2.dilation for b in net.layer4] == [(1, 1), (2, 2), (4, 4)]
    assert net.layer4[0].downsample[0].stride == (1, 1)
    assert isinstance(net.fc, torch.nn.Identity)
    sobel = SobelFilter(4, "y")
    assert not sobel[0].weight.requires_grad
    assert sobel[0].weight[0, 3].tolist() == [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]


def test_ablations_timm_backbone_and_round_trip(tmp_path):
    plain = build_model(
        "mvssnet", image_size=64, backbone="resnet18", sobel=False, noise_branch=False
    )
    keys = plain.state_dict().keys()
    assert not any(k.startswith(("sobel_", "noise_extractor.", "constrain_conv.")) for k in keys)
    assert plain.head.conv_p1[0].in_channels == 512  # sized from resnet18's C5
    x = torch.rand(1, 3, 40, 52)
    with torch.no_grad():
        out = plain.eval()(x)
    assert out.mask_logit.shape == (1, 1, 40, 52)
    assert out.edge_logit.shape == (1, 1, 10, 13)
    # This project's own checkpoint rebuilds the same configuration and outputs.
    path = tmp_path / "mvss.pt"
    torch.save(make_checkpoint(plain, epoch=1), path)
    again = load_model(path)
    assert again.sdfl_spec == plain.sdfl_spec and not again.sobel and not again.noise_branch
    with torch.no_grad():
        assert torch.equal(again(x).mask_logit, out.mask_logit)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_pretrained_from_local_server_then_cache(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    name = mvss_module.IMAGENET_RESNET50_URL.rsplit("/", 1)[-1]
    imagenet = DilatedResNet50().state_dict()
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(imagenet, served / name)
    handler = functools.partial(_Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    try:
        monkeypatch.setattr(
            mvss_module, "IMAGENET_RESNET50_URL", f"http://127.0.0.1:{server.server_port}/{name}"
        )
        model = MVSSNet(pretrained=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "cache" / "pretrained" / name).is_file()
    for stream in (model.model, model.noise_extractor.model):
        assert torch.equal(stream.conv1.weight, imagenet["conv1.weight"])
    # The server is gone now: the cached file is used.
    cached = mvss_module._imagenet_resnet50_state_dict()
    assert torch.equal(cached["layer4.2.conv3.weight"], imagenet["layer4.2.conv3.weight"])


def test_pretrained_offline_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    url = "http://127.0.0.1:9/resnet50-19c8e357.pth"  # the discard port: nothing listens
    monkeypatch.setattr(mvss_module, "IMAGENET_RESNET50_URL", url)
    with pytest.raises(PretrainedWeightsUnavailable, match=r"resnet50-19c8e357\.pth.*pretrained"):
        MVSSNet(pretrained=True, noise_branch=False)
    assert not any((tmp_path / "pretrained").iterdir())


def test_trains_end_to_end_with_frozen_sobel():
    torch.manual_seed(0)
    model = MVSSNet(backbone="resnet18").train()
    out = model(torch.rand(2, 3, 64, 64))
    loss = out.mask_prob.mean() + out.edge_logit.sigmoid().mean() + out.image_logit.mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("erb_db_1.conv1.weight", "erb_trans_3.conv3.bias", "sobel_x4.1.weight",
                 "head.pam.alpha", "head.out.1.weight", "constrain_conv.kernel",
                 "noise_extractor.model.body.conv1.weight"):
        assert grads[name] is not None and torch.isfinite(grads[name]).all(), name
    assert grads["sobel_x1.0.weight"] is None  # the Sobel kernels stay fixed

