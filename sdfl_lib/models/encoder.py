"""Backbone factory: the CSAIL ResNet-50 or any timm `features_only` model, as C2..C5 + channels."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from sdfl_lib.models.resnet import ResNet, resnet50
from sdfl_lib.paths import cache_dir

# The CSAIL semantic-segmentation ImageNet file for the deep-stem ResNet-50 (the paper's start).
CSAIL_RESNET50 = {
    "file": "resnet50-imagenet.pth",
    "url": "http://sceneparsing.csail.mit.edu/model/pretrained_resnet/resnet50-imagenet.pth",
}
_STRIDES = (4, 8, 16, 32)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights are neither in the cache folder nor downloadable."""


def pretrained_dir() -> Path:
    """Where ImageNet weight files are looked for and downloaded to: `cache_dir()/pretrained`."""
    return cache_dir() / "pretrained"


def fetch_weights(file: str, url: str) -> Path:
    """Path of a weight file in `pretrained_dir()`, downloading it from `url` when it is missing.

    Offline (or with SDFL_OFFLINE=1) a missing file fails naming the file, the folder to put it
    in and the URL to get it from.
    """
    path = pretrained_dir() / file
    if path.is_file():
        return path
    advice = (
        f"Download {url} on a machine with internet access and copy it to {path} "
        f"(the folder is $SDFL_CACHE/pretrained, default ~/.cache/sdfl/pretrained), "
        f"or build the model with pretrained=False."
    )
    if os.environ.get("SDFL_OFFLINE", "") not in ("", "0"):
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights {file!r} are not in {path.parent} and SDFL_OFFLINE is set. {advice}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes to a temporary file first and shows a progress bar.
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as err:  # noqa: BLE001 - every network failure gets the same advice
        path.unlink(missing_ok=True)
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights {file!r} are not in {path.parent} and could not be downloaded "
            f"({type(err).__name__}: {err}). {advice}"
        ) from err
    return path


def _load_csail_imagenet(net: ResNet) -> None:
    path = fetch_weights(CSAIL_RESNET50["file"], CSAIL_RESNET50["url"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise PretrainedWeightsUnavailable(
            f"{path} is not a readable PyTorch weight file ({err}); delete it and download "
            f"{CSAIL_RESNET50['url']} again."
        ) from err
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PretrainedWeightsUnavailable(
            f"{path} does not hold the CSAIL deep-stem ResNet-50: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


def timm_weight_source(name: str) -> tuple[str, str]:
    """(cache file name, URL) of timm's default pretrained weights for `name`."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise PretrainedWeightsUnavailable(f"timm has no pretrained weights for {name!r}")
    if cfg.hf_hub_id:
        return (
            f"timm--{cfg.hf_hub_id.replace('/', '--')}.safetensors",
            f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors",
        )
    if cfg.url:
        return f"timm--{cfg.url.rsplit('/', 1)[-1]}", cfg.url
    raise PretrainedWeightsUnavailable(f"timm lists no download for {name!r}")


class TimmEncoder(nn.Module):
    """Any timm model with `features_only`, reduced to its stride-4/8/16/32 levels (C2..C5).

    Args:
        name: timm model name (e.g. "resnet18", "convnext_tiny", "efficientnet_b0").
        pretrained: load timm's ImageNet weights from `pretrained_dir()` (downloaded if online).
        in_chans: input channels.
    """

    def __init__(self, name: str, pretrained: bool = False, in_chans: int = 3) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ValueError(
                f"Unknown backbone {name!r}: not the default 'resnet50' and not a timm model "
                f"(see timm.list_models())."
            )
        kwargs: dict = {"features_only": True, "in_chans": in_chans}
        if pretrained:
            file, url = timm_weight_source(name)
            kwargs.update(
                pretrained=True, pretrained_cfg_overlay={"file": str(fetch_weights(file, url))}
            )
        try:
            self.body = timm.create_model(name, **kwargs)
        except (RuntimeError, TypeError, NotImplementedError) as err:
            raise ValueError(f"timm model {name!r} cannot act as a backbone: {err}") from err
        info = self.body.feature_info
        reductions, channels = info.reduction(), info.channels()
        # The last level at each stride (a stage may emit several maps at one stride).
        self.indices = []
        for stride in _STRIDES:
            at = [i for i, r in enumerate(reductions) if r == stride]
            if not at:
                raise ValueError(
                    f"backbone {name!r} gives feature strides {reductions}; the decoder needs "
                    f"strides {list(_STRIDES)}"
                )
            self.indices.append(at[-1])
        self.out_channels = [channels[i] for i in self.indices]
        self.reductions = list(_STRIDES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.indices]


def build_encoder(
    backbone: str = "resnet50",
    pretrained: bool = False,
    in_chans: int = 3,
    bn_momentum: float | None = 0.1,
) -> nn.Module:
    """A backbone returning [C2, C3, C4, C5] (strides 4..32) and reporting `out_channels`.

    "resnet50" is the paper's CSAIL deep-stem ResNet-50 (ImageNet file from CSAIL when
    `pretrained`); any other name is a timm model with `features_only` (timm's weights).
    """
    if backbone == "resnet50":
        net = resnet50(in_chans=in_chans, bn_momentum=bn_momentum)
        if pretrained:
            if in_chans != 3:
                raise ValueError("the CSAIL ImageNet weights need in_chans=3")
            _load_csail_imagenet(net)
        return net
    return TimmEncoder(backbone, pretrained=pretrained, in_chans=in_chans)
