"""Plotting helpers the study's notebooks call; every function draws and returns its figure."""

from __future__ import annotations

import matplotlib as mpl

from sdfl_lib.viz.charts import bar_table, loss_curves, scatter_labelled
from sdfl_lib.viz.maps import module_io, photo_tensor, show_filters, show_maps

__all__ = [
    "bar_table", "loss_curves", "module_io", "photo_tensor", "scatter_labelled", "setup",
    "show_filters", "show_maps",
]


def setup(dpi: int = 72) -> None:
    """Modest figure resolution and PNG output, so rendered reports stay small."""
    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside IPython there is nothing to configure
        pass
