"""Seeded, stratified train/val/test splits and the paper's train/val/test lists.

Ratios (the paper's, docs/datasets.md): shallowfakes 8:1:1; deepfakes 6:2:2 for real frames and 5:2:3 for fake frames.
Each stratum (a label, or a label and source pair) is shuffled with the seed and cut by largest
remainders, so counts add up exactly and the same seed gives the same split. Deepfake frames of one
video can be kept together with `group="video"` (no video in two parts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sdfl_lib.data.manifest import (
    ManifestError,
    check_labels_agree,
    read_manifest,
    write_manifest,
)

PARTS = ("train", "val", "test")
PRESETS: dict[str, dict[int, tuple[float, float, float]]] = {
    "shallowfakes": {0: (8, 1, 1), 1: (8, 1, 1)},
    "deepfakes": {0: (6, 2, 2), 1: (5, 2, 3)},
}

Ratios = Sequence[float] | Mapping[int, Sequence[float]]


def _counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder cut of n items by ratios."""
    weights = np.asarray(ratios, dtype=float)
    if weights.shape != (3,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"ratios must be three non-negative numbers, got {ratios}")
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_manifest(
    df: pd.DataFrame,
    ratios: Ratios = (8, 1, 1),
    seed: int = 0,
    stratify: str | Sequence[str] = ("label", "source"),
    group: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Splits rows into {"train", "val", "test"} DataFrames.

    `ratios`: train:val:test for every label, or {label: ratios}. `stratify`: columns whose value
    combinations are split separately. `group`: a column whose rows stay in one part (split by group).
    Rows of the same image always stay in one part; an image listed with both labels is refused.
    """
    per_label = dict(ratios) if isinstance(ratios, Mapping) else {0: ratios, 1: ratios}
    keys = [stratify] if isinstance(stratify, str) else list(stratify)
    keys = [k for k in keys if k in df.columns] or ["label"]
    rng = np.random.default_rng(seed)
    if "image" in df.columns:
        # An image listed more than once (e.g. under two masks) goes to one part with all its
        # rows: its first row is split, the others follow it. Both labels at once: refused.
        check_labels_agree(df, "split")
        first = df.loc[~df["image"].duplicated()]
    else:
        first = df
    assigned = pd.Series("", index=first.index)
    for _, stratum in first.groupby(keys, sort=True):
        label = int(stratum["label"].iloc[0])
        if label not in per_label:
            raise ValueError(f"no ratios for label {label}")
        units = (
            sorted(stratum[group].astype(str).unique()) if group else list(stratum.index)
        )
        order = rng.permutation(len(units))
        counts = _counts(len(units), per_label[label])
        bounds = np.cumsum([0, *counts])
        for part, lo, hi in zip(PARTS, bounds[:-1], bounds[1:], strict=True):
            chosen = [units[i] for i in order[lo:hi]]
            where = stratum.index[stratum[group].astype(str).isin(chosen)] if group else chosen
            assigned.loc[where] = part
    if first is not df:
        assigned = df["image"].map(dict(zip(first["image"], assigned, strict=True)))
    return {part: df.loc[assigned == part].reset_index(drop=True) for part in PARTS}


def split_manifest_file(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    preset: str | None = None,
    ratios: Sequence[float] | None = None,
    real_ratios: Sequence[float] | None = None,
    fake_ratios: Sequence[float] | None = None,
    seed: int = 0,
    stratify: str = "label+source",
    group: str | None = None,
) -> dict[str, Path]:
    """Splits a manifest file into `<out_dir>/<stem>_{train,val,test}.csv` (see `split_manifest`)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    per_label: dict[int, Sequence[float]] = dict(PRESETS[preset or "shallowfakes"])
    if ratios is not None:
        per_label = {0: ratios, 1: ratios}
    if real_ratios is not None:
        per_label[0] = real_ratios
    if fake_ratios is not None:
        per_label[1] = fake_ratios
    df = read_manifest(manifest)
    if not len(df):
        raise ManifestError(f"{manifest}: no rows to split")
    parts = split_manifest(df, per_label, seed, stratify.split("+"), group)
    out_dir = Path(out_dir)
    stem = Path(manifest).stem
    return {
        part: write_manifest(frame, out_dir / f"{stem}_{part}.csv") for part, frame in parts.items()
    }


def build_paper_lists(
    out_dir: str | os.PathLike,
    shallow_train: str | os.PathLike | None = None,
    deep: str | os.PathLike | None = None,
    shallow_tests: Sequence[str | os.PathLike] = (),
    seed: int = 0,
) -> dict[str, Path]:
    """The paper's lists from prepared manifests.

    `shallow_train` (CASIA v2.0) is split 8:1:1; `deep` (FF++ or the authors' frames) 6:2:2 real /
    5:2:3 fake, frames of one video kept together when a `video` column exists. Writes
    `{shallow,deep,both}_{train,val,test}.csv`; the shallow tests also take `shallow_tests`
    (CASIA v1.0, Columbia, COVERAGE, NIST16) whole.
    """
    out_dir = Path(out_dir)
    parts: dict[str, dict[str, pd.DataFrame]] = {}
    if shallow_train is not None:
        parts["shallow"] = split_manifest(read_manifest(shallow_train), PRESETS["shallowfakes"], seed)
    if shallow_tests:
        extra = pd.concat([read_manifest(p) for p in shallow_tests], ignore_index=True)
        base = parts.setdefault("shallow", {p: extra.iloc[0:0] for p in PARTS})
        base["test"] = pd.concat([base["test"], extra], ignore_index=True)
    if deep is not None:
        frames = read_manifest(deep)
        group = "video" if "video" in frames.columns else None
        parts["deep"] = split_manifest(frames, PRESETS["deepfakes"], seed, group=group)
    if not parts:
        raise ValueError("build_paper_lists needs at least one prepared manifest")
    if len(parts) == 2:
        parts["both"] = {
            p: pd.concat([parts["shallow"][p], parts["deep"][p]], ignore_index=True) for p in PARTS
        }
    written = {}
    for name, split in parts.items():
        for part, frame in split.items():
            written[f"{name}_{part}"] = write_manifest(frame, out_dir / f"{name}_{part}.csv")
    return written


def sample_manifest(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """At most `n` rows of a manifest, drawn in turn from each (source, label) group so that every
    group keeps rows while there is room (seeded); the rows keep their order. `n` <= 0 keeps all."""
    if n <= 0 or len(df) <= n:
        return df
    rng = np.random.default_rng(seed)
    keys = df["source"].astype(str) + "/" + df["label"].astype(str) if "source" in df else df["label"].astype(str)
    pools = [list(rng.permutation(np.flatnonzero(keys.to_numpy() == k))) for k in sorted(set(keys))]
    chosen: list[int] = []
    while len(chosen) < n:
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop()))
    return df.iloc[sorted(chosen)]


def paper_splits(
    manifest_dir: str | os.PathLike, out_dir: str | os.PathLike, paper_lists: Mapping[str, object], seed: int = 0
) -> dict[str, Path]:
    """The train/val/test lists of one `use` ("shallow", "deep" or "both") of `build_paper_lists`.

    `paper_lists` names the prepared manifests `<manifest_dir>/<name>.csv` of each role
    (`shallow_train`, `deep`, `shallow_tests` as a list) and the `use`; returns {part: list path}.
    """
    if "use" not in paper_lists:
        raise ValueError("paper_lists needs a 'use' key: shallow, deep or both")
    folder = Path(manifest_dir)
    roles = {
        role: [folder / f"{n}.csv" for n in names] if isinstance(names, list) else folder / f"{names}.csv"
        for role, names in paper_lists.items()
        if role != "use"
    }
    lists = build_paper_lists(out_dir, seed=seed, **roles)
    return {name.split("_")[-1]: path for name, path in lists.items() if name.startswith(str(paper_lists["use"]))}
