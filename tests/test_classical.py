"""The classical baselines: registered like models, parameter-free, and they find what they
are meant to find on images made for them."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from sdfl_lib.models import build_model, list_models, load_model, make_checkpoint


def _textured(rng, size=96) -> np.ndarray:
    base = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3)).astype(np.uint8), (5, 5), 0)
    return base


def _to_x(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def test_registered_parameter_free_and_rebuildable():
    assert {"ela", "noise"} <= set(list_models())
    for name in ("ela", "noise"):
        model = build_model(name, image_size=64)
        assert model.sdfl_spec["name"] == name and model.sdfl_spec["image_size"] == 64
        assert sum(p.numel() for p in model.parameters()) == 0
        out = model(torch.rand(2, 3, 40, 56))
        assert out.image_logit.shape == (2, 1) and out.mask_logit.shape == (2, 1, 40, 56)
        assert out.edge_logit is None and torch.isfinite(out.mask_logit).all()
        again = load_model(make_checkpoint(model))
        assert again.sdfl_spec == model.sdfl_spec


def test_ela_finds_a_region_with_another_compression_history():
    rng = np.random.default_rng(0)
    image = _textured(rng)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    recompressed = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    # Paste never-compressed content in the middle: its error level stands out.
    forged = recompressed.copy()
    forged[32:64, 32:64] = image[32:64, 32:64]
    prob = build_model("ela", quality=85)(_to_x(forged)).mask_prob[0, 0]
    inside, outside = (
        prob[36:60, 36:60].mean(),
        torch.cat([prob[:24].flatten(), prob[72:].flatten()]).mean(),
    )
    assert inside > 0.5 > outside


def test_noise_finds_a_region_with_another_noise_level():
    rng = np.random.default_rng(1)
    grey = np.tile(np.linspace(60, 180, 96), (96, 1))
    noise = rng.normal(0, 2, grey.shape)
    noise[32:64, 32:64] = rng.normal(0, 12, (32, 32))
    image = np.repeat(np.clip(grey + noise, 0, 255)[..., None], 3, 2).astype(np.uint8)
    out = build_model("noise")(_to_x(image))
    prob = out.mask_prob[0, 0]
    assert prob[38:58, 38:58].mean() > 0.5 > prob[:20, :20].mean()
    # A clean image of one noise level scores lower than the forged one.
    clean = np.repeat(np.clip(grey + rng.normal(0, 2, grey.shape), 0, 255)[..., None], 3, 2)
    assert build_model("noise")(_to_x(clean.astype(np.uint8))).image_score < out.image_score
