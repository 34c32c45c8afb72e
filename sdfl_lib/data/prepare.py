"""`prepare(name, root, out)`: a manifest from a data set's own folder layout, with a report.

Every preparer finds the images and their ground truth, and says what it could not match. Then
this module generates the edge maps a set lacks (the contour band of `edges.mask_to_edge`, written
under `<out folder>/edges/<name>/`), writes the manifest and writes the report as JSON beside it
(`<manifest stem>.report.json`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from sdfl_lib.data.edges import DEFAULT_EDGE_WIDTH, mask_to_edge
from sdfl_lib.data.io import ImageReadError, image_hw, load_mask
from sdfl_lib.data.manifest import MANIFEST_COLUMNS, write_manifest
from sdfl_lib.data.preparers.common import Report, write_binary_png
from sdfl_lib.data.registry import load_preparer, prepare_names
from sdfl_lib.errors import DataError
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import atomic_write


class OutputExistsError(DataError, FileExistsError):
    """The manifest to write exists and replacing it was not asked for."""


Preparer = Callable[..., list[dict[str, Any]]]

# Data set -> its preparer, as the registry (`sdfl_lib.data.registry.DATASETS`) names them.
PREPARERS: dict[str, Preparer] = {name: load_preparer(name) for name in prepare_names()}


def report_path(manifest: str | os.PathLike) -> Path:
    """Where the report of a prepared manifest is written."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".report.json")


def _add_edges(df: pd.DataFrame, out_dir: Path, name: str, width: int, report: Report) -> None:
    todo = df.index[(df["mask"] != "") & (df["edge"] == "")]
    for i in tqdm(todo, desc=f"{name}: edge maps", unit="mask", disable=len(todo) == 0):
        mask_path = Path(df.at[i, "mask"])
        try:
            # At the image's size, so that the edge map lines up with the image.
            mask = load_mask(mask_path, size=image_hw(df.at[i, "image"]))
        except ImageReadError as err:
            report.errors.append(str(err))
            continue
        edge_path = out_dir / "edges" / name / f"{Path(df.at[i, 'image']).stem}_edge.png"
        df.at[i, "edge"] = str(write_binary_png(mask_to_edge(mask, width), edge_path))
        report.add("edges_generated")


def _existing_rows(out: Path, overwrite: bool) -> int | None:
    """Rows of a manifest already at `out` (None when there is none); refuses to replace it
    unless `overwrite`."""
    if not out.exists():
        return None
    if not overwrite:
        raise OutputExistsError(
            f"{out} exists: pass --overwrite (overwrite=True) to replace it, or choose another --out"
        )
    with open(out, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def prepare(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    edges: bool = True,
    edge_width: int = DEFAULT_EDGE_WIDTH,
    verbose: bool = True,
    overwrite: bool = False,
    **opts: Any,
) -> dict[str, Any]:
    """Writes the manifest `out` for data set `name` found under `root`; returns the report.

    `edges`: generate edge maps from masks where the set has none. An existing `out` is
    replaced only with `overwrite` (and says so); a run that finds no image writes nothing.
    Other options go to the data set's preparer (see `PREPARERS`).
    """
    if name not in PREPARERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(PREPARERS))}")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: data set folder not found: {root}")
    before = _existing_rows(out, overwrite)
    out_dir = out.parent.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(dataset=name, root=str(root.absolute()), manifest=str(out.absolute()),
                    options={"edges": edges, "edge_width": edge_width, **opts})
    rows = PREPARERS[name](root.absolute(), out_dir, report, **opts)
    if not rows:
        # Nothing is written: an existing manifest stays as it was.
        why = "; ".join(report.errors) or f"no images found in the {name} layout"
        raise DataError(f"{name}: nothing to prepare under {root}: {why}; {out} was not written")
    df = pd.DataFrame(rows)
    for column in MANIFEST_COLUMNS:
        if column not in df.columns:
            df[column] = "" if column != "label" else 0
    if edges:
        _add_edges(df, out_dir, name, edge_width, report)
    _count_rows(df, report)
    result = report.to_dict()
    write_manifest(df, out)
    with atomic_write(report_path(out)) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str))
    if verbose:
        print(report.summary())
    if before is not None:
        print(f"replaced the existing {out} ({before} rows before, {len(df)} now)")
    return result


def _count_rows(df: pd.DataFrame, report: Report) -> None:
    report.add("rows", len(df))
    report.add("authentic", int((df["label"] == 0).sum()))
    report.add("tampered", int((df["label"] == 1).sum()))
    report.add("tampered_with_mask", int(((df["label"] == 1) & (df["mask"] != "")).sum()))
    report.add("label_only", int(((df["label"] == 1) & (df["mask"] == "")).sum()))
