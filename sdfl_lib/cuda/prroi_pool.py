"""`prroi_pool2d`: Precise RoI Pooling that runs the CUDA kernel when it can, else the exact path."""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from sdfl_lib.cuda.exact import prroi_pool2d_exact
from sdfl_lib.cuda.extension import ExtensionUnavailable, load_extension

_BACKENDS = ("auto", "cuda", "torch")
_warned = False


class _PrRoIPoolCUDA(torch.autograd.Function):
    """The CUDA kernels as an autograd op (gradient w.r.t. the features)."""

    @staticmethod
    def forward(ctx, features, rois, pooled_height, pooled_width, spatial_scale, ext):  # noqa: ANN001
        # ROI coordinates in the accumulation type: float64 for float64 features, else float32.
        acc = torch.float64 if features.dtype == torch.float64 else torch.float32
        rois_acc = rois.detach().to(acc).contiguous()
        out = ext.forward(features.contiguous(), rois_acc, pooled_height, pooled_width, spatial_scale)
        ctx.save_for_backward(rois_acc)
        ctx.meta = (features.shape, spatial_scale, ext)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001
        (rois_acc,) = ctx.saved_tensors
        shape, spatial_scale, ext = ctx.meta
        n, _, h, w = shape
        grad = ext.backward(grad_out.contiguous(), rois_acc, n, h, w, spatial_scale)
        return grad, None, None, None, None, None


def _validate(features: torch.Tensor, rois: torch.Tensor, ph: int, pw: int, scale: float) -> None:
    if features.dim() != 4:
        raise ValueError(f"prroi_pool2d expects features (N, C, H, W), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"prroi_pool2d expects floating-point features, got {features.dtype}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"prroi_pool2d expects rois (K, 5) rows [batch_index, x0, y0, x1, y1], got {tuple(rois.shape)}"
        )
    if not rois.is_floating_point():
        raise TypeError(f"prroi_pool2d expects floating-point rois, got {rois.dtype}")
    if rois.device != features.device:
        raise ValueError(f"rois are on {rois.device} but features on {features.device}")
    if int(ph) < 1 or int(pw) < 1 or int(ph) != ph or int(pw) != pw:
        raise ValueError(f"pooled sizes must be positive integers, got {ph}x{pw}")
    if not float(scale) > 0:
        raise ValueError(f"spatial_scale must be > 0, got {scale}")
    if rois.shape[0]:
        b = rois[:, 0].detach()
        bad = (b < 0) | (b >= features.shape[0]) | (b != b.round()) | ~torch.isfinite(rois.detach()).all(1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()[:5].tolist()
            raise ValueError(
                f"rois rows {rows} have a batch index outside 0..{features.shape[0] - 1}, "
                "a non-integer batch index, or a non-finite coordinate"
            )


def _cuda_extension():
    """The built extension, or None after one warning saying why it is not available."""
    global _warned

    try:
        return load_extension()
    except ExtensionUnavailable as exc:
        if not _warned:
            _warned = True
            warnings.warn(
                f"Precise RoI Pooling: the CUDA kernels are not available ({exc}); using the exact "
                "PyTorch path instead (same results, slower).",
                RuntimeWarning,
                stacklevel=3,
            )
        return None


def prroi_pool2d(
    features: torch.Tensor,
    rois: torch.Tensor,
    pooled_height: int,
    pooled_width: int,
    spatial_scale: float = 1.0,
    backend: str = "auto",
) -> torch.Tensor:
    """Precise RoI Pooling: features (N, C, H, W), rois (K, 5) -> (K, C, pooled_height, pooled_width).

    Each roi row is [batch_index, x0, y0, x1, y1] in input coordinates, multiplied by
    `spatial_scale`; each output is the exact average of the bilinear interpolant (zero outside
    the map) over its bin; a bin of zero size gives 0. Differentiable w.r.t. `features` (and,
    on the PyTorch path, the ROI coordinates). `backend`: "auto" runs the CUDA kernel for CUDA
    tensors when it builds (ROIs that need a gradient use the PyTorch path), "cuda" requires the
    kernel, "torch" always takes the exact PyTorch path. $SDFL_PRROI_CUDA=0 turns the kernel off.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    _validate(features, rois, pooled_height, pooled_width, spatial_scale)
    ph, pw, scale = int(pooled_height), int(pooled_width), float(spatial_scale)
    want_cuda = backend == "cuda" or (
        backend == "auto"
        and features.is_cuda
        and not rois.requires_grad
        and os.environ.get("SDFL_PRROI_CUDA", "1") != "0"
    )
    if want_cuda:
        if not features.is_cuda:
            raise ValueError("backend='cuda' needs CUDA tensors")
        if backend == "cuda":
            ext = load_extension()
        else:
            ext = _cuda_extension()
        if ext is not None:
            return _PrRoIPoolCUDA.apply(features, rois, ph, pw, scale, ext)
    return prroi_pool2d_exact(features, rois, ph, pw, scale)


class PrRoIPool2D(nn.Module):
    """Module form of `prroi_pool2d` with fixed pooled size and spatial scale."""

    def __init__(self, pooled_height: int, pooled_width: int, spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.pooled_height = int(pooled_height)
        self.pooled_width = int(pooled_width)
        self.spatial_scale = float(spatial_scale)

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return prroi_pool2d(features, rois, self.pooled_height, self.pooled_width, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"pooled=({self.pooled_height}, {self.pooled_width}), spatial_scale={self.spatial_scale}"
