"""Plotting helpers the study's notebooks call; each draws one figure and returns it (Jupyter's
inline backend shows it at the end of the cell)."""

from __future__ import annotations

import matplotlib as mpl

from sdfl_lib.viz.charts import bar_table, loss_curves, scatter_labelled
from sdfl_lib.viz.maps import module_io, photo_tensor, show_filters, show_maps
from sdfl_lib.viz.results import headline, headline_row, metrics_table, show_pngs

__all__ = [
    "bar_table", "headline", "headline_row", "loss_curves", "metrics_table", "module_io",
    "photo_tensor", "scatter_labelled", "setup", "show_filters", "show_maps", "show_pngs",
]


def setup(dpi: int = 72) -> None:
    """Modest figure resolution and PNG output, so rendered reports stay small."""
    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside IPython there is nothing to configure
        pass
