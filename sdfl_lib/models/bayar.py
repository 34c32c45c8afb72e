"""BayarConv2d: the constrained convolution that turns an image into its noise residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BayarConv2d(nn.Module):
    """Constrained convolution (Bayar & Stamm, 2018) of the paper's noise stream.

    Each filter's centre tap is fixed to -1 and its other taps sum to 1, so a filter predicts a
    pixel from its neighbours and outputs the prediction error (the noise residual). The trainable
    parameter `kernel` (in_channels, out_channels, k*k - 1) holds the off-centre taps; before each
    use they are divided by their sum, in place and outside autograd, exactly as the original code
    does (a projection after every optimiser step, not a differentiable normalisation).

    Args:
        in_channels: input channels (1: the grey image in the paper).
        out_channels: filters (3 in the paper, so a ResNet stem can follow).
        kernel_size: filter size (5).
        stride: convolution stride (1).
        padding: zero padding (2 keeps the size for k=5).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        kernel_size: int = 5,
        stride: int = 1,
        padding: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        # Positive initial taps, as in the original (so their sum is never near zero).
        self.kernel = nn.Parameter(torch.rand(in_channels, out_channels, kernel_size**2 - 1))

    def constrained_weight(self) -> torch.Tensor:
        """Project `kernel` onto the constraint and return the conv weight (out, in, k, k)."""
        with torch.no_grad():
            self.kernel.div_(self.kernel.sum(dim=-1, keepdim=True))
        centre = (self.kernel_size**2) // 2
        minus_one = self.kernel.new_full((self.in_channels, self.out_channels, 1), -1.0)
        taps = torch.cat([self.kernel[..., :centre], minus_one, self.kernel[..., centre:]], dim=-1)
        # Same memory order as the original, so its checkpoints mean the same filters.
        return taps.reshape(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.constrained_weight(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma (0.2989 R + 0.5870 G + 0.1140 B) of a (B, 3, H, W) batch, as (B, 1, H, W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.2989 * r + 0.5870 * g + 0.1140 * b
