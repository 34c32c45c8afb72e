"""The CSAIL "deep-stem" ResNet-50 (three 3x3 stem convs), returning the pyramid C2..C5."""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-5  # the original synchronized batch norm's eps


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (it is always followed by batch norm)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3 (carries the stride), 1x1 expand x4, identity shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=BN_EPS, momentum=bn_momentum)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, eps=BN_EPS, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """CSAIL deep-stem ResNet (semantic-segmentation-pytorch), as the paper's two streams use it.

    Stem: conv3x3(in_chans->64, stride 2), conv3x3(64->64), conv3x3(64->128), each with BN + ReLU,
    then max-pool 3/2; then four stages of `Bottleneck` blocks (`layers`, stride on the 3x3 conv).
    `forward` returns [C2, C3, C4, C5] (strides 4, 8, 16, 32); `out_channels` lists their widths.
    Attribute names equal the CSAIL ones, so its ImageNet file loads without renaming.

    Args:
        layers: blocks per stage; [3, 4, 6, 3] is ResNet-50.
        in_chans: input channels (3 for both streams of the paper).
        bn_momentum: batch-norm momentum (PyTorch convention; None = cumulative average).
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        in_chans: int = 3,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.bn_momentum = bn_momentum
        self.conv1 = conv3x3(in_chans, 64, stride=2)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS, momentum=bn_momentum)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(64, 64)
        self.bn2 = nn.BatchNorm2d(64, eps=BN_EPS, momentum=bn_momentum)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv3x3(64, 128)
        self.bn3 = nn.BatchNorm2d(128, eps=BN_EPS, momentum=bn_momentum)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = 128
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.out_channels = [64 * Bottleneck.expansion * 2**i for i in range(4)]
        self.reductions = [4, 8, 16, 32]
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(
                    self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False
                ),
                nn.BatchNorm2d(
                    planes * Bottleneck.expansion, eps=BN_EPS, momentum=self.bn_momentum
                ),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.bn_momentum)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [
            Bottleneck(self.inplanes, planes, bn_momentum=self.bn_momentum)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # He initialisation as in the CSAIL code, for training from scratch.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[C2, C3, C4, C5] for an input batch."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


def resnet50(in_chans: int = 3, bn_momentum: float | None = 0.1) -> ResNet:
    """The CSAIL deep-stem ResNet-50 (layers [3, 4, 6, 3])."""
    return ResNet((3, 4, 6, 3), in_chans=in_chans, bn_momentum=bn_momentum)
