"""Metrics of both protocols as small pure functions over per-image counts and scores.

`paper_metrics` (the authors' procedure) and `standard_metrics` (the field's) take a table with one row per
image; `pixel_counts` turns a probability map and its mask into that row's pixel counts.
"""

from sdfl_lib.metrics.counts import (
    FINE_BINS,
    HIST_BINS,
    PixelCounts,
    counts_from_histograms,
    f1_from_counts,
    iou_from_counts,
    pixel_counts,
)
from sdfl_lib.metrics.paper import paper_metrics
from sdfl_lib.metrics.roc import auc_or_none, binned_auc, binned_roc, gmean_threshold
from sdfl_lib.metrics.standard import standard_metrics

__all__ = [
    "FINE_BINS",
    "HIST_BINS",
    "PixelCounts",
    "auc_or_none",
    "binned_auc",
    "binned_roc",
    "counts_from_histograms",
    "f1_from_counts",
    "gmean_threshold",
    "iou_from_counts",
    "paper_metrics",
    "pixel_counts",
    "standard_metrics",
]
