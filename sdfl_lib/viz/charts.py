"""Training curves of this project's runs (metrics.csv), drawn with seaborn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

_TITLES = {"loss": "total loss", "clf": "image BCE (clf)", "seg": "mask Dice (seg)", "edge": "edge Dice"}


def loss_curves(metrics: pd.DataFrame, x: str = "epoch") -> Figure:
    """One panel per loss term of a run's metrics.csv (total, clf, seg, edge), train and val."""
    terms = [t for t in _TITLES if f"train_{t}" in metrics or f"val_{t}" in metrics]
    if x not in metrics or not terms:
        raise ValueError(f"loss_curves: need {x!r} and train_*/val_* loss columns, got {list(metrics.columns)}")
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 3.2), squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        cols = {f"{part}_{term}": part for part in ("train", "val") if f"{part}_{term}" in metrics}
        long = metrics[[x, *cols]].rename(columns=cols).melt(x, var_name="part", value_name=term)
        sns.lineplot(long.dropna(), x=x, y=term, hue="part", marker="o", ax=ax)
        ax.set(title=_TITLES[term], ylabel="")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
