"""Exploration figures on a prepared sample (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from sdfl_lib.data.explore import (  # noqa: E402
    counts_table,
    mask_areas,
    plot_counts,
    plot_examples,
    plot_image_sizes,
    plot_mask_areas,
    save_figures,
)
from sdfl_lib.data.prepare import prepare  # noqa: E402


def test_figures_of_the_casia1_sample(shared_data, tmp_path):
    out = tmp_path / "casia1.csv"
    prepare("casia1", shared_data / "casia1-sample", out, edges=False, verbose=False)
    table = counts_table(out)
    assert table.loc["casia1"].tolist() == [15, 16]  # the fake without a mask is kept
    areas = mask_areas(out)
    assert len(areas) == 15 and ((areas["area"] > 0) & (areas["area"] < 0.5)).all()
    for fig in (plot_counts(out), plot_image_sizes(out), plot_mask_areas(out), plot_examples(out, n=4)):
        assert isinstance(fig, Figure) and fig.axes
    paths = save_figures(out, tmp_path / "fig", examples=4)
    assert [p.name for p in paths] == ["counts.png", "image_sizes.png", "mask_areas.png", "examples.png"]
    assert all(p.stat().st_size > 5000 for p in paths)
