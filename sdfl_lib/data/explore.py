"""Figures for exploring a manifest: counts per source and label, image sizes, mask areas, examples.

Each function takes a manifest (path or DataFrame) and returns a matplotlib Figure (the charts
drawn with seaborn); `save_figures` writes them all as PNG files. Sizes are read from file headers (no decoding).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sdfl_lib import figstyle
from sdfl_lib.data.io import ImageReadError, image_hw, load_image, load_mask
from sdfl_lib.data.manifest import read_manifest

LABEL_NAMES = {0: "authentic", 1: "tampered"}


def _frame(manifest: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    return manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)


def counts_table(manifest: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Rows per source (index) and label (columns `authentic`, `tampered`)."""
    df = _frame(manifest)
    table = pd.crosstab(df["source"].replace("", "(none)"), df["label"].map(LABEL_NAMES))
    return table.reindex(columns=list(LABEL_NAMES.values()), fill_value=0)


def plot_counts(manifest: str | os.PathLike | pd.DataFrame) -> Figure:
    """Stacked bars of images per source, authentic and tampered; the labels' shares in the title."""
    table = counts_table(manifest)
    table.index = [str(i).removeprefix("synth-") for i in table.index]
    fig, ax = plt.subplots(figsize=(figstyle.MAX_WIDTH_IN, 0.45 * len(table) + 1.6))
    left = np.zeros(len(table))
    for label in table.columns:
        bars = ax.barh(table.index, table[label], left=left, color=figstyle.CLASS_COLORS[label], label=label)
        ax.bar_label(bars, labels=[str(v) if v else "" for v in table[label]], label_type="center",
                     color="white")
        left += table[label].to_numpy()
    share = table.sum() / max(1, int(table.to_numpy().sum()))
    ax.set(xlabel="images", ylabel="", title=" / ".join(f"{k} {v:.0%}" for k, v in share.items()))
    ax.invert_yaxis()
    figstyle.legend_right(ax)
    return fig


def image_sizes(
    manifest: str | os.PathLike | pd.DataFrame, skipped: list[dict] | None = None
) -> pd.DataFrame:
    """Height and width of every readable image (from headers), with label and source; the
    unreadable ones are appended to `skipped` as {path, error}."""
    df = _frame(manifest)
    records = []
    for r in df.itertuples():
        try:
            h, w = image_hw(r.image)
        except (ImageReadError, FileNotFoundError) as err:
            if skipped is not None:
                skipped.append({"path": r.image, "error": str(err)})
            continue
        records.append({"height": h, "width": w, "label": r.label, "source": r.source})
    return pd.DataFrame(records, columns=["height", "width", "label", "source"])


def plot_image_sizes(
    manifest: str | os.PathLike | pd.DataFrame, bins: int = 30, skipped: list[dict] | None = None
) -> Figure:
    """Histograms of image heights, widths and megapixels (unreadable images into `skipped`)."""
    sizes = image_sizes(manifest, skipped)
    sizes["megapixels"] = sizes["height"] * sizes["width"] / 1e6
    fig, axes = plt.subplots(1, 3, figsize=(figstyle.MAX_WIDTH_IN, 3.2), sharey=True)
    for ax, column, name in zip(
        axes, ("height", "width", "megapixels"), ("height (px)", "width (px)", "size (megapixels)"),
        strict=True,
    ):
        sns.histplot(sizes, x=column, bins=bins, color=figstyle.PALETTE[7], ax=ax)
        ax.set(xlabel=name, ylabel="images")
    return fig


def mask_areas(
    manifest: str | os.PathLike | pd.DataFrame, skipped: list[dict] | None = None
) -> pd.DataFrame:
    """Fraction of manipulated pixels of every tampered image with a mask; the unreadable masks
    are appended to `skipped` as {path, error}."""
    df = _frame(manifest)
    records = []
    for r in df[(df["label"] == 1) & (df["mask"] != "")].itertuples():
        try:
            mask = load_mask(r.mask)
        except ImageReadError as err:
            if skipped is not None:
                skipped.append({"path": r.mask, "error": str(err)})
            continue
        records.append({"image": r.image, "source": r.source, "area": float(mask.mean())})
    return pd.DataFrame(records, columns=["image", "source", "area"])


def plot_mask_areas(
    manifest: str | os.PathLike | pd.DataFrame, bins: int = 20, skipped: list[dict] | None = None
) -> Figure:
    """Histogram of manipulated-area fractions, one colour per source (unreadable into `skipped`)."""
    areas = mask_areas(manifest, skipped)
    areas["source"] = areas["source"].replace("", "(none)").str.removeprefix("synth-")
    fig, ax = plt.subplots(figsize=(figstyle.MAX_WIDTH_IN, 3.4))
    top = min(1.0, float(areas["area"].max()) * 1.05) if len(areas) else 1.0
    if len(areas):
        sns.histplot(areas, x="area", hue="source", bins=np.linspace(0, top, bins + 1),
                     multiple="stack", ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel="tampered share of the image", ylabel="tampered images", xlim=(0, top))
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    return fig


def plot_examples(
    manifest: str | os.PathLike | pd.DataFrame, n: int = 8, seed: int = 0, columns: int = 4
) -> Figure:
    """A grid of random images, untouched; a tampered one's mask drawn as an outline on it."""
    df = _frame(manifest)
    picked = df.sample(n=min(n, len(df)), random_state=seed) if len(df) else df
    rows = max(1, -(-len(picked) // columns))
    side = figstyle.MAX_WIDTH_IN / columns
    fig, axes = plt.subplots(rows, columns, figsize=(figstyle.MAX_WIDTH_IN, (side + 0.35) * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, picked.itertuples(), strict=False):
        try:
            image = load_image(r.image)
        except ImageReadError as err:
            ax.set_title(f"unreadable: {err.cause}"[:40])
            continue
        ax.imshow(image)
        if r.mask:
            try:
                mask = load_mask(r.mask, size=image.shape[:2])
                lines = ax.contour(mask, levels=[0.5], colors=[figstyle.TRUTH_COLOR], linewidths=1.8)
                lines.set_path_effects([pe.withStroke(linewidth=3.2, foreground="black")])
            except ImageReadError:
                pass
        kind = LABEL_NAMES[int(r.label)] + (" (no mask)" if r.label == 1 and not r.mask else "")
        source = str(r.source).removeprefix("synth-")
        ax.set_title(kind if source == kind else f"{source} · {kind}")
    return fig


def save_figures(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    examples: int = 8,
    seed: int = 0,
    skipped: list[dict] | None = None,
) -> list[Path]:
    """Writes counts.png, image_sizes.png, mask_areas.png and examples.png; returns the paths.
    Files left out of the figures are appended to `skipped` and listed in unreadable.csv."""
    df = read_manifest(manifest)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = [] if skipped is None else skipped
    with figstyle.style():
        figures = {
            "counts": plot_counts(df),
            "image_sizes": plot_image_sizes(df, skipped=skipped),
            "mask_areas": plot_mask_areas(df, skipped=skipped),
            "examples": plot_examples(df, n=examples, seed=seed),
        }
        paths = [figstyle.save(fig, out_dir / f"{name}.png") for name, fig in figures.items()]
    counts_table(df).to_csv(out_dir / "counts.csv")
    listed = out_dir / "unreadable.csv"
    if skipped:
        pd.DataFrame(skipped, columns=["path", "error"]).to_csv(listed, index=False)
    else:
        listed.unlink(missing_ok=True)
    return paths
