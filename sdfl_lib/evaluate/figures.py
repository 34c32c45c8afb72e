"""Figures of an evaluation (matplotlib, Agg): ROC curves, confusion matrices, score histograms,
galleries of the best and worst localizations, Table III side by side, robustness curves."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from sdfl_lib.evaluate.robustness import LEVEL_NAMES  # noqa: E402
from sdfl_lib.evaluate.subsets import subset_masks  # noqa: E402
from sdfl_lib.metrics import binned_roc, f1_from_counts  # noqa: E402
from sdfl_lib.predict import heat_overlay  # noqa: E402

CURVE_KEYS = ("paper/pixel_f1", "paper/auc", "standard/pixel_f1@best", "standard/image_auc")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _grid(n: int, size: float = 3.2):
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def roc_figure(table: pd.DataFrame, selections: dict, path: Path) -> Path:
    """Image-level ROC (left) and pixel ROC over tampered images (right), a curve per subset."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
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
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        pred = (t["score"] >= threshold).astype(int)
        cm = np.array([[((t["label"] == a) & (pred == p)).sum() for p in (0, 1)] for a in (0, 1)])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="k")
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["authentic", "tampered"],
            yticklabels=["authentic", "tampered"],
            xlabel="predicted",
            ylabel="true",
            title=f"{name} (t={threshold:g})",
        )
    return _save(fig, path)


def histogram_figure(table: pd.DataFrame, selections: dict, threshold: float, path: Path) -> Path:
    """Image scores per class, per subset."""
    fig, axes = _grid(len(selections))
    bins = np.linspace(0, 1, 26)
    for ax, (name, sel) in zip(axes, selections.items(), strict=False):
        t = table[sel]
        for label, colour, text in ((0, "tab:blue", "authentic"), (1, "tab:red", "tampered")):
            s = t.loc[t["label"] == label, "score"]
            if len(s):
                ax.hist(s, bins=bins, alpha=0.6, color=colour, label=f"{text} ({len(s)})")
        ax.axvline(threshold, color="k", ls=":")
        ax.set(xlabel="image score", ylabel="images", title=name)
        ax.legend(fontsize=7)
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
    from sdfl_lib.data import load_image, load_mask

    t = table[(table["label"] == 1) & table["pixel"] & (table["map"] != "")].copy()
    if not len(t):
        return None
    t["f1"] = f1_from_counts(t["tp"], t["fp"], t["fn"])
    t = t.sort_values("f1", ascending=worst, kind="stable").head(n)
    fig, axes = plt.subplots(len(t), 3, figsize=(9, 3 * len(t)), squeeze=False)
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
    """A curve per perturbation kind: key metrics of the subset "both" against the level, the
    clean value dashed."""
    by_kind: dict[str, list] = {}
    for r in metrics.get("robustness", {}).values():
        by_kind.setdefault(r["kind"], []).append(r)
    clean = metrics["subsets"].get("both", {})
    paths = []
    for kind, runs in by_kind.items():
        runs.sort(key=lambda r: r["level"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, key in enumerate(k for k in CURVE_KEYS if k in clean):
            vals = [r["subsets"].get("both", {}).get(key) for r in runs]
            line = ax.plot(
                [r["level"] for r in runs],
                [np.nan if v is None else v for v in vals],
                "o-",
                label=key,
                color=f"C{i}",
            )
            if clean.get(key) is not None:
                ax.axhline(clean[key], ls="--", lw=0.8, color=line[0].get_color())
        ax.set(
            xlabel=LEVEL_NAMES[kind],
            ylabel="metric",
            ylim=(0, 1),
            title=f"robustness to {kind} (dashed: unperturbed)",
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
        gallery_figure(table, out, worst=False),
        gallery_figure(table, out, worst=True),
        table3_figure(metrics["table3"], fig_dir / "table3.png"),
        *robustness_figures(metrics, out),
    ]
    return [p for p in paths if p is not None]
