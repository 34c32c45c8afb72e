"""The paper protocol equals the authors' evaluation procedure, derived here independently from
the network-size maps, on the COVERAGE sample (pair 41's masks have another size than its image)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sdfl_lib.data import load_image
from sdfl_lib.evaluate import evaluate
from sdfl_lib.inference import prepare_input
from sdfl_lib.metrics.paper import paper_metrics, paper_pixel_counts
from sdfl_lib.models import build_model

SIZE = 128


def _authors_rule(rows: pd.DataFrame, model, threshold: float = 0.5) -> dict:
    """Their steps: map * 255 -> uint8 at the network's size, OpenCV bilinear resize to the image,
    / 255, > threshold; mask read grey / 255, every non-zero pixel tampered; a mask of another
    size skipped for pixel F1 ("size not match"); image fake when score > threshold."""
    f1s, labels, scores, skipped = [], [], [], []
    for r in rows.itertuples():
        image = load_image(r.image)
        with torch.no_grad():
            out = model(prepare_input(image, SIZE)[None])
        prob = out.mask_prob[0, 0].numpy()
        labels.append(int(r.label))
        scores.append(float(out.image_score[0]))
        h, w = image.shape[:2]
        seg = cv2.resize((prob * 255).astype(np.uint8), (w, h)) / 255.0
        gt = cv2.imread(r.mask, cv2.IMREAD_GRAYSCALE) / 255.0 if r.mask else np.zeros((h, w))
        if seg.shape != gt.shape:
            skipped.append(r.image)
            continue
        seg, gt = seg > threshold, gt > 0
        if seg.max() == gt.max() == 0:
            f1s.append(1.0)
            continue
        tp = float(np.logical_and(seg, gt).sum())
        fp = np.logical_and(seg, ~gt).sum()
        fn = np.logical_and(~seg, gt).sum()
        f1s.append(2 * tp / (2 * tp + fp + fn + 1e-6))
    y, s = np.array(labels), np.array(scores)
    pred = s > threshold
    tp, tn = np.sum(pred & (y == 1)), np.sum(~pred & (y == 0))
    fp, fn = np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    sen, spe = tp / (tp + fn + 1e-6), tn / (tn + fp + 1e-6)
    pixel_f1, image_f1 = float(np.mean(f1s)), 2 * sen * spe / (sen + spe)
    return {
        "paper/pixel_f1": pixel_f1,
        "paper/image_accuracy": (tp + tn) / len(y),
        "paper/image_sensitivity": sen,
        "paper/image_specificity": spe,
        "paper/image_f1": image_f1,
        "paper/auc": roc_auc_score(y, s),
        "paper/combined_f1": 2 * pixel_f1 * image_f1 / (pixel_f1 + image_f1),
        "skipped": skipped,
    }


# Whatever the standard protocol's mask policy and the threshold.
@pytest.mark.parametrize(("policy", "threshold"), [("resize", 0.5), ("skip", 0.7)])
def test_paper_protocol_equals_authors_procedure_on_coverage(coverage_manifest, tmp_path, policy,
                                                              threshold):
    coverage = coverage_manifest
    model = build_model("ela").eval()
    metrics = evaluate(model, coverage, tmp_path, image_size=SIZE, mask_policy=policy,
                       threshold=threshold, workers=0, figures=False, save_maps=False,
                       progress=False)  # fmt: skip
    theirs = _authors_rule(pd.read_csv(coverage, keep_default_na=False), model, threshold)
    assert [p.rsplit("/", 1)[1] for p in theirs.pop("skipped")] == ["41t.tif"]
    both = metrics["subsets"]["both"]
    for key, value in theirs.items():
        assert both[key] == pytest.approx(value, abs=1e-4), key
    # Pair 41 stays in the image-level numbers, out of pixel F1, and is listed as such.
    assert both["count/images"] == 22 and both["count/paper_pixel_f1_left_out_mask_size"] == 1
    listed = metrics["mask_size_mismatch"]["images"]
    assert [r["paper"] for r in listed] == ["left out of pixel F1"]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["mask_size_mismatch"]["paper_protocol"].startswith("left out of paper/pixel_f1")


def test_authors_threshold_comparisons_are_strict():
    # 0.5019 * 255 = 127.98 -> 127 after truncation -> 0.498 is not above 0.5; 0.503 -> 128 is.
    prob = np.array([[0.5019, 0.503], [0.2, 0.99]], np.float32)
    mask = np.array([[1, 1], [0, 0]], np.uint8)
    assert paper_pixel_counts(prob, mask) == (1, 1, 1)
    # An image whose score equals the threshold is not predicted fake.
    table = pd.DataFrame({"label": [1, 0], "score": [0.5, 0.2], "pixel": True,
                          "tp": 0, "fp": 0, "fn": 0})  # fmt: skip
    m, _ = paper_metrics(table)
    assert m["paper/image_sensitivity"] == 0


def test_nonzero_mask_pixels_are_tampered_and_map_is_resized_bilinearly():
    prob = np.zeros((4, 4), np.float32)
    prob[:, 2:] = 1.0
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 3  # a faint mask value still marks tampering
    tp, fp, fn = paper_pixel_counts(prob, mask)
    # OpenCV's bilinear resize of 0|255 columns gives 0, 0, 0, 64, 191, 255... : > 127.5 from col 4.
    assert (tp, fp, fn) == (32, 0, 0)
