"""Figures of the network's parts: a photo as input, conv filters, feature maps, module in/out."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn


def photo_tensor(name: str = "astronaut", size: int = 256) -> torch.Tensor:
    """A scikit-image sample photo (`skimage.data.<name>`) as a (1, 3, size, size) batch in [0, 1]."""
    import skimage.data  # why: heavy, only for sample photos
    from skimage.color import gray2rgb  # why: heavy, only for sample photos
    from skimage.transform import resize  # why: heavy, only for sample photos

    if not hasattr(skimage.data, name):
        raise ValueError(f"skimage.data has no photo {name!r} (try astronaut, coffee, chelsea, rocket)")
    img = getattr(skimage.data, name)()
    img = gray2rgb(img) if img.ndim == 2 else img[..., :3]
    img = resize(img, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)
    img = img / 255.0 if img.max() > 1.0 else img
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).clamp(0, 1)


def _as_image(t: torch.Tensor) -> tuple[np.ndarray, str]:
    """A displayable 2-D or RGB array for a (1, C, H, W) or (C, H, W) tensor, and its shape label."""
    t = t.detach().float().cpu()
    t = t[0] if t.dim() == 4 else t
    label = "x".join(str(s) for s in t.shape)
    if t.dim() == 3 and t.shape[0] == 3 and float(t.min()) >= 0 and float(t.max()) <= 1:
        return t.permute(1, 2, 0).numpy(), label
    if t.dim() == 3:
        # Mean absolute activation: one map per tensor, whatever its width.
        t = t.abs().mean(0)
    return t.numpy(), label


def show_maps(maps: Mapping[str, torch.Tensor], cols: int = 4, size: float = 2.6) -> Figure:
    """One panel per named tensor: RGB as an image, otherwise the channel-mean |activation|."""
    if not maps:
        raise ValueError("show_maps: no maps to show")
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, t) in zip(axes.flat, maps.items(), strict=False):
        img, shape = _as_image(t)
        ax.imshow(img, cmap=None if img.ndim == 3 else "magma")
        ax.set_title(f"{name}\n{shape}", fontsize=8)
    fig.tight_layout()
    return fig


def show_filters(weight: torch.Tensor, title: str = "filters") -> Figure:
    """Each (out, in, k, k) filter as a small heat map with its taps printed."""
    w = weight.detach().float().cpu()
    n = w.shape[0] * w.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n, 2.8), squeeze=False)
    for ax, (i, j) in zip(axes.flat, np.ndindex(w.shape[0], w.shape[1]), strict=False):
        k = w[i, j].numpy()
        lim = float(np.abs(k).max())
        ax.imshow(k, cmap="coolwarm", vmin=-lim, vmax=lim)
        for (r, c), v in np.ndenumerate(k):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=5)
        ax.set_title(f"{title} {i}: centre {k[k.shape[0] // 2, k.shape[1] // 2]:.0f}, "
                     f"rest sums to {k.sum() - k[k.shape[0] // 2, k.shape[1] // 2]:.2f}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def module_io(
    model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Run `model(x)` once and return the input and output of each named sub-module."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in modules.items():
        def hook(_m, inputs, output, name=name):
            if name + " in" not in seen:  # the first call: a stream may reuse the module
                seen[name + " in"] = inputs[0].detach()
                seen[name + " out"] = output.detach()
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in modules if n + " in" not in seen]
    if missing:
        raise ValueError(f"module_io: {', '.join(missing)} not called by the model's forward")
    return seen
