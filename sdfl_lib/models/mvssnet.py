"""MVSS-Net, the paper's baseline: Sobel/ERB edge branch, BayarConv noise branch, dual attention."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sdfl_lib.models.base import (
    ModelOutput,
    has_prefix,
    register_checkpoint_layout,
    register_model,
)
from sdfl_lib.models.bayar import BayarConv2d, rgb_to_grey
from sdfl_lib.models.dual_attention import DualAttentionHead
from sdfl_lib.models.encoder import build_encoder, fetch_weights, read_weight_file
from sdfl_lib.models.erb import ERB
from sdfl_lib.models.layers import check_image_batch, pad_to_multiple
from sdfl_lib.models.sobel import SobelFilter, sobel_gate

# The ImageNet ResNet-50 that MVSS-Net starts from (torchvision's original release).
IMAGENET_RESNET50_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"


class DilatedResNet50(torchvision.models.ResNet):
    """torchvision ResNet-50 (7x7 stem) with layer4 undecimated (output stride 16) -> [C2..C5].

    layer4 uses the DeepLabv3 multi-grid dilations 1, 2, 4 in its three blocks, as MVSS-Net
    does (torchvision's own dilation option alone would give 1, 2, 2). The classifier is
    dropped; `forward` returns the four stage outputs (256/512/1024/2048 channels, strides
    4/8/16/16). Parameter names are torchvision's, as in the authors' checkpoints.
    """

    out_channels = (256, 512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__(
            torchvision.models.resnet.Bottleneck,
            [3, 4, 6, 3],
            replace_stride_with_dilation=[False, False, True],
        )
        last = self.layer4[2].conv2
        last.dilation, last.padding = (4, 4), (4, 4)
        self.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        levels = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            levels.append(x)
        return levels


def _imagenet_resnet50_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet ResNet-50 weights from `pretrained_dir()`, downloaded when missing and online."""
    path = fetch_weights(IMAGENET_RESNET50_URL.rsplit("/", 1)[-1], IMAGENET_RESNET50_URL)
    state = read_weight_file(path, f"delete it and download {IMAGENET_RESNET50_URL} again.")
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


class _NoiseExtractor(nn.Module):
    """Holds the noise stream's backbone under `model`, the authors' `noise_extractor.model.*`."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.model = backbone

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


class MVSSNet(nn.Module):
    """MVSS-Net: multi-view multi-scale supervised manipulation localization.

    Chen, Dong, Li, Wang, Song, "Image Manipulation Detection by Multi-View Multi-Scale
    Supervision", ICCV 2021; Dong, Chen, Hu, Cao, Li, "MVSS-Net: Multi-View Multi-Scale
    Supervised Networks for Image Manipulation Detection", TPAMI 2022. The ICNC 2023 paper uses
    it as its baseline (`mvssnet`). Parts, with the authors' attribute names so their
    checkpoints load by name:

    - RGB stream `model` (`DilatedResNet50`): ResNet-50 (7x7 stem, layer4 dilated 1/2/4,
      output stride 16) giving C2..C5 (256/512/1024/2048 channels at strides 4/8/16/16).
    - Edge-supervised branch: each level is gated by its Sobel layer (`sobel_x{i}`,
      `sobel_y{i}`: sigmoid of the Sobel gradient magnitude times the features), reduced to one
      channel by an ERB (`erb_db_{i}`); the coarser levels are bilinearly upsampled
      (align_corners=True) to C2's size and added in turn through `erb_trans_1..3`, the last
      without ReLU. The result is `edge_logit` at 1/4 of the input size.
    - Noise-sensitive branch: the image to grey (0.2989 R + 0.5870 G + 0.1140 B) ->
      `constrain_conv` (BayarConv2d, 1 -> 3 channels, 5x5) -> a second ResNet-50
      (`noise_extractor.model`); only its C5 is used.
    - Dual-attention head `head` (position + channel attention, DANet) on the concatenated C5 of
      both streams (4096 channels) -> one logit map at stride 16, bilinearly upsampled
      (align_corners=True) to the input size: `mask_logit`.
    - Image score: the maximum of the sigmoid mask, so `image_logit` is the maximum of
      `mask_logit` over the pixels (sigmoid is monotonic); it has no parameters of its own.

    Input: float (B, 3, H, W) RGB in [0, 1] without mean/std normalisation, as the authors feed
    it. Any H, W: the batch is padded on the bottom/right to a multiple of 32 (mirrored, see
    `pad_to_multiple`) and the outputs are cropped back. Output: `ModelOutput` with
    `image_logit` (B, 1), `mask_logit` (B, 1, H, W) and `edge_logit` (B, 1, ceil(H/4), ceil(W/4)).
    Batch norm is plain `BatchNorm2d` (eps 1e-5), as in the authors' MVSS-Net.

    Args:
        image_size: nominal square input size for training and evaluation (default 512); kept
            in `sdfl_spec` for the data pipeline. The network itself accepts any size.
        backbone: "resnet50" (default) is the authors' network above and the only choice their
            checkpoints fit. Any other name is a timm model with `features_only` (e.g.
            "resnet18", "convnext_tiny", "efficientnet_b0"; see `TimmEncoder`), used for both
            streams; its stride 4/8/16/32 levels play C2..C5 (so C5 is at stride 32, not
            dilated), and the ERBs and head are sized from its channel widths.
        pretrained: load ImageNet weights into both backbones (default False). For "resnet50"
            it is torchvision's original file `resnet50-19c8e357.pth` (the one the authors start
            from), for timm backbones timm's default weights; both are read from
            `pretrained_dir()` ($SDFL_CACHE/pretrained, default ~/.cache/sdfl/pretrained) and
            downloaded when missing and online. Offline without the file it fails
            (`PretrainedWeightsUnavailable`) naming the file, the folder and the URL.
        sobel: use the Sobel layers in the edge branch (default True; False is the authors'
            ablation without them, the ERBs then read the raw levels).
        noise_branch: build the BayarConv noise branch (default True; the authors' `constrain`
            flag). Without it, the head reads the RGB C5 alone.
    """

    def __init__(
        self,
        image_size: int = 512,
        backbone: str = "resnet50",
        pretrained: bool = False,
        sobel: bool = True,
        noise_branch: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.image_size = image_size
        self.backbone = backbone
        self.sobel = sobel
        self.noise_branch = noise_branch

        self.model, channels = self._make_backbone(backbone, pretrained)
        self.erb_db_1, self.erb_db_2, self.erb_db_3, self.erb_db_4 = (ERB(c, 1) for c in channels)
        self.erb_trans_1, self.erb_trans_2, self.erb_trans_3 = (ERB(1, 1) for _ in range(3))
        if sobel:
            for i, c in enumerate(channels, start=1):
                setattr(self, f"sobel_x{i}", SobelFilter(c, "x"))
                setattr(self, f"sobel_y{i}", SobelFilter(c, "y"))
        head_in = channels[-1]
        if noise_branch:
            self.noise_extractor = _NoiseExtractor(self._make_backbone(backbone, pretrained)[0])
            self.constrain_conv = BayarConv2d(1, 3, kernel_size=5, padding=2)
            head_in *= 2
        self.head = DualAttentionHead(head_in, num_classes=1)

    @staticmethod
    def _make_backbone(name: str, pretrained: bool) -> tuple[nn.Module, list[int]]:
        if name == "resnet50":
            net = DilatedResNet50()
            if pretrained:
                net.load_state_dict(_imagenet_resnet50_state_dict())
            return net, list(net.out_channels)
        # Any other name is a timm backbone, as for the paper's models.
        encoder = build_encoder(name, pretrained=pretrained)
        return encoder, list(encoder.out_channels)

    @staticmethod
    def convert_authors_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map the authors' MVSS-Net state dict onto this class: drop the unused ImageNet `fc`."""
        drop = ("model.fc.", "noise_extractor.model.fc.")
        return {k: v for k, v in state_dict.items() if not k.startswith(drop)}

    def _edge_branch(
        self, levels: list[torch.Tensor], keep: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        dbs = (self.erb_db_1, self.erb_db_2, self.erb_db_3, self.erb_db_4)
        reduced = []
        for i, (feat, erb) in enumerate(zip(levels, dbs, strict=True), start=1):
            if self.sobel:
                gate = sobel_gate(feat, getattr(self, f"sobel_x{i}"), getattr(self, f"sobel_y{i}"))
                feat = gate * feat
                if keep is not None:
                    keep[f"sobel.C{i + 1}"] = gate
            reduced.append(erb(feat))
        size = reduced[0].shape[-2:]
        edge = reduced[0]
        trans = (self.erb_trans_1, self.erb_trans_2, self.erb_trans_3)
        for k, (coarse, erb) in enumerate(zip(reduced[1:], trans, strict=True)):
            coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=True)
            edge = erb(edge + coarse, relu=k < 2)
        return edge

    def _run(self, x: torch.Tensor, keep: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        check_image_batch(x)
        h, w = x.shape[-2:]
        x = pad_to_multiple(x)

        levels = self.model(x)
        edge = self._edge_branch(levels, keep)
        top = levels[-1]
        if self.noise_branch:
            residual = self.constrain_conv(rgb_to_grey(x))
            noise_levels = self.noise_extractor(residual)
            top = torch.cat([top, noise_levels[-1]], dim=1)
        head = self.head(top)
        mask = F.interpolate(head, size=x.shape[-2:], mode="bilinear", align_corners=True)
        mask = mask[..., :h, :w]
        edge = edge[..., : math.ceil(h / 4), : math.ceil(w / 4)]

        if keep is not None:
            keep.update({f"rgb.C{i}": f for i, f in enumerate(levels, start=2)})
            if self.noise_branch:
                keep["noise_residual"] = residual[..., :h, :w]
                keep.update({f"noise.C{i}": f for i, f in enumerate(noise_levels, start=2)})
            keep["head_logit"] = head
        return ModelOutput(image_logit=mask.amax(dim=(2, 3)), mask_logit=mask, edge_logit=edge)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x: float (B, 3, H, W) RGB in [0, 1] -> image, mask and edge logits."""
        return self._run(x)

    @torch.no_grad()
    def intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named inner tensors for visualisation: `rgb.C2..C5`, `sobel.C2..C5` (the Sobel layers'
        attention maps), `noise_residual` (BayarConv output, cropped to the input),
        `noise.C2..C5`, `head_logit` (dual-attention output, stride 16) and the three outputs."""
        keep: dict[str, torch.Tensor] = {}
        out = self._run(x, keep)
        keep.update(
            image_logit=out.image_logit, mask_logit=out.mask_logit, edge_logit=out.edge_logit
        )
        return keep


@register_checkpoint_layout
def _recognise(keys: set[str]) -> tuple[str, str] | None:
    """The authors' MVSS-Net keys (this class uses the same names)."""
    if "constrain_conv.kernel" in keys or has_prefix(keys, "erb_db_") or has_prefix(
        keys, "noise_extractor."
    ):
        return "authors", "mvssnet"
    return None


@register_model
def mvssnet(
    image_size: int = 512, backbone: str = "resnet50", pretrained: bool = False, **kw: Any
) -> MVSSNet:
    """MVSS-Net baseline (ICCV 2021); see `MVSSNet` for every argument."""
    return MVSSNet(image_size=image_size, backbone=backbone, pretrained=pretrained, **kw)
