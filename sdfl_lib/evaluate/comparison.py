"""Paired comparison of evaluations on the same images (`sdfl compare REFERENCE RUN ...`).

Each run is an evaluation folder (its predictions.csv, written by `evaluate`). For every run
against the reference, each headline metric's difference (run minus reference) on the images
both scored, with a paired-bootstrap 95 % interval, a two-sided p-value and a verdict: "better",
"worse" or "within noise" (see `sdfl_lib.metrics.uncertainty.paired_comparison`). Images scored
in one of the two only are left out, counted and named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sdfl_lib.errors import DataError, UsageError
from sdfl_lib.evaluate.predictions import read_predictions
from sdfl_lib.evaluate.subsets import DEEP_SOURCES, subset_masks
from sdfl_lib.metrics.uncertainty import RESAMPLES, SEED, align, paired_comparison

COLUMNS = ["reference", "run", "subset", "metric", "reference_value", "run_value", "delta", "low",
           "high", "p", "verdict", "images", "reason"]  # fmt: skip


@dataclass
class Comparison:
    """Rows of (run, subset, headline metric) against the reference (`table`, columns
    `COLUMNS`), and per run the images left out: {"only_in_reference": [...], "only_in_run": [...]}."""

    table: pd.DataFrame
    left_out: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def load_run(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The per-image table and settings of an evaluation folder (or of a folder holding `eval/`)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such evaluation folder")
    csv = folder / "predictions.csv"
    if not csv.is_file() and (folder / "eval" / "predictions.csv").is_file():
        csv = folder / "eval" / "predictions.csv"
    if not csv.is_file():
        raise DataError(f"{folder}: no predictions.csv (not a folder written by sdfl evaluate)")
    config_path = csv.parent / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    table = read_predictions(csv)
    if not len(table):
        raise DataError(f"{csv}: no scored image")
    return table, config


def compare(
    reference: str | os.PathLike,
    *runs: str | os.PathLike,
    names: Sequence[str] | None = None,
    subsets: Sequence[str] | None = ("both",),
    protocol: str = "both",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Comparison:
    """Each run against the reference (evaluation folders) on the images both scored, per subset
    (None: every non-empty subset). `names`: labels of reference and runs (default: the paths)."""
    if not runs:
        raise UsageError("compare needs a reference and at least one run")
    labels = list(names) if names is not None else [str(p) for p in (reference, *runs)]
    if len(labels) != 1 + len(runs):
        raise UsageError(f"names: {len(labels)} given for {1 + len(runs)} runs")
    ref_table, ref_config = load_run(reference)
    threshold = float(ref_config.get("threshold", 0.5))
    frames, left_out = [], {}
    for label, run in zip(labels[1:], runs, strict=True):
        table, config = load_run(run)
        if float(config.get("threshold", 0.5)) != threshold:
            raise DataError(f"{run}: evaluated at threshold {config.get('threshold')}, the reference "
                            f"{reference} at {threshold}: compare runs of one threshold")
        a, b, only_a, only_b = align(ref_table, table)
        if not len(a):
            raise DataError(f"{reference} and {run}: no image in common")
        left_out[label] = {"only_in_reference": only_a, "only_in_run": only_b}
        try:
            selections = subset_masks(a, list(subsets) if subsets else None,
                                      ref_config.get("deep_sources") or DEEP_SOURCES)
        except ValueError as err:
            raise UsageError(str(err)) from None
        for subset, sel in selections.items():
            result = paired_comparison(a[sel], b[sel], threshold, protocol, resamples, seed)
            frame = result.table.rename(columns={"a": "reference_value", "b": "run_value"})
            frames.append(frame.assign(reference=labels[0], run=label, subset=subset,
                                       images=result.images))
    return Comparison(pd.concat(frames, ignore_index=True)[COLUMNS], left_out)


def comparison_text(result: Comparison) -> str:
    """The comparison as lines for a terminal: per run and subset, each metric's values, the
    difference with its interval, p and verdict; then the images left out, named (first 20)."""
    lines = []
    for (ref, run, subset), g in result.table.groupby(["reference", "run", "subset"], sort=False):
        lines.append(f"{run} vs {ref} [{subset}] on {g['images'].iloc[0]} images in common:")
        shown = pd.DataFrame({
            "metric": g["metric"],
            "reference": g["reference_value"].map(_num),
            "run": g["run_value"].map(_num),
            "difference [95 % interval]": [
                _signed(r.delta, r.low, r.high) if r.reason == "" else f"{_signed(r.delta)} ({r.reason})"
                for r in g.itertuples()],
            "p": g["p"].map(lambda p: "" if p is None or pd.isna(p) else f"{p:.3f}"),
            "verdict": g["verdict"],
        })
        lines += ["  " + ln for ln in shown.to_string(index=False).splitlines()]
    for run, sides in result.left_out.items():
        for side, images in sides.items():
            if images:
                more = f" ... and {len(images) - 20} more" if len(images) > 20 else ""
                lines.append(f"{run}: {len(images)} image(s) left out, {side.replace('_', ' ')}: "
                             + ", ".join(images[:20]) + more)
    return "\n".join(lines)


def _num(v) -> str:
    return "undefined" if v is None or pd.isna(v) else f"{v:.3f}"


def _signed(delta, low=None, high=None) -> str:
    if delta is None or pd.isna(delta):
        return "undefined"
    if low is None or pd.isna(low):
        return f"{delta:+.3f}"
    return f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"
