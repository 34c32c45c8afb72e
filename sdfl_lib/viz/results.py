"""Evaluation results in the notebooks: the headline numbers, tables per subset, saved figures."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

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


def per_type_table(runs: dict[str, dict], keys: tuple[str, ...] = PER_TYPE) -> pd.DataFrame:
    """Pixel metrics per source ("source/<name>" subsets with tampered images), one column per
    (method, metric): e.g. the trained model beside a classical baseline on the same images."""
    table = {
        (method, key): {
            name.split("/", 1)[1]: m.get(key)
            for name, m in metrics.get("subsets", {}).items()
            if name.startswith("source/") and m.get("count/tampered")
        }
        for method, metrics in runs.items()
        for key in keys
    }
    return pd.DataFrame(table).astype(float).round(3)


def metrics_table(metrics: dict, columns: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Subsets as rows, the chosen metrics (both protocols by default) as columns, rounded."""
    rows = {s: {"images": m.get("count/images"), **{c: m.get(c) for c in columns}}
            for s, m in metrics.get("subsets", {}).items()}
    return pd.DataFrame(rows).T.astype(float).round(3)


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
