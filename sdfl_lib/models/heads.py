"""The two heads of the paper: image-level detection and pixel-level localization."""

from __future__ import annotations

import torch
from torch import nn

from sdfl_lib.models.layers import conv_bn_relu


class _ConvHead(nn.Module):
    """3x3 conv + BN + ReLU, then a 1x1 conv to one logit channel (the original's layout)."""

    def __init__(self, in_channels: int, channels: int, bn_momentum: float | None) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, channels, 3, bn_momentum)
        self.classifier = nn.Conv2d(channels, 1, kernel_size=1)


class DetectionHead(_ConvHead):
    """Image-level head on the PPM output `f`: 3x3 conv + BN + ReLU -> global average pool -> 1x1
    conv -> one logit per image; `sigmoid(logit)` is the image score of `ours` and `upernet`.

    Args:
        in_channels: channels of `f` (256).
        channels: hidden channels (256).
        bn_momentum: batch-norm momentum.
    """

    def __init__(
        self, in_channels: int = 256, channels: int = 256, bn_momentum: float | None = 0.1
    ) -> None:
        super().__init__(in_channels, channels, bn_momentum)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> image logit (B, 1)."""
        return self.classifier(self.pool(self.conv(f))).flatten(1)


class LocalizationHead(_ConvHead):
    """Pixel-level head on P2 (stride 4): 3x3 conv + BN + ReLU -> 1x1 conv -> one logit map (the
    model upsamples it bilinearly to the input size).

    Args:
        in_channels: channels of P2 (256).
        channels: hidden channels (256).
        bn_momentum: batch-norm momentum.
    """

    def __init__(
        self, in_channels: int = 256, channels: int = 256, bn_momentum: float | None = 0.1
    ) -> None:
        super().__init__(in_channels, channels, bn_momentum)

    def forward(self, p2: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> mask logits (B, 1, h, w) at P2's resolution."""
        return self.classifier(self.conv(p2))
