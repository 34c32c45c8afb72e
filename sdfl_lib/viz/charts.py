"""Charts of tables the study produces: loss curves, per-part costs, backbones, run comparisons."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def loss_curves(metrics: pd.DataFrame, x: str = "epoch") -> Figure:
    """One panel per loss term of a run's metrics.csv (total, clf, seg, edge), train and val."""
    terms = [t for t in ("loss", "clf", "seg", "edge") if f"train_{t}" in metrics or f"val_{t}" in metrics]
    if x not in metrics or not terms:
        raise ValueError(f"loss_curves: need {x!r} and train_*/val_* loss columns, got {list(metrics.columns)}")
    titles = {"loss": "total loss", "clf": "image BCE (clf)", "seg": "mask Dice (seg)", "edge": "edge Dice"}
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 3.2), squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        for part in ("train", "val"):
            if f"{part}_{term}" in metrics:
                ax.plot(metrics[x], metrics[f"{part}_{term}"], marker="o", ms=3, label=part)
        ax.set_xlabel(x)
        ax.set_title(titles[term])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def bar_table(table: pd.DataFrame, columns: Sequence[str], label: str | None = None) -> Figure:
    """Horizontal bars of some numeric columns of a table, one panel per column."""
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"bar_table: no column {missing} in {list(table.columns)}")
    names = table[label] if label else table.index
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 0.3 * len(table) + 1.2),
                             squeeze=False, sharey=True)
    for ax, c in zip(axes.flat, columns, strict=False):
        ax.barh([str(n) for n in names], table[c].astype(float))
        ax.set_title(c)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def scatter_labelled(table: pd.DataFrame, x: str, y: str, size: str | None = None,
                     label: str | None = None, logx: bool = False) -> Figure:
    """One labelled point per row (e.g. backbones: FLOPs against images/s, sized by parameters)."""
    missing = [c for c in (x, y, size) if c and c not in table]
    if missing:
        raise ValueError(f"scatter_labelled: no column {missing} in {list(table.columns)}")
    names = table[label] if label else table.index
    fig, ax = plt.subplots(figsize=(5.5, 4))
    s = 20 + 200 * table[size] / table[size].max() if size else 40
    ax.scatter(table[x], table[y], s=s, alpha=0.6)
    for n, xv, yv in zip(names, table[x], table[y], strict=False):
        ax.annotate(str(n), (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if size:
        ax.set_title(f"marker size: {size}", fontsize=8)
    fig.tight_layout()
    return fig
