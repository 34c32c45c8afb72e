"""Winograd F(4x4, 3x3) convolution for training on the CPU: a 3x3 convolution (stride 1, padding
1) as 36 matrix products over 6x6 input tiles, 2.25x fewer multiplications than the direct one,
the same result to float32 rounding (about 1e-5 relative). `use_winograd(model)` switches a
model's eligible convolutions to it; they stay `nn.Conv2d` with the same weights and keys.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016. The transforms
are Kronecker products of the 1-D ones, so each is one matrix product over all tiles and
channels; PyTorch's autograd is bypassed so backward keeps only the transformed input (the
transformed weight is recomputed) and scatters the tile gradients back without a fold.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

_M, _R = 4, 3  # output tile, kernel size
_T = _M + _R - 1  # input tile (6)

# The 1-D transforms of F(4, 3) at the points 0, +-1, +-2 and infinity.
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))

# Where it pays, from `python -m sdfl_lib.bench winograd` on AVX2 and AVX-512 CPUs: at least
# this many 4x4 output tiles per call (batch x tiles of the map) ...
MIN_TILES = 64
# ... at least this many input and output channels (below, the transforms' memory traffic
# outweighs the multiplications saved) ...
MIN_CHANNELS = 128
# ... and at most this many weights (C x K) per tile, since the 36 x C x K transformed weight is
# read and written whatever the map's size. PyTorch's AVX-512 convolutions are twice as fast as
# its AVX2 ones, so the transforms must be twice as well amortised there (and more: measured).
MAX_WEIGHTS_PER_TILE = {"AVX512": 2048, "AVX2": 16384}


def pays(tiles: int, in_channels: int, out_channels: int, capability: str | None = None) -> bool:
    """Whether Winograd beats PyTorch's direct convolution for a call with `tiles` 4x4 output
    tiles on this CPU (`capability`: "AVX512", "AVX2", ...; PyTorch's own by default)."""
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    per_tile = MAX_WEIGHTS_PER_TILE["AVX512" if "AVX512" in capability else "AVX2"]
    return (
        tiles >= MIN_TILES
        and min(in_channels, out_channels) >= MIN_CHANNELS
        and tiles * per_tile >= in_channels * out_channels
    )


def tiles_of(shape: tuple[int, ...]) -> int:
    """How many 4x4 output tiles a 3x3, padding-1 convolution of an (N, C, H, W) input computes."""
    return shape[0] * -(-shape[2] // _M) * -(-shape[3] // _M)


def _kron(which: str, like: torch.Tensor) -> torch.Tensor:
    """The 2-D transform `which` ("B" 36x36, "G" 36x9, "A" 16x36) as one matrix, in `like`'s
    dtype and on its device."""
    return _kron_cached(which, like.dtype, like.device)


@functools.lru_cache(maxsize=16)
def _kron_cached(which: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    m = torch.tensor({"B": _BT, "G": _G, "A": _AT}[which], dtype=torch.float64)
    return torch.kron(m, m).to(device, dtype)


def _weight_transform(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) -> (36, C, K)."""
    k, c = weight.shape[:2]
    w = weight.reshape(k, c, _R * _R).permute(2, 1, 0).reshape(_R * _R, c * k)
    return (_kron("G", weight) @ w).view(_T * _T, c, k)


class _Winograd3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        n, c, h, w = x.shape
        k = weight.shape[0]
        th, tw = -(-h // _M), -(-w // _M)
        p = n * th * tw
        # Channels last, padded so the tiles cover the map: (N, H', W', C), H' = 4 th + 2.
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + _M * tw - w, 1, 1 + _M * th - h))
        tiles = xp.unfold(1, _T, _M).unfold(2, _T, _M)  # (N, th, tw, C, 6, 6), a view
        d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(_T * _T, p * c)
        v = (_kron("B", x) @ d).view(_T * _T, p, c)
        del d, xp, tiles
        m = torch.bmm(v, _weight_transform(weight))  # (36, P, K)
        y = (_kron("A", x) @ m.view(_T * _T, p * k)).view(_M, _M, n, th, tw, k)
        y = y.permute(2, 5, 3, 0, 4, 1).reshape(n, k, _M * th, _M * tw)[:, :, :h, :w]
        out = y + bias.view(1, k, 1, 1) if bias is not None else y.contiguous()
        ctx.save_for_backward(v, weight)
        ctx.dims = (n, c, h, w, th, tw)
        return out

    @staticmethod
    @once_differentiable  # a second derivative through it would be silently wrong
    def backward(ctx, grad: torch.Tensor):
        v, weight = ctx.saved_tensors
        n, c, h, w, th, tw = ctx.dims
        k, p = weight.shape[0], v.shape[1]
        gbias = grad.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        gy = F.pad(grad, (0, _M * tw - w, 0, _M * th - h)).reshape(n, k, th, _M, tw, _M)
        gy = gy.permute(3, 5, 0, 2, 4, 1).reshape(_M * _M, p * k)
        gm = (_kron("A", grad).t() @ gy).view(_T * _T, p, k)
        del gy
        gweight = gx = None
        if ctx.needs_input_grad[1]:
            gu = torch.bmm(v.transpose(1, 2), gm).view(_T * _T, c * k)  # (36, C, K)
            gu = (_kron("G", grad).t() @ gu).view(_R * _R, c, k)
            gweight = gu.permute(2, 1, 0).reshape(k, c, _R, _R)
        if ctx.needs_input_grad[0]:
            gv = torch.bmm(gm, _weight_transform(weight).transpose(1, 2))  # (36, P, C)
            gd = (_kron("B", grad).t() @ gv.view(_T * _T, p * c)).view(_T, _T, n, th, tw, c)
            del gv
            gx = _scatter_tiles(gd, n, c, th, tw)[:, 1 : h + 1, 1 : w + 1].permute(0, 3, 1, 2)
            gx = gx.contiguous()
        return gx, gweight, gbias


def _scatter_tiles(gd: torch.Tensor, n: int, c: int, th: int, tw: int) -> torch.Tensor:
    """Sum the (6, 6, N, th, tw, C) tile gradients back into the padded (N, H', W', C) map: the
    tiles overlap by two pixels, so the first 4x4 of each is one copy and the rest is added."""
    out = gd.new_empty(n, _M * th + 2, _M * tw + 2, c)
    body = out[:, : _M * th, : _M * tw].view(n, th, _M, tw, _M, c)
    body.copy_(gd[:_M, :_M].permute(2, 3, 0, 4, 1, 5))
    out[:, _M * th :].zero_()
    out[:, : _M * th, _M * tw :].zero_()
    for i in range(_T):
        for j in range(_T):
            if i >= _M or j >= _M:
                rows = slice(i, i + _M * th, _M)
                cols = slice(j, j + _M * tw, _M)
                out[:, rows, cols].add_(gd[i, j])
    return out


def winograd_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` for a 3x3 `weight`, by Winograd F(4x4, 3x3)."""
    if weight.shape[-2:] != (_R, _R) or x.dim() != 4:
        raise ValueError(f"winograd_conv2d needs a 3x3 kernel and a 4-D input, got {weight.shape}")
    return _Winograd3x3.apply(x, weight, bias)


def computes(conv: nn.Conv2d) -> bool:
    """Whether `conv` is the convolution `winograd_conv2d` computes (3x3, stride 1, zero padding
    1, no dilation, one group), whatever its channels."""
    return (
        conv.kernel_size == (_R, _R)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _eligible(conv: nn.Module) -> bool:
    # The exact class: a subclass of nn.Conv2d may have a forward of its own to keep.
    return (
        type(conv) in (nn.Conv2d, WinogradConv2d)
        and computes(conv)
        and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
    )


class WinogradConv2d(nn.Conv2d):
    """A 3x3 `nn.Conv2d` that trains on the CPU in float32 by Winograd F(4x4, 3x3) where the
    call's shape pays (`pays`); otherwise (evaluation, no gradient, other devices, autocast or
    dtypes, torch.compile, tracing for export) it is the plain convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.training
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and pays(tiles_of(x.shape), self.in_channels, self.out_channels)
        ):
            return winograd_conv2d(x, self.weight, self.bias)
        return super().forward(x)


def use_winograd(model: nn.Module, enabled: bool = True) -> int:
    """Switch `model`'s eligible convolutions (3x3, stride 1, padding 1, one group, at least
    `MIN_CHANNELS` in and out) to `WinogradConv2d`, or back to `nn.Conv2d` where `enabled` is
    False; how many were switched. Each call then still checks that its shape pays."""
    count = 0
    for module in model.modules():
        if _eligible(module):
            module.__class__ = WinogradConv2d if enabled else nn.Conv2d
            count += 1
    return count
