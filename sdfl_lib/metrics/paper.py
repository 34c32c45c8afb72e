"""The paper's protocol (SPEC.md §1): pixel F1 over all images, its image "F1", combined F1.

Keys of `paper_metrics` start with "paper/". Inputs are per-image arrays (or the columns of a
predictions table, see `sdfl_lib.evaluate`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdfl_lib.metrics.counts import f1_from_counts
from sdfl_lib.metrics.roc import auc_or_none, gmean_threshold


def pixel_f1_per_image(tp, fp, fn) -> np.ndarray:
    """Pixel F1 of each image; an empty prediction on an empty mask scores 1."""
    return f1_from_counts(tp, fp, fn, empty=1.0)


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """2ab / (a + b); 0 when both are 0; None when either is undefined."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def image_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float | None]:
    """Accuracy, sensitivity, specificity, "F1" = 2·sen·spe/(sen+spe), AUC, G-mean threshold."""
    labels = np.asarray(labels).astype(int)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    pos, neg = labels == 1, labels == 0
    sen = float(pred[pos].mean()) if pos.any() else None
    spe = float((~pred[neg]).mean()) if neg.any() else None
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

    `table` columns: label, score, pixel (bool: the image has pixel ground truth, i.e. authentic or
    tampered with a mask; label-only fakes count in image-level metrics only), tp, fp, fn.
    """
    notes: list[str] = []
    pix = table[table["pixel"].astype(bool)]
    if len(pix):
        pixel_f1 = float(pixel_f1_per_image(pix["tp"], pix["fp"], pix["fn"]).mean())
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
