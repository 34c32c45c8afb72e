"""Evaluation results in the notebooks: the headline numbers, tables per subset, saved figures."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

from sdfl_lib.metrics.uncertainty import best_floor, format_ci
from sdfl_lib.models import read_checkpoint, weight_source

# The numbers a reader looks for first, each named by its protocol (docs/protocols.md).
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


def _text(m: dict, key: str, digits: int = 2) -> str:
    """A subset's metric as `0.65 [0.58, 0.71]` (the value alone without an interval)."""
    ci = (m.get("intervals") or {}).get(key) or {}
    return format_ci(m.get(key), ci.get("low"), ci.get("high"), digits)


def headline(metrics: dict, subset: str = "both") -> str:
    """One line per protocol with the main numbers of `subset`, each labelled with its protocol
    and followed by its 95 % interval where the evaluation made one."""
    m = _subset(metrics, subset)

    def f(key: str) -> str:
        return _text(m, key, 3)

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
    import seaborn as sns  # why: heavy, only when drawing

    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"compare_runs: no column {missing} in {list(table.columns)}")
    long = table[list(keys)].rename_axis("run").reset_index().melt("run", list(keys), var_name="metric")
    return sns.catplot(long, kind="bar", y="run", x="value", col="metric",
                       height=0.35 * len(table) + 1.8, aspect=1.4)


def describe_checkpoint(path: str | Path) -> pd.Series:
    """What a trained model is, from its checkpoint: network, backbone, where its starting
    weights came from, input normalisation, resolution, and the training that produced it."""

    ckpt = read_checkpoint(path)
    spec, config = dict(ckpt.get("spec") or {}), dict(ckpt.get("config") or {})
    backbone = spec.get("backbone", "")
    pretrained = config.get("pretrained", spec.get("pretrained"))
    if config.get("init_checkpoint"):
        start = f"the checkpoint {config['init_checkpoint']}"
    elif pretrained:
        start = f"ImageNet weights ({weight_source(backbone) or 'downloaded file'})"
    else:
        start = "random initialisation (trained from scratch)"
    mean, std = spec.get("input_mean"), spec.get("input_std")
    norm = "none ([0, 1] as it is)" if mean is None or (set(mean) == {0.0} and set(std) == {1.0}) \
        else f"mean {mean}, std {std}"
    rows = {
        "model": spec.get("name"),
        "backbone": backbone,
        "starting weights": start,
        "input normalisation": norm,
        "image size": spec.get("image_size"),
        "epochs trained (this checkpoint)": ckpt.get("epoch"),
    }
    keys = ("optimizer", "lr", "scheduler", "batch_size", "epochs", "freeze_bn", "augment")
    rows.update({f"train {k}": config[k] for k in keys if k in config})
    return pd.Series({k: str(v) for k, v in rows.items()}, name=Path(str(path)).name)


PER_TYPE = ("standard/pixel_f1@0.5", "standard/pixel_f1@best", "paper/pixel_f1")


def per_type_table(
    runs: dict[str, dict], keys: tuple[str, ...] = PER_TYPE, intervals: bool = False
) -> pd.DataFrame:
    """Pixel metrics per source ("source/<name>" subsets with tampered images), one column per
    (method, metric): e.g. the trained model beside a classical baseline on the same images.
    Numbers rounded; with `intervals`, text `0.65 [0.58, 0.71]` where there is an interval."""
    table = {
        (method, key): {
            name.split("/", 1)[1]: _text(m, key) if intervals else m.get(key)
            for name, m in metrics.get("subsets", {}).items()
            if name.startswith("source/") and m.get("count/tampered")
        }
        for method, metrics in runs.items()
        for key in keys
    }
    return pd.DataFrame(table) if intervals else pd.DataFrame(table).astype(float).round(3)


def metrics_table(
    metrics: dict, columns: tuple[str, ...] = HEADLINE, intervals: bool = True
) -> pd.DataFrame:
    """Subsets as rows, the chosen metrics (both protocols by default) as columns: `0.65 [0.58,
    0.71]` where the evaluation made intervals (and `intervals`), else numbers rounded."""
    subsets = metrics.get("subsets", {})
    if intervals and any("intervals" in m for m in subsets.values()):
        rows = {s: {"images": m.get("count/images"), **{c: _text(m, c) for c in columns if c in m}}
                for s, m in subsets.items()}
        return pd.DataFrame(rows).T
    rows = {s: {"images": m.get("count/images"), **{c: m.get(c) for c in columns}}
            for s, m in subsets.items()}
    return pd.DataFrame(rows).T.astype(float).round(3)


def floor_table(metrics: dict, columns: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Subsets as rows, the chosen metrics as columns: the best score of a trivial predictor
    (every pixel tampered, no pixel tampered, a constant image score) on the same images."""
    rows = {s: {c: best_floor((m.get("floors") or {}).get(c, {}))[0] for c in columns if c in m}
            for s, m in metrics.get("subsets", {}).items()}
    return pd.DataFrame(rows).T.astype(float).round(3)


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """A paired comparison (`sdfl_lib.evaluate.comparison`'s table) as text: one row per metric,
    one column per "run vs reference [subset]", cells `+0.12 [+0.05, +0.19] better (p 0.002)`."""
    def cell(r) -> str:
        if r.delta is None or pd.isna(r.delta):
            return "undefined"
        if r.low is None or pd.isna(r.low):
            return f"{r.delta:+.3f} (no interval: {r.reason})"
        return f"{r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}] {r.verdict} (p {r.p:.3f})"

    frame = table.assign(pair=table["run"] + " vs " + table["reference"] + " [" + table["subset"] + "]",
                         cell=[cell(r) for r in table.itertuples()])
    return frame.pivot(index="metric", columns="pair", values="cell").loc[list(dict.fromkeys(table["metric"]))]


def _small_png(path: Path, max_width: int, colors: int) -> bytes:
    """The figure at most `max_width` wide with a palette of `colors`, so reports stay small."""

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
    from IPython.display import Image, Markdown, display  # why: exists only in a notebook

    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no {pattern} figures in {folder}")
    for p in paths:
        display(Markdown(f"**{p.stem.replace('_', ' ')}**"), Image(data=_small_png(p, max_width, colors)))
    return paths
