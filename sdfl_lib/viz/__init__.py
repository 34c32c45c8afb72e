"""This project's own figures the study's notebooks call: module inputs/outputs, filters and
feature maps, loss curves, result tables and saved figures. Generic statistical charts are drawn
with seaborn directly; each helper returns its figure (Jupyter's inline backend shows it)."""

from __future__ import annotations

from sdfl_lib.viz.charts import loss_curves
from sdfl_lib.viz.maps import module_io, photo_tensor, show_filters, show_maps
from sdfl_lib.viz.results import (
    compare_runs,
    comparison_table,
    describe_checkpoint,
    floor_table,
    headline,
    headline_row,
    metrics_table,
    per_type_table,
    show_pngs,
)

__all__ = [
    "compare_runs", "comparison_table", "describe_checkpoint", "floor_table", "headline", "headline_row", "loss_curves",
    "metrics_table", "module_io", "per_type_table", "photo_tensor", "setup", "show_filters", "show_maps", "show_pngs",
]


def setup(dpi: int = 72) -> None:
    """seaborn's theme at a modest resolution with PNG output, so rendered reports stay small."""
    import seaborn as sns  # why: heavy, only when drawing

    sns.set_theme(style="whitegrid", rc={"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 9})
    try:
        # why: exists only in a notebook
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside IPython there is nothing to configure
        pass
