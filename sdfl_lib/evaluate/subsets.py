"""Which images form which subset, and the metrics of each subset from the predictions table.

Shallow or deep: a manifest column `kind` ("shallow" / "deep") wins where present; otherwise a
source whose name matches `DEEP_SOURCES` (made from the data set registry,
`sdfl_lib.data.registry`: FaceForensics++ and its four methods, the authors' deepfake frames,
their real `youtube`/`actors` frames, synthetic faces, CIFAKE) is a deepfake source and every
other source is a shallowfake one. Subsets: "both" (everything),
"shallowfakes", "deepfakes", and "source/<name>" for each source; empty ones are left out.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sdfl_lib.data.registry import DEEP_SOURCES
from sdfl_lib.metrics import chosen_protocols, paper_metrics, standard_metrics
from sdfl_lib.metrics.uncertainty import floors, metric_intervals

KIND_NAMES = {"shallow": "shallowfakes", "deep": "deepfakes"}


def source_kind(source: str, deep_sources: str = DEEP_SOURCES) -> str:
    """ "deep" when the source name matches `deep_sources` (case-insensitive), else "shallow"."""
    return "deep" if re.search(deep_sources, source or "", flags=re.IGNORECASE) else "shallow"


def assign_kinds(table: pd.DataFrame, deep_sources: str = DEEP_SOURCES) -> pd.Series:
    """The kind of every row: the `kind` column where set, else the source-name rule."""
    by_rule = table["source"].fillna("").map(lambda s: source_kind(s, deep_sources))
    if "kind" not in table.columns:
        return by_rule
    given = table["kind"].fillna("").astype(str).str.strip().str.lower()
    bad = sorted(set(given) - {"", "shallow", "deep"})
    if bad:
        raise ValueError(f"column 'kind' must be 'shallow' or 'deep', got {bad}")
    return given.where(given != "", by_rule)


def subset_masks(
    table: pd.DataFrame, wanted: list[str] | None = None, deep_sources: str = DEEP_SOURCES
) -> dict[str, np.ndarray]:
    """Boolean row selections by subset name, non-empty only, in report order."""
    kinds = assign_kinds(table, deep_sources).to_numpy()
    out = {"both": np.ones(len(table), bool)}
    for kind, name in KIND_NAMES.items():
        out[name] = kinds == kind
    for source in sorted(table["source"].fillna("").unique()):
        out[f"source/{source or 'unknown'}"] = (table["source"].fillna("") == source).to_numpy()
    if wanted:
        unknown = [w for w in wanted if w not in out]
        if unknown:
            raise ValueError(f"unknown subset(s) {unknown}; available: {list(out)}")
        out = {k: out[k] for k in wanted}
    return {k: v for k, v in out.items() if v.any()}


def subset_metrics(
    table: pd.DataFrame,
    protocol: str = "both",
    threshold: float = 0.5,
    boundary_band: int | str = 0,
    ci: int = 0,
) -> dict:
    """Counts, the chosen protocol(s)' metrics, the trivial predictors' scores ("floors") and
    notes for one subset's rows; with `ci` > 0 resamples, each headline metric's 95 % bootstrap
    interval too ("intervals", see `sdfl_lib.metrics.uncertainty`)."""
    pixel = table["pixel"].astype(bool)
    out: dict = {
        "count/images": int(len(table)),
        "count/authentic": int((table["label"] == 0).sum()),
        "count/tampered": int((table["label"] == 1).sum()),
        "count/label_only": int(((table["label"] == 1) & ~pixel & (table["mask"] == "")).sum()),
        "count/mask_resized": int((table["mask_event"] == "resized").sum()),
        "count/mask_skipped": int((table["mask_event"] == "skipped").sum()),
    }
    protocols = chosen_protocols(protocol)
    if "paper" in protocols:
        # As the authors' evaluation: a mask of another size is left out of paper/pixel_f1.
        out["count/paper_pixel_f1_left_out_mask_size"] = int((table["mask_event"] != "").sum())
    notes: list[str] = []
    for name in protocols:
        m, n = paper_metrics(table, threshold) if name == "paper" else standard_metrics(
            table, threshold, boundary_band)
        out.update(m)
        notes += n
    out["floors"] = floors(table, threshold, protocol)
    if ci:
        out["intervals"] = metric_intervals(table, out, threshold, protocol, resamples=ci)
    out["notes"] = notes
    return out
