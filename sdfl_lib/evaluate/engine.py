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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sdfl_lib.data.io import MaskSizeError
from sdfl_lib.data.manifest import ManifestError, check_labels_agree, normalize_frame, read_manifest
from sdfl_lib.errors import DataError, UsageError
from sdfl_lib.evaluate.dataset import EvalDataset, collate, map_paths
from sdfl_lib.evaluate.predictions import FORMAT, Writer, make_row, read_predictions
from sdfl_lib.evaluate.report import write_report
from sdfl_lib.evaluate.robustness import Perturbation, parse_robustness
from sdfl_lib.evaluate.subsets import DEEP_SOURCES, subset_masks, subset_metrics
from sdfl_lib.inference import (
    calibration_batch,
    inference_model,
    model_image_size,
    resolve_backend,
    resolve_model,
    restore_map,
)
from sdfl_lib.metrics import pixel_counts
from sdfl_lib.metrics.counts import band_label, boundary_band_counts
from sdfl_lib.metrics.paper import paper_pixel_counts
from sdfl_lib.metrics.protocols import PROTOCOL_CHOICES as PROTOCOLS
from sdfl_lib.metrics.uncertainty import RESAMPLES
from sdfl_lib.paths import holds_folder_lock
from sdfl_lib.runtime import atomic_write, autocast, make_loader, model_device

# Settings that must match for rows of an earlier run to be reused.
_RESUME_KEYS = (
    "model",
    "manifest",
    "image_size",
    "threshold",
    "mask_policy",
    "format",
    "boundary_band",
    "int8",
)
# What a setting meant in runs recorded before it existed.
_RESUME_DEFAULTS = {"int8": False}


@dataclass(frozen=True)
class EvalConfig:
    """The settings of one evaluation, resolved: the model's input size, the boundary band's label,
    the parsed perturbations. `evaluate` builds it from its keyword arguments."""

    image_size: int
    protocol: str = "both"
    subsets: list[str] | None = None
    perturbations: tuple[Perturbation, ...] = ()
    batch_size: int = 8
    workers: int = 2
    threshold: float = 0.5
    mask_policy: str = "resize"
    save_maps: bool = True
    resume: bool = True
    figures: bool = True
    deep_sources: str = DEEP_SOURCES
    progress: bool = True
    boundary_band: str = ""  # band_label's form; "" when off
    backend: str = "auto"
    int8: bool = False
    calibration: int | list = 32
    ci: int = RESAMPLES  # bootstrap resamples of the headline metrics' intervals; 0: none


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
            for k in _RESUME_KEYS
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
    done: set = set()
    if csv_path.is_file() and csv_path.stat().st_size:
        prev = read_predictions(csv_path)
        done = set(zip(prev["row"].astype(int), prev["image"], strict=True))
    names = dict(
        zip(
            [r["row"] for r in rows],
            map_paths([r["image"] for r in rows], [r["source"] for r in rows]),
            strict=True,
        )
    )
    todo = [r for r in rows if (r["row"], r["image"]) not in done]
    stats = {"images": len(todo), "resumed": len(rows) - len(todo), "errors": [], "forward_s": 0.0}
    if not todo:
        return stats
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
            for it in batch["errors"]:
                meta = todo[it["i"]]
                if it["fatal"]:
                    raise MaskSizeError(*it["fatal"])
                stats["errors"].append(
                    {"row": meta["row"] + 1, "image": meta["image"], "error": it["error"]}
                )
            if batch["x"] is not None:
                t0 = time.perf_counter()
                with torch.no_grad(), autocast(device):
                    pred = model(batch["x"].to(device, non_blocking=True))
                probs, scores = pred.mask_prob[:, 0], pred.image_score.cpu().tolist()
                stats["forward_s"] += time.perf_counter() - t0
                for j, it in enumerate(batch["items"]):
                    _emit(
                        writer,
                        todo[it["i"]],
                        it,
                        probs[j],
                        scores[j],
                        config.threshold,
                        names[todo[it["i"]]["row"]],
                        save_maps,
                        config.boundary_band,
                    )
            bar.update(len(batch["items"]) + len(batch["errors"]))
    finally:
        bar.close()
        writer.close()
    stats["wall_s"] = time.perf_counter() - start
    return stats


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


def _subset_results(table, cfg: EvalConfig, subsets) -> dict:
    return {
        name: subset_metrics(table[sel], cfg.protocol, cfg.threshold, cfg.boundary_band, cfg.ci)
        for name, sel in subset_masks(table, subsets, cfg.deep_sources).items()
    }


def _robustness_results(model, rows: list[dict], out: Path, cfg: EvalConfig, subsets: list[str]) -> dict:
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


@holds_folder_lock("out_dir", "sdfl evaluate")
def evaluate(
    model_or_checkpoint: nn.Module | str | os.PathLike | None,
    manifest: str | os.PathLike | pd.DataFrame,
    out_dir: str | os.PathLike,
    protocol: str = "both",
    subsets: list[str] | None = None,
    robustness: str | list | dict | None = None,
    batch_size: int = 8,
    workers: int = 2,
    image_size: int | None = None,
    threshold: float = 0.5,
    mask_policy: str = "resize",
    method: str | None = None,
    device: str | None = None,
    save_maps: bool = True,
    resume: bool = True,
    figures: bool = True,
    deep_sources: str = DEEP_SOURCES,
    progress: bool = True,
    boundary_band: int | str = 0,
    backend: str = "auto",
    int8: bool = False,
    calibration: int | list = 32,
    ci: int = RESAMPLES,
) -> dict:
    """Evaluates a model (module, checkpoint path, or `method` = "ela"/"noise"/a model name) on a
    manifest; writes config.json, predictions.csv, maps/, metrics.json, report.md, tables and
    figures under `out_dir`, and returns the metrics (see `sdfl_lib.evaluate.report`).

    protocol: "paper", "standard" or "both" (see `sdfl_lib.metrics`). subsets: names to report
    (default all non-empty: "both", "shallowfakes", "deepfakes", "source/<name>"). robustness:
    e.g. "jpeg,blur,noise_sigma,noise_var,resize" or "jpeg:90/70" (see `parse_robustness`).
    mask_policy: what the standard protocol does with a mask whose size differs from its image:
    "resize" (nearest), "skip" (no pixel metrics for that image) or "fail"; the paper protocol
    always leaves such an image out of its pixel F1, as the authors' evaluation does. Every such
    mask is counted and listed. boundary_band: B > 0 (or "IN:OUT") adds
    standard/pixel_f1_band{B}px@t keys that leave out pixels within B pixels of the mask's
    boundary (see `sdfl_lib.metrics.standard`; 0: off). backend/int8: the inference route
    (`sdfl_lib.inference.inference_model`); int8 calibrates on the first `calibration`
    images of the manifest, or on the images given as a list. ci: bootstrap resamples of the 95 %
    interval of every headline metric, per subset and perturbation (0: no intervals; see
    `sdfl_lib.metrics.uncertainty`).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    band = band_label(boundary_band)  # checks it too; "" when off
    if not isinstance(ci, int) or ci < 0:
        raise UsageError(f"ci: the number of bootstrap resamples, an integer >= 0 (0: off), got {ci!r}")
    perturbations = parse_robustness(robustness)
    given = None if method or isinstance(model_or_checkpoint, nn.Module) else model_or_checkpoint
    # A weights name (table3-N) is resolved once, inside: the model knows its file for the export.
    model = resolve_model(model_or_checkpoint, method, device)
    cfg = EvalConfig(
        image_size=model_image_size(model, image_size),
        protocol=protocol,
        subsets=subsets,
        perturbations=tuple(perturbations),
        batch_size=batch_size,
        workers=workers,
        threshold=threshold,
        mask_policy=mask_policy,
        save_maps=save_maps,
        resume=resume,
        figures=figures,
        deep_sources=deep_sources,
        progress=progress,
        boundary_band=band,
        backend=backend,
        int8=int8,
        calibration=calibration,
        ci=ci,
    )
    rows, manifest_name = _read_rows(manifest)
    # Bad subset names and kinds fail now, not after the whole pass.
    subset_masks(pd.DataFrame(rows), cfg.subsets, cfg.deep_sources)
    out = Path(out_dir)
    spec = dict(getattr(model, "sdfl_spec", {}) or {"name": type(model).__name__})
    passes = len(rows) * (1 + len(cfg.perturbations))  # forward passes of the whole run
    config = {
        "model": {"spec": spec, "fingerprint": _fingerprint(model)},
        "checkpoint": str(given) if given else None,
        "method": method,
        "manifest": manifest_name,
        "image_size": cfg.image_size,
        "threshold": cfg.threshold,
        "mask_policy": cfg.mask_policy,
        "format": FORMAT,
        "boundary_band": cfg.boundary_band,
        "protocol": cfg.protocol,
        "subsets": cfg.subsets,
        "robustness": [p.name for p in cfg.perturbations],
        "deep_sources": cfg.deep_sources,
        "batch_size": cfg.batch_size,
        "workers": cfg.workers,
        "device": str(model_device(model)),
        "backend": resolve_backend(model, cfg.backend, cfg.int8, passes, cfg.image_size),
        "int8": cfg.int8,
        "ci": cfg.ci,
    }
    _check_config(out, config, cfg.resume)
    if isinstance(cfg.calibration, int):
        images = [r["image"] for r in rows[:cfg.calibration]] if cfg.int8 else []
    else:
        images = list(cfg.calibration)
    model = inference_model(
        model, cfg.backend, cfg.int8, cfg.image_size,
        calibration=calibration_batch(images, cfg.image_size) if cfg.int8 else None,
        images=passes,
    )  # fmt: skip
    stats = run_pass(model, rows, out, cfg)
    keys = {(r["row"], r["image"]) for r in rows}
    table = read_predictions(out / "predictions.csv")
    table = table[[k in keys for k in zip(table["row"], table["image"], strict=True)]]
    table = _with_kinds(table, rows)
    if not len(table):
        first = stats["errors"][0] if stats["errors"] else {"row": "?", "error": "no rows"}
        raise DataError(
            f"none of the {len(rows)} rows of {manifest_name} could be scored; first: row "
            f"{first['row']}: {first['error']}"
        )
    # The mask rule's other case, reported as validation reports it: scored, and listed.
    empty = table[(table["label"] == 1) & table["pixel"] & (table["tp"] + table["fn"] == 0)]
    results = {
        "subsets": _subset_results(table, cfg, cfg.subsets),
        "tampered_empty_mask": {"count": int(len(empty)), "images": empty["image"].tolist()},
        "errors": stats["errors"],
        "timing": {k: stats.get(k) for k in ("images", "resumed", "forward_s", "wall_s")},
    }
    if cfg.perturbations:
        wanted = [s for s in ("both", "shallowfakes", "deepfakes") if s in results["subsets"]]
        results["robustness"] = _robustness_results(model, rows, out, cfg, wanted)
    return write_report(out, config, table, results, figures=cfg.figures)
