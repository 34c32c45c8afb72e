"""Exact Precise RoI Pooling in plain PyTorch: per-axis bin-integral weights applied as matmuls.

Precise RoI Pooling (Jiang et al., ECCV 2018) averages the bilinear interpolant of the feature map
over each bin. The interpolant is a sum of hat functions centred on the pixels (integer
coordinates 0..L-1) and is zero outside the map, so the 2-D bin integral factors into one
integral along y times one along x: every output is `Wy @ F @ Wx^T` with per-axis weight rows
`W[k, i] = (1 / bin) * integral over bin k of hat(t - i) dt`. This is exact (no sampling) and
differentiable through autograd w.r.t. the features and the ROI coordinates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch


def _hat_cdf(t: torch.Tensor) -> torch.Tensor:
    """Integral of the hat function max(0, 1 - |s|) from -inf to t."""
    t = t.clamp(-1.0, 1.0)
    return torch.where(t <= 0, 0.5 * (t + 1) ** 2, 1 - 0.5 * (1 - t) ** 2)


def axis_weights(start: torch.Tensor, end: torch.Tensor, bins: int, length: int) -> torch.Tensor:
    """Bin-average weights along one axis: (K,) ROI starts/ends -> (K, bins, length).

    Bin k covers [start + k*b, start + (k+1)*b] with b = max(end - start, 0) / bins; a bin of zero
    size gets all-zero weights (its output is 0, as in the original definition).
    """
    size = (end - start).clamp(min=0) / bins  # (K,)
    k = torch.arange(bins, dtype=start.dtype, device=start.device)
    lo = start[:, None] + size[:, None] * k  # (K, bins)
    hi = lo + size[:, None]
    i = torch.arange(length, dtype=start.dtype, device=start.device)
    mass = _hat_cdf(hi[..., None] - i) - _hat_cdf(lo[..., None] - i)  # (K, bins, length)
    safe = torch.where(size > 0, size, torch.ones_like(size))
    return torch.where(size[:, None, None] > 0, mass / safe[:, None, None], torch.zeros_like(mass))


def _cached_when_eager(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`fn` memoised (64 entries) in eager mode. torch.compile traces the matrices into its graph
    as constants and would skip (and warn about) the cache, so under compilation `fn` runs as is.
    The wrapper keeps the cache's `cache_clear`."""
    cached = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def call(*args: Any) -> torch.Tensor:
        return fn(*args) if torch.compiler.is_compiling() else cached(*args)

    call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return call


@_cached_when_eager
def _whole_map_weights(length: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Computed in float64 and rounded once, so every dtype gets the most exact matrix it can hold.
    # Made outside inference mode: a cached inference tensor could not be saved for a later backward.
    with torch.inference_mode(False), torch.no_grad():
        start = torch.zeros(1, dtype=torch.float64)
        end = torch.full((1,), float(length), dtype=torch.float64)
        return axis_weights(start, end, bins, length)[0].to(dtype=dtype, device=device)


def whole_map_matrix(length: int, bins: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The (bins, length) weight matrix of the whole-map ROI [0, length] along one axis (cached)."""
    return _whole_map_weights(int(length), int(bins), dtype, torch.device(device))


@_cached_when_eager
def _whole_map_kron(h: int, w: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # (bins*bins, H*W): row p*bins+q = outer(wy[p], wx[q]) flattened, so pooling is one GEMM.
    with torch.inference_mode(False), torch.no_grad():
        return torch.kron(_whole_map_weights(h, bins, dtype, device), _whole_map_weights(w, bins, dtype, device))


# Maps up to this many pixels pool with one GEMM against the Kronecker product of the two axis
# matrices (fastest for the PPM's small C5 maps); larger ones with two separable matmuls.
_KRON_MAX_PIXELS = 1024


def prroi_pool_whole(features: torch.Tensor, bins: int) -> torch.Tensor:
    """Precise RoI Pooling of each whole map into bins x bins: (N, C, H, W) -> (N, C, bins, bins).

    Equal to `prroi_pool2d` with ROIs [b, 0, 0, W, H] at spatial scale 1 (what the PPM uses).
    """
    if features.dim() != 4:
        raise ValueError(f"prroi_pool_whole expects features (N, C, H, W), got shape {tuple(features.shape)}")
    if int(bins) < 1:
        raise ValueError(f"prroi_pool_whole: bins must be >= 1, got {bins}")
    if not features.is_floating_point():
        raise TypeError(f"prroi_pool_whole expects floating-point features, got {features.dtype}")
    n, c, h, w = features.shape
    bins = int(bins)
    # Under autocast the matmuls pick their own dtype; otherwise the weights follow the features.
    if h * w <= _KRON_MAX_PIXELS:
        k = _whole_map_kron(h, w, bins, features.dtype, features.device)
        if not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
            # (N, H*W, C) is a free view of channels_last memory; the result keeps that layout.
            out = torch.matmul(k, features.permute(0, 2, 3, 1).reshape(n, h * w, c))
            return out.reshape(n, bins, bins, c).permute(0, 3, 1, 2)
        return torch.matmul(features.reshape(n * c, h * w), k.t()).reshape(n, c, bins, bins)
    wy = whole_map_matrix(h, bins, features.dtype, features.device)
    wx = whole_map_matrix(w, bins, features.dtype, features.device)
    return torch.matmul(torch.matmul(wy, features), wx.t())


def prroi_pool2d_exact(
    features: torch.Tensor,
    rois: torch.Tensor,
    pooled_height: int,
    pooled_width: int,
    spatial_scale: float,
) -> torch.Tensor:
    """Exact Precise RoI Pooling on any device: (N, C, H, W), (K, 5) -> (K, C, ph, pw).

    Inputs are assumed validated (see `sdfl_lib.cuda.prroi_pool2d`). Weights are computed in
    float64 (or the features' dtype if that is float64) and applied per image with two matmuls.
    """
    n, c, h, w = features.shape
    k = rois.shape[0]
    out = features.new_zeros((k, c, pooled_height, pooled_width))
    if k == 0:
        return out
    wdtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    r = rois.to(dtype=torch.float64)
    scale = float(spatial_scale)
    wx = axis_weights(r[:, 1] * scale, r[:, 3] * scale, pooled_width, w).to(wdtype)
    wy = axis_weights(r[:, 2] * scale, r[:, 4] * scale, pooled_height, h).to(wdtype)
    batch = r[:, 0].long()
    feats = features.to(wdtype)
    pieces = []
    index = []
    for b in torch.unique(batch).tolist():
        sel = (batch == b).nonzero(as_tuple=True)[0]
        # (1, C, H, W) @ (Kb, 1, W, pw) -> (Kb, C, H, pw); then (Kb, 1, ph, H) @ that.
        tmp = torch.matmul(feats[b : b + 1], wx[sel].transpose(1, 2)[:, None])
        pieces.append(torch.matmul(wy[sel][:, None], tmp))
        index.append(sel)
    return out.index_copy(0, torch.cat(index), torch.cat(pieces).to(features.dtype))
