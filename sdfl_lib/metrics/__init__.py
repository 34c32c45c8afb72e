"""Metrics of both protocols as small pure functions over per-image counts and scores.

`paper_metrics` (the authors' procedure) and `standard_metrics` (the field's) take a table with one row per
image; `pixel_counts` turns a probability map and its mask into that row's pixel counts; the protocol names
are in `sdfl_lib.metrics.protocols`.

Names are imported lazily, so that the command line reads the protocol names without loading
scikit-learn.
"""

from __future__ import annotations

from sdfl_lib.lazy import lazy_getattr

_EXPORTS = {
    "FINE_BINS": "counts",
    "HIST_BINS": "counts",
    "PixelCounts": "counts",
    "counts_from_histograms": "counts",
    "f1_from_counts": "counts",
    "iou_from_counts": "counts",
    "pixel_counts": "counts",
    "paper_metrics": "paper",
    "auc_or_none": "roc",
    "binned_auc": "roc",
    "binned_roc": "roc",
    "gmean_threshold": "roc",
    "standard_metrics": "standard",
    "PROTOCOLS": "protocols",
    "PROTOCOL_CHOICES": "protocols",
    "chosen_protocols": "protocols",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
