"""Model loading for inference: a module, a checkpoint file, published weights by name
(`table3-9`) or a method name, returned in eval mode and knowing its checkpoint file
(`sdfl_checkpoint`), so that the ONNX export lands beside that file without the caller
resolving the name first."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from sdfl_lib.models import build_model, load_model
from sdfl_lib.models.weights import resolve_checkpoint
from sdfl_lib.runtime import resolve_device


def checkpoint_of(model: nn.Module) -> Path | None:
    """The checkpoint file `model` was loaded from by `resolve_model`, if any."""
    path = getattr(model, "sdfl_checkpoint", None)
    return Path(path) if path is not None else None


def resolve_model(
    model_or_checkpoint: nn.Module | str | os.PathLike | None = None,
    method: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A model in eval mode on `device`: given as a module, a checkpoint path or named weights
    (`table3-9`, see `sdfl_lib.models.weights`), or a method name (a classical baseline such as
    "ela" or "noise", or any registered model name). A model loaded from a file keeps that
    file's path as `sdfl_checkpoint`."""
    if (model_or_checkpoint is None) == (method is None):
        raise ValueError("give exactly one of a model/checkpoint or a method name")
    if method is not None:
        model = build_model(method)
    elif isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
    else:
        path = resolve_checkpoint(model_or_checkpoint)  # a path, or a name such as table3-9
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        model = load_model(path, map_location="cpu")
        model.sdfl_checkpoint = path
    return model.to(resolve_device(device)).eval()
