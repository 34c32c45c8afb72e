"""How a notebook shows its results in a report: a key-results table, a closing paragraph, a
figure with its caption, a link to a file of the run folder, a number with its interval.

The key-results and closing blocks carry the classes the report site looks for
(`sdfl_lib.study_site`): the index page shows each report's key results.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image

from sdfl_lib import figstyle
from sdfl_lib.metrics.uncertainty import format_ci

KEY_RESULTS_CLASS = "sdfl-key-results"
CLOSING_CLASS = "sdfl-closing"


def _display(obj: Any) -> None:
    from IPython.display import display  # why: exists only in a notebook

    display(obj)


def number(value: Any, digits: int = 2) -> str:
    """A value for a table or a sentence: "—" where undefined, integers without decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and abs(value) >= 10):
        return f"{int(value):,}".replace(",", " ")
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(m: dict, key: str) -> tuple[float, float] | None:
    """The 95 % interval of metric `key` in one subset's metrics, where the evaluation computed
    one (`m["intervals"][key]` with "low" and "high"); None otherwise."""
    ci = (m.get("intervals") or {}).get(key) or {}
    low, high = ci.get("low"), ci.get("high")
    return None if low is None or high is None else (float(low), float(high))


def with_interval(m: dict, key: str, digits: int = 2) -> str:
    """`0.65 [0.58, 0.71]` (value and 95 % interval, `metrics.uncertainty.format_ci`), the value
    alone where there is no interval, "—" where the metric is undefined."""
    ci = (m.get("intervals") or {}).get(key) or {}
    text = format_ci(m.get(key), ci.get("low"), ci.get("high"), digits)
    return "—" if text == "undefined" else text


# Column names as a reader reads them.
COLUMN_NAMES = {"params_M": "parameters (M)", "GFLOPs": "GFLOPs", "images_per_s": "images/s",
                "flops_share": "share of FLOPs", "type": "module"}


def styled(table: pd.DataFrame, digits: int = 2) -> Any:
    """A table for a report: numbers to `digits` places, integers as they are, undefined cells
    "—", known column names in words, no separate row for the index's name."""
    table = table.rename(columns=COLUMN_NAMES)
    if table.index.name and not isinstance(table.columns, pd.MultiIndex) and table.columns.name is None:
        table = table.rename_axis(index=None, columns=table.index.name)
    return table.style.format(precision=digits, na_rep="—", thousands=" ")


def table_html(table: pd.DataFrame, index: bool = True) -> str:
    """A table as HTML (see `styled`); a single column without a name has no header row."""
    out = styled(table)
    if not index:
        out = out.hide(axis="index")
    if len(table.columns) == 1 and not str(table.columns[0]):
        out = out.hide(axis="columns")
    return out.to_html()


def _block(cls: str, parts: Sequence[str]) -> Any:
    from IPython.display import HTML  # why: exists only in a notebook

    return HTML(f'<div class="{cls}">' + "".join(parts) + "</div>")


def key_results(table: pd.DataFrame, notes: Sequence[str] = (), index: bool = True) -> Any:
    """A report's key-results block: `table`, then one paragraph per note. Returns a displayable."""
    paras = [f'<p class="sdfl-note">{html.escape(n)}</p>' for n in notes if n]
    return _block(KEY_RESULTS_CLASS, [table_html(table, index), *paras])


def closing(sentences: Sequence[str]) -> Any:
    """A report's closing "What came out" paragraph, from sentences generated from its numbers."""
    text = " ".join(s.strip() for s in sentences if s and s.strip())
    return _block(CLOSING_CLASS, [f"<p>{html.escape(text)}</p>"])


def caption(text: str) -> Any:
    """A one-line caption under a figure."""
    from IPython.display import HTML  # why: exists only in a notebook

    return HTML(f'<p class="sdfl-caption">{html.escape(text)}</p>')


def show(fig: Any, text: str) -> None:
    """Display a figure (matplotlib Figure, seaborn grid, or a PNG file) with its caption under it,
    once, as a compact PNG (the figure is closed so that Jupyter does not draw it again)."""
    from IPython.display import Image as Shown  # why: exists only in a notebook

    if isinstance(fig, (str, Path)):
        data, fmt = compact_image(Path(fig))
    else:
        figure = getattr(fig, "figure", fig)
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=figstyle.DPI)
        plt.close(figure)
        buf.seek(0)
        data, fmt = compact_image(buf)
    _display(Shown(data=data, format=fmt))
    _display(caption(text))


def file_link(path: str | os.PathLike, text: str | None = None) -> str:
    """An HTML link to a file of the run folder, relative to the working directory (Jupyter's
    links are relative to the notebook's folder; the report site copies the file beside the report)."""
    path = Path(path)
    try:
        target = os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:  # another drive (Windows)
        target = str(path)
    return f'<a href="{html.escape(target)}">{html.escape(text or path.name)}</a>'


def sentence_list(items: Sequence[str], last: str = "and") -> str:
    """"a, b and c"."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def compact_image(src: Path | io.BytesIO, max_width: int = 1100, colors: int = 256) -> tuple[bytes, str]:
    """A figure for a report, as small as it stays sharp: at most `max_width` wide (the reports'
    column, so that its text keeps its size); a PNG with a palette of `colors`, or a JPEG where
    that is under 70 % of the PNG's size (figures of photographs). Returns (bytes, "png"/"jpeg")."""
    img = Image.open(src).convert("RGB")
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
    png, jpeg = io.BytesIO(), io.BytesIO()
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(png, format="PNG", optimize=True)
    img.save(jpeg, format="JPEG", quality=82, optimize=True)
    if jpeg.tell() < 0.7 * png.tell():
        return jpeg.getvalue(), "jpeg"
    return png.getvalue(), "png"


def show_figures(folder: str | Path, captions: dict[str, str], order: Sequence[str]) -> None:
    """Display the saved figures `<stem>.png` of `folder` in `order` (the story's), each with its
    one-line caption (`captions`, by stem); a figure without a caption is not shown."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no figures folder {folder}")
    for stem in order:
        path = folder / f"{stem}.png"
        if path.is_file() and stem in captions:
            show(path, captions[stem])
