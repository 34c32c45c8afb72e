"""`fit(config) -> RunResult`: the one training loop for CPU, one GPU and DDP, with exact resume."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch.utils.data import Dataset

from sdfl_lib.errors import DataError
from sdfl_lib.models import make_checkpoint
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import make_loader, precision_note
from sdfl_lib.train import distributed as D
from sdfl_lib.train.build import (
    build_datasets,
    build_optimizer,
    build_scheduler,
    build_train_model,
    wrap_model,
)
from sdfl_lib.train.config import TrainConfig, parse_overrides
from sdfl_lib.train.loss import PaperLoss
from sdfl_lib.train.malloc import tune_malloc
from sdfl_lib.train.sampler import SeededItems, StepBatchSampler, epoch_orders
from sdfl_lib.train.signals import StopSignals
from sdfl_lib.train.state import (
    PREVIOUS_STATE,
    TrainingState,
    atomic_torch_save,
    fresh_acc,
    link_or_copy,
    load_training_state,
    read_training_state,
    resume_changes,
    rng_state,
    save_training_state,
    write_metrics_csv,
)
from sdfl_lib.train.step import TrainStep
from sdfl_lib.train.validation import validation_loss


class NonFiniteLossError(DataError, RuntimeError):
    """The loss became NaN or infinite; the run stopped before the optimizer step."""


@dataclass
class RunResult:
    """What a run left behind and how it ended.

    status: "completed", "early_stopped", "max_steps" or "interrupted" (SIGTERM/SIGINT; state saved).
    """

    run_dir: Path
    status: str
    epochs: int
    global_step: int
    best_loss: float
    best_epoch: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    signal: int = 0

    @property
    def best_checkpoint(self) -> Path:
        """best.pt: lowest validation loss (training loss without a validation set)."""
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        """last.pt: the weights at the end of the last finished epoch."""
        return self.run_dir / "last.pt"

    @property
    def state_path(self) -> Path:
        """state.pt: everything `--resume` needs."""
        return self.run_dir / "state.pt"


def fit(
    config: TrainConfig | dict | str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
) -> RunResult:
    """Train a model as `config` says and return where the results are.

    config: a TrainConfig, a dict of keys, or a YAML path (with `resume` and no config, the run
    folder's config.yaml). `overrides`: `key=value` items applied on top. `resume`: a run folder to
    continue from its state.pt (mid-epoch included). `train_dataset`/`val_dataset` replace the
    manifests with ready Dataset objects yielding the usual item dicts.
    Under torchrun or srun every process calls `fit`; only rank 0 writes files. The process's
    malloc is tuned for training (`sdfl_lib.train.malloc.tune_malloc`).
    """
    if config is None and resume is None:
        raise ValueError("give a config (TrainConfig, dict or YAML path) or a run folder to resume")
    # Freed activations stay in the heap for the next step (no page faults); SDFL_MALLOC=default
    # keeps the C library's settings. Before the model exists, so its buffers follow it too.
    tune_malloc()
    if resume is not None and not (Path(resume) / "state.pt").is_file():
        raise FileNotFoundError(f"cannot resume: {Path(resume) / 'state.pt'} does not exist"
                                " (give the run folder of an earlier run)")
    if config is None:
        config = Path(resume) / "config.yaml"  # type: ignore[arg-type]
    if isinstance(config, TrainConfig):
        config = config.replace(**dict(_overrides_dict(overrides)))
    elif isinstance(config, dict):
        config = TrainConfig.from_dict({**config, **_overrides_dict(overrides)})
    else:
        config = TrainConfig.load(config, overrides)
    if resume is not None:
        config = config.replace(out_dir=str(resume))
    env = D.init_distributed(config.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return _Run(config, env, resume is not None, train_dataset, val_dataset).run()
    finally:
        _set_deterministic(deterministic_before)
        D.shutdown(env)


def _set_deterministic(flag: bool) -> None:
    # Switching imports torch's compiler stack (seconds), so only switch when it changes.
    if torch.are_deterministic_algorithms_enabled() != flag:
        torch.use_deterministic_algorithms(flag)


def _overrides_dict(overrides: list[str] | dict | None) -> dict:
    return parse_overrides(overrides)


class _Run:
    """One training run: set-up, the epoch loop, validation, checkpoints; where it is, in
    `self.state` (a `TrainingState`, what state.pt keeps besides the weights)."""

    def __init__(self, config: TrainConfig, env: D.DistEnv, resume: bool, train_ds, val_ds):
        self.cfg, self.env, self.resume = config, env, resume
        self.run_dir = Path(config.out_dir)
        self.micro = config.per_rank_batch(env.world_size)
        self._check_new_run_dir()
        self._saved = None
        if resume:
            # Read and compare before anything is built: an edited backbone or image size is
            # refused in one line, not met as a shape error later.
            self._saved = read_training_state(self.run_dir)
            resume_changes(self._saved["config"], config.to_dict())
        self._seed_everything(config.seed)
        if train_ds is None:
            train_ds, built_val = build_datasets(config)
            val_ds = built_val if val_ds is None else val_ds
        self.train_ds, self.val_ds = train_ds, val_ds
        self._build_model()
        self.loss = PaperLoss(config.lambda_clf, config.lambda_seg, config.lambda_edge)
        self.optimizer = build_optimizer(config, self.raw.parameters())
        self.scheduler = build_scheduler(config, self.optimizer)
        self.train_step = TrainStep(self.optimizer, self.loss, device=env.device,
                                    precision=config.precision, grad_clip=config.grad_clip)
        self.scaler = self.train_step.scaler  # its state is part of state.pt
        self.sampler = StepBatchSampler(
            epoch_orders(train_ds, config.seed, config.balance_classes), len(train_ds),
            config.batch_size, env.world_size, env.rank, config.grad_accum, config.seed,
            config.limit_train_batches,
        )
        self.loader = make_loader(SeededItems(train_ds), batch_sampler=self.sampler,
                                  workers=config.workers, device=env.device, persistent=True)
        self.state = TrainingState()
        if resume:
            self._load_state()
        self.writer = None
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.dump(self.run_dir / "config.yaml")
            # why: heavy (tensorboard), only when logging is on
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.state.global_step or None)
        D.barrier(env)

    # ---- set-up -------------------------------------------------------------------------------
    def _check_new_run_dir(self) -> None:
        """A new run does not start over one (`fit` checked that a resumed one has its state)."""
        state = self.run_dir / "state.pt"
        if not self.resume and state.exists() and not self.cfg.overwrite:
            raise FileExistsError(
                f"{self.run_dir} already holds a run: resume it (`sdfl train --resume {self.run_dir}`),"
                " choose another out_dir, or set overwrite=true"
            )

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        det = self.cfg.deterministic
        if det:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _set_deterministic(det)
        torch.backends.cudnn.deterministic = det
        torch.backends.cudnn.benchmark = not det

    def _build_model(self) -> None:
        self.raw, self.net, self.ddp = wrap_model(build_train_model(self.cfg), self.cfg, self.env)

    def _train_mode(self) -> None:
        self.net.train()
        if self.cfg.freeze_bn:
            for module in self.raw.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _images(self, batch: dict) -> torch.Tensor:
        x = batch["image"].to(self.env.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    # ---- state --------------------------------------------------------------------------------
    def _save_state(self) -> None:
        save_training_state(self, D.gather_objects(rng_state(), self.env))

    def _load_state(self) -> None:
        load_training_state(self, self._saved)
        self._saved = None
        if not self.env.is_main:
            return
        s = self.state
        for c in s.changes:
            tqdm.write(f"resume: {c['key']} {c['old']!r} -> {c['new']!r} from global step"
                       f" {c['global_step']} (epoch {c['epoch']})")
        if s.changes:
            write_metrics_csv(s.changes, self.run_dir / "config_changes.csv")
        finished = self._finished()
        if finished:
            tqdm.write(f"{self.run_dir} is finished ({finished}; {s.epoch} epoch(s), global step"
                       f" {s.global_step}): nothing to resume. Raise epochs= (or"
                       " early_stop_patience=) to train on.")
        else:
            tqdm.write(f"resuming {self.run_dir} at epoch {s.epoch + 1}, step {s.step_in_epoch}"
                       f" (global step {s.global_step})")

    def _finished(self) -> str:
        """Why the restored run has nothing left to do ("" when it has)."""
        cfg, s = self.cfg, self.state
        if s.step_in_epoch:
            return ""
        if s.epoch >= cfg.epochs:
            return f"completed: epoch {s.epoch} of {cfg.epochs}"
        if cfg.early_stop_patience and s.bad_epochs >= cfg.early_stop_patience:
            return f"early_stopped: no improvement for {s.bad_epochs} epochs"
        if cfg.max_steps and s.global_step >= cfg.max_steps:
            return f"max_steps: {s.global_step} of {cfg.max_steps} steps"
        return ""

    def _save_checkpoint(self, name: str, row: dict[str, Any]) -> None:
        ckpt = make_checkpoint(self.raw, config=self.cfg.to_dict(), epoch=self.state.epoch + 1,
                               metrics=row)
        atomic_torch_save(ckpt, self.run_dir / name)

    # ---- loop ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, s = self.cfg, self.state
        status, signum = "completed", 0
        finished = self._finished() if self.resume else ""
        if finished:
            if self.writer is not None:
                self.writer.close()
            return RunResult(self.run_dir, finished.split(":")[0], s.epoch, s.global_step,
                             s.best, s.best_epoch, list(s.metrics))
        if self.env.is_main:
            tqdm.write(f"training {cfg.model} ({cfg.backbone}) on {self.env.world_size} process(es),"
                       f" {self.env.device.type}; global batch {cfg.batch_size} = {self.env.world_size}"
                       f" x {cfg.grad_accum} x {self.micro}; lr {cfg.lr}; run folder {self.run_dir}")
            note = precision_note(self.env.device, cfg.precision)
            if note:
                tqdm.write(f"note: {note}")
        try:
            with StopSignals() as stop:
                while self.state.epoch < cfg.epochs:
                    ended = self._train_epoch(stop)
                    if ended == "interrupted":
                        status, signum = "interrupted", stop.signum or 15
                        break
                    early = self._end_epoch()
                    if ended == "max_steps":
                        status = "max_steps"
                        break
                    if early:
                        status = "early_stopped"
                        break
        finally:
            if self.writer is not None:
                self.writer.close()
        if status != "interrupted" and not cfg.keep_state and self.env.is_main:
            # A short run keeps best.pt only (it never wrote the state): what is left here is an
            # earlier run's in the same folder, which must not pass for this one's.
            for name in ("state.pt", PREVIOUS_STATE, "last.pt"):
                (self.run_dir / name).unlink(missing_ok=True)
        s = self.state
        return RunResult(self.run_dir, status, s.epoch, s.global_step, s.best, s.best_epoch,
                         list(s.metrics), signum)

    def _train_epoch(self, stop: StopSignals) -> str | None:
        """The optimizer steps left in this epoch; "interrupted" (a signal: state saved),
        "max_steps", or None when the epoch is done."""
        cfg, s = self.cfg, self.state
        n_steps = self.sampler.steps_per_epoch()
        self.sampler.set_epoch(s.epoch, s.step_in_epoch)
        self._train_mode()
        batches = iter(self.loader)
        bar = tqdm(total=n_steps, initial=s.step_in_epoch, desc=f"epoch {s.epoch + 1}/{cfg.epochs}",
                   unit="step", disable=not (self.env.is_main and cfg.progress), leave=False,
                   dynamic_ncols=True)
        clock = (time.perf_counter(), s.acc["time"])  # this session's start, the time before it
        try:
            for step in range(s.step_in_epoch, n_steps):
                micro = self._micro_batches(batches, step)
                n_images, n_masks = self._global_counts(micro)
                terms, stop_votes = self._forward_backward(micro, n_images, n_masks, stop)
                if not all(math.isfinite(v) for v in terms):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._non_finite(step, *terms)
                self.train_step.update()
                s.global_step += 1
                s.step_in_epoch = step + 1
                self._log_step(bar, terms, n_images, clock)
                if stop_votes > 0:
                    self._stop_by_signal()
                    return "interrupted"
                if cfg.max_steps and s.global_step >= cfg.max_steps:
                    return "max_steps"
                self._maybe_checkpoint(n_steps)
        finally:
            bar.close()
        return None

    def _micro_batches(self, batches: Any, step: int) -> list[dict]:
        """The `grad_accum` loader batches of one optimizer step."""
        try:
            return [next(batches) for _ in range(self.cfg.grad_accum)]
        except DataError as err:
            self._bad_file(step, err)

    def _global_counts(self, micro: list[dict]) -> list[float]:
        """Images and images with a mask in the step, over all ranks."""
        # Global counts normalise the loss, so that any split of the batch over ranks and
        # accumulation steps gives the full-batch gradient (counted on the CPU: no sync).
        counts = [float(sum(len(b["label"]) for b in micro)),
                  float(sum(int(torch.as_tensor(b["has_mask"]).sum()) for b in micro))]
        if self.env.distributed:
            counts = D.all_reduce_sum(torch.tensor(counts, device=self.env.device), self.env).tolist()
        return counts

    def _forward_backward(
        self, micro: list[dict], n_images: float, n_masks: float, stop: StopSignals
    ) -> tuple[list[float], float]:
        """Forward and backward passes of the step's batches (gradients summed); the loss terms
        (total, clf, seg, edge) over all ranks, and how many ranks were signalled to stop."""
        env, model = self.env, self.ddp or self.net
        sums = torch.zeros(5, device=env.device)
        for a, batch in enumerate(micro):
            sync = self.ddp is None or a == self.cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                # DDP averages gradients over ranks; the terms are already global means.
                terms = self.train_step.backward(model, self._images(batch), batch, n_images=n_images,
                                                 n_masks=n_masks, weight=env.world_size)
            self.state.has_edge = terms.edge is not None
            edge = terms.edge.detach() if terms.edge is not None else 0.0
            sums[:4] += torch.stack([terms.total.detach(), terms.clf.detach(),
                                     terms.seg.detach(), torch.as_tensor(edge, device=env.device)])
        sums[4] = float(stop.signum != 0)
        *values, stop_votes = D.all_reduce_sum(sums, env).tolist()
        return values, stop_votes

    def _log_step(self, bar: Any, terms: list[float], n_images: float,
                  clock: tuple[float, float]) -> None:
        """Add the step to the epoch's sums, the progress bar and TensorBoard."""
        s, acc = self.state, self.state.acc
        total, clf, seg, edge = terms
        for key, value in (("loss", total), ("clf", clf), ("seg", seg), ("edge", edge)):
            acc[key] += value
        acc["steps"] += 1
        acc["images"] += n_images
        acc["time"] = clock[1] + time.perf_counter() - clock[0]
        speed = acc["images"] / max(acc["time"], 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{acc['loss'] / acc['steps']:.4f}", img_s=f"{speed:.2f}")
        if self.writer is not None and s.global_step % max(self.cfg.log_every_steps, 1) == 0:
            for key, value in (("loss", total), ("clf", clf), ("seg", seg)):
                self.writer.add_scalar(f"step/{key}", value, s.global_step)
            self.writer.add_scalar("step/lr", self.optimizer.param_groups[0]["lr"], s.global_step)

    def _stop_by_signal(self) -> None:
        self._save_state()
        if self.env.is_main:
            s = self.state
            tqdm.write(f"stopped by signal at epoch {s.epoch + 1}, step {s.step_in_epoch};"
                       f" state saved to {self.run_dir / 'state.pt'}. Continue with:"
                       f" sdfl train --resume {self.run_dir}")

    def _maybe_checkpoint(self, n_steps: int) -> None:
        """state.pt every `checkpoint_every_steps` steps (the epoch's end saves its own)."""
        every, s = self.cfg.checkpoint_every_steps, self.state
        if every and self.cfg.keep_state and s.global_step % every == 0 and s.step_in_epoch < n_steps:
            self._save_state()

    def _bad_file(self, step: int, err: DataError) -> NoReturn:
        """A file that went bad after the pre-flight: the run stops in one line (the policy)."""
        # From a loader worker the message carries the worker's traceback; its last line is ours.
        text = str(err).strip().splitlines()[-1].split("DataError: ", 1)[-1]
        last = self.run_dir / "state.pt"
        kept = f"the last saved state is {last}" if last.exists() else "no state had been saved yet"
        raise DataError(
            f"{text} (epoch {self.state.epoch + 1}, step {step + 1}); the run stopped, {kept}: fix or"
            f" remove the file, then `sdfl train --resume {self.run_dir}`"
        ) from None

    def _non_finite(self, step: int, total: float, clf: float, seg: float, edge: float) -> NoReturn:
        last = self.run_dir / "state.pt"
        kept = f"the last good state is {last}" if last.exists() else "no state had been saved yet"
        raise NonFiniteLossError(
            f"non-finite loss at epoch {self.state.epoch + 1}, step {step + 1} (global step"
            f" {self.state.global_step + 1}): total={total}, clf={clf}, seg={seg}, edge={edge}. The run stopped"
            f" before this update; {kept} (last.pt and best.pt untouched). Try a lower lr, fp32 or bf16"
            " instead of fp16, grad_clip, or check the data."
        )

    def _validate(self) -> dict[str, float] | None:
        if self.val_ds is None:
            return None
        result = validation_loss(self.net, self.val_ds, self.cfg, self.env, self.micro,
                                 self.loss, self.train_step.autocast, self._images)
        self._train_mode()
        if not self.state.has_edge:
            result.pop("val_edge", None)
        return result

    def _end_epoch(self) -> bool:
        """Validate, step the schedule, write metrics and checkpoints; True to stop early."""
        cfg, s = self.cfg, self.state
        row, monitored = self._epoch_row()
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)
        elif self.scheduler is not None:
            self.scheduler.step()
        improved = monitored < s.best
        if improved:
            s.best, s.best_epoch, s.bad_epochs = monitored, s.epoch + 1, 0
        else:
            s.bad_epochs += 1
        row["best"] = improved
        s.metrics.append(row)
        if self.env.is_main:
            self._write_epoch(row, improved)
        s.epoch += 1
        s.step_in_epoch = 0
        s.acc = fresh_acc()
        if cfg.keep_state:
            self._save_state()
        patience = cfg.early_stop_patience
        if patience and s.bad_epochs >= patience and s.epoch < cfg.epochs:
            if self.env.is_main:
                tqdm.write(f"early stop: no improvement for {s.bad_epochs} epochs"
                           f" (best {s.best:.4f} at epoch {s.best_epoch})")
            return True
        return False

    def _epoch_row(self) -> tuple[dict[str, Any], float]:
        """The epoch's metrics row (training means, validation, lr, speed) and the loss that
        decides the best epoch (validation's, else training's)."""
        s = self.state
        acc = s.acc
        steps = max(acc["steps"], 1)
        row: dict[str, Any] = {"epoch": s.epoch + 1, "step": s.global_step,
                               "train_loss": acc["loss"] / steps, "train_clf": acc["clf"] / steps,
                               "train_seg": acc["seg"] / steps}
        if s.has_edge:
            row["train_edge"] = acc["edge"] / steps
        val = self._validate()
        row.update(val or {})
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["time_s"] = acc["time"]
        row["images_per_s"] = acc["images"] / max(acc["time"], 1e-9)
        return row, val["val_loss"] if val else row["train_loss"]

    def _write_epoch(self, row: dict[str, Any], improved: bool) -> None:
        """Checkpoints, metrics.csv, TensorBoard and the epoch's line (rank 0)."""
        cfg, s = self.cfg, self.state
        if cfg.keep_state:
            self._save_checkpoint("last.pt", row)
        if improved and cfg.keep_state:
            # The same checkpoint: linked, not written twice (the paper's network is 660 MB).
            link_or_copy(self.run_dir / "last.pt", self.run_dir / "best.pt")
        elif improved:
            self._save_checkpoint("best.pt", row)
        write_metrics_csv(s.metrics, self.run_dir / "metrics.csv")
        for key, value in row.items():
            if key not in ("epoch", "step", "best"):
                self.writer.add_scalar(f"epoch/{key}", value, s.epoch + 1)
        self.writer.flush()
        val_text = f"  val {row['val_loss']:.4f}" if "val_loss" in row else ""
        tqdm.write(f"epoch {s.epoch + 1}/{cfg.epochs}  train {row['train_loss']:.4f}"
                   f" (clf {row['train_clf']:.4f}, seg {row['train_seg']:.4f}){val_text}"
                   f"  lr {row['lr']:.2e}  {row['images_per_s']:.2f} img/s  {row['time_s']:.0f} s"
                   + ("  *best*" if improved else ""))
