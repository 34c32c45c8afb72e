"""`evaluate`: batched inference over a manifest, streamed per-image counts, metrics and report.

Each image is resized to the model's input size, its probability map resized back to the image's
own size and compared with the mask there. Per-image results stream to `predictions.csv` (a
writer thread also saves the maps), so an interrupted run resumes where it stopped and metrics
never need the maps in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from sdfl_lib.data.io import MaskSizeError
from sdfl_lib.data.manifest import ManifestError, check_labels_agree, normalize_frame, read_manifest
from sdfl_lib.errors import DataError
from sdfl_lib.evaluate.config import EvalConfig, resume_keys
from sdfl_lib.evaluate.dataset import EvalDataset, collate, map_paths
from sdfl_lib.evaluate.predictions import FORMAT, Writer, make_row, read_predictions
from sdfl_lib.evaluate.report import write_report
from sdfl_lib.evaluate.robustness import Perturbation
from sdfl_lib.evaluate.subsets import subset_masks, subset_metrics
from sdfl_lib.inference import (
    calibration_batch,
    inference_model,
    model_image_size,
    resolve_backend,
    resolve_model,
    restore_map,
)
from sdfl_lib.metrics import pixel_counts
from sdfl_lib.metrics.counts import boundary_band_counts
from sdfl_lib.metrics.paper import paper_pixel_counts
from sdfl_lib.paths import holds_folder_lock
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import atomic_write, autocast, make_loader, model_device

# What a setting meant in runs recorded before it existed.
_RESUME_DEFAULTS = {"int8": False}
# Besides the settings marked so in EvalConfig, what must match for rows to be reused.
_RESUME_KEYS = ("model", "manifest", "format")


def _fingerprint(model: nn.Module) -> str:
    """A cheap digest of the weights (a strided sample of every tensor)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        flat = t.detach().flatten()
        h.update(name.encode())
        h.update(flat[:: max(1, flat.numel() // 64)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_config(out: Path, config: dict, resume: bool) -> None:
    path = out / "config.json"
    if path.is_file() and resume:
        old = json.loads(path.read_text())
        diff = {
            k: (old.get(k, _RESUME_DEFAULTS.get(k)), config[k])
            for k in (*_RESUME_KEYS, *resume_keys())
            if old.get(k, _RESUME_DEFAULTS.get(k)) != config[k]
        }
        if diff:
            raise ValueError(
                f"{out} holds an evaluation with other settings {diff}; use another output "
                "folder or resume=False (--no-resume) to start over"
            )
    if not resume:
        for stale in [out / "predictions.csv", out / "robustness"]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(config, indent=2, default=str) + "\n")


def run_pass(
    model: nn.Module,
    rows: list[dict],
    out: Path,
    config: EvalConfig,
    perturb: Perturbation | None = None,
) -> dict:
    """Predicts the rows not yet in out/predictions.csv and appends them; returns errors/timing.
    Maps are saved (config.save_maps) for the unperturbed pass only."""
    save_maps = config.save_maps and perturb is None
    device = model_device(model)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "predictions.csv"
    done = _scored_keys(csv_path)
    todo = [r for r in rows if (r["row"], r["image"]) not in done]
    stats = {"images": len(todo), "resumed": len(rows) - len(todo), "errors": [], "forward_s": 0.0}
    if not todo:
        return stats
    names = _map_names(rows)
    loader = make_loader(EvalDataset(todo, config.image_size, config.mask_policy, perturb),
                         batch_size=config.batch_size, workers=config.workers, collate_fn=collate,
                         device=device)
    writer = Writer(csv_path, out / "maps" if save_maps else None)
    start = time.perf_counter()
    bar = tqdm(
        total=len(todo),
        unit="img",
        desc=perturb.name if perturb else "evaluate",
        disable=not config.progress,
    )
    try:
        for batch in loader:
            stats["errors"] += _unread(batch, todo)
            if batch["x"] is not None:
                stats["forward_s"] += _score_batch(
                    model, batch, todo, names, writer, config, save_maps
                )
            bar.update(len(batch["items"]) + len(batch["errors"]))
    finally:
        bar.close()
        writer.close()
    stats["wall_s"] = time.perf_counter() - start
    return stats


def _scored_keys(csv_path: Path) -> set[tuple[int, str]]:
    """(row, image) of the rows an earlier run already wrote to the predictions table."""
    if not (csv_path.is_file() and csv_path.stat().st_size):
        return set()
    prev = read_predictions(csv_path)
    return set(zip(prev["row"].astype(int), prev["image"], strict=True))


def _map_names(rows: list[dict]) -> dict[int, str]:
    """Row -> its map's file name, unique over every row of the manifest (not only those left)."""
    images, sources = [r["image"] for r in rows], [r["source"] for r in rows]
    return dict(zip([r["row"] for r in rows], map_paths(images, sources), strict=True))


def _unread(batch: dict, todo: list[dict]) -> list[dict]:
    """The batch's rows that could not be read, listed; a mask the policy refuses ends the run."""
    errors = []
    for it in batch["errors"]:
        meta = todo[it["i"]]
        if it["fatal"]:
            raise MaskSizeError(*it["fatal"])
        errors.append({"row": meta["row"] + 1, "image": meta["image"], "error": it["error"]})
    return errors


def _score_batch(
    model: nn.Module,
    batch: dict,
    todo: list[dict],
    names: dict[int, str],
    writer: Writer,
    config: EvalConfig,
    save_maps: bool,
) -> float:
    """One forward pass over the batch's images, each scored and queued for writing; returns the
    seconds the forward pass took."""
    device = model_device(model)
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(device):
        pred = model(batch["x"].to(device, non_blocking=True))
    probs, scores = pred.mask_prob[:, 0], pred.image_score.cpu().tolist()
    seconds = time.perf_counter() - t0
    for j, it in enumerate(batch["items"]):
        meta = todo[it["i"]]
        _emit(writer, meta, it, probs[j], scores[j], config.threshold, names[meta["row"]],
              save_maps, config.band)
    return seconds


@torch.no_grad()
def _emit(
    writer: Writer,
    meta: dict,
    item: dict,
    prob: torch.Tensor,
    score: float,
    threshold: float,
    map_name: str,
    save_map: bool,
    boundary_band: str = "",
) -> None:
    """Counts of one image at its own size (both protocols), queued for writing with its map."""
    mask = item["mask"]
    if mask is None and meta["label"] == 0 and not meta["mask"]:
        mask = torch.zeros(item["size"], dtype=torch.uint8)  # authentic: nothing is tampered
    # The paper protocol leaves a mask of another size out of pixel F1, whatever the mask policy.
    paper = (
        paper_pixel_counts(prob, mask, threshold)
        if mask is not None and not item["mask_event"]
        else None
    )
    prob = restore_map(prob, item["size"])
    counts = pixel_counts(prob, mask.to(prob.device), threshold) if mask is not None else None
    band = (
        boundary_band_counts(prob, mask, threshold, boundary_band)
        if boundary_band and mask is not None
        else None
    )
    png = prob.mul(255).round_().to(torch.uint8).cpu().numpy() if save_map else None
    row = make_row(
        meta,
        score,
        item["size"],
        counts,
        item["mask_event"],
        item["mask_size"],
        map_name if save_map else "",
        paper,
        band,
    )
    writer.put(row, png)


def _read_rows(manifest: str | os.PathLike | pd.DataFrame) -> tuple[list[dict], str]:
    if isinstance(manifest, pd.DataFrame):
        df, name = normalize_frame(manifest), "<DataFrame>"
    else:
        df, name = read_manifest(manifest), str(Path(manifest).absolute())
    if not len(df):
        raise ManifestError(f"manifest {name} has no rows")
    df = df.reset_index(drop=True)
    check_labels_agree(df, name)  # one image cannot count as both a hit and a false alarm
    df["row"] = df.index
    keep = ["row", "image", "mask", "label", "source"] + (["kind"] if "kind" in df else [])
    rows = df[keep].to_dict("records")
    for r in rows:
        r["label"] = int(r["label"])
    return rows, name


def _with_kinds(table: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Adds the manifest's `kind` column (shallow/deep) to a predictions table where it has one."""
    if "kind" not in rows[0]:
        return table
    return table.assign(kind=table["row"].map({r["row"]: r["kind"] for r in rows}))


def _subset_results(table: pd.DataFrame, cfg: EvalConfig, subsets: list[str] | None) -> dict:
    return {
        name: subset_metrics(table[sel], cfg.protocol, cfg.threshold, cfg.band, cfg.ci)
        for name, sel in subset_masks(table, subsets, cfg.deep_sources).items()
    }


@holds_folder_lock("out_dir", "sdfl evaluate")
def evaluate(
    model_or_checkpoint: nn.Module | str | os.PathLike | None,
    manifest: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    config: EvalConfig | None = None,
    **settings: Any,
) -> dict:
    """Evaluates a model (module, checkpoint path, or the setting `method` = "ela"/"noise"/a model
    name) on a manifest; writes config.json, predictions.csv, maps/, metrics.json, report.md,
    tables and figures under `out_dir`, and returns the metrics (see `sdfl_lib.evaluate.report`).

    The settings are `config` (an `EvalConfig`, default its defaults) with any of its fields given
    by keyword over it, e.g. `evaluate(model, manifest, out, threshold=0.3, workers=0)`; each
    field's help says what it does. protocol: "paper", "standard" or "both" (see
    `sdfl_lib.metrics`). robustness: see `parse_robustness`. mask_policy: the standard protocol's
    handling of a mask whose size differs from its image; the paper protocol always leaves such an
    image out of its pixel F1, as the authors' evaluation does; every such mask is counted and
    listed. backend/int8: the inference route (`sdfl_lib.inference.inference_model`). ci:
    bootstrap resamples of the 95 % interval of every headline metric, per subset and perturbation
    (0: no intervals; see `sdfl_lib.metrics.uncertainty`).
    """
    cfg = EvalConfig.of(config, **settings)  # bad settings fail here, before any model is loaded
    given = (None if cfg.method or isinstance(model_or_checkpoint, nn.Module)
             else model_or_checkpoint)
    # A weights name (table3-N) is resolved once, inside: the model knows its file for the export.
    model = resolve_model(model_or_checkpoint, cfg.method, cfg.device)
    # The settings as run: the input size the model asks for when none is given.
    cfg = replace(cfg, image_size=model_image_size(model, cfg.image_size))
    rows, manifest_name = _read_rows(manifest)
    # Bad subset names and kinds fail now, not after the whole pass.
    subset_masks(pd.DataFrame(rows), cfg.subsets, cfg.deep_sources)
    out = Path(out_dir)
    passes = len(rows) * (1 + len(cfg.perturbations))  # forward passes of the whole run
    record = _record(model, given, manifest_name, cfg, passes)
    _check_config(out, record, cfg.resume)
    model = _inference_route(model, rows, cfg, passes)
    stats = run_pass(model, rows, out, cfg)
    table = _scored_table(out / "predictions.csv", rows, stats, manifest_name)
    results = _results(table, stats, cfg)
    if cfg.perturbations:
        wanted = [s for s in ("both", "shallowfakes", "deepfakes") if s in results["subsets"]]
        results["robustness"] = _robustness_results(model, rows, out, cfg, wanted)
    return write_report(out, record, table, results, figures=cfg.figures)


def _record(
    model: nn.Module, given: Any, manifest_name: str, cfg: EvalConfig, passes: int
) -> dict:
    """What config.json holds: the model (spec and a digest of its weights), the checkpoint and
    manifest named, the predictions' format, the settings recorded, the device and the backend
    chosen for `passes` forward passes."""
    return {
        "model": {
            "spec": dict(getattr(model, "sdfl_spec", {}) or {"name": type(model).__name__}),
            "fingerprint": _fingerprint(model),
        },
        "checkpoint": str(given) if given else None,
        "manifest": manifest_name,
        "format": FORMAT,
        **cfg.record(),
        "device": str(model_device(model)),
        "backend": resolve_backend(model, cfg.backend, cfg.int8, passes, cfg.image_size),
    }


def _inference_route(model: nn.Module, rows: list[dict], cfg: EvalConfig, passes: int) -> nn.Module:
    """The model on its inference route; int8 calibrated on the first `cfg.calibration` rows'
    images or on the images listed there."""
    if isinstance(cfg.calibration, int):
        images = [r["image"] for r in rows[:cfg.calibration]] if cfg.int8 else []
    else:
        images = list(cfg.calibration)
    return inference_model(
        model, cfg.backend, cfg.int8, cfg.image_size,
        calibration=calibration_batch(images, cfg.image_size) if cfg.int8 else None,
        images=passes,
    )  # fmt: skip


def _scored_table(
    csv_path: Path, rows: list[dict], stats: dict, manifest_name: str
) -> pd.DataFrame:
    """The predictions of this manifest's rows (a resumed table may hold others); a DataError when
    none could be scored."""
    keys = {(r["row"], r["image"]) for r in rows}
    table = read_predictions(csv_path)
    table = table[[k in keys for k in zip(table["row"], table["image"], strict=True)]]
    table = _with_kinds(table, rows)
    if not len(table):
        first = stats["errors"][0] if stats["errors"] else {"row": "?", "error": "no rows"}
        raise DataError(
            f"none of the {len(rows)} rows of {manifest_name} could be scored; first: row "
            f"{first['row']}: {first['error']}"
        )
    return table


def _results(table: pd.DataFrame, stats: dict, cfg: EvalConfig) -> dict:
    """The metrics of each subset, the tampered rows without a tampered pixel, errors and timing."""
    # The mask rule's other case, reported as validation reports it: scored, and listed.
    empty = table[(table["label"] == 1) & table["pixel"] & (table["tp"] + table["fn"] == 0)]
    return {
        "subsets": _subset_results(table, cfg, cfg.subsets),
        "tampered_empty_mask": {"count": int(len(empty)), "images": empty["image"].tolist()},
        "errors": stats["errors"],
        "timing": {k: stats.get(k) for k in ("images", "resumed", "forward_s", "wall_s")},
    }


def _robustness_results(
    model: nn.Module, rows: list[dict], out: Path, cfg: EvalConfig, subsets: list[str]
) -> dict:
    """One pass per perturbation into out/robustness/<kind>_<level>/; the metrics of `subsets`."""
    results = {}
    for p in cfg.perturbations:
        sub = out / "robustness" / p.name.replace("@", "_")
        st = run_pass(model, rows, sub, cfg, perturb=p)
        t = _with_kinds(read_predictions(sub / "predictions.csv"), rows)
        results[p.name] = {
            "kind": p.kind,
            "level": p.level,
            "subsets": _subset_results(t, cfg, subsets),
            "errors": len(st["errors"]),
        }
    return results
