"""Checkpoint files: own-format round trip, prefixes, wrong variant, missing keys, broken files."""

from __future__ import annotations

import pytest
import torch

from sdfl_lib.models import (
    CheckpointError,
    build_model,
    detect_variant,
    load_checkpoint,
    load_model,
    make_checkpoint,
)


@pytest.fixture(scope="module")
def upernet():
    torch.manual_seed(1)
    return build_model("upernet", image_size=64).eval()


@pytest.fixture(scope="module")
def authors_upernet(synth_weights):
    return synth_weights.synth_state_dict(synth_weights.load_manifest("upernet"))


def test_detect_variant_by_key_signature(synth_weights, upernet):
    for variant in ("ours", "upernet", "mvssnet"):
        keys = synth_weights.load_manifest(variant)
        assert detect_variant(keys) == ("authors", variant)
    assert detect_variant(upernet.state_dict()) == ("native", "upernet")
    assert detect_variant(["a.weight"]) == (None, None)


def test_wrong_variant_says_what_it_looks_like(upernet, synth_weights):
    # Only the key names matter for the verdict, so no values are synthesised.
    ours_sd = {k: torch.zeros(1) for k in synth_weights.load_manifest("ours")}
    with pytest.raises(
        CheckpointError, match=r"looks like a 'ours' checkpoint.*model is 'upernet'"
    ):
        load_checkpoint(upernet, ours_sd)
    mvss = {k: torch.zeros(1) for k in synth_weights.load_manifest("mvssnet")}
    with pytest.raises(CheckpointError, match="'mvssnet'"):
        load_checkpoint(upernet, mvss)


def test_missing_and_unplaceable_keys_are_named(upernet, authors_upernet):
    sd = dict(authors_upernet)
    del sd["decoder.seg_head.1.weight"]
    sd["decoder.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(upernet, sd)
    msg = str(err.value)
    assert "localization_head.classifier.weight" in msg  # missing, in the model's names
    assert "decoder.extra_head.weight" in msg  # unplaceable, in the file's names
    # strict=False reports instead of failing.
    report = load_checkpoint(upernet, sd, strict=False)
    assert report.missing == ["localization_head.classifier.weight"]
    assert report.unexpected == ["decoder.extra_head.weight"]


def test_shape_mismatch_is_named(upernet, authors_upernet):
    sd = dict(authors_upernet)
    sd["decoder.cls_head.2.weight"] = torch.zeros(2, 256, 1, 1)
    with pytest.raises(
        CheckpointError, match=r"decoder\.cls_head\.2\.weight: file \(2, 256, 1, 1\)"
    ):
        load_checkpoint(upernet, sd)


def test_module_prefix_file_and_sync_bn_extras(upernet, authors_upernet, tmp_path):
    path = tmp_path / "4.pth"
    torch.save({f"module.{k}": v for k, v in authors_upernet.items()}, path)
    report = load_checkpoint(upernet, path)
    assert report.consumed == {k for k in authors_upernet}
    assert "encoder.bn1._running_iter" in report.ignored
    assert "decoder.conv_fusion.0.weight" in report.ignored
    torch.testing.assert_close(
        upernet.detection_head.classifier.weight, authors_upernet["decoder.cls_head.2.weight"]
    )
    torch.testing.assert_close(
        upernet.rgb_encoder.layer4[2].bn3.running_var,
        authors_upernet["encoder.layer4.2.bn3.running_var"],
    )


def test_truncated_and_foreign_files_fail_clearly(upernet, authors_upernet, tmp_path):
    path = tmp_path / "full.pth"
    torch.save(make_checkpoint(upernet), path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(upernet, cut)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not"):
        load_checkpoint(upernet, text)
    other = tmp_path / "list.pt"
    torch.save([1, 2, 3], other)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(upernet, other)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(upernet, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="no state_dict found"):
        load_checkpoint(upernet, {"epoch": 3})


def test_own_format_round_trip(upernet, tmp_path):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = upernet(x)
    path = tmp_path / "best.pt"
    torch.save(make_checkpoint(upernet, epoch=7, metrics={"f1": 0.5}), path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "sdfl" and raw["epoch"] == 7
    assert raw["spec"] == {
        "name": "upernet",
        "image_size": 64,
        "backbone": "resnet50",
        "pretrained": False,
        "input_mean": [0.0, 0.0, 0.0],  # the paper's ResNet-50 takes [0, 1] as it is
        "input_std": [1.0, 1.0, 1.0],
    }
    rebuilt = load_model(path)
    assert not rebuilt.training and rebuilt.sdfl_spec["name"] == "upernet"
    with torch.no_grad():
        after = rebuilt(x)
    torch.testing.assert_close(after.mask_logit, before.mask_logit)
    torch.testing.assert_close(after.image_logit, before.image_logit)
    # The same file refuses a model of another variant, saying what it holds.
    ours = torch.nn.Linear(1, 1)  # the verdict comes from the spec, before any tensor is read
    ours.sdfl_spec = {"name": "ours"}
    with pytest.raises(CheckpointError, match="is a 'upernet' model"):
        load_checkpoint(ours, path)
    ours.sdfl_spec = {"name": "upernet", "backbone": "resnet18"}
    with pytest.raises(CheckpointError, match="backbone 'resnet50', the model 'resnet18'"):
        load_checkpoint(ours, path)
    # A raw state_dict of our own model loads as well.
    report = load_checkpoint(rebuilt, upernet.state_dict())
    assert report.layout == "native" and not report.ignored


def test_load_model_recognises_authors_file(authors_upernet, tmp_path):
    path = tmp_path / "5.pth"
    torch.save(authors_upernet, path)
    model = load_model(path, image_size=64)
    assert model.sdfl_spec["name"] == "upernet"
    with pytest.raises(CheckpointError, match="pass model=NAME"):
        load_model({"x.weight": torch.zeros(1)})
