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
from tqdm.auto import tqdm

from sdfl_lib.data.edges import DEFAULT_EDGE_WIDTH, mask_to_edge
from sdfl_lib.data.io import ImageReadError, image_hw, load_mask
from sdfl_lib.data.manifest import MANIFEST_COLUMNS, write_manifest
from sdfl_lib.data.preparers.common import Report, write_binary_png
from sdfl_lib.data.registry import load_preparer, prepare_names

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


def prepare(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    edges: bool = True,
    edge_width: int = DEFAULT_EDGE_WIDTH,
    verbose: bool = True,
    **opts: Any,
) -> dict[str, Any]:
    """Writes the manifest `out` for data set `name` found under `root`; returns the report.

    `edges`: generate edge maps from masks where the set has none. Other options go to the
    data set's preparer (see `PREPARERS`).
    """
    if name not in PREPARERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(PREPARERS))}")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: data set folder not found: {root}")
    out_dir = out.parent.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(dataset=name, root=str(root.absolute()), manifest=str(out.absolute()),
                    options={"edges": edges, "edge_width": edge_width, **opts})
    rows = PREPARERS[name](root.absolute(), out_dir, report, **opts)
    df = pd.DataFrame(rows)
    for column in MANIFEST_COLUMNS:
        if column not in df.columns:
            df[column] = "" if column != "label" else 0
    if df.empty:
        report.errors.append(f"no images found under {root} in the {name} layout")
    elif edges:
        _add_edges(df, out_dir, name, edge_width, report)
    write_manifest(df, out)
    report.add("rows", len(df))
    report.add("authentic", int((df["label"] == 0).sum()) if len(df) else 0)
    report.add("tampered", int((df["label"] == 1).sum()) if len(df) else 0)
    if len(df):
        report.add("tampered_with_mask", int(((df["label"] == 1) & (df["mask"] != "")).sum()))
        report.add("label_only", int(((df["label"] == 1) & (df["mask"] == "")).sum()))
    result = report.to_dict()
    report_path(out).write_text(json.dumps(result, indent=2, default=str))
    if verbose:
        print(report.summary())
    return result
