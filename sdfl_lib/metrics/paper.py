"""The paper's protocol: the authors' evaluation procedure, step by step.

Pixel F1 over all images with pixel ground truth (authentic included), its image "F1", combined
F1. What the authors' evaluate.py does and this module does too: the probability map is truncated
to uint8 at the network's size, resized back with OpenCV's bilinear resize and divided by 255; a
pixel is tampered when strictly above the threshold, an image when its score is; a mask whose
size differs from its image is left out of pixel F1 (its score stays in the image-level numbers);
the small 1e-6 terms of their formulas are kept. Keys of `paper_metrics` start with "paper/".
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import torch

from sdfl_lib.metrics.roc import auc_or_none, gmean_threshold

# The authors' guard against empty denominators, kept because it moves numbers at 1e-6.
EPS = 1e-6


def paper_map(prob: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The authors' map at the image's size (H, W): uint8 0..255 from a network-size map in [0, 1]
    (truncated, not rounded), resized with OpenCV's bilinear resize."""
    if isinstance(prob, torch.Tensor):
        prob = prob.detach().float().cpu().numpy()
    u8 = (np.asarray(prob, dtype=np.float32).reshape(prob.shape[-2:]) * 255).astype(np.uint8)
    if u8.shape != tuple(size):
        u8 = cv2.resize(u8, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return u8


def paper_pixel_counts(
    prob: torch.Tensor | np.ndarray, mask: np.ndarray | torch.Tensor, threshold: float = 0.5
) -> tuple[int, int, int]:
    """(tp, fp, fn) of a network-size probability map against a {0, 1} mask at the image's size,
    by the authors' rule: map value / 255 > threshold is tampered."""
    if isinstance(mask, torch.Tensor):
        mask = mask.cpu().numpy()
    gt = np.asarray(mask) > 0
    pred = paper_map(prob, gt.shape) / 255.0 > threshold
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    return tp, fp, int(np.count_nonzero(gt)) - tp


def pixel_f1_per_image(tp, fp, fn) -> np.ndarray:
    """The authors' pixel F1 of each image: 2TP / (2TP + FP + FN + 1e-6); an empty prediction on
    an empty mask scores 1."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    return np.where(tp + fp + fn == 0, 1.0, 2 * tp / (2 * tp + fp + fn + EPS))


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """2ab / (a + b); 0 when both are 0; None when either is undefined."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def image_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float | None]:
    """Accuracy, sensitivity, specificity, "F1" = 2·sen·spe/(sen+spe), AUC, G-mean threshold.

    As the authors: fake when score > threshold; sen = TP / (TP + FN + 1e-6), spe likewise. A
    number needing a class the labels lack is None (theirs would print 0).
    """
    labels = np.asarray(labels).astype(int)
    pred = np.asarray(scores, dtype=np.float64) > threshold
    pos, neg = labels == 1, labels == 0
    sen = float(pred[pos].sum() / (pos.sum() + EPS)) if pos.any() else None
    spe = float((~pred[neg]).sum() / (neg.sum() + EPS)) if neg.any() else None
    best_t, best_g = gmean_threshold(labels, scores)
    return {
        "image_accuracy": float((pred == pos).mean()) if len(labels) else None,
        "image_sensitivity": sen,
        "image_specificity": spe,
        "image_f1": harmonic_mean(sen, spe),
        "auc": auc_or_none(labels, scores),
        "best_threshold": best_t,
        "best_gmean": best_g,
    }


def paper_metrics(table: pd.DataFrame, threshold: float = 0.5) -> tuple[dict, list[str]]:
    """All paper-protocol numbers of one subset, and notes on what is undefined.

    `table` columns: label, score, and the paper protocol's pixel columns paper_pixel (bool: the
    image counts in pixel F1: authentic, or tampered with a mask of the image's size), paper_tp,
    paper_fp, paper_fn (see `paper_pixel_counts`). A table without them (built by hand) uses
    pixel, tp, fp, fn instead.
    """
    notes: list[str] = []
    cols = ("paper_pixel", "paper_tp", "paper_fp", "paper_fn")
    if not set(cols) <= set(table.columns):
        cols = ("pixel", "tp", "fp", "fn")
    pix = table[table[cols[0]].astype(bool)]
    if len(pix):
        pixel_f1 = float(pixel_f1_per_image(*(pix[c] for c in cols[1:])).mean())
    else:
        pixel_f1 = None
        notes.append("paper/pixel_f1 undefined: no image with pixel ground truth")
    img = image_metrics(table["label"], table["score"], threshold)
    if img["auc"] is None:
        notes.append("paper/auc undefined: the subset holds one class only")
    if img["image_f1"] is None:
        notes.append("paper/image_f1 undefined: sensitivity or specificity needs both classes")
    out = {"pixel_f1": pixel_f1, **img, "combined_f1": harmonic_mean(pixel_f1, img["image_f1"])}
    return {f"paper/{k}": v for k, v in out.items()}, notes
