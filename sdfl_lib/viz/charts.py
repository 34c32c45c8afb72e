"""Training curves of this project's runs (metrics.csv), drawn with seaborn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sdfl_lib import figstyle

_TITLES = {"loss": "total loss", "clf": "image BCE (clf)", "seg": "mask Dice (seg)", "edge": "edge Dice"}


def loss_curves(metrics: pd.DataFrame, x: str = "epoch") -> Figure:
    """One panel per loss term of a run's metrics.csv (total, clf, seg, edge), train and val."""
    terms = [t for t in _TITLES if f"train_{t}" in metrics or f"val_{t}" in metrics]
    if x not in metrics or not terms:
        raise ValueError(f"loss_curves: need {x!r} and train_*/val_* loss columns, got {list(metrics.columns)}")
    fig, axes = plt.subplots(1, len(terms), figsize=(figstyle.MAX_WIDTH_IN, 3.4), squeeze=False)
    names = {"train": "training set", "val": "validation set"}
    for ax, term in zip(axes.flat, terms, strict=False):
        cols = {f"{part}_{term}": names[part] for part in ("train", "val") if f"{part}_{term}" in metrics}
        long = metrics[[x, *cols]].rename(columns=cols).melt(x, var_name="data", value_name=term)
        sns.lineplot(long.dropna(), x=x, y=term, hue="data", style="data", markers=True, ax=ax)
        ax.set(title=_TITLES[term], ylabel="loss (lower is better)")
        if metrics[x].nunique() <= 12:
            ax.set_xticks(sorted(metrics[x].unique()))
    figstyle.legend_below(fig, ncol=2)
    return fig
