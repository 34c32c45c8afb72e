"""The reports' key results and closing sentences come from the run's numbers: change a number and
the sentence changes; intervals appear where the evaluation has them."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from sdfl_lib.errors import MissingInput
from sdfl_lib.paths import require_inputs
from sdfl_lib.study import story
from sdfl_lib.viz.report import with_interval


def _html(block) -> str:
    return block.data


def _sub(f1: float, auc: float, paper: float, ci: float | None = None, **counts) -> dict:
    m = {"count/images": 120, "count/authentic": 60, "count/tampered": 60, **counts,
         "standard/pixel_f1@0.5": f1, "standard/image_auc": auc, "standard/image_f1@0.5": 0.7,
         "paper/pixel_f1": paper, "paper/combined_f1": 0.5, "paper/image_f1": 0.7, "paper/auc": auc}
    if ci is not None:
        m["intervals"] = {k: {"low": v - ci, "high": v + ci} for k, v in m.items() if "/" in k and "count" not in k}
    return m


def _run(f1: float, auc: float, paper: float, ci: float | None = None, sources=("synth-splice",)) -> dict:
    subsets = {"both": _sub(f1, auc, paper, ci)}
    for i, s in enumerate(sources):
        subsets[f"source/{s}"] = _sub(f1 - 0.1 * i, auc, paper, ci, **{"count/authentic": 0})
    subsets["source/synth-authentic"] = {"count/images": 60, "count/tampered": 0}
    return {"threshold": 0.5, "subsets": subsets, "table3": []}


def test_with_interval_and_validation_and_sizes() -> None:
    m = _sub(0.65, 0.9, 0.3, ci=0.05)
    assert with_interval(m, "standard/pixel_f1@0.5") == "0.65 [0.60, 0.70]"
    assert with_interval(_sub(0.65, 0.9, 0.3), "standard/pixel_f1@0.5") == "0.65"
    assert with_interval({"x": None}, "x") == "—"
    assert story.validation_sentence({"rows": 600, "counts": {"grey": 0}}) == "600 rows checked, 0 problems."
    text = story.validation_sentence({"rows": 9, "counts": {"grey": 2, "missing_image": 1},
                                      "errors": [{}], "warnings": [{}, {}]})
    assert text == "9 rows checked: 1 error(s), 2 warning(s) (grey 2, missing image 1)."
    same = pd.DataFrame({"height": [128, 128], "width": [96, 96]})
    assert story.size_sentence(same) == "All 2 images are 96 × 128 px (width × height)."
    assert story.size_sentence(pd.DataFrame({"height": [128, 64], "width": [96, 96]})) is None


def test_evaluation_key_results_and_closing_follow_the_numbers() -> None:
    runs = {"model": _run(0.65, 0.90, 0.33, ci=0.04, sources=("synth-splice", "synth-face")),
            "ela": _run(0.05, 0.57, 0.47, ci=0.04)}
    table = _html(story.evaluation_key_results(runs))
    assert "sdfl-key-results" in table and "0.65 [0.61, 0.69]" in table and "ELA" in table
    assert "95 % bootstrap intervals" in table
    text = _html(story.evaluation_closing(runs, {"ela": 0.9}))
    assert "pixel F1@0.5 0.65 [0.61, 0.69]" in text and "AUC of 0.90 [0.86, 0.94]" in text
    assert "best on splice, worst on face, beyond the noise" in text
    assert "is above ELA (0.05), beyond the noise" in text
    # ELA ahead on the paper's pixel F1 only: explained by the empty predictions it is rewarded for.
    assert "ELA scores higher on the paper&#x27;s pixel F1 (0.47 against 0.33)" in text
    assert "predicts no pixel on 90 % of them" in text
    assert "synthetic forgeries" in text
    close = {"model": _run(0.65, 0.90, 0.33, ci=0.2), "ela": _run(0.60, 0.88, 0.2, ci=0.2)}
    text = _html(story.evaluation_closing(close))
    assert "within the noise" in text and "scores higher on the paper" not in text
    text = _html(story.evaluation_closing({"model": _run(0.5, 0.8, 0.3), "ela": _run(0.1, 0.5, 0.2)}))
    assert "not established" in text
    # A paired comparison, where there is one, says it instead.
    pairs = pd.DataFrame([{"reference": "ela", "run": "model", "subset": "both", "metric": "standard/image_auc",
                           "delta": 0.3, "low": 0.2, "high": 0.4, "verdict": "better"}])
    text = _html(story.evaluation_closing({"model": _run(0.5, 0.8, 0.3), "ela": _run(0.1, 0.5, 0.2)}, pairs=pairs))
    assert "is above ELA (0.50), better by a paired bootstrap on the same images (difference +0.30 [+0.20, +0.40])" in text


def test_table3_reference_marks_the_published_value_against_our_interval() -> None:
    real = _run(0.65, 0.92, 0.60, ci=0.05, sources=("casia1",))
    real["table3"] = [{"subset": "shallowfakes", "who": "this run (ours)", "trained_on": "",
                       "paper/pixel_f1": 0.6, "paper/image_f1": 0.7, "paper/combined_f1": 0.5, "paper/auc": 0.9},
                      {"subset": "shallowfakes", "who": "paper (ours)", "trained_on": "S",
                       "paper/pixel_f1": 0.60, "paper/image_f1": 0.68, "paper/combined_f1": 0.64, "paper/auc": 0.85,
                       "inside_interval": {"paper/pixel_f1": True, "paper/image_f1": None,
                                           "paper/combined_f1": True, "paper/auc": False}}]
    table = story.table3_reference(real)
    assert table.loc[("shallowfakes (S)", "ours (S)"), "pixel F1"] == "0.60 ✓ inside"
    assert table.loc[("shallowfakes (S)", "ours (S)"), "AUC"] == "0.85 ✗ outside"
    assert table.loc[("shallowfakes (S)", "ours (S)"), "image F1"] == "0.68"  # no interval: no mark
    assert "Table III comparison below says whether" in story.comparability(real)
    synthetic = {**real, "subsets": {k.replace("casia1", "synth-splice"): v for k, v in real["subsets"].items()}}
    assert story.table3_reference(synthetic).loc[("shallowfakes (S)", "ours (S)"), "pixel F1"] == "0.60"
    assert "synthetic forgeries" in story.comparability(synthetic)


def test_train_sentences_from_metrics_csv(tmp_path) -> None:
    rows = [{"epoch": e, "train_loss": 0.3 - 0.02 * e, "val_loss": v, "train_clf": 0.6, "val_clf": 0.6 - 0.01 * e,
             "train_seg": 0.8, "val_seg": 0.9 - 0.05 * e, "time_s": 30.0, "images_per_s": 20.0}
            for e, v in [(1, 0.4), (2, 0.3), (3, 0.35)]]
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"epochs": 3, "model": "ours", "backbone": "b"}))
    text = _html(story.train_closing(tmp_path))
    assert "ran 3 of 3 epoch(s) in 1 min 30 s" in text and "0.4000 after epoch 1" in text
    assert "0.3000, at epoch 2" in text and "The 1 epoch(s) after it did not improve it" in text
    key = _html(story.train_key_results(tmp_path))
    assert "best epoch (lowest validation loss)" in key and "1 min 30 s" in key and "3 of 3" in key
    pd.DataFrame(rows[:2]).to_csv(tmp_path / "metrics.csv", index=False)
    assert "stopped before the planned epochs" in _html(story.train_closing(tmp_path))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"epochs": 2}))
    assert "more epochs may lower it" in _html(story.train_closing(tmp_path))


def _study(seeds=(0,)):
    from sdfl_lib.study.optimize import STUDY_KEYS, VariantStudy

    values = {"baseline": (0.50, 0.90, 0.40), "size64": (0.56, 0.80, 0.41)}
    runs = pd.DataFrame([{"run": r, "seed": s, **dict(zip(STUDY_KEYS, v, strict=True)),
                          **{f"{k} text": f"{x:.2f} [{x - 0.05:.2f}, {x + 0.05:.2f}]" for k, x in zip(STUDY_KEYS, v, strict=True)}}
                         for s in seeds for r, v in values.items()])
    verdicts = {"standard/pixel_f1@0.5": ("better", 0.06, 0.02, 0.1), "standard/image_auc": ("worse", -0.1, -0.15, -0.05),
                "paper/combined_f1": ("within noise", 0.01, -0.03, 0.05)}
    comparisons = pd.DataFrame([{"reference": "baseline", "run": "size64", "subset": "both", "metric": k, "delta": d,
                                 "low": lo, "high": hi, "verdict": w, "seed": s}
                                for s in seeds for k, (w, d, lo, hi) in verdicts.items()])
    return VariantStudy(runs, comparisons)


def test_optimization_key_results_and_closing_follow_the_paired_verdicts() -> None:
    study = _study()
    ft = pd.DataFrame({"standard/pixel_f1@0.5": [0.6, 0.62], "standard/image_auc": [0.9, 0.95],
                       "paper/combined_f1": [0.5, 0.5]}, index=pd.Index(["trained-03", "finetune"], name="run"))
    ft_pairs = pd.DataFrame([{"reference": "trained-03", "run": "finetune", "subset": "both", "metric": "standard/image_auc",
                              "delta": 0.05, "low": 0.01, "high": 0.09, "verdict": "better"}])
    table = _html(story.optimization_key_results(study, ft, ft_pairs))
    assert "0.56 [0.51, 0.61] · +0.060 [+0.020, +0.100] better" in table
    assert "0.95 · +0.05 [+0.01, +0.09] better" in table and "0.50 [0.45, 0.55]" in table
    text = _html(story.optimization_closing(study, None, ft_pairs))
    assert ("size64: better on pixel F1@0.5, tampered images (standard) and worse on image AUC, "
            "within noise on the rest against baseline.") in text
    assert "image AUC +0.05 [+0.01, +0.09] better" in text and "sampling noise only" in text
    text = _html(story.optimization_closing(_study((0, 1))))
    assert "Over 2 seeds a variant is better or worse only when every seed agrees." in text


def test_a_missing_input_stops_in_one_line(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(MissingInput) as err:
        require_inputs(tmp_path, {"data/train.csv": "01_data"})
    assert re.fullmatch(r".*/data/train\.csv is missing: run 01_data\.ipynb first .*", str(err.value))
    assert err.value._render_traceback_() == [f"MissingInput: {err.value}"]  # IPython shows this line only
    require_inputs(tmp_path, {"data": "01_data"})  # present: nothing happens
