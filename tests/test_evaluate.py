"""Evaluation end to end: report on real COVERAGE files, resume, map paths, policies, robustness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from sdfl_lib.cli import main as sdfl
from sdfl_lib.data.io import MaskSizeError
from sdfl_lib.evaluate import evaluate
from sdfl_lib.evaluate.dataset import map_paths
from sdfl_lib.evaluate.predictions import read_predictions
from sdfl_lib.models import ModelOutput


class RedChannel(nn.Module):
    """Predicts the red channel as the tampering probability; image score = its maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.sdfl_spec = {"name": "red", "image_size": 32}
        self.seen = 0

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self.seen += len(x)
        p = x[:, :1].clamp(1e-6, 1 - 1e-6)
        logit = torch.log(p / (1 - p))
        return ModelOutput(
            image_logit=logit.flatten(1).max(1, keepdim=True).values, mask_logit=logit
        )


def _write(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def _toy_set(root: Path, n: int = 6, size: int = 32) -> Path:
    """n/2 tampered images whose red channel is their mask, n/2 authentic (red 0), one manifest."""
    rows = []
    for i in range(n):
        image = np.zeros((size, size, 3), np.uint8)
        image[..., 1] = 90
        mask = np.zeros((size, size), np.uint8)
        if i % 2:
            mask[4 : 4 + 3 * i, 8:20] = 1
            image[..., 0] = mask * 255
        img = _write(root / "img" / f"{i}.png", image)
        m = _write(root / "mask" / f"{i}.png", mask * 255) if i % 2 else ""
        rows.append({"image": img, "mask": m, "edge": "", "label": i % 2, "source": "toy"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_cli_evaluate_ela_on_coverage_lists_pair_41(coverage_manifest, tmp_path, capsys):
    manifest = coverage_manifest
    out = tmp_path / "ev"
    argv = ["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(out),
            "--image-size", "64", "--workers", "1"]  # fmt: skip
    assert sdfl(argv) == 0
    printed = capsys.readouterr().out
    assert "41forged.tif" in printed and "paper/pixel_f1=" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"both", "shallowfakes", "source/coverage"} <= set(metrics["subsets"])
    mm = metrics["mask_size_mismatch"]
    assert mm["count"] == 1 and mm["images"][0]["mask"].endswith("41forged.tif")
    assert mm["images"][0]["mask_size"] == "376x715" and mm["images"][0]["standard"] == "resized"
    table = read_predictions(out / "predictions.csv")
    assert len(table) == 22
    r41 = table[table["image"].str.endswith("41t.tif")].iloc[0]
    assert r41["pixel"] and r41[["tp", "fp", "fn", "tn"]].sum() == 376 * 588
    both = metrics["subsets"]["both"]
    assert both["count/mask_resized"] == 1 and 0 <= both["paper/pixel_f1"] <= 1
    assert both["paper/auc"] == pytest.approx(both["standard/image_auc"])
    for fig in ("per_type", "typical", "gallery", "roc", "score_histograms", "confusion"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
    assert Image.open(out / "maps" / "coverage" / "41t.png").size == (588, 376)
    report = (out / "report.md").read_text()
    assert "41forged.tif" in report and "## Subset: shallowfakes" in report
    assert (out / "config.json").is_file() and (out / "metrics_table.csv").is_file()


def test_perfect_model_scores_one_and_resume_skips_done_rows(tmp_path):
    manifest = _toy_set(tmp_path / "data")
    model = RedChannel()
    full = evaluate(model, manifest, tmp_path / "a", workers=0, figures=False, progress=False)
    both = full["subsets"]["both"]
    assert both["paper/pixel_f1"] == pytest.approx(1) and both["standard/pixel_f1@0.5"] == 1
    assert both["standard/micro_pixel_iou@0.5"] == 1 and both["paper/auc"] == 1
    assert both["standard/pixel_auc"] == 1 and model.seen == 6

    # Interrupt: keep the header, two rows and half of the third line.
    csv = tmp_path / "a" / "predictions.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:3]) + lines[3][:40])
    model.seen = 0
    again = evaluate(model, manifest, tmp_path / "a", workers=2, figures=False, progress=False)
    assert model.seen == 4  # only the rows not in predictions.csv
    table = read_predictions(csv)
    assert sorted(table["row"]) == list(range(6))
    assert again["subsets"] == full["subsets"]

    # Other settings in the same folder: refused, unless starting over.
    with pytest.raises(ValueError, match="other settings"):
        evaluate(model, manifest, tmp_path / "a", threshold=0.3, workers=0, figures=False)
    evaluate(model, manifest, tmp_path / "a", threshold=0.3, workers=0, figures=False,
             resume=False, progress=False)  # fmt: skip
    assert len(read_predictions(csv)) == 6


def test_map_paths_keep_folders_and_never_collide(tmp_path):
    paths = ["/d/casia/Tp/1.png", "/d/columbia/Tp/1.png", "/d/casia/Tp/2.jpg", "/d/casia/Tp/2.tif",
             "/d/casia/Tp/1.png"]  # fmt: skip
    out = map_paths(paths, ["casia", "columbia", "casia", "casia", "casia"])
    assert out == ["casia/casia/Tp/1.png", "columbia/columbia/Tp/1.png", "casia/casia/Tp/2.jpg.png",
                   "casia/casia/Tp/2.tif.png", "casia/casia/Tp/1.2.png"]  # fmt: skip
    # Two data sets with the same basenames, evaluated together: two distinct map files.
    a = _toy_set(tmp_path / "a", n=2)
    b = _toy_set(tmp_path / "b", n=2)
    both = pd.concat([pd.read_csv(a).assign(source="a"), pd.read_csv(b).assign(source="b")])
    both.to_csv(tmp_path / "ab.csv", index=False)
    evaluate(RedChannel(), tmp_path / "ab.csv", tmp_path / "ev", workers=0, figures=False,
             progress=False)  # fmt: skip
    maps = sorted(p.relative_to(tmp_path / "ev" / "maps").as_posix()
                  for p in (tmp_path / "ev" / "maps").rglob("*.png"))  # fmt: skip
    assert maps == ["a/a/img/0.png", "a/a/img/1.png", "b/b/img/0.png", "b/b/img/1.png"]


def test_label_only_mismatch_policies_and_unreadable_files(tmp_path):
    manifest = _toy_set(tmp_path / "data", n=4)
    df = pd.read_csv(manifest, keep_default_na=False)
    small = _write(tmp_path / "data" / "mask" / "small.png", np.full((16, 16), 255, np.uint8))
    bad = tmp_path / "data" / "img" / "broken.png"
    bad.write_text("not an image")
    extra = [
        {
            "image": df.image[1],
            "mask": "",
            "edge": "",
            "label": 1,
            "source": "cifake",
        },  # label-only
        {"image": df.image[3], "mask": small, "edge": "", "label": 1, "source": "toy"},  # 16x16
        {"image": str(bad), "mask": "", "edge": "", "label": 0, "source": "toy"},
    ]
    pd.concat([df, pd.DataFrame(extra)]).to_csv(tmp_path / "m.csv", index=False)
    m = evaluate(RedChannel(), tmp_path / "m.csv", tmp_path / "skip", mask_policy="skip",
                 workers=0, figures=False, progress=False)  # fmt: skip
    assert m["label_only"]["count"] == 1
    assert m["mask_size_mismatch"]["images"][0]["standard"] == "skipped"
    assert m["errors"]["count"] == 1 and "broken.png" in m["errors"]["images"][0]["image"]
    both = m["subsets"]["both"]
    assert both["count/images"] == 6 and both["count/label_only"] == 1
    assert both["count/mask_skipped"] == 1
    # Pixel metrics see the 4 images of the toy set only; image metrics see all 6.
    assert both["paper/pixel_f1"] == pytest.approx(1)
    assert m["subsets"]["deepfakes"]["count/images"] == 1  # "cifake" is a deepfake source
    assert m["subsets"]["deepfakes"]["paper/auc"] is None  # one class: undefined, not 0
    r = evaluate(RedChannel(), tmp_path / "m.csv", tmp_path / "resize", workers=0,
                 figures=False, progress=False)  # fmt: skip
    assert r["mask_size_mismatch"]["images"][0]["standard"] == "resized"
    with pytest.raises(MaskSizeError, match="small.png"):
        evaluate(RedChannel(), tmp_path / "m.csv", tmp_path / "fail", mask_policy="fail",
                 workers=0, figures=False, progress=False)  # fmt: skip


def test_robustness_levels_curves_and_kind_column(tmp_path):
    manifest = _toy_set(tmp_path / "data", n=4)
    df = pd.read_csv(manifest, keep_default_na=False).assign(kind=["deep", "deep", "", ""])
    df.to_csv(tmp_path / "k.csv", index=False)
    m = evaluate(RedChannel(), tmp_path / "k.csv", tmp_path / "ev", workers=0, progress=False,
                 robustness="jpeg:90,resize:0.5/1.5,blur:3", protocol="paper")  # fmt: skip
    assert set(m["robustness"]) == {"jpeg@90", "resize@0.5", "resize@1.5", "blur@3"}
    assert m["subsets"]["deepfakes"]["count/images"] == 2
    both = m["subsets"]["both"]
    assert all(k.startswith(("paper/", "count/")) or k in ("notes", "floors", "intervals") for k in both)
    assert set(both["floors"]) == set(both["intervals"]) == {
        "paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc"}
    assert both["intervals"]["paper/auc"] == {"reason": "too few images for an interval: 4 (needs 10)"}
    res = read_predictions(tmp_path / "ev" / "robustness" / "resize_0.5" / "predictions.csv")
    assert (res[["tp", "fp", "fn", "tn"]].sum(axis=1) == 32 * 32).all()  # scored at the mask's size
    assert (tmp_path / "ev" / "figures" / "robustness.png").is_file()  # a panel per kind
    assert "Robustness" in (tmp_path / "ev" / "report.md").read_text()


def test_workers_started_by_a_fork_server_as_in_a_notebook(tmp_path, monkeypatch):
    # Inside a Jupyter kernel the loaders start workers from a fork server; everything they get
    # (dataset, collate, worker init) must survive pickling.
    from sdfl_lib.data.dataset import worker_start_method

    monkeypatch.setenv("SDFL_WORKER_START", "forkserver")
    assert worker_start_method(2) == "forkserver" and worker_start_method(0) is None
    manifest = _toy_set(tmp_path / "data", n=4)
    result = evaluate(RedChannel(), manifest, tmp_path / "e", workers=2, figures=False,
                      progress=False)  # fmt: skip
    assert result["subsets"]["both"]["paper/pixel_f1"] == pytest.approx(1)
    monkeypatch.setenv("SDFL_WORKER_START", "no-such-method")
    with pytest.raises(ValueError, match="SDFL_WORKER_START"):
        worker_start_method(2)
