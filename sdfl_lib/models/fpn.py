"""Feature Pyramid Network: top-down path from the PPM output over C4..C2 (UPerNet's body)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.models.layers import conv_bn_relu


class FPN(nn.Module):
    """FPN as in UPerNet (Xiao et al., ECCV 2018): lateral 1x1 conv + BN + ReLU on each of C2..C4,
    top-down bilinear upsampling (align_corners=False) and addition starting from the PPM output
    `f`, then a 3x3 conv + BN + ReLU on every sum, giving P2..P4 (P5 is `f` itself).

    Args:
        in_channels: channels of C2..C4 (the encoder's `out_channels[:-1]`).
        channels: width of the pyramid (256).
        bn_momentum: batch-norm momentum.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] | list[int] = (256, 512, 1024),
        channels: int = 256,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1, bn_momentum) for c in in_channels)
        self.output = nn.ModuleList(
            conv_bn_relu(channels, channels, 3, bn_momentum) for _ in in_channels
        )
        self.out_channels = channels

    def forward(
        self, features: list[torch.Tensor], top: torch.Tensor, finest_only: bool = False
    ) -> list[torch.Tensor]:
        """[P2, P3, P4, P5=top] from [C2, C3, C4] and `top`; with `finest_only`, only [P2] (the
        coarser 3x3 output convs are skipped: the localization head reads P2 alone)."""
        f = top
        pyramid = [top]
        for i in reversed(range(len(features))):
            lateral = self.lateral[i](features[i])
            f = lateral + F.interpolate(
                f, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            if not finest_only or i == 0:
                pyramid.insert(0, self.output[i](f))
        return pyramid[:1] if finest_only else pyramid
