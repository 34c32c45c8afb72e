"""The project's one figure style, for every figure it draws (notebooks, `sdfl evaluate`, 01's
explore figures): 110 dpi, no text under 10 pt, seaborn's colour-blind-safe palette, legends
outside the data, figures at most `MAX_WIDTH_IN` wide so that a report shows them unscaled.

`apply()` sets it for the process (the notebooks, through `viz.setup()`); `style()` for a block
(figures written to files); `legend_below` (a figure's) and `legend_right` (an axes') put legends outside the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sdfl_lib.errors import OutputError

DPI = 110
MIN_FONT_PT = 10
# The reports' column is 1100 px wide: a figure up to 1045 px (9.5 in at DPI) is shown at its size.
MAX_WIDTH_IN = 9.5
PALETTE = sns.color_palette("colorblind")
CLASS_COLORS = {"authentic": PALETTE[0], "tampered": PALETTE[3]}
TRUTH_COLOR, PRED_COLOR = PALETTE[2], PALETTE[1]  # green and orange outlines on images
SEQUENTIAL, DIVERGING = "magma", "vlag"  # colour-blind-safe maps

_RC = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight", "savefig.pad_inches": 0.08,
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
    "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10,
    "figure.titlesize": 12, "legend.frameon": False, "axes.titlepad": 6,
    "figure.constrained_layout.use": True, "image.cmap": SEQUENTIAL,
}


def rc() -> dict[str, Any]:
    """The style as matplotlib rc settings (seaborn's white grid, then ours)."""
    return {**sns.axes_style("whitegrid"), **_RC, "axes.prop_cycle": cycler(color=PALETTE)}


def apply() -> None:
    """Set the style for everything drawn from now on in this process."""
    plt.rcParams.update(rc())
    sns.set_palette(PALETTE)


@contextmanager
def style() -> Iterator[None]:
    """The style for the figures drawn inside the block only."""
    with plt.rc_context(rc()):
        yield


def legend_below(fig: Figure, ncol: int | None = None, **kw: Any) -> None:
    """One legend for the whole figure under its axes (each label once), outside the data."""
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncol=ncol or min(len(seen), 3), **kw)


def legend_right(ax: Axes, **kw: Any) -> None:
    """The legend of `ax` to its right, outside the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), **kw)


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG at the style's resolution and close it; a file that cannot be written
    is an `OutputError` naming it."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as err:
        raise OutputError(path, err) from err
    finally:
        plt.close(fig)
    return path


# How a metric key reads on an axis or in a legend (docs/protocols.md defines them).
METRIC_LABELS = {
    "standard/pixel_f1@0.5": "pixel F1 @0.5, tampered images (standard)",
    "standard/pixel_f1@best": "pixel F1 at each image's best threshold (standard)",
    "standard/image_f1@0.5": "image F1 @0.5 (standard)",
    "standard/image_auc": "image AUC",
    "paper/pixel_f1": "pixel F1, all images (paper)",
    "paper/image_f1": "image F1 = 2·sen·spe/(sen+spe) (paper)",
    "paper/combined_f1": "combined F1 (paper)",
    "paper/auc": "image AUC (paper)",
}


def metric_label(key: str) -> str:
    """A metric key as words, e.g. "standard/image_auc" -> "image AUC"."""
    return METRIC_LABELS.get(key, key)
