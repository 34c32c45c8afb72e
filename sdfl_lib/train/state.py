"""Run-folder files: atomic writes, random-generator states, the per-epoch metrics CSV."""

from __future__ import annotations

import csv
import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

STATE_FORMAT = "sdfl-train-state"
# Counters of a run kept in state.pt besides the model, optimizer, scheduler and scaler states.
_COUNTERS = ("epoch", "step_in_epoch", "global_step", "best", "best_epoch", "bad_epochs",
             "metrics", "acc", "has_edge")


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write a file so that readers see either the old or the new content, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through a temporary file and `os.replace`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA generator states (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_metrics_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """All per-epoch rows as CSV (rewritten whole, atomically; columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(buffer.getvalue().encode(), path)


def save_training_state(run: Any, rngs: list[dict[str, Any]]) -> None:
    """Write `run`'s full training state to its state.pt (rank 0 only; `rngs`: every rank's)."""
    if not run.env.is_main:
        return
    state = {
        "format": STATE_FORMAT, "version": 1, "config": run.cfg.to_dict(),
        "world_size": run.env.world_size, "rng": rngs,
        "model": run.raw.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "scaler": run.scaler.state_dict(),
        **{name: getattr(run, name) for name in _COUNTERS},
    }
    atomic_torch_save(state, run.run_dir / "state.pt")


def load_training_state(run: Any) -> None:
    """Restore what `save_training_state` wrote into `run` (same global batch and seed required)."""
    path = run.run_dir / "state.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not an sdfl training state")
    old = state["config"]
    if old.get("batch_size") != run.cfg.batch_size or old.get("seed") != run.cfg.seed:
        raise ValueError(
            "resume needs the same batch_size and seed as the interrupted run"
            f" (was batch_size={old.get('batch_size')}, seed={old.get('seed')})"
        )
    run.raw.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state["scheduler"] is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    for name in _COUNTERS:
        value = state[name]
        setattr(run, name, list(value) if isinstance(value, list) else
                dict(value) if isinstance(value, dict) else value)
    rngs, rank = state["rng"], run.env.rank
    if len(rngs) != run.env.world_size:
        if run.env.is_main:
            tqdm.write(f"note: the state was saved with {len(rngs)} processes, now"
                       f" {run.env.world_size}: random generators restart from rank 0's state"
                       " (the data order and augmentations are unaffected)")
        rank = 0
    set_rng_state(rngs[rank])
