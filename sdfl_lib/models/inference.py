"""An inference copy of a model: batch norm folded into the preceding convolutions, channels-last."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sdfl_lib.models.resnet import Bottleneck, ResNet

# Attribute pairs (conv, bn) applied back to back in these modules' forward passes.
_NAMED_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ResNet: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}


def _fold(conv: nn.Module, bn: nn.Module) -> nn.Conv2d | None:
    if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
        return fuse_conv_bn_eval(conv, bn)
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode batch norms into the convolutions right before them, in place; returns how
    many were folded. Only pairs known to run back to back are touched: consecutive entries of an
    `nn.Sequential` and the conv/bn attributes of this package's ResNet and Bottleneck."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (it bakes in running stats)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:], strict=False):
                fused = _fold(module._modules[a], module._modules[b])
                if fused is not None:
                    module._modules[a], module._modules[b] = fused, nn.Identity()
                    folded += 1
        for conv_name, bn_name in _NAMED_PAIRS.get(type(module), ()):
            fused = _fold(getattr(module, conv_name), getattr(module, bn_name))
            if fused is not None:
                setattr(module, conv_name, fused)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A frozen eval-mode copy for prediction: batch norm folded into convolutions, weights in
    channels-last layout (faster convolutions on CPUs and tensor cores). Its outputs equal the
    model's up to float rounding; it cannot be trained or saved as a checkpoint of the model."""
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.sdfl_inference_copy = True
    return fast
