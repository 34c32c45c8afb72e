"""Intervals, floors and paired comparisons of the headline metrics (sdfl_lib.metrics.uncertainty):
calibrated on simulated data with a known truth, exact where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from sdfl_lib.errors import DataError
from sdfl_lib.evaluate.predictions import COLUMNS, make_row, read_predictions
from sdfl_lib.metrics import paper_metrics, pixel_counts, standard_metrics
from sdfl_lib.metrics.paper import paper_pixel_counts
from sdfl_lib.metrics.uncertainty import (
    MIN_IMAGES,
    _Columns,
    _weights,
    best_floor,
    floors,
    format_ci,
    headline_frame,
    headline_keys,
    metric_intervals,
    p_value,
    paired_comparison,
)


def _table(seed: int, n: int = 80) -> pd.DataFrame:
    """A per-image table of every kind of row: authentic, tampered, label-only, a mask of another
    size (out of the paper's pixel F1), tied scores."""
    rng = np.random.default_rng(seed)
    label = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    score = np.round(np.clip(rng.normal(0.35 + 0.3 * label, 0.2), 0, 1), 1)  # many ties
    side = 32
    pos = np.where(label == 1, rng.integers(20, 400, n), 0)
    tp = (pos * rng.random(n)).astype(int)
    fp = rng.integers(0, 60, n)
    pixel = np.ones(n, bool)
    pixel[-2:] = False  # label-only fakes
    paper = pixel.copy()
    paper[-4] = False  # a mask of another size
    zero = np.where(pixel, 1, 0)
    return pd.DataFrame({
        "image": [f"img/{i}.png" for i in range(n)], "label": label, "score": score, "pixel": pixel,
        "tp": tp * zero, "fp": fp * zero, "fn": (pos - tp) * zero, "tn": (side * side - pos - fp) * zero,
        "best_tp": tp * zero, "best_fp": fp // 2 * zero, "best_fn": (pos - tp) * zero,
        "paper_pixel": paper, "paper_tp": tp * paper, "paper_fp": (fp + 3) * paper,
        "paper_fn": (pos - tp) * paper, "height": side, "width": side, "source": "sim",
        "hist_pos": [np.zeros(100, np.int64)] * n, "hist_neg": [np.zeros(100, np.int64)] * n,
    })  # fmt: skip


def _values(table: pd.DataFrame) -> dict:
    return {**paper_metrics(table)[0], **standard_metrics(table)[0]}


def test_weighted_metrics_are_the_protocols_metrics():
    table = _table(0)
    values = _values(table)
    columns = _Columns(table, 0.5)
    keys = headline_keys()
    got = columns.metrics(np.ones((1, len(table))), keys, 0.5)[:, 0]
    assert got == pytest.approx([values[k] for k in keys], abs=1e-12)
    # A resample's weights give the metrics of the resampled rows, ties in the AUC included.
    idx = np.random.default_rng(1).integers(0, len(table), (3, len(table)))
    w = _weights(idx, len(table))
    for row, i in zip(columns.metrics(w, keys, 0.5).T, idx, strict=True):
        drawn = table.iloc[i]
        assert row == pytest.approx([_values(drawn)[k] for k in keys], abs=1e-12)
        assert row[keys.index("paper/auc")] == pytest.approx(roc_auc_score(drawn.label, drawn.score))


def _simulated(seed: int, n_pos: int = 60, n_neg: int = 60) -> pd.DataFrame:
    """Tampered images whose per-image F1 is p ~ Beta(0.8, 1.2) (mean 0.4) up to binomial
    counting (tp ~ Bin(1000, p), fp = fn = 1000 - tp, so F1 = tp / 1000); image scores N(0, 1)
    for authentic and N(1.2, 1) for tampered images (AUC = Phi(1.2 / sqrt 2))."""
    rng = np.random.default_rng(seed)
    tp = rng.binomial(1000, rng.beta(0.8, 1.2, n_pos))
    label = np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]
    counts = np.r_[np.zeros(n_neg, int), tp]
    miss = np.where(label == 1, 1000 - counts, 0)
    score = np.r_[rng.normal(0, 1, n_neg), rng.normal(1.2, 1, n_pos)]
    return pd.DataFrame({"label": label, "score": score, "pixel": True, "tp": counts, "fp": miss,
                         "fn": miss, "tn": 0, "best_tp": counts, "best_fp": miss, "best_fn": miss})


def test_intervals_cover_the_true_value_95_percent_of_the_time():
    # 400 seeded trials, each with the default 1,000 resamples (the weighted statistic makes one
    # trial a few milliseconds); a binomial 95 % band around 0.95 at 400 trials is 0.93-0.97.
    truth = {"standard/pixel_f1@0.5": 0.4, "standard/image_auc": norm.cdf(1.2 / np.sqrt(2))}
    hits = dict.fromkeys(truth, 0)
    trials = 400
    for seed in range(trials):
        table = _simulated(seed)
        values = {"standard/pixel_f1@0.5": table.tp[table.label == 1].mean() / 1000,
                  "standard/image_auc": roc_auc_score(table.label, table.score)}
        ci = metric_intervals(table, values, protocol="standard", seed=seed)
        for key in truth:
            hits[key] += ci[key]["low"] <= truth[key] <= ci[key]["high"]
    coverage = {k: v / trials for k, v in hits.items()}
    assert all(0.92 <= c <= 0.98 for c in coverage.values()), coverage


def test_intervals_are_seeded_and_name_what_they_cannot_give():
    table = _table(2)
    values = _values(table)
    first = metric_intervals(table, values)
    assert first == metric_intervals(table, values)
    assert set(first) == set(headline_keys())
    for key, ci in first.items():
        assert ci["low"] <= values[key] + 1e-9 and values[key] - 1e-9 <= ci["high"] < 1.0001, key
    small = table.iloc[: MIN_IMAGES - 1]  # authentic only, nine images
    small_ci = metric_intervals(small, _values(small))
    assert small_ci["paper/auc"] == {"reason": "one class only: needs authentic and tampered images"}
    assert small_ci["paper/pixel_f1"] == {"reason": "too few images for an interval: 9 (needs 10)"}
    assert small_ci["standard/pixel_f1@0.5"] == {"reason": "undefined on this subset"}
    # Every image perfect: every resample agrees, the interval is the value itself.
    perfect = table.assign(fp=0, fn=0, tp=table.tp + table.fn)
    ci = metric_intervals(perfect, _values(perfect))["standard/pixel_f1@0.5"]
    assert ci["low"] == ci["high"] == 1


def _rows_from_masks(masks: list[np.ndarray], labels: list[int], prob: float, folder) -> pd.DataFrame:
    """predictions.csv as the evaluation writes and reads it, of a constant map `prob`."""
    rows = []
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        m = torch.from_numpy(mask)
        p = torch.full(m.shape, prob)
        meta = {"row": i, "image": f"{i}.png", "mask": f"{i}m.png", "source": "s", "label": label}
        rows.append(make_row(meta, prob, m.shape, pixel_counts(p, m), "", "", "",
                             paper_pixel_counts(p, m)))
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "predictions.csv", index=False)
    return read_predictions(folder / "predictions.csv")


def test_floors_on_masks_with_a_known_answer(tmp_path):
    quarter = np.zeros((8, 8), np.uint8)
    quarter[:4, :4] = 1  # a quarter of the image tampered: F1 of "everything" = 2/(2 + 3) = 0.4
    empty = np.zeros((8, 8), np.uint8)
    table = _rows_from_masks([quarter, quarter, empty], [1, 1, 0], 1.0, tmp_path)
    f = floors(table)
    assert f["standard/pixel_f1@0.5"] == {"every_pixel": pytest.approx(0.4), "no_pixel": 0.0}
    assert f["standard/micro_pixel_f1@0.5"]["every_pixel"] == pytest.approx(0.4)
    assert f["standard/pixel_f1@best"]["every_pixel"] == pytest.approx(0.4)
    # Paper protocol: over all images; the authentic one scores 0 when everything is marked and
    # 1 when nothing is (an empty prediction on an empty mask).
    assert f["paper/pixel_f1"]["every_pixel"] == pytest.approx((0.4 + 0.4 + 0) / 3, abs=1e-6)
    assert f["paper/pixel_f1"]["no_pixel"] == pytest.approx(1 / 3)
    assert f["standard/image_f1@0.5"] == {"constant_score": pytest.approx(2 * 2 / (2 * 2 + 1))}
    assert f["paper/image_f1"] == {"constant_score": 0.0} and f["paper/auc"] == {"constant_score": 0.5}
    # The map marking everything scores exactly the every-pixel floor.
    values = _values(table)
    assert values["standard/pixel_f1@0.5"] == pytest.approx(0.4)
    assert values["paper/pixel_f1"] == pytest.approx(f["paper/pixel_f1"]["every_pixel"])
    assert best_floor(f["paper/pixel_f1"]) == (pytest.approx(1 / 3), "no pixel tampered")
    one_class = floors(table.iloc[:2])
    assert one_class["paper/auc"] == {"constant_score": None}
    assert best_floor(one_class["paper/auc"]) == (None, None)


def test_paired_comparison_gives_the_known_difference():
    a = _table(3)
    b = a.copy()
    tampered = np.flatnonzero((a.label == 1) & a.pixel)
    changed = tampered[:12]
    # Those 12 images perfectly localized in b: the per-image F1 rises by (1 - F1_a) on each.
    gain = (1 - standard_metrics(a.iloc[changed])[0]["standard/pixel_f1@0.5"]) * 12 / len(tampered)
    b.loc[changed, ["tp", "fp", "fn"]] = np.c_[a.tp[changed] + a.fn[changed], 0 * changed, 0 * changed]
    result = paired_comparison(a, b).table.set_index("metric")
    row = result.loc["standard/pixel_f1@0.5"]
    assert row["delta"] == pytest.approx(gain) and row["low"] <= gain <= row["high"]
    assert row["low"] > 0 and row["verdict"] == "better" and row["p"] < 0.01
    assert result.loc["paper/auc", "delta"] == 0  # scores unchanged
    same = paired_comparison(a, a).table
    assert (same["delta"] == 0).all() and (same["p"] == 1).all()
    assert (same["low"] == 0).all() and (same["high"] == 0).all()
    assert set(same["verdict"]) == {"within noise"}


def test_paired_comparison_leaves_out_and_names_images_of_one_run():
    a = _table(4)
    b = a.iloc[3:].copy()
    b.loc[b.index[-1], "image"] = "img/extra.png"
    result = paired_comparison(a, b)
    assert result.images == len(a) - 4
    assert result.only_a == ["img/0.png", "img/1.png", "img/2.png", f"img/{len(a) - 1}.png"]
    assert result.only_b == ["img/extra.png"]
    with pytest.raises(DataError, match="no image in common"):
        paired_comparison(a, b.assign(image="other/" + b.image))
    with pytest.raises(DataError, match="labelled differently"):
        paired_comparison(a, a.assign(label=1 - a.label))


def test_p_value_and_formatting():
    assert p_value(np.zeros(999)) == 1
    assert p_value(np.full(999, 0.1)) == pytest.approx(2 / 1000)
    assert p_value(np.r_[np.full(900, 0.1), np.full(100, -0.1)]) == pytest.approx(2 * 101 / 1001)
    assert format_ci(0.6512, 0.5803, 0.7149) == "0.65 [0.58, 0.71]"
    assert format_ci(0.6512) == "0.65" and format_ci(None) == "undefined"


def test_headline_frame_is_tidy():
    table = _table(5)
    values = _values(table)
    subset = {**values, "floors": floors(table), "intervals": metric_intervals(table, values),
              "count/images": len(table)}
    frame = headline_frame({"threshold": 0.5, "subsets": {"both": subset, "small": {"paper/auc": None}}})
    assert list(frame.columns) == ["subset", "metric", "value", "low", "high", "reason", "floor",
                                   "floor_by", "images", "text"]
    both = frame[frame.subset == "both"].set_index("metric")
    assert list(both.index) == list(headline_keys())
    r = both.loc["standard/image_auc"]
    assert r.floor == 0.5 and r.floor_by == "a constant image score" and r.images == len(table)
    assert r.text == format_ci(r.value, r.low, r.high)
    assert frame[frame.subset == "small"].text.tolist() == ["undefined"]
