"""Acceptance: the authors' checkpoint layout loads into `ours`/`upernet` with the original's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdfl_lib.inference import optimize_for_inference
from sdfl_lib.models import build_model, extract_intermediates, load_checkpoint

VARIANTS = ("ours", "upernet")


@pytest.fixture(scope="module")
def loaded(synth_weights):
    """variant -> (model with the synthetic authors' weights, LoadReport, manifest), built once."""
    torch.manual_seed(0)
    out = {}
    for variant in VARIANTS:
        manifest = synth_weights.load_manifest(variant)
        model = build_model(variant, image_size=128).eval()
        report = load_checkpoint(model, synth_weights.synth_state_dict(manifest))
        out[variant] = (model, report, manifest)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_match_original(loaded, variant, shared, synth_weights):
    model, report, manifest = loaded[variant]
    assert report.layout == "authors" and report.variant == variant
    assert report.consumed == set(manifest), "every key of the authors' file is consumed"
    assert not report.missing and not report.unexpected
    ignored = set(report.ignored)
    assert all(
        k.endswith(("_tmp_running_mean", "_tmp_running_var", "_running_iter"))
        or k.startswith("decoder.conv_fusion.")
        for k in ignored
    )
    ref = np.load(shared / "reference" / f"outputs_{variant}.npz")
    with torch.no_grad():
        out = model(synth_weights.reference_input())
    assert out.image_logit.shape == (2, 1) and out.mask_logit.shape == (2, 1, 128, 128)
    assert out.edge_logit is None
    assert np.abs(out.image_logit.numpy() - ref["first"]).max() <= 1e-4
    assert np.abs(out.mask_logit.numpy() - ref["second"]).max() <= 1e-4


def test_any_size_and_intermediates(loaded):
    """Odd sizes are padded internally and cropped back; the named inner tensors have the
    strides of the paper's figure."""
    model = loaded["ours"][0]
    x = torch.rand(1, 3, 100, 75)
    inner = extract_intermediates(model, x)
    assert inner["mask_logit"].shape == (1, 1, 100, 75)
    assert inner["image_logit"].shape == (1, 1)
    assert inner["noise_residual"].shape == (1, 3, 100, 75)
    padded = (128, 96)  # 100x75 padded to multiples of 32
    for i, (name, ch) in enumerate(
        zip(("C2", "C3", "C4", "C5"), (256, 512, 1024, 2048), strict=True)
    ):
        stride = 4 * 2**i
        for stream in ("rgb", "noise", "fused"):
            assert inner[f"{stream}.{name}"].shape == (
                1,
                ch,
                padded[0] // stride,
                padded[1] // stride,
            )
    for i, p in enumerate(("P2", "P3", "P4", "P5")):
        assert inner[p].shape == (1, 256, padded[0] // (4 * 2**i), padded[1] // (4 * 2**i))
    for s in (1, 2, 3, 6):
        assert inner[f"ppm.pool{s}"].shape == (1, 2048, s, s)
        assert inner[f"ppm.branch{s}"].shape == (1, 512, 4, 3)
    # The intermediate path gives the same outputs as forward.
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.mask_logit, inner["mask_logit"])
    torch.testing.assert_close(out.image_logit, inner["image_logit"])


def test_inference_copy_matches(loaded):
    """Folding the (non-trivial) batch norms into the convolutions keeps the outputs."""
    model = loaded["upernet"][0]
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref, out = model(x), fast(x)
    torch.testing.assert_close(out.mask_logit, ref.mask_logit, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.image_logit, ref.image_logit, atol=1e-4, rtol=0)
