"""Figures of an evaluation, written as files in the project's figure style (`sdfl_lib.figstyle`):
pixel F1 per type of forgery, a typical localization of each type and the best and worst ones
(outlines over the untouched images), ROC curves, score histograms and confusion matrices of the
subsets that hold both classes, robustness curves with their 95 % intervals as bands.
`FIGURE_ORDER` is the order a report shows them in. Drawn without pyplot, so that drawing here
leaves a notebook's own figures alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.patheffects as pe
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.metrics import roc_curve

from sdfl_lib import figstyle
from sdfl_lib.data import load_image, load_mask
from sdfl_lib.evaluate.robustness import LEVEL_NAMES
from sdfl_lib.evaluate.subsets import subset_masks
from sdfl_lib.metrics import binned_roc, f1_from_counts

CURVE_KEYS = ("standard/image_auc", "standard/pixel_f1@0.5", "standard/pixel_f1@best", "paper/pixel_f1")
# The story's order: how well each type is localized, what that looks like, then the image-level
# decision, then robustness. A report shows the figures in this order.
FIGURE_ORDER = ("per_type", "typical", "gallery", "roc", "score_histograms", "confusion", "robustness")
_OUTLINE = [pe.withStroke(linewidth=3.2, foreground="black")]


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs):
    """A figure and its axes drawn without pyplot: drawing here never changes the backend of a
    notebook (its inline figures) or opens a window."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _grid(n: int, cols: int = 3, size: float = 3.1, height: float | None = None):
    cols = min(n, cols)
    rows = -(-n // cols)
    fig, axes = _subplots(rows, cols, figsize=(size * cols, (height or size) * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def subset_label(name: str) -> str:
    """A subset's name as a legend shows it: "source/synth-face" -> "face"."""
    return name.removeprefix("source/").removeprefix("synth-")


def _distinct(selections: dict) -> dict:
    """The subsets without repeats: one selecting the same images as an earlier one is left out
    (e.g. "deepfakes" when its only source is one type of forgery)."""
    out: dict = {}
    for name, sel in selections.items():
        if not any(np.array_equal(sel, kept) for kept in out.values()):
            out[name] = sel
    return out


def _two_class(table: pd.DataFrame, selections: dict) -> dict:
    """The subsets holding authentic and tampered images (image-level figures need both)."""
    return {k: v for k, v in selections.items() if table.loc[v, "label"].nunique() == 2}


def roc_figure(table: pd.DataFrame, selections: dict, path: Path) -> Path | None:
    """Image-level ROC of the subsets with both classes (left), pixel ROC over the tampered images
    of every subset (right); one colour per subset, the legend under both."""
    colors = dict(zip(selections, sns.color_palette("colorblind", len(selections)), strict=True))
    fig, (a, b) = _subplots(1, 2, figsize=(figstyle.MAX_WIDTH_IN, 4.9))
    for name, sel in selections.items():
        t = table[sel]
        if t["label"].nunique() == 2:
            fpr, tpr, _ = roc_curve(t["label"], t["score"])
            a.plot(fpr, tpr, color=colors[name], label=subset_label(name))
        tp = t[(t["label"] == 1) & t["pixel"]]
        if len(tp):
            neg = np.sum(np.stack(tp["hist_neg"].to_list()), 0)
            pos = np.sum(np.stack(tp["hist_pos"].to_list()), 0)
            if neg.sum() and pos.sum():
                b.plot(*binned_roc(neg, pos), color=colors[name], label=subset_label(name))
    if not a.lines and not b.lines:
        return None
    for ax, title, neg_name, pos_name in ((a, "image level", "authentic images", "tampered images"),
                                          (b, "pixel level, in tampered images", "untouched pixels",
                                           "tampered pixels")):
        ax.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1, label="_chance")
        ax.set(xlabel=f"false positive rate (share of {neg_name})",
               ylabel=f"true positive rate (share of {pos_name})", title=title, aspect="equal",
               xlim=(0, 1), ylim=(0, 1))
    figstyle.legend_below(fig)
    return figstyle.save(fig, path)


def confusion_figure(table: pd.DataFrame, selections: dict, threshold: float, path: Path) -> Path | None:
    """Image-level confusion matrix at the threshold, for the subsets holding both classes."""
    selections = _two_class(table, selections)
    if not selections:
        return None
    fig, axes = _grid(len(selections), size=3.1)
    names = ["authentic", "tampered"]
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        pred = (t["score"] >= threshold).astype(int)
        cm = pd.crosstab(t["label"], pred).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
        sns.heatmap(cm.set_axis(names, axis=0).set_axis(names, axis=1), annot=True, fmt="d",
                    cmap="Blues", cbar=False, square=True, ax=ax, annot_kws={"fontsize": 12})
        ax.set(xlabel=f"predicted (score ≥ {threshold:g})", ylabel="true class", title=subset_label(name))
    return figstyle.save(fig, path)


def histogram_figure(table: pd.DataFrame, selections: dict, threshold: float, path: Path) -> Path | None:
    """Image scores of authentic and tampered images, for the subsets holding both classes."""
    selections = _two_class(table, selections)
    if not selections:
        return None
    fig, axes = _grid(len(selections), size=3.1, height=2.9)
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        frame = pd.DataFrame({"score": t["score"].to_numpy(),
                              "class": t["label"].map({0: "authentic", 1: "tampered"}).to_numpy()})
        sns.histplot(frame, x="score", hue="class", bins=np.linspace(0, 1, 21), element="step",
                     palette=figstyle.CLASS_COLORS, hue_order=list(figstyle.CLASS_COLORS),
                     legend=False, ax=ax)
        ax.axvline(threshold, color="k", ls=":")
        ax.set(xlabel="image score (probability)", ylabel="images", title=subset_label(name), xlim=(0, 1))
    handles = [Patch(facecolor=c, alpha=0.5, edgecolor=c, label=k) for k, c in figstyle.CLASS_COLORS.items()]
    handles.append(Line2D([], [], color="k", ls=":", label=f"threshold {threshold:g}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    return figstyle.save(fig, path)


PER_TYPE_KEYS = ("standard/pixel_f1@0.5", "standard/pixel_f1@best", "paper/pixel_f1")


def per_type_figure(metrics: dict, path: Path) -> Path | None:
    """Bars of the pixel F1s per source (the kinds of forgery), both protocols."""
    rows = [
        {"type of forgery": subset_label(name), "metric": figstyle.metric_label(key), "value": m[key]}
        for name, m in metrics["subsets"].items()
        if name.startswith("source/") and m.get("count/tampered")
        for key in PER_TYPE_KEYS
        if m.get(key) is not None
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    fig, ax = _subplots(figsize=(figstyle.MAX_WIDTH_IN, 0.6 * frame["type of forgery"].nunique() + 1.9))
    sns.barplot(frame, y="type of forgery", x="value", hue="metric", ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=10, padding=2)
    ax.set(xlim=(0, 1.08), xlabel="pixel F1 (0 to 1, higher is better)", ylabel="")
    figstyle.legend_below(fig, ncol=1)
    return figstyle.save(fig, path)


def _thumb(array: np.ndarray, size: tuple[int, int] | None = None, side: int = 192) -> np.ndarray:
    """A small copy for a gallery: longest side `side`, or exactly `size` = (H, W) (nearest)."""
    if size is None:
        scale = side / max(array.shape[:2])
        size = (max(1, round(array.shape[0] * scale)), max(1, round(array.shape[1] * scale)))
        return cv2.resize(array, size[::-1], interpolation=cv2.INTER_AREA)
    return cv2.resize(array, size[::-1], interpolation=cv2.INTER_NEAREST)


def _scored(table: pd.DataFrame) -> pd.DataFrame:
    """Tampered images with a mask and a saved map, with their pixel F1 at the threshold."""
    t = table[(table["label"] == 1) & table["pixel"] & (table["map"] != "")].copy()
    t["f1"] = f1_from_counts(t["tp"], t["fp"], t["fn"])
    return t


def _localization(axes, r, out: Path, threshold: float) -> None:
    """One example on three axes: the untouched image, its ground-truth outline, the predicted
    region's outline (at the threshold) with the truth's dashed."""
    image = _thumb(load_image(r.image))
    mask = _thumb(load_mask(r.mask, size=None), image.shape[:2]).astype(np.float32)
    prob = _thumb(cv2.imread(str(out / "maps" / r.map), cv2.IMREAD_GRAYSCALE), image.shape[:2]) / 255
    for ax in axes:
        ax.imshow(image)
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
    outlines = ([(mask, figstyle.TRUTH_COLOR, "-")],
                [(prob >= threshold, figstyle.PRED_COLOR, "-"), (mask, figstyle.TRUTH_COLOR, "--")])
    for ax, lines in zip(axes[1:], outlines, strict=True):
        for grid, color, style in lines:
            if np.any(grid):
                cs = ax.contour(np.asarray(grid, np.float32), levels=[0.5], colors=[color],
                                linewidths=1.8, linestyles=style)
                cs.set_path_effects(_OUTLINE)
    axes[0].set_xlabel(str(r.source).removeprefix("synth-"))
    axes[2].set_xlabel(f"pixel F1 {r.f1:.2f}")


def _outline_legend(fig, threshold: float) -> None:
    handles = [Line2D([], [], color=figstyle.TRUTH_COLOR, lw=2, label="ground truth outline"),
               Line2D([], [], color=figstyle.PRED_COLOR, lw=2, label=f"predicted region (probability ≥ {threshold:g})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)


def gallery_figure(table: pd.DataFrame, out: Path, threshold: float, n: int = 3) -> Path | None:
    """The `n` best and `n` worst localized tampered images side by side: image, ground truth,
    prediction (outlines over the untouched image)."""
    t = _scored(table).sort_values("f1", kind="stable")
    if not len(t):
        return None
    n = min(n, -(-len(t) // 2))
    fig = Figure(figsize=(figstyle.MAX_WIDTH_IN, 1.75 * n + 1.3))
    halves = fig.subfigures(1, 2, wspace=0.04)
    for sub, (title, rows) in zip(halves, (("best pixel F1", t.iloc[::-1].head(n)),
                                           ("worst pixel F1", t.head(n))), strict=True):
        sub.suptitle(title)
        axes = sub.subplots(n, 3, squeeze=False)
        for row, r in zip(axes, rows.itertuples(), strict=False):
            _localization(row, r, out, threshold)
        for ax, name in zip(axes[0], ("image", "ground truth", "prediction"), strict=True):
            ax.set_title(name)
    _outline_legend(fig, threshold)
    return figstyle.save(fig, out / "figures" / "gallery.png")


def typical_figure(table: pd.DataFrame, out: Path, threshold: float, n: int = 4) -> Path | None:
    """Per type of forgery (source) the image of median pixel F1: image, ground truth and
    prediction as rows, one column per type (at most `n` types)."""
    t = _scored(table)
    if not len(t):
        return None
    picks = list(pd.DataFrame([g.sort_values("f1", kind="stable").iloc[(len(g) - 1) // 2]
                               for _, g in t.groupby("source", sort=True)][:n]).itertuples())
    fig, axes = _subplots(3, len(picks), figsize=(min(figstyle.MAX_WIDTH_IN, 2.4 * len(picks) + 0.8), 7.9),
                             squeeze=False)
    for col, r in zip(axes.T, picks, strict=True):
        _localization(col, r, out, threshold)
        col[0].set_title(str(r.source).removeprefix("synth-"))
        col[0].set_xlabel("")
    for ax, name in zip(axes[:, 0], ("image", "ground truth", "prediction"), strict=True):
        ax.set_ylabel(name)
    _outline_legend(fig, threshold)
    return figstyle.save(fig, out / "figures" / "typical.png")


def robustness_figure(metrics: dict, out: Path) -> Path | None:
    """One panel per perturbation kind: key metrics of the subset "both" against the level, their
    95 % intervals as bands where there are intervals, the unperturbed value of each as a dashed
    line of its colour."""
    clean = metrics["subsets"].get("both", {})
    rows = []
    for r in metrics.get("robustness", {}).values():
        both = r["subsets"].get("both", {})
        for key in CURVE_KEYS:
            if key in clean and (value := both.get(key)) is not None:
                ci = (both.get("intervals") or {}).get(key) or {}
                rows.append({"kind": r["kind"], "level": r["level"], "metric": key, "value": value,
                             "low": ci.get("low", np.nan), "high": ci.get("high", np.nan)})
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    kinds = list(dict.fromkeys(frame["kind"]))
    colors = dict(zip(CURVE_KEYS, figstyle.PALETTE, strict=False))
    fig, axes = _grid(len(kinds), cols=2, size=figstyle.MAX_WIDTH_IN / 2, height=3.3)
    for ax, kind in zip(axes, kinds, strict=False):
        group = frame[frame["kind"] == kind]
        for (key, g), marker in zip(group.sort_values("level").groupby("metric", sort=False), "osD^", strict=False):
            ax.plot(g["level"], g["value"], marker=marker, color=colors[key], label=figstyle.metric_label(key))
            ax.fill_between(g["level"], g["low"].astype(float), g["high"].astype(float), color=colors[key],
                            alpha=0.15, lw=0)
            if clean.get(key) is not None:
                ax.axhline(clean[key], ls="--", lw=1.2, color=colors[key])
        ax.set(xlabel=LEVEL_NAMES.get(kind, kind), ylabel="metric value (0 to 1)", ylim=(0, 1.02), title=kind)
    axes[0].plot([], [], ls="--", color="0.3", label="unperturbed value (dashed, same colour)")
    if frame["low"].notna().any():
        axes[0].fill_between([], [], [], color="0.3", alpha=0.15, lw=0, label="95 % interval (band)")
    figstyle.legend_below(fig, ncol=2)
    return figstyle.save(fig, out / "figures" / "robustness.png")


def write_figures(out: Path, table: pd.DataFrame, metrics: dict, config: dict) -> list[Path]:
    """All figures under out/figures, in `FIGURE_ORDER`; returns their paths."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    selections = _distinct(subset_masks(table, list(metrics["subsets"]), config["deep_sources"]))
    threshold = metrics["threshold"]
    with figstyle.style():
        paths = [
            per_type_figure(metrics, fig_dir / "per_type.png"),
            typical_figure(table, out, threshold),
            gallery_figure(table, out, threshold),
            roc_figure(table, selections, fig_dir / "roc.png"),
            histogram_figure(table, selections, threshold, fig_dir / "score_histograms.png"),
            confusion_figure(table, selections, threshold, fig_dir / "confusion.png"),
            robustness_figure(metrics, out),
        ]
    return [p for p in paths if p is not None]
