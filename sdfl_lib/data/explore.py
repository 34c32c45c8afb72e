"""Figures for exploring a manifest: counts per source and label, image sizes, mask areas, examples.

Each function takes a manifest (path or DataFrame) and returns a matplotlib Figure (the charts
drawn with seaborn); `save_figures` writes them all as PNG files. Sizes are read from file headers (no decoding).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

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
    """Bars of images per source and label, and of the two labels overall."""
    table = counts_table(manifest)
    long = table.rename_axis(index="source", columns="label").stack().rename("images").reset_index()
    palette = {"authentic": "tab:blue", "tampered": "tab:red"}
    fig, (bar, total) = plt.subplots(1, 2, figsize=(11, 0.35 * len(table) + 2.5),
                                     gridspec_kw={"width_ratios": [2, 1]})
    sns.barplot(long, y="source", x="images", hue="label", palette=palette, ax=bar)
    bar.set_title("images per source and label")
    sums = long.groupby("label", as_index=False)["images"].sum()
    sns.barplot(sums, x="label", y="images", hue="label", palette=palette, legend=False, ax=total)
    for ax in (bar, total):
        for bars in ax.containers:
            ax.bar_label(bars, fontsize=7, padding=2)
    share = sums.set_index("label")["images"] / max(1, sums["images"].sum())
    total.set_title(" / ".join(f"{k} {v:.0%}" for k, v in share.items()))
    total.set_xlabel("")
    fig.tight_layout()
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
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, column, name in zip(
        axes, ("height", "width", "megapixels"), ("height (px)", "width (px)", "megapixels"),
        strict=True,
    ):
        sns.histplot(sizes, x=column, bins=bins, color="tab:gray", ax=ax)
        ax.set(xlabel=name, ylabel="images")
    fig.suptitle(f"image sizes ({len(sizes)} images)")
    fig.tight_layout()
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
    areas["source"] = areas["source"].replace("", "(none)")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(areas):
        sns.histplot(areas, x="area", hue="source", bins=np.linspace(0, 1, bins + 1),
                     multiple="stack", ax=ax)
    ax.set(xlabel="manipulated fraction of the image", ylabel="images", xlim=(0, 1),
           title=f"mask areas ({len(areas)} masks)")
    fig.tight_layout()
    return fig


def plot_examples(
    manifest: str | os.PathLike | pd.DataFrame, n: int = 8, seed: int = 0, columns: int = 4
) -> Figure:
    """A grid of random images; tampered ones with their mask's outline and tint in red."""
    df = _frame(manifest)
    picked = df.sample(n=min(n, len(df)), random_state=seed) if len(df) else df
    rows = max(1, -(-len(picked) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, picked.itertuples(), strict=False):
        try:
            image = load_image(r.image)
        except ImageReadError as err:
            ax.set_title(f"unreadable: {err.cause}"[:40], fontsize=7)
            continue
        if r.mask:
            try:
                mask = load_mask(r.mask, size=image.shape[:2])
                tint = image.astype(np.float32)
                tint[mask > 0] = 0.5 * tint[mask > 0] + 0.5 * np.array([255, 0, 0])
                image = tint.astype(np.uint8)
                ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
            except ImageReadError:
                pass
        ax.imshow(image)
        kind = LABEL_NAMES[int(r.label)] + (" (no mask)" if r.label == 1 and not r.mask else "")
        ax.set_title(f"{Path(r.image).name[:28]}\n{r.source} · {kind}", fontsize=7)
    fig.tight_layout()
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
    figures = {
        "counts": plot_counts(df),
        "image_sizes": plot_image_sizes(df, skipped=skipped),
        "mask_areas": plot_mask_areas(df, skipped=skipped),
        "examples": plot_examples(df, n=examples, seed=seed),
    }
    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    counts_table(df).to_csv(out_dir / "counts.csv")
    listed = out_dir / "unreadable.csv"
    if skipped:
        pd.DataFrame(skipped, columns=["path", "error"]).to_csv(listed, index=False)
    else:
        listed.unlink(missing_ok=True)
    return paths
