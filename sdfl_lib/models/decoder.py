"""UPerNet decoder: `PPM` on the top level, then `FPN` top-down over the finer ones."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sdfl_lib.models.fpn import FPN
from sdfl_lib.models.ppm import PPM


class UPerNetDecoder(nn.Module):
    """UPerNet's decoder (Xiao et al., ECCV 2018): `PPM` on C5 gives `f` (= P5), `FPN` builds
    P2..P4 top-down from `f` over C2..C4.

    Args:
        encoder_channels: channels of C2..C5 (the encoder's `out_channels`).
        ppm_scales: PPM bins per side (1, 2, 3, 6).
        ppm_channels: channels of each PPM branch (512).
        channels: channels of `f` and of P2..P4 (256).
        bn_momentum: batch-norm momentum.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        ppm_scales: tuple[int, ...] = (1, 2, 3, 6),
        ppm_channels: int = 512,
        channels: int = 256,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        encoder_channels = list(encoder_channels)
        self.ppm = PPM(encoder_channels[-1], tuple(ppm_scales), ppm_channels, channels, bn_momentum)
        self.fpn = FPN(encoder_channels[:-1], channels, bn_momentum)
        self.out_channels = channels

    def forward(
        self, features: Sequence[torch.Tensor], keep: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f, [P2, P3, P4, P5=f]) from [C2, C3, C4, C5]. Without `keep` only [P2] is computed
        (the heads read `f` and P2); with it, `keep` also collects the PPM's pools and branches."""
        f = self.ppm(features[-1], keep)
        pyramid = self.fpn(list(features[:-1]), f, finest_only=keep is None)
        return f, pyramid
