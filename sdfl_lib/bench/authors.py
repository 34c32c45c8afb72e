"""An independent plain-PyTorch build of the paper authors' `ours` network, for speed comparisons.

It follows the original's structure and parameter names (`encoder`, `noise_encoder`,
`bayar_conv`, `convs`, `decoder.ppm_conv` ...), so the authors' state dicts load into it, and it
runs the way their code does: plain batch norm after every convolution (nothing folded),
contiguous (NCHW) tensors, every FPN output computed, Precise RoI Pooling of the whole C5 map
written as the two small matrix products it amounts to. It shares no code with
`sdfl_lib.models`, so a benchmark of the library against it compares two implementations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class _DeepStemResNet50(nn.Module):
    """Three 3x3 stem convs (3-64/2, 64-64, 64-128), max-pool, bottlenecks [3, 4, 6, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 128
        for i, (planes, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
        ):
            layers = []
            for b in range(blocks):
                layers.append(_Bottleneck(inplanes, planes, stride if b == 0 else 1))
                inplanes = planes * _Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.maxpool(self.relu3(self.bn3(self.conv3(x))))
        out = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            out.append(x)
        return out


def _hat_integral(t: torch.Tensor) -> torch.Tensor:
    """Integral of the linear-interpolation hat max(0, 1 - |s|) from -inf to t."""
    t = t.clamp(-1, 1)
    return torch.where(t < 0, (t + 1) ** 2 / 2, 1 - (1 - t) ** 2 / 2)


def _prroi_whole_weights(n: int, bins: int) -> torch.Tensor:
    """(bins, n): bin j of the whole-map ROI [0, n] averages the bilinear interpolant of the n
    samples (at 0..n-1, zero beyond) over [j n / bins, (j + 1) n / bins], exactly."""
    edges = torch.arange(bins + 1, dtype=torch.float64) * n / bins
    k = torch.arange(n, dtype=torch.float64)
    lo, hi = edges[:-1, None] - k, edges[1:, None] - k
    return ((_hat_integral(hi) - _hat_integral(lo)) / (n / bins)).float()


class _Decoder(nn.Module):
    """UPerNet: PPM (Precise RoI Pooling) on C5, FPN over C2..C4, image and mask heads."""

    def __init__(self, fc_dim: int = 2048, scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.scales = scales
        self.ppm_conv = nn.ModuleList(_conv_bn_relu(fc_dim, 512, 1) for _ in scales)
        self.ppm_last_conv = _conv_bn_relu(fc_dim + len(scales) * 512, 256)
        self.fpn_in = nn.ModuleList(_conv_bn_relu(c, 256, 1) for c in (256, 512, 1024))
        self.fpn_out = nn.ModuleList(nn.Sequential(_conv_bn_relu(256, 256)) for _ in range(3))
        # Built by the original and kept for its state dict; its forward pass never uses it.
        self.conv_fusion = _conv_bn_relu(4 * 256, 256)
        self.cls_head = nn.Sequential(
            _conv_bn_relu(256, 256), nn.AdaptiveAvgPool2d(1), nn.Conv2d(256, 1, 1)
        )
        self.seg_head = nn.Sequential(_conv_bn_relu(256, 256), nn.Conv2d(256, 1, 1))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        c5 = feats[-1]
        h, w = c5.shape[-2:]
        ppm = [c5]
        for s, conv in zip(self.scales, self.ppm_conv, strict=True):
            wy = _prroi_whole_weights(h, s).to(c5)
            wx = _prroi_whole_weights(w, s).to(c5)
            pooled = wy @ c5 @ wx.t()  # (B, C, s, s)
            up = F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False)
            ppm.append(conv(up))
        f = self.ppm_last_conv(torch.cat(ppm, dim=1))
        image_logit = self.cls_head(f).flatten(1)
        fpn_features = [f]
        x = f
        for i in reversed(range(len(feats) - 1)):
            lateral = self.fpn_in[i](feats[i])
            x = lateral + F.interpolate(
                x, size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            fpn_features.insert(0, self.fpn_out[i](x))
        return image_logit, self.seg_head(fpn_features[0])


class AuthorsOurs(nn.Module):
    """The authors' two-stream network: RGB and BayarConv-noise ResNet-50s, fused per level by a
    3x3 conv, UPerNet decoder; returns (image logit (B, 1), mask logits (B, 1, H, W))."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _DeepStemResNet50()
        self.noise_encoder = _DeepStemResNet50()
        self.bayar_conv = _BayarConv()
        self.convs = nn.ModuleList(
            nn.Conv2d(2 * c, c, 3, padding=1) for c in (256, 512, 1024, 2048)
        )
        self.decoder = _Decoder()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grey = 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]
        rgb = self.encoder(x)
        noise = self.noise_encoder(self.bayar_conv(grey))
        fused = [
            conv(torch.cat([a, b], 1)) for conv, a, b in zip(self.convs, rgb, noise, strict=True)
        ]
        image_logit, mask = self.decoder(fused)
        mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return image_logit, mask


class _BayarConv(nn.Module):
    """1 -> 3 channels, 5x5, padding 2: off-centre taps renormalised to sum 1, centre -1."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.rand(1, 3, 24))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.kernel.data = self.kernel.data / self.kernel.data.sum(-1, keepdim=True)
        minus_one = -torch.ones(1, 3, 1, dtype=x.dtype, device=x.device)
        taps = torch.cat([self.kernel[..., :12], minus_one, self.kernel[..., 12:]], dim=-1)
        return F.conv2d(x, taps.reshape(3, 1, 5, 5), padding=2)


def load_authors_state_dict(model: AuthorsOurs, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a state dict in the original layout; the synchronized batch norm's extra buffers
    (`_tmp_running_mean`, `_tmp_running_var`, `_running_iter`) have no counterpart and are dropped."""
    extra = ("_tmp_running_mean", "_tmp_running_var", "_running_iter")
    model.load_state_dict({k: v for k, v in state_dict.items() if not k.endswith(extra)})
