"""Evaluation results in the notebooks: the headline numbers, tables per subset, saved figures."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

# The numbers a reader looks for first, each named by its protocol (SPEC.md §1, §2).
HEADLINE = (
    "standard/pixel_f1@0.5", "standard/pixel_f1@best", "standard/image_f1@0.5", "standard/image_auc",
    "paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc",
)


def _subset(metrics: dict, subset: str) -> dict:
    subsets = metrics.get("subsets", {})
    if subset not in subsets:
        raise KeyError(f"no subset {subset!r} in these metrics (have {', '.join(subsets)})")
    return subsets[subset]


def headline_row(metrics: dict, subset: str = "both") -> dict[str, float | None]:
    """The headline metrics of one subset (None where a metric is undefined)."""
    m = _subset(metrics, subset)
    return {"images": m.get("count/images"), **{k: m.get(k) for k in HEADLINE}}


def headline(metrics: dict, subset: str = "both") -> str:
    """One line per protocol with the main numbers of `subset`, each labelled with its protocol."""
    m = _subset(metrics, subset)

    def f(key: str) -> str:
        v = m.get(key)
        return "undefined" if v is None else f"{v:.3f}"

    name = (metrics.get("model") or {}).get("name", "model")
    return (
        f"{name} on {subset!r} ({m.get('count/tampered')} tampered / {m.get('count/authentic')} authentic):\n"
        f"  standard protocol: pixel F1@0.5 = {f('standard/pixel_f1@0.5')} (tampered images), "
        f"pixel F1@best = {f('standard/pixel_f1@best')}, image F1@0.5 = {f('standard/image_f1@0.5')}, "
        f"image AUC = {f('standard/image_auc')}\n"
        f"  paper protocol:    pixel F1 = {f('paper/pixel_f1')} (all images), image F1 = {f('paper/image_f1')}, "
        f"combined F1 = {f('paper/combined_f1')}, AUC = {f('paper/auc')}"
    )


COMPARED = ("standard/pixel_f1@0.5", "standard/image_auc", "paper/combined_f1")


def compare_runs(table: pd.DataFrame, keys: tuple[str, ...] = COMPARED):
    """Bars of some headline metrics of runs (rows of `table`, e.g. `headline_row`s indexed by
    run name), one panel per metric (seaborn; returns its FacetGrid)."""
    import seaborn as sns

    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"compare_runs: no column {missing} in {list(table.columns)}")
    long = table[list(keys)].rename_axis("run").reset_index().melt("run", list(keys), var_name="metric")
    return sns.catplot(long, kind="bar", y="run", x="value", col="metric",
                       height=0.35 * len(table) + 1.8, aspect=1.4)


def metrics_table(metrics: dict, columns: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Subsets as rows, the chosen metrics (both protocols by default) as columns, rounded."""
    rows = {s: {"images": m.get("count/images"), **{c: m.get(c) for c in columns}}
            for s, m in metrics.get("subsets", {}).items()}
    return pd.DataFrame(rows).T.astype(float).round(3)


def _small_png(path: Path, max_width: int, colors: int) -> bytes:
    """The figure at most `max_width` wide with a palette of `colors`, so reports stay small."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
    buf = io.BytesIO()
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def show_pngs(
    folder: str | Path, pattern: str = "*.png", max_width: int = 900, colors: int = 128
) -> list[Path]:
    """Display every saved figure in `folder` (sorted) under its file name, shrunk for the report."""
    from IPython.display import Image, Markdown, display

    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no {pattern} figures in {folder}")
    for p in paths:
        display(Markdown(f"**{p.stem.replace('_', ' ')}**"), Image(data=_small_png(p, max_width, colors)))
    return paths
