"""Run-folder files: atomic writes, random-generator states, the per-epoch metrics CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdfl_lib.errors import DataError, UsageError
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import atomic_write
from sdfl_lib.train.config import normalize_augment

STATE_FORMAT = "sdfl-train-state"
# Keys a resumed run may change: applied from the step it resumes at, and recorded.
RESUMABLE_KEYS = (
    "lr", "epochs", "early_stop_patience", "plateau_patience", "grad_clip", "workers",
    "log_every_steps", "checkpoint_every_steps", "progress", "max_steps", "limit_train_batches",
    "limit_val_batches", "device", "compile", "channels_last", "winograd", "keep_state",
)  # fmt: skip
# Where the run lives, not what it computes: neither refused nor recorded.
_PLACE_KEYS = ("out_dir", "overwrite")
PREVIOUS_STATE = "state.prev.pt"


def fresh_acc() -> dict[str, float]:
    """The running sums of an epoch's training steps, all zero."""
    return {"loss": 0.0, "clf": 0.0, "seg": 0.0, "edge": 0.0, "steps": 0, "images": 0, "time": 0.0}


@dataclass
class TrainingState:
    """Where a run is: the counters state.pt keeps besides the model, optimizer, scheduler and
    scaler states (each field is a key of the file, under its own name).

    `epoch`: finished epochs; `step_in_epoch`: finished optimizer steps of the epoch in progress;
    `best`/`best_epoch`/`bad_epochs`: the monitored loss's best, its epoch (1-based) and the epochs
    since; `metrics`: the per-epoch rows; `acc`: the epoch's running sums (`fresh_acc`);
    `has_edge`: the model has an edge head; `changes`: the keys resumes changed.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    acc: dict[str, float] = field(default_factory=fresh_acc)
    has_edge: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The fields as state.pt keys (copies: later steps do not change what was saved)."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainingState:
        """The counters of a state.pt (one saved before resumes were recorded has no changes)."""
        return cls(**{f.name: _copy(state[f.name]) for f in dataclasses.fields(cls)
                      if f.name in state or f.name != "changes"})


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write a file so that readers see either the old or the new content, never a partial one."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_torch_save(obj: Any, path: str | Path, keep_previous: Path | None = None) -> None:
    """`torch.save` through a temporary file and `os.replace`; with `keep_previous`, the file
    it replaces stays there (a hard link, else a copy), so one bad write never loses the run."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path = Path(path)
    if keep_previous is not None and path.is_file():
        link_or_copy(path, keep_previous)
    atomic_write_bytes(buffer.getvalue(), path)


def link_or_copy(src: Path, dst: Path) -> None:
    """`dst` becomes the file `src` is now (a hard link, else a copy), swapped in atomically; a
    later atomic replace of `src` leaves `dst` as it was."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


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
    """Write `run`'s full training state to its state.pt (rank 0 only; `rngs`: every rank's):
    its config, model, optimizer, scheduler and scaler, and its counters (`run.state`, a
    `TrainingState`); the state it replaces is kept as state.prev.pt."""
    if not run.env.is_main:
        return
    state = {
        "format": STATE_FORMAT, "version": 1, "config": run.cfg.to_dict(),
        "world_size": run.env.world_size, "rng": rngs,
        "model": run.raw.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "scaler": run.scaler.state_dict(), **run.state.to_dict(),
    }
    atomic_torch_save(state, run.run_dir / "state.pt", keep_previous=run.run_dir / PREVIOUS_STATE)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, overwritten or not a torch file at all
        raise DataError(f"{path} is not a readable training state ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DataError(f"{path} is not an sdfl training state")
    return state


def read_training_state(run_dir: str | Path) -> dict[str, Any]:
    """The run's state.pt; when it is unreadable, the one before it (state.prev.pt) with a note.
    Neither readable: a `DataError` saying which weights are left (last.pt)."""
    run_dir = Path(run_dir)
    try:
        return _read_state(run_dir / "state.pt")
    except DataError as err:
        previous = run_dir / PREVIOUS_STATE
        if previous.is_file():
            try:
                state = _read_state(previous)
            except DataError:
                pass
            else:
                tqdm.write(f"note: {err}; resuming from the state before it, {previous} (epoch"
                           f" {state['epoch'] + 1}, step {state['step_in_epoch']}, global step"
                           f" {state['global_step']})")
                return state
        last = run_dir / "last.pt"
        hint = (f"; {last} holds the weights of the last finished epoch: start a new run from them"
                f" with init_checkpoint={last}" if last.is_file() else "")
        raise DataError(f"cannot resume: {err} and no earlier state is readable{hint}") from None


def resume_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) of every key a resume changes; a `UsageError` naming each key that cannot
    change (the model, the data, the batch, the seed ...: see `RESUMABLE_KEYS`)."""

    if "augment" in old:  # a state saved when `augment` was true/false
        old = {**old, "augment": normalize_augment(old["augment"])}
    changed = [(k, old[k], v) for k, v in new.items() if k in old and old[k] != v
               and k not in _PLACE_KEYS]
    fixed = [c for c in changed if c[0] not in RESUMABLE_KEYS]
    if fixed:
        what = ", ".join(f"{k} (was {a!r}, now {b!r})" for k, a, b in fixed)
        raise UsageError(
            f"a resumed run cannot change {what}; undo the edit, or start a new run in another"
            f" out_dir (only {', '.join(RESUMABLE_KEYS)} may change on resume)"
        )
    return changed


def load_training_state(run: Any, state: dict[str, Any] | None = None) -> None:
    """Restore what `save_training_state` wrote into `run` (its counters as a new `run.state`),
    then apply the keys the resume changed (`run.cfg` against the saved config): the learning
    rate into the optimizer and the schedule, patience and epochs into the schedule; each change
    recorded in `run.state.changes`."""
    state = read_training_state(run.run_dir) if state is None else state
    changes = resume_changes(state["config"], run.cfg.to_dict())
    run.raw.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state["scheduler"] is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.state = counters = TrainingState.from_dict(state)
    for key, old, new in changes:
        _apply_change(run, key, new)
        counters.changes.append({"global_step": counters.global_step, "epoch": counters.epoch + 1,
                                 "step_in_epoch": counters.step_in_epoch, "key": key, "old": old,
                                 "new": new})
    rngs, rank = state["rng"], run.env.rank
    if len(rngs) != run.env.world_size:
        if run.env.is_main:
            tqdm.write(f"note: the state was saved with {len(rngs)} processes, now"
                       f" {run.env.world_size}: random generators restart from rank 0's state"
                       " (the data order and augmentations are unaffected)")
        rank = 0
    set_rng_state(rngs[rank])


def _apply_change(run: Any, key: str, value: Any) -> None:
    """Puts one changed key into the restored optimizer and schedule (the others are read from
    `run.cfg` as the run goes)."""
    scheduler = run.scheduler
    if key == "lr":
        for group in run.optimizer.param_groups:
            group["lr"] = value
            if "initial_lr" in group:
                group["initial_lr"] = value
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [value] * len(run.optimizer.param_groups)
        if scheduler is not None and hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [value] * len(run.optimizer.param_groups)
    elif key == "plateau_patience" and hasattr(scheduler, "patience"):
        scheduler.patience = value
    elif key == "epochs" and hasattr(scheduler, "T_max"):
        scheduler.T_max = value
