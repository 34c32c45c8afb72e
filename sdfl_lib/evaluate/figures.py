"""Figures of an evaluation, written as files: ROC curves, confusion matrices, score histograms,
per-type bars, galleries of the best and worst localizations, Table III side by side, robustness
curves. The statistical ones are seaborn's; the galleries are this project's overlays. Drawn
without pyplot, so that importing this module leaves a notebook's own figures alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from sdfl_lib.data import load_image, load_mask
from sdfl_lib.errors import OutputError
from sdfl_lib.evaluate.robustness import LEVEL_NAMES
from sdfl_lib.evaluate.subsets import subset_masks
from sdfl_lib.metrics import binned_roc, f1_from_counts
from sdfl_lib.viz.overlay import heat_overlay

CURVE_KEYS = ("paper/pixel_f1", "paper/auc", "standard/pixel_f1@best", "standard/image_auc")


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs):
    """A figure and its axes drawn without pyplot: importing or drawing here never changes the
    backend of a notebook (its inline figures) or opens a window."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=80)
    except OSError as err:
        raise OutputError(path, err) from err
    return path


def _grid(n: int, size: float = 3.2):
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = _subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def roc_figure(table: pd.DataFrame, selections: dict, path: Path) -> Path:
    """Image-level ROC (left) and pixel ROC over tampered images (right), a curve per subset."""
    fig, (a, b) = _subplots(1, 2, figsize=(11, 4.8))
    for name, sel in selections.items():
        t = table[sel]
        if t["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(t["label"], t["score"])
            a.plot(fpr, tpr, label=name)
        tp = t[(t["label"] == 1) & t["pixel"]]
        if len(tp):
            neg, pos = (
                np.sum(np.stack(tp["hist_neg"].to_list()), 0),
                np.sum(np.stack(tp["hist_pos"].to_list()), 0),
            )
            if neg.sum() and pos.sum():
                b.plot(*binned_roc(neg, pos), label=name)
    for ax, title in ((a, "image-level ROC"), (b, "pixel ROC (tampered images)")):
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)


def confusion_figure(table: pd.DataFrame, selections: dict, threshold: float, path: Path) -> Path:
    """Image-level confusion matrix per subset at the threshold."""
    fig, axes = _grid(len(selections))
    names = ["authentic", "tampered"]
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        pred = (t["score"] >= threshold).astype(int)
        cm = pd.crosstab(t["label"], pred).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
        sns.heatmap(cm.set_axis(names, axis=0).set_axis(names, axis=1), annot=True, fmt="d",
                    cmap="Blues", cbar=False, square=True, ax=ax)
        ax.set(xlabel="predicted", ylabel="true", title=f"{name} (t={threshold:g})")
    return _save(fig, path)


def histogram_figure(table: pd.DataFrame, selections: dict, threshold: float, path: Path) -> Path:
    """Image scores per class, per subset."""
    fig, axes = _grid(len(selections))
    palette = {"authentic": "tab:blue", "tampered": "tab:red"}
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        counts = t["label"].value_counts()
        names = {k: f"{v} ({counts.get(k, 0)})" for k, v in ((0, "authentic"), (1, "tampered"))}
        cls = t["label"].map(names)
        frame = pd.DataFrame({"image score": t["score"].to_numpy(), "class": cls.to_numpy()})
        sns.histplot(frame, x="image score", hue="class", bins=np.linspace(0, 1, 26),
                     palette={k: palette[k.split(" ")[0]] for k in frame["class"].unique()},
                     ax=ax)
        ax.axvline(threshold, color="k", ls=":")
        ax.set(ylabel="images", title=name, xlim=(0, 1))
    return _save(fig, path)


PER_TYPE_KEYS = {
    "standard/pixel_f1@0.5": "standard pixel F1@0.5",
    "standard/pixel_f1@best": "standard pixel F1 (best t)",
    "paper/pixel_f1": "paper pixel F1",
}


def per_type_figure(metrics: dict, path: Path) -> Path | None:
    """Bars of the pixel F1s per source (the kinds of forgery), both protocols."""
    rows = [
        {"source": name.split("/", 1)[1], "metric": label, "value": m[key]}
        for name, m in metrics["subsets"].items()
        if name.startswith("source/") and m.get("count/tampered")
        for key, label in PER_TYPE_KEYS.items()
        if m.get(key) is not None
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    fig, ax = _subplots(figsize=(7, 0.5 * frame["source"].nunique() + 1.8))
    sns.barplot(frame, y="source", x="value", hue="metric", ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set(xlim=(0, 1.1), xlabel="pixel F1", ylabel="", title="localization per type of forgery")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _thumb(array: np.ndarray, size: tuple[int, int] | None = None, side: int = 192) -> np.ndarray:
    """A small copy for a gallery: longest side `side`, or exactly `size` = (H, W) (nearest)."""
    if size is None:
        scale = side / max(array.shape[:2])
        size = (max(1, round(array.shape[0] * scale)), max(1, round(array.shape[1] * scale)))
        return cv2.resize(array, size[::-1], interpolation=cv2.INTER_AREA)
    return cv2.resize(array, size[::-1], interpolation=cv2.INTER_NEAREST)


def gallery_figure(table: pd.DataFrame, out: Path, worst: bool, n: int = 6) -> Path | None:
    """Tampered images with the best (or worst) pixel F1: image, truth overlay, prediction overlay."""

    t = table[(table["label"] == 1) & table["pixel"] & (table["map"] != "")].copy()
    if not len(t):
        return None
    t["f1"] = f1_from_counts(t["tp"], t["fp"], t["fn"])
    t = t.sort_values("f1", ascending=worst, kind="stable").head(n)
    fig, axes = _subplots(len(t), 3, figsize=(9, 3 * len(t)), squeeze=False)
    for row, r in zip(axes, t.itertuples(), strict=True):
        image = _thumb(load_image(r.image))
        mask = _thumb(load_mask(r.mask, size=None), image.shape[:2])
        prob = _thumb(cv2.imread(str(out / "maps" / r.map), cv2.IMREAD_GRAYSCALE), image.shape[:2])
        row[0].imshow(image)
        row[0].set_title(Path(r.image).name, fontsize=8)
        row[1].imshow(heat_overlay(image, mask.astype(np.float32)))
        row[1].set_title("ground truth", fontsize=8)
        row[2].imshow(heat_overlay(image, prob.astype(np.float32) / 255))
        row[2].set_title(f"prediction, F1 {r.f1:.2f}", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(("worst" if worst else "best") + " localizations (pixel F1 at the threshold)")
    return _save(fig, out / "figures" / f"gallery_{'worst' if worst else 'best'}.png")


def table3_figure(rows: list[dict], path: Path) -> Path | None:
    """Bars of this run's paper-protocol numbers beside the paper's, per matching subset."""
    if not rows:
        return None
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    fig, axes = _grid(len(subsets), size=4.5)
    keys = ("paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc")
    for ax, subset in zip(axes, subsets, strict=False):
        group = [r for r in rows if r["subset"] == subset]
        width = 0.8 / len(group)
        for i, r in enumerate(group):
            vals = [np.nan if r[k] is None else r[k] for k in keys]
            ax.bar(np.arange(4) + i * width, vals, width, label=f"{r['who']} {r['trained_on']}")
        ax.set(xticks=np.arange(4) + 0.4 - width / 2, ylim=(0, 1), title=f"{subset} vs Table III")
        ax.set_xticklabels([k.split("/")[1] for k in keys], fontsize=7)
        ax.legend(fontsize=5)
    return _save(fig, path)


def robustness_figures(metrics: dict, out: Path) -> list[Path]:
    """A curve per perturbation kind: key metrics of the subset "both" against the level, their
    95 % intervals as bands where there are intervals, the clean value dashed."""
    clean = metrics["subsets"].get("both", {})
    rows = []
    for r in metrics.get("robustness", {}).values():
        both = r["subsets"].get("both", {})
        for key in CURVE_KEYS:
            if key in clean and (value := both.get(key)) is not None:
                ci = (both.get("intervals") or {}).get(key) or {}
                rows.append({"kind": r["kind"], "level": r["level"], "metric": key, "value": value,
                             "low": ci.get("low", np.nan), "high": ci.get("high", np.nan)})
    paths = []
    frame = pd.DataFrame(rows, columns=["kind", "level", "metric", "value", "low", "high"])
    palette = dict(zip(CURVE_KEYS, sns.color_palette(n_colors=len(CURVE_KEYS)), strict=True))
    for kind, group in frame.groupby("kind", sort=False):
        fig, ax = _subplots(figsize=(6, 4))
        sns.lineplot(group, x="level", y="value", hue="metric", marker="o", palette=palette,
                     ax=ax)
        for key, g in group.sort_values("level").groupby("metric", sort=False):
            ax.fill_between(g["level"], g["low"].astype(float), g["high"].astype(float),
                            color=palette[key], alpha=0.15, lw=0)
            if clean.get(key) is not None:
                ax.axhline(clean[key], ls="--", lw=0.8, color=palette[key])
        ax.set(
            xlabel=LEVEL_NAMES[kind],
            ylabel="metric",
            ylim=(0, 1),
            title=f"robustness to {kind} (bands: 95 % intervals; dashed: unperturbed)",
        )
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / "figures" / f"robustness_{kind}.png"))
    return paths


def write_figures(out: Path, table: pd.DataFrame, metrics: dict, config: dict) -> list[Path]:
    """All figures under out/figures; returns their paths."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    selections = subset_masks(table, list(metrics["subsets"]), config["deep_sources"])
    threshold = metrics["threshold"]
    paths = [
        roc_figure(table, selections, fig_dir / "roc.png"),
        confusion_figure(table, selections, threshold, fig_dir / "confusion.png"),
        histogram_figure(table, selections, threshold, fig_dir / "score_histograms.png"),
        per_type_figure(metrics, fig_dir / "per_type.png"),
        gallery_figure(table, out, worst=False),
        gallery_figure(table, out, worst=True),
        table3_figure(metrics["table3"], fig_dir / "table3.png"),
        *robustness_figures(metrics, out),
    ]
    return [p for p in paths if p is not None]
