"""MVSS-Net's Edge Residual Block (ERB), the unit of its edge-supervised branch."""

from __future__ import annotations

import torch
from torch import nn


class ERB(nn.Module):
    """Edge Residual Block: 1x1 conv, then a residual of 3x3 conv + BN + ReLU + 3x3 conv.

    `out = relu(y + conv3(relu(bn(conv2(y)))))` with `y = conv1(x)`; the last ERB of the branch
    skips the final ReLU (`relu=False`) so that it yields logits. All convs have a bias.
    Attribute names (`conv1`, `conv2`, `bn`, `conv3`) follow the authors' checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.conv1(x)
        out = x + self.conv3(self.relu(self.bn(self.conv2(x))))
        return self.relu(out) if relu else out
