"""Per-image pixel counts that every pixel metric is computed from, so maps never need keeping.

For one probability map and its mask, `pixel_counts` returns the confusion counts at the decision
threshold, the best F1 over a fine grid of thresholds, and a coarse histogram of the probabilities of
tampered and of authentic pixels. Summing histograms over images gives dataset-level (micro) counts
at any grid threshold and the pixel ROC. A pixel is predicted tampered when its probability is
>= the threshold (the convention of scikit-learn's `roc_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

# Fine grid for each image's best threshold (steps of 0.001); coarse histogram kept per image.
FINE_BINS = 1000
HIST_BINS = 100


@dataclass
class PixelCounts:
    """Pixel counts of one image: confusion at the threshold, at its best threshold, histograms."""

    tp: int
    fp: int
    fn: int
    tn: int
    best_threshold: float
    best_tp: int
    best_fp: int
    best_fn: int
    hist_pos: np.ndarray  # (HIST_BINS,) counts of tampered pixels per probability bin
    hist_neg: np.ndarray  # (HIST_BINS,) counts of authentic pixels per probability bin


def f1_from_counts(tp, fp, fn, empty: float = 0.0):
    """F1 = 2TP / (2TP + FP + FN), element-wise; `empty` where TP + FP + FN = 0."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), empty)
    return out


def iou_from_counts(tp, fp, fn, empty: float = 0.0):
    """IoU = TP / (TP + FP + FN), element-wise; `empty` where TP + FP + FN = 0."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    den = tp + fp + fn
    return np.where(den > 0, tp / np.where(den > 0, den, 1), empty)


def _fine_histograms(prob: torch.Tensor, mask: torch.Tensor, bins: int) -> torch.Tensor:
    """(2, bins) counts of authentic (row 0) and tampered (row 1) pixels per probability bin."""
    idx = (prob.reshape(-1).float() * bins).long().clamp_(0, bins - 1)
    idx += mask.reshape(-1).long().clamp(0, 1) * bins
    return torch.bincount(idx, minlength=2 * bins).reshape(2, bins)


def counts_from_histograms(hist_neg: np.ndarray, hist_pos: np.ndarray, k: int):
    """(tp, fp, fn, tn) when pixels in bins >= k are predicted tampered (threshold k / bins)."""
    tp = int(hist_pos[k:].sum())
    fp = int(hist_neg[k:].sum())
    return tp, fp, int(hist_pos.sum()) - tp, int(hist_neg.sum()) - fp


def pixel_counts(prob: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> PixelCounts:
    """Counts of one probability map (H, W) in [0, 1] against its {0, 1} mask (H, W), any device.

    One pass of `bincount` over the pixels; the best threshold is searched on a 0.001 grid.
    """
    fine = _fine_histograms(prob, mask, FINE_BINS)
    # Pixels predicted tampered at threshold t_k = k / FINE_BINS: suffix sums over bins >= k.
    suffix = fine.flip(1).cumsum(1).flip(1)  # (2, FINE_BINS)
    neg_total, pos_total = int(fine[0].sum()), int(fine[1].sum())
    tp_k, fp_k = suffix[1].double(), suffix[0].double()
    fn_k = pos_total - tp_k
    den = 2 * tp_k + fp_k + fn_k
    f1_k = torch.where(den > 0, 2 * tp_k / den.clamp(min=1), torch.ones_like(den))
    # The highest grid threshold reaching the best F1 (the lower edge of a bin holding a pixel).
    best = int(torch.nonzero(f1_k >= f1_k.max() - 1e-12).max())
    k = threshold * FINE_BINS
    if float(k).is_integer() and 0 <= k <= FINE_BINS:
        k = int(k)
        tp = int(suffix[1, k]) if k < FINE_BINS else 0
        fp = int(suffix[0, k]) if k < FINE_BINS else 0
    else:  # a threshold off the grid: count it directly
        pred = prob.reshape(-1) >= threshold
        m = mask.reshape(-1).bool()
        tp, fp = int((pred & m).sum()), int((pred & ~m).sum())
    coarse = fine.reshape(2, HIST_BINS, FINE_BINS // HIST_BINS).sum(2).cpu().numpy()
    return PixelCounts(
        tp=tp,
        fp=fp,
        fn=pos_total - tp,
        tn=neg_total - fp,
        best_threshold=best / FINE_BINS,
        best_tp=int(tp_k[best]),
        best_fp=int(fp_k[best]),
        best_fn=int(fn_k[best]),
        hist_pos=coarse[1].astype(np.int64),
        hist_neg=coarse[0].astype(np.int64),
    )


def parse_band(spec: int | str | tuple | None) -> tuple[int, int]:
    """(inside, outside) widths in pixels of a boundary band: B (both sides), "IN:OUT", a pair, or
    a `band_label` ("3px", "7-5px"); (0, 0) is off."""
    if spec is None or spec == "" or spec == 0:
        return 0, 0
    if isinstance(spec, str):
        parts = spec.removesuffix("px").replace("-", ":").split(":")
        if not all(p.strip().isdigit() for p in parts) or len(parts) > 2:
            raise ValueError(f"boundary band: B or IN:OUT in whole pixels >= 0, got {spec!r}")
        spec = tuple(int(p) for p in parts)
    if isinstance(spec, int):
        spec = (spec, spec)
    inside, outside = (tuple(spec) * 2)[:2] if len(spec) == 1 else tuple(spec)
    if min(inside, outside) < 0 or int(inside) != inside or int(outside) != outside:
        raise ValueError(f"boundary band: B or IN:OUT in whole pixels >= 0, got {spec!r}")
    return int(inside), int(outside)


def band_label(spec: int | str | tuple | None) -> str:
    """The band's name in metric keys: "3px" (both sides) or "7-5px" (inside-outside); "" off."""
    inside, outside = parse_band(spec)
    if not inside and not outside:
        return ""
    return f"{inside}px" if inside == outside else f"{inside}-{outside}px"


def boundary_band_counts(
    prob: torch.Tensor, mask: torch.Tensor, threshold: float, band: int | str | tuple
) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) at `threshold` (>=) leaving out the pixels near the mask's boundary: those
    within `inside` pixels inside the tampered region or `outside` pixels outside it (square
    windows, i.e. the mask eroded and dilated by (2w+1)-pixel squares; the image border does not
    erode the mask)."""

    inside, outside = parse_band(band)
    m = mask.detach().cpu().numpy().astype(np.uint8)
    core = cv2.erode(m, np.ones((2 * inside + 1, 2 * inside + 1), np.uint8)) > 0
    near = cv2.dilate(m, np.ones((2 * outside + 1, 2 * outside + 1), np.uint8)) > 0
    keep = core | ~near
    pred = (prob.detach().cpu().numpy() >= threshold) & keep
    gt, neg = core, ~near
    tp, fp = int((pred & gt).sum()), int((pred & neg).sum())
    return tp, fp, int(gt.sum()) - tp, int(neg.sum()) - fp
