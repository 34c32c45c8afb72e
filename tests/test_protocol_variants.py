"""The field's variants beside the standard protocol, each under its own key: permuted pixel F1,
a boundary band left out, robustness noise as a standard deviation or as IMDL-BenCo's variance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from sdfl_lib.cli import main as sdfl
from sdfl_lib.evaluate import evaluate, parse_robustness
from sdfl_lib.evaluate.robustness import Perturbation
from sdfl_lib.metrics import pixel_counts, standard_metrics
from sdfl_lib.metrics.counts import boundary_band_counts
from sdfl_lib.models import ModelOutput


class Inverted(nn.Module):
    """Predicts 1 - red channel: a map that marks everything but the tampered region."""

    def __init__(self) -> None:
        super().__init__()
        self.sdfl_spec = {"name": "inverted", "image_size": 16}

    def forward(self, x: torch.Tensor) -> ModelOutput:
        p = (1 - x[:, :1]).clamp(1e-4, 1 - 1e-4)
        logit = torch.log(p / (1 - p))
        return ModelOutput(image_logit=logit.flatten(1).mean(1, keepdim=True), mask_logit=logit)


def _row(label, prob, mask, band=0):
    prob, mask = torch.tensor(prob, dtype=torch.float32), torch.tensor(mask, dtype=torch.uint8)
    row = {"label": label, "score": 0.9 * label, "pixel": True, **pixel_counts(prob, mask).__dict__}
    if band:
        row.update(zip(("band_tp", "band_fp", "band_fn", "band_tn"),
                       boundary_band_counts(prob, mask, 0.5, band), strict=True))  # fmt: skip
    return row


def test_permuted_f1_takes_the_better_of_map_and_inverse():
    mask = np.array([[1, 1, 0, 0]], np.uint8)
    rows = [_row(1, [[0.1, 0.2, 0.9, 0.8]], mask), _row(1, [[0.9, 0.2, 0.1, 0.1]], mask)]
    m, _ = standard_metrics(pd.DataFrame(rows))
    # Image 1: F1 0, inverse exact (1). Image 2: tp 1 fn 1 -> 2/3; inverse tp 1 fp 2 fn 1 -> 2/5.
    assert m["standard/pixel_f1@0.5"] == pytest.approx((0 + 2 / 3) / 2)
    assert m["standard/pixel_f1_permuted@0.5"] == pytest.approx((1 + 2 / 3) / 2)


def test_boundary_band_leaves_out_pixels_near_the_mask_edge():
    mask = np.zeros((9, 9), np.uint8)
    mask[3:6, 3:6] = 1
    prob = np.zeros((9, 9))
    prob[2:7, 2:7] = 0.9  # one pixel too wide all round
    # Band 1: the 3x3 grown to 5x5, minus its 1x1 core, is left out (24 pixels).
    assert boundary_band_counts(torch.tensor(prob), torch.tensor(mask), 0.5, 1) == (1, 0, 0, 56)
    m, _ = standard_metrics(pd.DataFrame([_row(1, prob, mask, band=1)]), boundary_band=1)
    assert m["standard/pixel_f1@0.5"] == pytest.approx(18 / 34)
    assert m["standard/pixel_f1_band1px@0.5"] == 1
    assert m["standard/pixel_f1_permuted_band1px@0.5"] == 1
    # Inside 0, outside 2 ("0:2"): the core 3x3 is scored, the 7x7 ring around it left out.
    assert boundary_band_counts(torch.tensor(prob), torch.tensor(mask), 0.5, "0:2") == (9, 0, 0, 32)
    m, _ = standard_metrics(pd.DataFrame([_row(1, prob, mask, band="0:2")]), boundary_band="0:2")
    assert m["standard/pixel_f1_band0-2px@0.5"] == 1
    m, _ = standard_metrics(pd.DataFrame([_row(1, prob, mask)]))
    assert not any("band" in k for k in m)  # off by default


def _toy(root):
    rows = []
    for i in range(4):
        image = np.zeros((16, 16, 3), np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        if i % 2:
            mask[4:12, 4:12] = 255
            image[..., 0] = mask
        Image.fromarray(image).save(root / f"{i}.png")
        if i % 2:
            Image.fromarray(mask).save(root / f"{i}_m.png")
        rows.append({"image": str(root / f"{i}.png"), "mask": str(root / f"{i}_m.png") if i % 2
                     else "", "edge": "", "label": i % 2, "source": "toy"})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


def test_evaluate_reports_variants_under_their_own_keys(tmp_path, capsys):
    manifest = _toy(tmp_path)
    m = evaluate(Inverted(), manifest, tmp_path / "ev", boundary_band=2, workers=0,
                 figures=False, save_maps=False, progress=False)  # fmt: skip
    both = m["subsets"]["both"]
    assert both["standard/pixel_f1@0.5"] == 0 and both["standard/pixel_f1_permuted@0.5"] == 1
    assert both["standard/pixel_f1_band2px@0.5"] == 0
    assert both["standard/pixel_f1_permuted_band2px@0.5"] == 1
    with pytest.raises(ValueError, match="other settings"):
        evaluate(Inverted(), manifest, tmp_path / "ev", workers=0, figures=False, progress=False)
    argv = [
        "evaluate",
        "--method",
        "ela",
        "--manifest",
        str(manifest),
        "--out",
        str(tmp_path / "c"),
    ]
    with pytest.raises(SystemExit) as exc:
        sdfl([*argv, "--boundary-band", "-1"])
    assert exc.value.code == 2 and "IN:OUT in whole pixels" in capsys.readouterr().err
    assert sdfl([*argv, "--boundary-band", "7:5", "--workers", "0", "--no-figures"]) == 0
    assert "standard/pixel_f1_band7-5px@0.5" in (tmp_path / "c" / "report.md").read_text()


def test_noise_as_standard_deviation_or_as_imdl_bencos_variance():
    flat = np.full((200, 200, 3), 128, np.uint8)
    sigma, var = Perturbation("noise_sigma", 16), Perturbation("noise_var", 16)
    assert (sigma.name, var.name) == ("noise_sigma@16", "noise_var@16")
    assert sigma(flat).astype(float).std() == pytest.approx(16, rel=0.05)
    assert var(flat).astype(float).std() == pytest.approx(4, rel=0.05)  # sqrt(16)
    assert Perturbation("noise", 7).name == "noise_sigma@7"  # the short name means sigma
    names = [p.name for p in parse_robustness("noise,noise_var:3/23")]
    assert names[:2] == ["noise_sigma@3", "noise_sigma@7"] and names[-2:] == [
        "noise_var@3",
        "noise_var@23",
    ]
    with pytest.raises(ValueError, match="a variance >= 0"):
        Perturbation("noise_var", -1)
