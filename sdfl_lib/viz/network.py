"""02's figures of the paper's network: its diagram, the shapes of its tensors, a forged example
image, the BayarConv taps, and the maps of a trained model beside the same network untrained."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from sdfl_lib import figstyle
from sdfl_lib.data import load_image, load_mask, read_manifest
from sdfl_lib.metrics import f1_from_counts
from sdfl_lib.models import build_model, extract_intermediates, load_model

# 02's one-line captions, by figure; `{...}` filled in by the notebook.
CAPTIONS = {
    "diagram": "The paper's network: an RGB stream and a noise stream (grey image, BayarConv, its own "
               "ResNet-50) give four levels each, fused level by level; the PPM and the FPN decode them "
               "into the detection head's image score and the localization head's mask. S: the input side.",
    "filters": "BayarConv's three filters: each tap's weight (centre −1, the other 24 sum to 1), colours "
               "centred on 0; one row per model: {rows}.",
    "residual": "The example ({source}, its tampered region outlined) and the untrained filters' noise "
                "residual (mean |value| over the three filters): edges and texture remain, flat regions vanish.",
    "blocks": "Input and output of the stem's first conv3x3 and of layer1's first Bottleneck (RGB stream). "
              "Each panel: the mean |activation| over the channels, scaled to its own range (bright: large).",
    "levels": "C2..C5 of the RGB stream (top row), the noise stream (middle) and their fusion (bottom), as "
              "mean |activation| over the channels. {fusion}",
    "ppm": "The PPM's pooled maps (1, 2, 3 and 6 bins) and each one after upsampling and its 1×1 "
           "convolution (mean |activation|).",
    "fpn": "The FPN's levels from coarse (P5 = f) to fine (P2), as mean |activation| over 256 channels.",
    "heads": "The untrained localization head's logits and mask probability (sigmoid), the truth "
             "outlined on the image; its image score is {score:.2f}.",
    "trained": "Untrained (top) and trained (bottom) {backbone} network at {image_size} px: the example "
               "with its truth outlined, {maps} (mean |activation|), and the mask probability.",
    "costs": "Parameters and FLOPs (a multiply-add counts 2) per part at {image_size} px, batch 1.",
}

# (x, y, width, height, text, colour index) of the diagram's boxes, in a 10 x 5.2 frame.
_BOXES = {
    "image": (0.0, 2.0, 1.1, 1.0, "image\n3 × S × S", 7),
    "rgb": (1.5, 3.6, 3.1, 1.15, "RGB stream, ResNet-50:\nconv3x3 stem,\nBottleneck stages", 0),
    "bayar": (1.35, 0.3, 1.45, 1.2, "grey →\nBayarConv2d\n3 filters 5×5", 3),
    "noise": (3.15, 0.3, 1.45, 1.2, "noise stream\nResNet-50", 3),
    "fusion": (5.0, 1.95, 1.4, 1.3, "fusion:\nconcat +\n3×3 conv\nper level", 2),
    "ppm": (6.75, 3.6, 1.75, 1.15, "PPM on C5′\nPrecise RoI\npooling", 4),
    "fpn": (6.75, 1.2, 1.75, 1.15, "FPN\ntop-down", 4),
    "det": (8.8, 3.6, 1.3, 1.15, "detection\nhead →\nimage score", 1),
    "loc": (8.8, 1.2, 1.3, 1.15, "localization\nhead →\nmask S × S", 1),
}
_ARROWS = [("image", "rgb", ""), ("image", "bayar", ""), ("bayar", "noise", ""),
           ("rgb", "fusion", "C2..C5"), ("noise", "fusion", "C2..C5"), ("fusion", "ppm", "C5′"),
           ("fusion", "fpn", "C2′..C4′"), ("ppm", "fpn", "f"), ("ppm", "det", "f"),
           ("fpn", "loc", "P2")]


def _anchor(box: tuple, toward: tuple) -> tuple[float, float]:
    """The point on `box`'s edge facing the centre of `toward`."""
    x, y, w, h = box[:4]
    cx, cy = x + w / 2, y + h / 2
    tx, ty = toward[0] + toward[2] / 2, toward[1] + toward[3] / 2
    dx, dy = tx - cx, ty - cy
    scale = min(w / 2 / abs(dx) if dx else np.inf, h / 2 / abs(dy) if dy else np.inf)
    return cx + dx * scale, cy + dy * scale


def architecture_diagram() -> Figure:
    """The paper's network (`ours`) as a block diagram: two streams, fusion, UPerNet, two heads."""
    fig, ax = plt.subplots(figsize=(figstyle.MAX_WIDTH_IN, 4.6))
    ax.set(xlim=(-0.05, 10.15), ylim=(0.2, 4.85))
    ax.axis("off")
    for x, y, w, h, text, color in _BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=(*figstyle.PALETTE[color], 0.18),
                                    edgecolor=figstyle.PALETTE[color], lw=1.5))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)
    for a, b, label in _ARROWS:
        start, end = _anchor(_BOXES[a], _BOXES[b]), _anchor(_BOXES[b], _BOXES[a])
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.3})
        if label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.08, label, fontsize=10,
                    ha="center", va="bottom", color="0.25",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    return fig


# Groups of `extract_intermediates` keys, in the order the data flows: (pattern, row name, what).
_GROUPS = [
    (r"noise_residual", "noise_residual", "BayarConv2d's output, the noise residual"),
    (r"(rgb|noise|fused)\.C2", "rgb / noise / fused.C2", "level 2 of the RGB stream, the noise stream, their fusion"),
    (r"(rgb|noise|fused)\.C3", "rgb / noise / fused.C3", "level 3 of the same"),
    (r"(rgb|noise|fused)\.C4", "rgb / noise / fused.C4", "level 4 of the same"),
    (r"(rgb|noise|fused)\.C5", "rgb / noise / fused.C5", "level 5 of the same"),
    (r"ppm\.pool\d+", "ppm.pool1, 2, 3, 6", "PPM: C5′ pooled into 1, 2, 3, 6 bins a side"),
    (r"ppm\.branch\d+", "ppm.branch1, 2, 3, 6", "PPM: each pooled map upsampled, 1×1 conv"),
    (r"ppm\.f|P5", "ppm.f = P5", "PPM output f, the FPN's top level"),
    (r"P4", "P4", "FPN level 4"), (r"P3", "P3", "FPN level 3"), (r"P2", "P2", "FPN level 2"),
    (r"localization\.logit_stride4", "localization.logit_stride4", "localization head, at stride 4"),
    (r"mask_logit", "mask_logit", "mask logits, upsampled to the input"),
    (r"image_logit", "image_logit", "detection head: the image logit"),
]


def shape_table(parts: dict[str, torch.Tensor]) -> pd.DataFrame:
    """The named tensors of one forward pass, grouped (the two streams and their fusion per
    level, the PPM's four scales), with what each is and its shape (batch left out)."""
    rows, seen = [], set()
    for pattern, name, what in _GROUPS:
        keys = [k for k in parts if re.fullmatch(pattern, k) and k not in seen]
        if not keys:
            continue
        seen.update(keys)
        shapes = list(dict.fromkeys(" × ".join(map(str, parts[k].shape[1:])) for k in keys))
        rows.append({"tensor": name, "what it is": what, "shape (C × H × W)": ", ".join(shapes)})
    rows += [{"tensor": k, "what it is": "", "shape (C × H × W)": " × ".join(map(str, t.shape[1:]))}
             for k, t in parts.items() if k not in seen]
    return pd.DataFrame(rows).set_index("tensor")


def forged_example(run_dir: str | os.PathLike, size: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, str]:
    """A forged image at `size` and its mask: the first tampered test image of the run folder
    (01's `data/test.csv`), else one synthetic forgery made now. Returns (1,3,S,S), (S,S), source."""
    from sdfl_lib.data.synth import (
        make_sample,  # why: heavy (scikit-image), only without test images
    )

    test = Path(run_dir, "data", "test.csv")
    rows = read_manifest(test) if test.is_file() else None
    tampered = rows[(rows["label"] == 1) & (rows["mask"] != "")] if rows is not None else []
    if len(tampered):
        r = tampered.iloc[0]
        image, source = load_image(r["image"]), str(r["source"])
        mask = load_mask(r["mask"], size=image.shape[:2])
    else:
        sample = make_sample(np.random.default_rng(seed), "splice", size=max(size, 128))
        image, mask, source = sample.image, sample.mask, f"{sample.source} (made now)"
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    x = torch.from_numpy(cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR))
    return x.permute(2, 0, 1).float().div(255).unsqueeze(0), mask > 0, source


def show_filters(weights: dict[str, torch.Tensor | None]) -> Figure:
    """BayarConv taps as heat maps, one row per model (e.g. untrained, trained; a None is left
    out), one panel per filter, the taps printed; colours centred on 0 (the centre tap is −1),
    one colour bar."""
    rows = {k: w.detach().float().cpu()[:, 0].numpy() for k, w in weights.items() if w is not None}
    n = max(len(w) for w in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(min(figstyle.MAX_WIDTH_IN, 2.9 * n + 0.9), 2.9 * len(rows)),
                             squeeze=False)
    high = max(float(w.max()) for w in rows.values())
    norm = TwoSlopeNorm(vmin=-1.0, vcenter=0.0, vmax=max(high, 1e-3))
    for row, (name, w) in zip(axes, rows.items(), strict=True):
        for j, ax in enumerate(row):
            if j >= len(w):
                ax.axis("off")
                continue
            image = ax.imshow(w[j], cmap=figstyle.DIVERGING, norm=norm)
            for (r, c), v in np.ndenumerate(w[j]):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=10,
                        color="white" if v < -0.5 else "black")
            ax.set(xticks=[], yticks=[], title=f"{name}: filter {j + 1}")
            ax.grid(False)
    bar = fig.colorbar(image, ax=axes, shrink=0.8, label="tap weight")
    bar.set_ticks([-1.0, -0.5, 0.0, round(high, 2)])
    bar.minorticks_off()  # the two-slope scale's minor ticks are undefined
    return fig


def _panel(ax, t: torch.Tensor, title: str, mask: np.ndarray | None = None) -> None:
    """One map: an RGB image as it is, any other tensor as its channel mean of |activation|."""
    t = t.detach().float().cpu()[0]
    if t.shape[0] == 3 and float(t.min()) >= 0 and float(t.max()) <= 1:
        ax.imshow(t.permute(1, 2, 0).numpy())
    else:
        ax.imshow(t.abs().mean(0).numpy(), cmap=figstyle.SEQUENTIAL)
    if mask is not None and mask.any():
        m = cv2.resize(mask.astype(np.uint8), (t.shape[-1], t.shape[-2]), interpolation=cv2.INTER_NEAREST)
        ax.contour(m, levels=[0.5], colors=[figstyle.TRUTH_COLOR], linewidths=1.5)
    ax.set(xticks=[], yticks=[], title=title)
    ax.grid(False)


def show_maps(maps: dict[str, torch.Tensor], cols: int = 4, mask: np.ndarray | None = None) -> Figure:
    """One panel per named tensor (title: name and C × H × W): RGB as an image, any other tensor as
    the channel mean of |activation|, each panel scaled to its own range; `mask` outlined on the
    images."""
    if not maps:
        raise ValueError("show_maps: no maps to show")
    cols = min(cols, len(maps))
    rows = -(-len(maps) // cols)
    side = min(1.9, figstyle.MAX_WIDTH_IN / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, (side + 0.45) * rows), squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for ax, (name, t) in zip(axes.flat, maps.items(), strict=False):
        shape = "×".join(map(str, t.shape[1:]))
        _panel(ax, t, f"{name}\n{shape}", mask if t.shape[1] == 3 else None)
    return fig


def trained_vs_untrained(checkpoint: str | os.PathLike, x: torch.Tensor, mask: np.ndarray,
                         seed: int = 0) -> tuple[Figure, dict[str, Any]]:
    """The trained model's maps (a row) beside the same network with random weights (a row), on
    the example `x` resized to the model's input, and each one's pixel F1 against `mask`."""
    trained = load_model(checkpoint)
    spec = dict(trained.sdfl_spec)
    torch.manual_seed(seed)
    untrained = build_model(**{**spec, "pretrained": False}).eval()
    size = int(spec.get("image_size") or x.shape[-1])
    xs = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    ms = torch.from_numpy(mask.astype(np.float32))[None, None]
    ms = F.interpolate(ms, size=(size, size), mode="nearest")[0, 0].numpy() > 0
    available = extract_intermediates(trained, xs)
    keys = [k for k in ("noise_residual", "fused.C3" if "fused.C3" in available else "rgb.C3", "P2")
            if k in available]
    fig, axes = plt.subplots(2, len(keys) + 2, figsize=(figstyle.MAX_WIDTH_IN, 4.9), squeeze=False)
    numbers: dict[str, Any] = {"backbone": spec.get("backbone"), "image_size": size, "weights": {},
                               "maps": ", ".join(keys)}
    for row, (name, model) in zip(axes, (("untrained", untrained), ("trained", trained)), strict=True):
        parts = extract_intermediates(model, xs)
        prob = torch.sigmoid(parts["mask_logit"])[0, 0].numpy()
        pred = prob >= 0.5
        tp, fp, fn = (pred & ms).sum(), (pred & ~ms).sum(), (~pred & ms).sum()
        f1 = float(f1_from_counts(np.array([tp]), np.array([fp]), np.array([fn]))[0])
        numbers[f"{name}_f1"] = f1
        if getattr(model, "bayar", None) is not None:
            numbers["weights"][name] = model.bayar.constrained_weight().detach()
        _panel(row[0], xs, "image, truth outlined", ms)
        for ax, key in zip(row[1:-1], keys, strict=True):
            _panel(ax, parts[key], key)
        row[-1].imshow(prob, cmap=figstyle.SEQUENTIAL, vmin=0, vmax=1)
        row[-1].set(xticks=[], yticks=[], title=f"mask prob., F1 {f1:.2f}")
        row[0].set_ylabel(name)
    plt.close(fig)  # shown where the notebook shows it (`viz.show`), not at the end of its cell
    return fig, numbers


def cost_chart(costs: pd.DataFrame) -> Figure:
    """Parameters (millions) and computation (GFLOPs) per part of `summarize`'s table (indexed
    by part, with a "total" row), as bars side by side."""
    parts = costs.drop(index="total", errors="ignore")
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(figstyle.MAX_WIDTH_IN, 0.4 * len(parts) + 1.5))
    for ax, col, label in zip(axes, ("params_M", "GFLOPs"),
                              ("parameters (millions)", "computation per image (GFLOPs)"), strict=True):
        ax.barh(list(parts.index), parts[col], color=figstyle.PALETTE[0])
        for y, v in enumerate(parts[col]):
            ax.text(v, y, f" {v:.1f}" if v >= 0.05 else f" {v:.3f}" if v >= 0.001 else f" {v:.1e}",
                    va="center", fontsize=10)
        ax.set(xlabel=label)
        ax.margins(x=0.18)
    axes[0].invert_yaxis()
    return fig


def module_io(model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
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
