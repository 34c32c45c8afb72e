"""Intervals in an evaluation (`--ci N`, `--ci 0`) and `sdfl compare` between evaluation folders,
through the real command line, bad inputs included."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from sdfl_lib.cli import main as sdfl
from sdfl_lib.errors import EXIT_FAILED, EXIT_USAGE
from sdfl_lib.evaluate import compare, evaluate
from sdfl_lib.metrics.uncertainty import headline_keys
from sdfl_lib.models import ModelOutput

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate import RedChannel, _toy_set  # noqa: E402


class ShiftedRed(RedChannel):
    """The red channel moved 3 pixels to the right: a worse localization of the same images."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        out = super().forward(x)
        return ModelOutput(image_logit=out.image_logit, mask_logit=torch.roll(out.mask_logit, 3, -1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two models evaluated on one 24-image toy set, and one on another set of images."""
    root = tmp_path_factory.mktemp("compare")
    manifest = _toy_set(root / "data", n=24)
    for name, model in (("red", RedChannel()), ("shifted", ShiftedRed())):
        evaluate(model, manifest, root / name, workers=0, figures=False, progress=False)
    evaluate(RedChannel(), _toy_set(root / "other", n=12), root / "elsewhere", workers=0,
             figures=False, progress=False)  # fmt: skip
    return {p.name: p for p in root.iterdir()}


def test_every_headline_metric_has_its_interval_and_floor(runs):
    metrics = json.loads((runs["shifted"] / "metrics.json").read_text())
    assert metrics["uncertainty"]["resamples"] == 1000 and metrics["uncertainty"]["level"] == 0.95
    for name, m in metrics["subsets"].items():
        assert set(m["intervals"]) == set(m["floors"]) == set(headline_keys()), name
        for key, ci in m["intervals"].items():
            assert ci["low"] <= m[key] + 1e-9 <= ci["high"] + 2e-9, (name, key)
    report = (runs["shifted"] / "report.md").read_text()
    both = metrics["subsets"]["both"]
    ci = both["intervals"]["standard/pixel_f1@0.5"]
    assert f"{both['standard/pixel_f1@0.5']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]" in report
    assert "(every pixel tampered)" in report and "value [95 % interval]" in report


def test_ci_0_leaves_intervals_out(tmp_path, capsys):
    manifest = _toy_set(tmp_path / "data", n=12)
    argv = ["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(tmp_path / "e"),
            "--image-size", "32", "--workers", "0", "--no-figures", "--ci", "0"]  # fmt: skip
    assert sdfl(argv) == 0
    printed = capsys.readouterr().out
    assert "[both] n=12" in printed and " [" not in printed.split("[both] n=12")[1].splitlines()[0]
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["uncertainty"]["resamples"] == 0
    assert all("intervals" not in m and "floors" in m for m in metrics["subsets"].values())
    assert "No intervals (`--ci 0`)" in (tmp_path / "e" / "report.md").read_text()
    assert sdfl(argv[:-1] + ["50", "--no-resume"]) == 0
    line = capsys.readouterr().out.split("[both] n=12: ")[1].splitlines()[0]
    assert "paper/image_f1=" in line and " [" in line.split("paper/image_f1=")[1].split(",")[0]
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["uncertainty"]["resamples"] == 50


def test_compare_runs_on_the_same_images(runs, tmp_path, capsys):
    result = compare(runs["red"], runs["shifted"])
    t = result.table.set_index("metric")
    assert t.loc["standard/pixel_f1@0.5", "verdict"] == "worse"
    assert t.loc["standard/pixel_f1@0.5", "delta"] < 0 and t.loc["standard/image_auc", "delta"] == 0
    assert result.left_out == {str(runs["shifted"]): {"only_in_reference": [], "only_in_run": []}}
    same = compare(runs["red"], runs["red"], names=["a", "b"]).table
    assert (same["delta"] == 0).all() and (same["p"] == 1).all()
    out = tmp_path / "cmp.json"
    assert sdfl(["compare", str(runs["red"]), str(runs["shifted"]), "--ci", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{runs['shifted']} vs {runs['red']} [both] on 24 images in common:" in printed
    assert "worse" in printed and "within noise" in printed
    saved = json.loads(out.read_text())
    assert len(saved["comparisons"]) == len(headline_keys())
    assert sdfl(["compare", str(runs["red"]), str(runs["shifted"]), "--subsets", "all"]) == 0
    assert "[source/toy]" in capsys.readouterr().out


def test_compare_names_the_images_left_out(runs, tmp_path, capsys):
    # A run that scored only part of the images: the others are left out, counted and named.
    manifest = _toy_set(tmp_path / "data", n=24)
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n")
    evaluate(ShiftedRed(), manifest, tmp_path / "part", workers=0, figures=False, progress=False)
    assert sdfl(["compare", str(tmp_path / "part"), str(tmp_path / "part")]) == 0
    capsys.readouterr()
    full = _toy_set(tmp_path / "data", n=24)  # the same paths, all 24 rows again
    evaluate(RedChannel(), full, tmp_path / "all", workers=0, figures=False, progress=False)
    assert sdfl(["compare", str(tmp_path / "part"), str(tmp_path / "all")]) == 0
    printed = capsys.readouterr().out
    assert "on 22 images in common" in printed
    assert "2 image(s) left out, only in run: " in printed and "img/22.png" in printed


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["missing"], EXIT_FAILED, "missing: no such evaluation folder"),
        (["data"], EXIT_FAILED, "no predictions.csv"),
        (["elsewhere"], EXIT_FAILED, "no image in common"),
        (["shifted", "--subsets", "nope"], EXIT_USAGE, "unknown subset(s) ['nope']"),
    ],
)
def test_compare_bad_inputs_end_in_one_line(runs, capsys, argv, code, needle):
    args = [str(runs["red"]), *(str(runs.get(argv[0], runs["red"].parent / argv[0])),), *argv[1:]]
    assert sdfl(["compare", *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sdfl compare: error: ") and needle in err[0], err


def test_compare_refuses_no_run_and_zero_resamples(runs, capsys):
    for argv in (["compare", str(runs["red"])], ["compare", str(runs["red"]), str(runs["red"]), "--ci", "0"]):
        with pytest.raises(SystemExit) as exc:
            sdfl(argv)
        assert exc.value.code == EXIT_USAGE
    assert "--ci: must be >= 1" in capsys.readouterr().err


def test_table3_says_whether_each_published_number_lies_inside_our_interval():
    from sdfl_lib.evaluate.report import _table3_markdown, table3_comparison

    intervals = {"paper/pixel_f1": {"low": 0.55, "high": 0.65}, "paper/image_f1": {"low": 0.7, "high": 0.8},
                 "paper/combined_f1": {"reason": "too few images for an interval: 8 (needs 10)"},
                 "paper/auc": {"low": 0.80, "high": 0.90}}
    subsets = {"shallowfakes": {"paper/pixel_f1": 0.6, "paper/image_f1": 0.75, "paper/combined_f1": 0.67,
                                "paper/auc": 0.85, "intervals": intervals}}
    rows = table3_comparison(subsets, "ours")
    ours, *paper = rows
    assert ours["intervals"]["paper/pixel_f1"] == {"low": 0.55, "high": 0.65}
    row7 = next(r for r in paper if r["trained_on"] == "S")  # Table III row 7 on S: .60/.68/.64/.85
    assert row7["inside_interval"] == {"paper/pixel_f1": True, "paper/image_f1": False,
                                       "paper/combined_f1": None, "paper/auc": True}
    text = _table3_markdown(rows)
    assert "0.60 [0.55, 0.65]" in text and "0.60 (inside)" in text and "0.68 (outside)" in text
    assert "| 0.64 |" in text  # no interval of ours: the published number alone
