"""Dual attention head (DANet, Fu et al., CVPR 2019), as MVSS-Net uses it on the fused C5."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PositionAttention(nn.Module):
    """Position attention: every pixel attends to every pixel, `x + alpha * attended`.

    Query/key are 1x1 convs to C/8 channels, value a 1x1 conv to C; `alpha` starts at 0.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_b = nn.Conv2d(channels, channels // 8, 1)
        self.conv_c = nn.Conv2d(channels, channels // 8, 1)
        self.conv_d = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query = self.conv_b(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        key = self.conv_c(x).flatten(2)  # (B, C/8, HW)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)  # (B, HW, HW)
        value = self.conv_d(x).flatten(2)  # (B, C, HW)
        attended = torch.bmm(value, attention.transpose(1, 2)).view(b, -1, h, w)
        return self.alpha * attended + x


class ChannelAttention(nn.Module):
    """Channel attention: channels attend to channels, `x + beta * attended`; `beta` starts at 0.

    As in DANet, the affinity is flipped (row max minus affinity) before the softmax, which
    favours dissimilar channels and keeps the softmax numerically tame.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        feat = x.reshape(b, c, h * w)
        affinity = torch.bmm(feat, feat.transpose(1, 2))  # (B, C, C)
        affinity = affinity.amax(dim=-1, keepdim=True) - affinity
        attended = torch.bmm(torch.softmax(affinity, dim=-1), feat).view(b, c, h, w)
        return self.beta * attended + x


class DualAttentionHead(nn.Module):
    """DANet head: a position branch and a channel branch on `in_channels // 4` features, summed.

    Each branch is 3x3 conv+BN+ReLU -> attention -> 3x3 conv+BN+ReLU; their sum goes through
    Dropout(0.1) and a 1x1 conv to `num_classes` logits (at the input's resolution). Attribute
    names (`conv_p1`, `conv_c1`, `pam`, `cam`, `conv_p2`, `conv_c2`, `out`) follow the authors'
    checkpoints.
    """

    def __init__(self, in_channels: int, num_classes: int = 1) -> None:
        super().__init__()
        inter = in_channels // 4
        self.conv_p1 = _conv_bn_relu(in_channels, inter)
        self.conv_c1 = _conv_bn_relu(in_channels, inter)
        self.pam = PositionAttention(inter)
        self.cam = ChannelAttention()
        self.conv_p2 = _conv_bn_relu(inter, inter)
        self.conv_c2 = _conv_bn_relu(inter, inter)
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat_p = self.conv_p2(self.pam(self.conv_p1(x)))
        feat_c = self.conv_c2(self.cam(self.conv_c1(x)))
        return self.out(feat_p + feat_c)
