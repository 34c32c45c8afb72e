"""Evaluation results in the notebooks: the headline numbers, tables per subset, saved figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from sdfl_lib import figstyle
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
SHORT_LABELS = {"standard/pixel_f1@0.5": "pixel F1@0.5 (standard)", "standard/image_auc": "image AUC",
                "paper/combined_f1": "combined F1 (paper)"}


def compare_runs(table: pd.DataFrame, keys: tuple[str, ...] = COMPARED, reference: str | None = None):
    """Bars of some headline metrics of runs (rows of `table`, e.g. `headline_row`s indexed by
    run name), one panel per metric; `reference` (a run) drawn as a dashed line across."""
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(f"compare_runs: no column {missing} in {list(table.columns)}")
    runs = list(table.index)
    fig, axes = plt.subplots(1, len(keys), sharey=True, squeeze=False,
                             figsize=(figstyle.MAX_WIDTH_IN, 0.42 * len(runs) + 1.6))
    for ax, key in zip(axes[0], keys, strict=True):
        values = table[key].astype(float)
        ax.barh(runs, values.fillna(0), color=[figstyle.PALETTE[0 if r != reference else 7] for r in runs])
        for y, v in enumerate(values):
            ax.text(0.01 if pd.isna(v) else v + 0.01, y, "—" if pd.isna(v) else f"{v:.2f}",
                    va="center", fontsize=10)
        if reference in table.index and pd.notna(table.loc[reference, key]):
            ax.axvline(table.loc[reference, key], color="0.3", ls="--", lw=1)
        # A short name per panel: three long ones side by side run into each other.
        ax.set(xlim=(0, 1.15), xlabel=SHORT_LABELS.get(key, figstyle.metric_label(key)), title="")
    axes[0][0].invert_yaxis()
    return fig


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
    """Subsets as rows (sources without their "source/"), the image count and the chosen metrics
    (both protocols by default) as columns under their protocol (`readable`): `0.65 [0.58, 0.71]`
    where the evaluation made intervals (and `intervals`), else numbers rounded."""
    subsets = metrics.get("subsets", {})
    if intervals and any("intervals" in m for m in subsets.values()):
        rows = {s.removeprefix("source/"): {"images": m.get("count/images"),
                                           **{c: _text(m, c) for c in columns if c in m}}
                for s, m in subsets.items()}
        return readable(pd.DataFrame(rows).T).rename_axis("subset")
    rows = {s.removeprefix("source/"): {"images": m.get("count/images"), **{c: m.get(c) for c in columns}}
            for s, m in subsets.items()}
    return readable(pd.DataFrame(rows).T.astype(float).round(3)).rename_axis("subset")


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


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A table of metric columns ("standard/pixel_f1@0.5") under a two-level header (protocol,
    "pixel F1@0.5"); other columns under an empty protocol; counts as integers."""
    words = (("pixel_f1", "pixel F1"), ("image_f1", "image F1"), ("combined_f1", "combined F1"),
             ("image_auc", "image AUC"), ("auc", "AUC"), ("_", " "))

    def name(col: str) -> tuple[str, str]:
        protocol, _, key = col.rpartition("/")
        for a, b in words:
            key = key.replace(a, b)
        return protocol, key

    out = table.copy()
    out.columns = pd.MultiIndex.from_tuples([name(str(c)) for c in table.columns])
    for col in out.columns:
        if col[1] in ("images",) or str(col[1]).startswith("count"):
            out[col] = out[col].astype("Int64")
    return out


def backbone_chart(table: pd.DataFrame):
    """Backbones by computation (GFLOPs) and measured speed, the marker's area their parameters,
    each labelled with its name."""
    fig, ax = plt.subplots(figsize=(figstyle.MAX_WIDTH_IN * 0.75, 4.2))
    size = 60 + 600 * table["params_M"] / max(float(table["params_M"].max()), 1e-9)
    ax.scatter(table["GFLOPs"], table["images_per_s"], s=size, color=figstyle.PALETTE[0], alpha=0.6)
    labels = [
        ax.annotate(f"{name} ({r['params_M']:.0f} M)", (r["GFLOPs"], r["images_per_s"]),
                    xytext=(8, 6), textcoords="offset points")
        for name, r in table.sort_values("images_per_s", ascending=False).iterrows()
    ]  # fmt: skip
    ax.set(xlabel="computation per image (GFLOPs)", ylabel="inference speed (images/s)")
    ax.margins(x=0.35, y=0.2)
    _separate_labels(fig, labels)
    return fig


def _separate_labels(fig, labels: list) -> None:
    """Move each label (fastest first) down below any earlier one it would overlap, so backbones
    of similar cost and speed stay readable."""
    fig.canvas.draw()  # the axes' limits (margins, autoscale) settle at the first draw
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in labels:
        for _ in range(len(labels)):
            box = label.get_window_extent(renderer)
            hit = next((b for b in placed if box.overlaps(b)), None)
            if hit is None:
                break
            # Points per display pixel, to shift the offset (in points) by the overlap.
            shift = (box.y1 - hit.y0 + 2) * 72 / fig.dpi
            x, y = label.xyann
            label.xyann = (x, y - shift)
        placed.append(label.get_window_extent(renderer))
