"""MVSS-Net's Sobel layer: edge attention on a feature map from its Sobel gradient magnitude."""

from __future__ import annotations

import torch
from torch import nn

# Sobel kernels as in MVSS-Net (Chen et al., ICCV 2021): x responds to vertical edges.
_SOBEL = {
    "x": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "y": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
}


class SobelFilter(nn.Sequential):
    """One Sobel direction over all channels (C -> 1, 3x3, no bias) followed by BatchNorm.

    The kernel is the Sobel kernel repeated over the input channels; like the original it is
    stored in the state dict but frozen (`requires_grad=False`). Laid out as a Sequential
    (`0` = conv, `1` = BN) so the authors' keys `sobel_x1.0.weight`, `sobel_x1.1.*` load by name.
    """

    def __init__(self, in_channels: int, direction: str) -> None:
        if direction not in _SOBEL:
            raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
        conv = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1, bias=False)
        kernel = torch.tensor(_SOBEL[direction]).expand(1, in_channels, 3, 3).clone()
        conv.weight = nn.Parameter(kernel, requires_grad=False)
        super().__init__(conv, nn.BatchNorm2d(1))


def sobel_gate(x: torch.Tensor, sobel_x: SobelFilter, sobel_y: SobelFilter) -> torch.Tensor:
    """The Sobel layer's attention map sigmoid(sqrt(gx^2 + gy^2)), (B, 1, H, W) in [0.5, 1);
    MVSS-Net multiplies the features by it."""
    gx = sobel_x(x)
    gy = sobel_y(x)
    return torch.sigmoid(torch.sqrt(gx * gx + gy * gy))

