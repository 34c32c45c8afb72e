"""Pyramid Pooling Module with Precise RoI Pooling: global context on C5 (UPerNet's top)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.cuda import prroi_pool_whole
from sdfl_lib.models.layers import conv_bn_relu

__all__ = ["PPM", "conv_bn_relu"]  # conv_bn_relu: kept importable from here


class PPM(nn.Module):
    """Pyramid Pooling Module (PSPNet / UPerNet) whose pooling is Precise RoI Pooling.

    For each scale s, the whole C5 map is pooled into s x s bins with Precise RoI Pooling (the
    exact bin average of the bilinear interpolant, Jiang et al. 2018), bilinearly upsampled back to
    C5's size (align_corners=False) and passed through a 1x1 conv + BN + ReLU; the branches are
    concatenated with C5 and a 3x3 conv + BN + ReLU gives `f` (the top of the FPN). Upsampling
    before the branch conv (as the CSAIL UPerNet does) is what reproduces the original outputs;
    conv-then-upsample differs by ~1e-3 in the mask logits, adaptive average pooling by ~4e-2.

    Args:
        in_channels: channels of C5 (2048 for ResNet-50; the encoder's last `out_channels`).
        scales: bins per side of each branch (1, 2, 3, 6).
        branch_channels: channels of each branch (512).
        out_channels: channels of `f` (256).
        bn_momentum: batch-norm momentum.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        scales: tuple[int, ...] = (1, 2, 3, 6),
        branch_channels: int = 512,
        out_channels: int = 256,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(
            conv_bn_relu(in_channels, branch_channels, 1, bn_momentum) for _ in self.scales
        )
        self.bottleneck = conv_bn_relu(
            in_channels + len(self.scales) * branch_channels, out_channels, 3, bn_momentum
        )
        self.out_channels = out_channels

    def forward(
        self, c5: torch.Tensor, keep: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """f (B, out_channels, h, w) from C5 (B, in_channels, h, w); `keep` collects the branches."""
        size = c5.shape[-2:]
        outs = [c5]
        for scale, branch in zip(self.scales, self.branches, strict=True):
            # The pooling matrices are cached across calls; one first made under inference_mode
            # would be an inference tensor and break a later training step, so never make it so.
            with torch.inference_mode(False):
                pooled = prroi_pool_whole(c5, scale)
            up = F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)
            outs.append(branch(up))
            if keep is not None:
                keep[f"ppm.pool{scale}"] = pooled
                keep[f"ppm.branch{scale}"] = outs[-1]
        return self.bottleneck(torch.cat(outs, dim=1))
