"""The paper's networks: `ours` (RGB + BayarConv noise streams, fused, UPerNet) and `upernet`."""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.models.base import (
    ModelOutput,
    has_prefix,
    register_checkpoint_layout,
    register_model,
)
from sdfl_lib.models.bayar import BayarConv2d, rgb_to_grey
from sdfl_lib.models.decoder import UPerNetDecoder
from sdfl_lib.models.encoder import build_encoder, input_normalization
from sdfl_lib.models.heads import DetectionHead, LocalizationHead
from sdfl_lib.models.layers import check_image_batch, pad_to_multiple

# pad_to_multiple stays importable from here.
__all__ = ["TwoStreamUPerNet", "ours", "pad_to_multiple", "upernet"]

# The authors' state_dict names -> ours (first match wins; `\g<n>` keeps the numbered parts).
_AUTHORS_KEY_MAP = [
    (r"^encoder\.", "rgb_encoder."),
    (r"^noise_encoder\.", "noise_encoder."),
    (r"^bayar_conv\.kernel$", "bayar.kernel"),
    (r"^convs\.(\d+)\.", r"fusion.\g<1>."),
    (r"^decoder\.ppm_conv\.(\d+)\.", r"ppm.branches.\g<1>."),
    (r"^decoder\.ppm_last_conv\.", "ppm.bottleneck."),
    (r"^decoder\.fpn_in\.(\d+)\.", r"fpn.lateral.\g<1>."),
    (r"^decoder\.fpn_out\.(\d+)\.0\.", r"fpn.output.\g<1>."),
    (r"^decoder\.cls_head\.0\.", "detection_head.conv."),
    (r"^decoder\.cls_head\.2\.", "detection_head.classifier."),
    (r"^decoder\.seg_head\.0\.", "localization_head.conv."),
    (r"^decoder\.seg_head\.1\.", "localization_head.classifier."),
]
# Built by the original code but never used in its forward pass.
_AUTHORS_UNUSED = re.compile(r"^decoder\.conv_fusion\.")


class TwoStreamUPerNet(nn.Module):
    """The paper's network (Zhang et al., ICNC 2023): UPerNet over one or two ResNet-50 streams.

    RGB stream: the image in [0, 1], normalised by the backbone's own mean/std (`input_mean`,
    `input_std`; none for the paper's CSAIL ResNet-50) -> encoder -> C2..C5. With `noise_stream`,
    the [0, 1] image also goes to grey (0.2989 R + 0.5870 G + 0.1140 B) -> `BayarConv2d` (1 -> 3, 5x5) -> a
    second encoder; at each level the two maps are concatenated (RGB first) and fused by a 3x3
    conv (2C -> C, with bias, no norm or activation). The `UPerNetDecoder` (`PPM` with Precise RoI
    Pooling on C5, then `FPN`) feeds two heads:

    - image score: `DetectionHead` on the PPM output `f` (3x3 conv + BN + ReLU, global average
      pool, 1x1 conv): `image_logit`, and `ModelOutput.image_score = sigmoid(image_logit)`;
    - mask: `LocalizationHead` on P2 (stride 4), bilinearly upsampled to the input size.

    Any H, W is accepted: the input is padded (mirrored) on the bottom/right to a multiple of 32
    and the mask is cropped back, so `mask_logit` is (B, 1, H, W); the image logit then also sees
    the mirrored margin.

    Args:
        noise_stream: True for `ours`; False gives `upernet` ("ours w/o BayarConv").
        backbone: "resnet50" (CSAIL deep-stem ResNet-50, the paper's) or any timm model with
            `features_only` (e.g. "resnet18", "convnext_tiny"); fusion convs and decoder take its
            channel widths.
        pretrained: load ImageNet weights into both encoders (see `encoder.build_encoder`).
        image_size: the training/evaluation resolution (512 in the paper); recorded for the data
            pipeline and the summaries, the network itself accepts any size.
        ppm_scales: PPM bins per side (1, 2, 3, 6).
        ppm_channels: channels of each PPM branch (512).
        fpn_channels: channels of `f` and P2..P4 and of the heads (256).
        bn_momentum: batch-norm momentum (PyTorch convention, 0.1; the original trained with a
            synchronized BN whose running averages used 0.001).
        input_mean, input_std: per-channel normalisation of the RGB stream's input; None takes
            `encoder.input_normalization(backbone)`. The values used are recorded in `sdfl_spec`,
            so a checkpoint carries them.
    """

    def __init__(
        self,
        noise_stream: bool = True,
        backbone: str = "resnet50",
        pretrained: bool = False,
        image_size: int = 512,
        ppm_scales: tuple[int, ...] = (1, 2, 3, 6),
        ppm_channels: int = 512,
        fpn_channels: int = 256,
        bn_momentum: float | None = 0.1,
        input_mean: tuple[float, ...] | None = None,
        input_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        default_mean, default_std = input_normalization(backbone)
        mean = tuple(float(v) for v in (default_mean if input_mean is None else input_mean))
        std = tuple(float(v) for v in (default_std if input_std is None else input_std))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"input_mean/input_std need 3 values (std > 0), got {mean}, {std}")
        # Not in the state dict (its keys stay the authors'); the spec records the values.
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.sdfl_resolved = {"input_mean": list(mean), "input_std": list(std)}
        self.noise_stream = noise_stream
        self.rgb_encoder = build_encoder(backbone, pretrained, bn_momentum=bn_momentum)
        channels = list(self.rgb_encoder.out_channels)
        if noise_stream:
            self.bayar = BayarConv2d(1, 3, kernel_size=5, padding=2)
            self.noise_encoder = build_encoder(backbone, pretrained, bn_momentum=bn_momentum)
            self.fusion = nn.ModuleList(
                nn.Conv2d(2 * c, c, kernel_size=3, padding=1, bias=True) for c in channels
            )
        decoder = UPerNetDecoder(channels, ppm_scales, ppm_channels, fpn_channels, bn_momentum)
        # The decoder's parts are registered here, not the decoder itself, so the state-dict keys
        # stay `ppm.*` and `fpn.*` (this project's checkpoints and the authors' map onto them).
        self.ppm, self.fpn = decoder.ppm, decoder.fpn
        object.__setattr__(self, "decoder", decoder)
        self.detection_head = DetectionHead(fpn_channels, fpn_channels, bn_momentum)
        self.localization_head = LocalizationHead(fpn_channels, fpn_channels, bn_momentum)
        self.out_channels = channels

    def _run(self, x: torch.Tensor, keep: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        check_image_batch(x, hint=" (divide by 255)")
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x)
        # encoder(s) -> fusion -> decoder -> heads
        levels = self.rgb_encoder((xp - self.input_mean) / self.input_std)
        if self.noise_stream:
            residual = self.bayar(rgb_to_grey(xp))
            noise = self.noise_encoder(residual)
            fused = [
                conv(torch.cat([a, b], dim=1))
                for conv, a, b in zip(self.fusion, levels, noise, strict=True)
            ]
        else:
            fused = levels
        # `forward` directly: the decoder is not a submodule (its parts are), so module hooks
        # (per-part FLOP counts, profilers) see `ppm` and `fpn` as the model's own parts.
        f, pyramid = self.decoder.forward(fused, keep)
        image_logit = self.detection_head(f)
        mask = self.localization_head(pyramid[0])
        mask_logit = F.interpolate(mask, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        mask_logit = mask_logit[..., :h, :w]
        if keep is not None:
            for i, c in enumerate(levels):
                keep[f"rgb.C{i + 2}"] = c
            if self.noise_stream:
                keep["noise_residual"] = residual[..., :h, :w]
                for i, (c, u) in enumerate(zip(noise, fused, strict=True)):
                    keep[f"noise.C{i + 2}"] = c
                    keep[f"fused.C{i + 2}"] = u
            keep["ppm.f"] = f
            for i, p in enumerate(pyramid):
                keep[f"P{i + 2}"] = p
            keep["localization.logit_stride4"] = mask
        return ModelOutput(image_logit=image_logit, mask_logit=mask_logit)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x: float (B, 3, H, W) RGB in [0, 1] -> image logit (B, 1), mask logits (B, 1, H, W)."""
        return self._run(x)

    @torch.no_grad()
    def intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named inner tensors for visualisation: `noise_residual` (BayarConv output), `rgb.C2..C5`,
        `noise.C2..C5`, `fused.C2..C5`, `ppm.pool{s}`/`ppm.branch{s}` per scale, `ppm.f`, `P2..P5`
        (P5 = f), `localization.logit_stride4`, and the outputs `image_logit`, `mask_logit`."""
        keep: dict[str, torch.Tensor] = {}
        out = self._run(x, keep)
        keep.update(image_logit=out.image_logit, mask_logit=out.mask_logit)
        return keep

    @staticmethod
    def convert_authors_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The authors' key layout (encoder, noise_encoder, bayar_conv, convs, decoder.*) renamed
        to this model's; their unused `decoder.conv_fusion.*` is dropped, unknown keys pass through
        unchanged (so the load names them)."""
        out = {}
        for key, value in state_dict.items():
            if _AUTHORS_UNUSED.match(key):
                continue
            for pattern, repl in _AUTHORS_KEY_MAP:
                new, n = re.subn(pattern, repl, key)
                if n:
                    key = new
                    break
            out[key] = value
        return out


@register_checkpoint_layout
def _recognise(keys: set[str]) -> tuple[str, str] | None:
    """This class's own keys (rgb_encoder, ppm) or the authors' (encoder, decoder.ppm_conv); the
    noise stream's tensors tell `ours` from `upernet`."""
    if has_prefix(keys, "rgb_encoder.") and has_prefix(keys, "ppm."):
        return "native", "ours" if "bayar.kernel" in keys else "upernet"
    if has_prefix(keys, "decoder.ppm_conv.") and has_prefix(keys, "encoder."):
        noise = has_prefix(keys, "noise_encoder.") or "bayar_conv.kernel" in keys
        return "authors", "ours" if noise else "upernet"
    return None


@register_model
def ours(
    image_size: int = 512, backbone: str = "resnet50", pretrained: bool = False, **kw: Any
) -> TwoStreamUPerNet:
    """The paper's model: RGB + BayarConv noise streams, fused per level, UPerNet, two heads."""
    return TwoStreamUPerNet(
        noise_stream=True, backbone=backbone, pretrained=pretrained, image_size=image_size, **kw
    )


@register_model
def upernet(
    image_size: int = 512, backbone: str = "resnet50", pretrained: bool = False, **kw: Any
) -> TwoStreamUPerNet:
    """The paper's ablation "ours w/o BayarConv": one RGB stream, UPerNet, the same two heads."""
    return TwoStreamUPerNet(
        noise_stream=False, backbone=backbone, pretrained=pretrained, image_size=image_size, **kw
    )
