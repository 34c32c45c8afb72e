"""This project's own figures and report blocks the study's notebooks call: the network's parts,
loss curves, result tables, saved figures with captions, key results and closing sentences.
Generic statistical charts are drawn with seaborn directly, in the project's style
(`sdfl_lib.figstyle`, set by `setup()`)."""

from __future__ import annotations

import pandas as pd

from sdfl_lib import figstyle
from sdfl_lib.viz.charts import loss_curves
from sdfl_lib.viz.network import (
    architecture_diagram,
    cost_chart,
    forged_example,
    module_io,
    shape_table,
    show_filters,
    show_maps,
    trained_vs_untrained,
)
from sdfl_lib.viz.report import (
    caption,
    closing,
    compact_image,
    file_link,
    key_results,
    show,
    show_figures,
    styled,
    table_html,
    with_interval,
)
from sdfl_lib.viz.results import (
    backbone_chart,
    compare_runs,
    comparison_table,
    describe_checkpoint,
    floor_table,
    headline,
    headline_row,
    metrics_table,
    per_type_table,
    readable,
)

__all__ = [
    "architecture_diagram", "backbone_chart", "caption", "closing", "compact_image", "compare_runs",
    "comparison_table", "cost_chart", "describe_checkpoint", "file_link", "floor_table",
    "forged_example", "headline", "headline_row", "key_results", "loss_curves", "metrics_table",
    "module_io", "per_type_table", "readable", "setup", "shape_table", "show", "show_figures",
    "show_filters", "show_maps", "styled", "table_html", "trained_vs_untrained", "with_interval",
]


def setup() -> None:
    """The project's figure style (`sdfl_lib.figstyle`: 110 dpi, text >= 10 pt, colour-blind-safe
    palette) for every figure of this process, shown as PNG."""
    figstyle.apply()
    pd.set_option("display.max_colwidth", None)  # no cell of a report's table cut short
    try:
        # why: exists only in a notebook
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside IPython there is nothing to configure
        pass
