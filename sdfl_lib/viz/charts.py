"""Charts of tables the study produces: loss curves, per-part costs, backbones, run comparisons."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def loss_curves(metrics: pd.DataFrame, x: str = "epoch") -> Figure:
    """Every loss column of a training run's metrics.csv against the epoch, train and val apart."""
    cols = [c for c in metrics.columns if "loss" in c and c != x]
    if x not in metrics or not cols:
        raise ValueError(f"loss_curves: need an {x!r} column and loss columns, got {list(metrics.columns)}")
    groups = {"train": [c for c in cols if not c.startswith("val")], "val": [c for c in cols if c.startswith("val")]}
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.4), squeeze=False)
    for ax, (title, names) in zip(axes.flat, groups.items(), strict=False):
        for c in names:
            ax.plot(metrics[x], metrics[c], marker="o", ms=3, label=c)
        ax.set_xlabel(x)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()
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
    plt.show()
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
    plt.show()
    return fig
