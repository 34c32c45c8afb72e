"""Notebook 05's summary of short runs: mean ± sd over seeds, and a verdict per variant that says
"better" or "worse" only when every seed's paired interval agrees."""

from __future__ import annotations

import pandas as pd
import pytest

from sdfl_lib.study.optimize import VariantStudy, describe
from sdfl_lib.train import TrainConfig

KEY = "standard/pixel_f1@0.5"


def _study(seeds: list[int], deltas: dict[str, list[tuple[float, float, float, str]]]) -> VariantStudy:
    runs = [{"run": run, "seed": s, KEY: 0.5 + 0.1 * i + 0.01 * s, f"{KEY} text": f"text {run} {s}"}
            for i, run in enumerate(["baseline", *deltas]) for s in seeds]
    comparisons = [{"run": run, "seed": s, "metric": KEY, "delta": d, "low": lo, "high": hi, "verdict": v}
                   for run, rows in deltas.items() for s, (d, lo, hi, v) in zip(seeds, rows, strict=True)]
    return VariantStudy(pd.DataFrame(runs), pd.DataFrame(comparisons))


def test_one_seed_shows_the_interval_of_each_run_and_of_each_difference():
    study = _study([0], {"rmsprop": [(-0.2, -0.3, -0.1, "worse")],
                         "size64": [(0.02, -0.05, 0.09, "within noise")]})
    summary = study.summary(keys=(KEY,))
    assert summary.loc["baseline", KEY] == "text baseline 0" and list(summary.index)[0] == "baseline"
    verdicts = study.verdicts(keys=(KEY,))
    assert verdicts.loc["rmsprop", KEY] == "-0.200 [-0.300, -0.100] worse"
    assert verdicts.loc["size64", KEY] == "+0.020 [-0.050, +0.090] within noise"
    assert study.means(keys=(KEY,)).loc["size64", KEY] == pytest.approx(0.7)


def test_several_seeds_give_mean_and_sd_and_a_verdict_only_when_all_agree():
    study = _study([0, 1, 2], {
        "rmsprop": [(-0.2, -0.3, -0.1, "worse")] * 3,
        "batch32": [(0.1, 0.05, 0.15, "better"), (0.1, 0.05, 0.15, "better"), (0.0, -0.1, 0.1, "within noise")],
    })
    summary = study.summary(keys=(KEY,))
    assert summary.loc["baseline", KEY] == "0.510 ± 0.010"
    verdicts = study.verdicts(keys=(KEY,))
    assert verdicts.loc["rmsprop", KEY] == "-0.200 ± 0.000 over 3 seeds worse"
    assert verdicts.loc["batch32", KEY].endswith("over 3 seeds within noise")


def test_describe_says_what_the_short_runs_train():
    base = TrainConfig(model="ours", backbone="tf_efficientnet_lite0", pretrained=True, image_size=128,
                       batch_size=16, optimizer="adam", lr=1e-3, epochs=1, limit_train_batches=0)
    assert describe(base, [0, 1]) == ("short runs: ours on tf_efficientnet_lite0 (ImageNet weights), 128 px, "
                                      "batch 16, adam lr 0.001, 1 epoch(s), seed(s) [0, 1]")


def test_the_baseline_alone_over_seeds_has_no_comparison(monkeypatch, tmp_path):
    from sdfl_lib.study import optimize

    scores = iter([0.4, 0.6])
    monkeypatch.setattr(optimize, "_train_and_score", lambda *a, **k: {})
    monkeypatch.setattr(optimize, "headline_frame", lambda metrics, subsets: pd.DataFrame(
        {"metric": [KEY], "value": [next(scores)], "text": ["t"]}))
    study = optimize.variant_study(TrainConfig(), {}, out=tmp_path, test_manifest="t.csv", seeds=[0, 1])
    assert study.summary(keys=(KEY,)).loc["baseline", KEY] == "0.500 ± 0.141"
    assert study.comparisons.empty and study.verdicts(keys=(KEY,)).empty
