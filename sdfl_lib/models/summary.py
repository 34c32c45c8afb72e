"""Looking inside a model: named intermediate outputs and a per-part parameter/FLOP table."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def extract_intermediates(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named inner tensors of `model` for input `x` (e.g. `noise_residual`, `rgb.C2`, `fused.C5`,
    `ppm.branch6`, `P2`), in eval mode and without gradients; the model's mode is restored."""
    fn = getattr(model, "intermediates", None)
    if fn is None:
        raise TypeError(f"{type(model).__name__} does not expose intermediate outputs")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return fn(x)
    finally:
        model.train(was_training)


def _flops_of(module: nn.Module, key: str, counts: dict[str, int]) -> int:
    # A container that is never called itself (a ModuleList) is the sum of its children.
    if key in counts:
        return counts[key]
    return sum(_flops_of(child, f"{key}.{name}", counts) for name, child in module.named_children())


def summarize(model: nn.Module, image_size: int | None = None, batch: int = 1) -> pd.DataFrame:
    """Parameters and forward FLOPs per top-level part at `image_size` (default: the model's own).

    FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts 2) for a
    (batch, 3, S, S) input in eval mode. Rows: one per part in model order, then "total".
    """
    size = int(image_size or getattr(model, "image_size", 512))
    device = next(model.parameters(), torch.empty(0)).device
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.rand(batch, 3, size, size, device=device))
    finally:
        model.train(was_training)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    rows = []
    for name, part in model.named_children():
        params = sum(p.numel() for p in part.parameters())
        rows.append(
            {
                "part": name,
                "type": type(part).__name__,
                "params": params,
                "flops": _flops_of(part, f"{root}.{name}", counts),
            }
        )
    rows.append(
        {
            "part": "total",
            "type": root,
            "params": sum(p.numel() for p in model.parameters()),
            "flops": counts.get("Global", 0),
        }
    )
    table = pd.DataFrame(rows)
    table["params_M"] = table["params"] / 1e6
    table["GFLOPs"] = table["flops"] / 1e9
    table["flops_share"] = table["flops"] / max(counts.get("Global", 0), 1)
    table.attrs.update(image_size=size, batch=batch)
    return table
