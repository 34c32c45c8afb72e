"""Layers and input handling shared by the models: conv + BN + ReLU, padding, the input check."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.models.resnet import BN_EPS, conv3x3

PAD_MULTIPLE = 32  # the coarsest stride: every level then has an integer size


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, bn_momentum: float | None = 0.1
) -> nn.Sequential:
    """Conv (no bias; 1x1 or 3x3 with padding 1) + BN + ReLU, indexed 0/1/2 as in the original."""
    conv = (
        conv3x3(in_channels, out_channels)
        if kernel_size == 3
        else nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    )
    return nn.Sequential(
        conv, nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum), nn.ReLU(inplace=True)
    )


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Pad (B, C, H, W) on the bottom/right to multiples of `multiple`, mirroring the image
    (replicating where it is too small to mirror), so the padding looks like image content."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def check_image_batch(x: torch.Tensor, hint: str = "") -> None:
    """Fail unless `x` is a float (B, 3, H, W) batch: ValueError for the shape, TypeError for the
    dtype (its message ends with `hint`, e.g. " (divide by 255)")."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a float batch (B, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float batch in [0, 1], got dtype {x.dtype}{hint}")
