"""Metrics of both protocols against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from sdfl_lib.metrics import (
    HIST_BINS,
    binned_auc,
    counts_from_histograms,
    gmean_threshold,
    paper_metrics,
    pixel_counts,
    standard_metrics,
)
from sdfl_lib.metrics.paper import image_metrics as paper_image_metrics
from sdfl_lib.metrics.paper import pixel_f1_per_image


def _row(label, score, prob, mask, pixel=True):
    c = pixel_counts(torch.tensor(prob, dtype=torch.float32), torch.tensor(mask))
    return {"label": label, "score": score, "pixel": pixel, **c.__dict__}


def test_pixel_counts_by_hand():
    prob = np.array([[0.9, 0.6, 0.2], [0.5, 0.1, 0.7]])
    mask = np.array([[1, 1, 1], [0, 0, 0]])
    c = pixel_counts(torch.tensor(prob, dtype=torch.float32), torch.tensor(mask))
    # >= 0.5: predicted {0.9, 0.6, 0.5, 0.7}; tampered {0.9, 0.6, 0.2}.
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 1)
    # Best F1: thresholds in (0.1, 0.2] give tp 3 fp 2 (F1 6/8); (0.5, 0.6] give tp 2 fp 1 fn 1
    # (F1 4/6); (0.7, 0.9] give tp 1 fn 2 (1/2). The highest grid threshold of the best: 0.2.
    assert c.best_threshold == pytest.approx(0.2)
    assert (c.best_tp, c.best_fp, c.best_fn) == (3, 2, 0)
    assert c.hist_pos.sum() == 3 and c.hist_neg.sum() == 3
    assert c.hist_pos[90] == 1 and c.hist_neg[50] == 1
    assert counts_from_histograms(c.hist_neg, c.hist_pos, HIST_BINS // 2) == (2, 2, 1, 1)
    # A threshold off the grid is counted directly.
    c2 = pixel_counts(torch.tensor(prob, dtype=torch.float32), torch.tensor(mask), threshold=0.65)
    assert (c2.tp, c2.fp, c2.fn, c2.tn) == (1, 1, 2, 2)


def test_paper_pixel_f1_empty_prediction_on_authentic_image_is_one():
    assert pixel_f1_per_image([0], [0], [0]).tolist() == [1.0]
    # An empty prediction on a tampered image scores 0; a false alarm on an authentic image 0.
    assert pixel_f1_per_image([0, 0], [0, 5], [4, 0]).tolist() == [0.0, 0.0]
    assert pixel_f1_per_image([3], [1], [1]).tolist() == [pytest.approx(6 / 8)]


def test_model_predicting_nothing_gets_fraction_of_authentic_images():
    # 3 authentic, 5 tampered with masks, 1 label-only fake: predicting nothing anywhere gives
    # paper pixel F1 = 3 / 8 (label-only fakes count in image-level metrics only).
    rows = [_row(0, 0.0, np.zeros((4, 4)), np.zeros((4, 4), np.uint8)) for _ in range(3)]
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    rows += [_row(1, 0.0, np.zeros((4, 4)), mask) for _ in range(5)]
    rows.append({**_row(1, 0.0, np.zeros((4, 4)), np.zeros((4, 4), np.uint8)), "pixel": False})
    m, _ = paper_metrics(pd.DataFrame(rows))
    assert m["paper/pixel_f1"] == pytest.approx(3 / 8)
    # Image level: nothing predicted tampered: sen 0, spe 1, "F1" 0, combined 0, AUC .5.
    assert m["paper/image_sensitivity"] == 0
    assert m["paper/image_specificity"] == pytest.approx(1)
    assert m["paper/image_f1"] == 0 and m["paper/combined_f1"] == 0
    assert m["paper/auc"] == pytest.approx(0.5)
    assert m["paper/image_accuracy"] == pytest.approx(3 / 9)
    s, _ = standard_metrics(pd.DataFrame(rows))
    assert s["standard/pixel_f1@0.5"] == 0 and s["standard/image_f1@0.5"] == 0
    assert s["standard/image_precision@0.5"] is None  # nothing predicted tampered


def test_paper_image_metrics_by_hand():
    labels = [1, 1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.3, 0.6, 0.2, 0.7, 0.1]
    m = paper_image_metrics(labels, scores)
    sen, spe = 3 / 4, 2 / 3
    assert m["image_sensitivity"] == pytest.approx(sen)
    assert m["image_specificity"] == pytest.approx(spe)
    assert m["image_accuracy"] == pytest.approx(5 / 7)
    assert m["image_f1"] == pytest.approx(2 * sen * spe / (sen + spe))
    # AUC: of 12 (pos, neg) pairs the positive scores higher in 10 (0.3 < 0.7 and 0.6 < 0.7 fail).
    assert m["auc"] == pytest.approx(10 / 12)
    # G-mean over the ROC: threshold 0.8 -> tpr .5, fpr 0 -> .707; 0.6 -> .75, 1/3 -> .707;
    # 0.3 -> 1, 1/3 -> .816 is the best.
    t, g = gmean_threshold(labels, scores)
    assert t == pytest.approx(0.3) and g == pytest.approx(np.sqrt(2 / 3))


def test_combined_f1_is_harmonic_mean():
    rows = [
        _row(1, 0.9, [[0.9, 0.9], [0.1, 0.1]], np.array([[1, 0], [0, 0]], np.uint8)),
        _row(0, 0.2, [[0.1, 0.1], [0.1, 0.1]], np.zeros((2, 2), np.uint8)),
        _row(0, 0.7, [[0.1, 0.1], [0.1, 0.1]], np.zeros((2, 2), np.uint8)),
    ]
    m, _ = paper_metrics(pd.DataFrame(rows))
    pf1 = (2 / 3 + 1 + 1) / 3
    if1 = 2 * 1 * 0.5 / 1.5
    assert m["paper/pixel_f1"] == pytest.approx(pf1)
    assert m["paper/image_f1"] == pytest.approx(if1)
    assert m["paper/combined_f1"] == pytest.approx(2 * pf1 * if1 / (pf1 + if1))


def test_standard_image_metrics_equal_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(rng.random(200) * 0.7 + labels * 0.3, 0, 1)
    table = pd.DataFrame({"label": labels, "score": scores, "pixel": False})
    for c in ("tp", "fp", "fn", "best_tp", "best_fp", "best_fn"):
        table[c] = 0
    m, _ = standard_metrics(table, threshold=0.5)
    pred = scores >= 0.5
    assert m["standard/image_f1@0.5"] == pytest.approx(f1_score(labels, pred))
    assert m["standard/image_precision@0.5"] == pytest.approx(precision_score(labels, pred))
    assert m["standard/image_recall@0.5"] == pytest.approx(recall_score(labels, pred))
    assert m["standard/image_accuracy@0.5"] == pytest.approx(accuracy_score(labels, pred))
    assert m["standard/image_balanced_accuracy@0.5"] == pytest.approx(
        balanced_accuracy_score(labels, pred)
    )
    assert m["standard/image_auc"] == pytest.approx(roc_auc_score(labels, scores))
    # The paper's image "F1" is another number on the same data.
    p, _ = paper_metrics(table)
    assert p["paper/image_f1"] != pytest.approx(m["standard/image_f1@0.5"])


def test_standard_pixel_metrics_by_hand():
    m1 = np.array([[1, 1], [0, 0]], np.uint8)
    rows = [
        _row(1, 0.9, [[0.9, 0.4], [0.6, 0.1]], m1),  # @.5: tp 1 fp 1 fn 1 -> F1 .5, IoU 1/3
        _row(1, 0.9, [[0.8, 0.7], [0.2, 0.1]], m1),  # tp 2 -> F1 1, IoU 1
        _row(0, 0.1, [[0.9, 0.9], [0.9, 0.9]], np.zeros((2, 2), np.uint8)),  # authentic: ignored
    ]
    m, notes = standard_metrics(pd.DataFrame(rows))
    assert m["standard/pixel_f1@0.5"] == pytest.approx(0.75)
    assert m["standard/pixel_iou@0.5"] == pytest.approx((1 / 3 + 1) / 2)
    # Micro: tp 3 fp 1 fn 1 -> F1 6/8, IoU 3/5.
    assert m["standard/micro_pixel_f1@0.5"] == pytest.approx(6 / 8)
    assert m["standard/micro_pixel_iou@0.5"] == pytest.approx(3 / 5)
    # Best threshold: image 1 at 0.9 -> tp 1 fn 1 -> 2/3; at 0.4 -> tp 2 fp 1 -> 0.8 (best).
    assert m["standard/pixel_f1@best"] == pytest.approx((0.8 + 1) / 2)
    # Pixel AUC over the 8 pixels of tampered images, equal to sklearn's (distinct bins).
    gt = [1, 1, 0, 0, 1, 1, 0, 0]
    pr = [0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.2, 0.1]
    assert m["standard/pixel_auc"] == pytest.approx(roc_auc_score(gt, pr))
    assert not notes


def test_binned_auc_equals_sklearn_on_quantised_scores():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 2, 5000)
    pr = np.clip(rng.normal(0.4 + 0.2 * gt, 0.2), 0, 0.999)
    pr = (np.floor(pr * HIST_BINS) + 0.5) / HIST_BINS  # one value per bin: ties are exact ties
    c = pixel_counts(torch.tensor(pr, dtype=torch.float32), torch.tensor(gt))
    assert binned_auc(c.hist_neg, c.hist_pos) == pytest.approx(roc_auc_score(gt, pr), abs=1e-9)


def test_single_class_subsets_report_undefined_not_zero():
    only_fakes = pd.DataFrame(
        [_row(1, s, [[0.9, 0.1]], np.array([[1, 0]], np.uint8)) for s in (0.2, 0.8)]
    )
    p, pnotes = paper_metrics(only_fakes)
    s, snotes = standard_metrics(only_fakes)
    assert p["paper/auc"] is None and s["standard/image_auc"] is None
    assert p["paper/image_specificity"] is None and p["paper/image_f1"] is None
    assert p["paper/combined_f1"] is None
    assert p["paper/image_sensitivity"] == pytest.approx(0.5)
    assert s["standard/image_recall@0.5"] == 0.5 and s["standard/image_f1@0.5"] == pytest.approx(
        2 / 3
    )
    assert s["standard/image_balanced_accuracy@0.5"] is None
    assert any("auc undefined" in n for n in pnotes) and any("auc undefined" in n for n in snotes)

    only_real = pd.DataFrame(
        [_row(0, s, [[0.1, 0.1]], np.zeros((1, 2), np.uint8)) for s in (0.2, 0.8)]
    )
    p, _ = paper_metrics(only_real)
    s, snotes = standard_metrics(only_real)
    assert p["paper/pixel_f1"] == 1.0 and p["paper/image_sensitivity"] is None
    assert p["paper/image_specificity"] == pytest.approx(0.5) and p["paper/auc"] is None
    assert s["standard/image_f1@0.5"] is None and s["standard/pixel_f1@0.5"] is None
    assert any("no tampered image" in n for n in snotes)


def test_keys_carry_protocol_names():
    rows = [
        _row(1, 0.9, [[0.9]], np.ones((1, 1), np.uint8)),
        _row(0, 0.1, [[0.1]], np.zeros((1, 1), np.uint8)),
    ]
    p, _ = paper_metrics(pd.DataFrame(rows))
    s, _ = standard_metrics(pd.DataFrame(rows))
    assert all(k.startswith("paper/") for k in p) and all(k.startswith("standard/") for k in s)
