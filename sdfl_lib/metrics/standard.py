"""The protocol the rest of the field reports; keys start with "standard/".

Pixel metrics use tampered images with a mask only: per-image F1 and IoU at the threshold and
each image's best-threshold F1, averaged over those images; dataset-level (micro) F1 and IoU from
summed counts; pixel AUC from summed probability histograms. Image metrics are the usual
precision / recall / F1 / accuracy / balanced accuracy / AUC of the image score.

Variants that published tables use, each under its own key:
- `pixel_f1_permuted@t`: per image the better of the map's F1 and its inverse's (the map's
  prediction flipped), as TruFor's "permuted" F1 and IMDL-BenCo's `mode="double"`;
- `pixel_f1_band{B}px@t` (and `pixel_f1_permuted_band{B}px@t`): pixels within B pixels of the
  ground truth's boundary left out, when an evaluation asks for a band (off by default);
  `band{IN}-{OUT}px` for a band IN pixels deep inside the region and OUT outside (TruFor's
  erosion by 15 and dilation by 11 pixel windows is `7-5px`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdfl_lib.metrics.counts import band_label, f1_from_counts, iou_from_counts
from sdfl_lib.metrics.roc import auc_or_none, binned_auc


def image_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float | None]:
    """Precision, recall, F1, accuracy, balanced accuracy and AUC of image scores at `threshold`.

    A number whose denominator is empty (recall without tampered images, precision without any
    image predicted tampered, balanced accuracy with one class) is None, never 0.
    """
    labels = np.asarray(labels).astype(int)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    pos = labels == 1
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    tn = int((~pred & ~pos).sum())
    recall = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    both = recall is not None and specificity is not None
    return {
        "image_precision": tp / (tp + fp) if tp + fp else None,
        "image_recall": recall,
        "image_f1": float(f1_from_counts(tp, fp, fn)) if tp + fn else None,
        "image_accuracy": (tp + tn) / len(labels) if len(labels) else None,
        "image_balanced_accuracy": (recall + specificity) / 2 if both else None,
        "image_auc": auc_or_none(labels, scores),
    }


def permuted_f1(tp, fp, fn, tn) -> np.ndarray:
    """Per image max(F1 of the prediction, F1 of the inverted prediction) against the mask; the
    inverted prediction's counts are tp' = fn, fp' = tn, fn' = tp."""
    return np.maximum(f1_from_counts(tp, fp, fn), f1_from_counts(fn, tn, tp))


def band_metrics(table: pd.DataFrame) -> dict[str, float | None]:
    """Per-image F1 and permuted F1 from the counts outside the boundary band (band_* columns)."""
    if not len(table):
        return {"f1": None, "f1_permuted": None}
    tp, fp, fn, tn = (table[f"band_{c}"].to_numpy(np.int64) for c in ("tp", "fp", "fn", "tn"))
    return {
        "f1": float(f1_from_counts(tp, fp, fn).mean()),
        "f1_permuted": float(permuted_f1(tp, fp, fn, tn).mean()),
    }


def pixel_metrics(table: pd.DataFrame) -> dict[str, float | None]:
    """Per-image mean and micro pixel F1 / IoU and pixel AUC over the rows of tampered images.

    `table` columns: tp, fp, fn, best_tp, best_fp, best_fn, hist_pos, hist_neg (arrays).
    """
    if not len(table):
        keys = ("f1", "f1_permuted", "f1_best", "iou", "micro_f1", "micro_iou", "auc")
        return {k: None for k in keys}
    tp, fp, fn = (table[c].to_numpy(np.int64) for c in ("tp", "fp", "fn"))
    hist_pos = np.sum(np.stack(table["hist_pos"].to_list()), axis=0)
    hist_neg = np.sum(np.stack(table["hist_neg"].to_list()), axis=0)
    return {
        "f1": float(f1_from_counts(tp, fp, fn).mean()),
        "f1_permuted": float(permuted_f1(tp, fp, fn, table["tn"].to_numpy(np.int64)).mean()),
        "f1_best": float(
            f1_from_counts(table["best_tp"], table["best_fp"], table["best_fn"]).mean()
        ),
        "iou": float(iou_from_counts(tp, fp, fn).mean()),
        "micro_f1": float(f1_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "micro_iou": float(iou_from_counts(tp.sum(), fp.sum(), fn.sum())),
        "auc": binned_auc(hist_neg, hist_pos),
    }


def standard_metrics(
    table: pd.DataFrame, threshold: float = 0.5, boundary_band: int | str | tuple = 0
) -> tuple[dict, list[str]]:
    """All standard-protocol numbers of one subset, and notes on what is undefined.

    `table` columns: label, score, pixel (bool: has pixel ground truth) and those of
    `pixel_metrics` (plus band_tp/fp/fn/tn with `boundary_band` > 0).
    """
    notes: list[str] = []
    t = f"{threshold:g}"
    tampered = table[(table["label"] == 1) & table["pixel"].astype(bool)]
    pix = pixel_metrics(tampered)
    if not len(tampered):
        notes.append("standard pixel metrics undefined: no tampered image with a mask")
    elif pix["auc"] is None:
        notes.append("standard/pixel_auc undefined: the tampered images' masks hold one class")
    img = image_metrics(table["label"], table["score"], threshold)
    if img["image_auc"] is None:
        notes.append("standard/image_auc undefined: the subset holds one class only")
    for key in ("image_precision", "image_recall", "image_balanced_accuracy"):
        if img[key] is None:
            notes.append(f"standard/{key}@{t} undefined: empty denominator")
    out = {
        f"pixel_f1@{t}": pix["f1"],
        f"pixel_f1_permuted@{t}": pix["f1_permuted"],
        "pixel_f1@best": pix["f1_best"],
        f"pixel_iou@{t}": pix["iou"],
        f"micro_pixel_f1@{t}": pix["micro_f1"],
        f"micro_pixel_iou@{t}": pix["micro_iou"],
        "pixel_auc": pix["auc"],
        **{(k if k == "image_auc" else f"{k}@{t}"): v for k, v in img.items()},
    }
    band = band_label(boundary_band)
    if band:
        counts = band_metrics(tampered)
        out[f"pixel_f1_band{band}@{t}"] = counts["f1"]
        out[f"pixel_f1_permuted_band{band}@{t}"] = counts["f1_permuted"]
    return {f"standard/{k}": v for k, v in out.items()}, notes
