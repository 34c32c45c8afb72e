"""ROC-based numbers shared by both protocols: AUC (undefined for one class), G-mean threshold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def has_both_classes(labels) -> bool:
    """True when `labels` holds at least one 0 and one 1."""
    labels = np.asarray(labels)
    return bool((labels == 1).any() and (labels == 0).any())


def auc_or_none(labels, scores) -> float | None:
    """ROC AUC by scikit-learn; None (undefined, never 0) when only one class is present."""
    if not has_both_classes(labels):
        return None
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores, dtype=np.float64)))


def gmean_threshold(labels, scores) -> tuple[float | None, float | None]:
    """(threshold, G-mean) of the ROC point maximising sqrt(tpr * (1 - fpr)); Nones for one class."""
    if not has_both_classes(labels):
        return None, None
    fpr, tpr, thr = roc_curve(np.asarray(labels), np.asarray(scores, dtype=np.float64))
    gmean = np.sqrt(tpr * (1 - fpr))
    best = int(np.argmax(gmean))
    # roc_curve's first threshold is +inf (nothing predicted positive); never the best unless all
    # G-means are 0, where any finite threshold is as good: report the largest score then.
    t = float(thr[best]) if np.isfinite(thr[best]) else float(np.max(scores))
    return t, float(gmean[best])


def binned_roc(hist_neg, hist_pos) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every bin edge of two probability histograms, from (0, 0) to (1, 1)."""
    neg = np.asarray(hist_neg, dtype=np.float64)
    pos = np.asarray(hist_pos, dtype=np.float64)
    # Predicted positive at edge k: bins >= k; walk k from above the top bin down to 0.
    fp = np.concatenate([[0.0], np.cumsum(neg[::-1])])
    tp = np.concatenate([[0.0], np.cumsum(pos[::-1])])
    return fp / max(neg.sum(), 1.0), tp / max(pos.sum(), 1.0)


def binned_auc(hist_neg, hist_pos) -> float | None:
    """Pixel ROC AUC from histograms (ties within a bin count as ties); None for one class."""
    if np.sum(hist_neg) == 0 or np.sum(hist_pos) == 0:
        return None
    fpr, tpr = binned_roc(hist_neg, hist_pos)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoid rule
