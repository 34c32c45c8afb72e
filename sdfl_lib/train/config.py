"""`TrainConfig`: every training setting with its default and a one-line doc; YAML and `key=value`."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdfl_lib.models.base import check_model_arguments
from sdfl_lib.runtime import atomic_write, check_device_name

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULERS = ("plateau", "step", "cosine", "none")
PRECISIONS = ("fp32", "fp16", "bf16")
AUGMENTS = ("none", "flip", "strong")  # the dataset's policies (`sdfl_lib.data.dataset.build_augment`)
# Files written before `augment` named a policy hold true/false: the paper's flips or none.
_AUGMENT_BOOLS = {"true": "flip", "yes": "flip", "on": "flip", "1": "flip",
                  "false": "none", "no": "none", "off": "none", "0": "none"}


def _doc(text: str, default: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class TrainConfig:
    """All settings of one training run (paper defaults).

    The learning rate is the one for the *global* batch: `batch_size` images per optimizer step,
    summed over all processes and accumulation steps. Each process loads
    `batch_size / world_size / grad_accum` images per forward pass (it must divide evenly), and the
    loss is normalised by the global batch, so the same config gives the same optimisation on one
    CPU, one GPU or 4 GPUs. To reproduce the paper: `batch_size=32 lr=1e-4` (Adam, plateau x0.1
    after 5 epochs, early stop after 10, 50 epochs, 512x512), e.g. 4 GPUs with 8 each, or one GPU
    with `grad_accum=4` if 32 images do not fit.

    Batch norm: the one thing that still sees the per-process batch. Under DDP on GPUs `sync_bn`
    (default on, as the original code) normalises over all GPUs' images; PyTorch has no
    SyncBatchNorm on CPU, where each process normalises its own images. `freeze_bn` uses the
    running statistics instead, which makes any split of the batch exactly equivalent.
    """

    # model
    model: str = _doc("model name for build_model: ours, upernet, mvssnet", "ours")
    backbone: str = _doc("backbone of the encoder (resnet50 as the paper, or a timm name)", "resnet50")
    pretrained: bool = _doc("start the backbone from ImageNet weights (tf_efficientnet_lite0: from its installed package; others: cached locally)", False)
    init_checkpoint: str = _doc("weights to start from: an sdfl checkpoint or an authors' .pth", "")
    model_kwargs: dict = _doc("extra keyword arguments for build_model", {})
    sync_bn: bool = _doc("SyncBatchNorm across GPUs under DDP (PyTorch supports it on GPU only)", True)
    freeze_bn: bool = _doc("batch norm uses its running statistics while training (small batches, fine-tuning)", False)
    # data
    train_manifest: str = _doc("manifest CSV of the training set", "")
    val_manifest: str = _doc("manifest CSV of the validation set ('' = none: monitor train loss)", "")
    image_size: int = _doc("square input size in pixels", 512)
    augment: str = _doc("training-image augmentation: none, flip (random horizontal and vertical flips, the paper's) or strong (flips, rotations, affine, colour, blur/noise, downscale, JPEG); true = flip, false = none", "flip")
    balance_classes: bool = _doc("re-sample the training set so both classes are equally frequent", True)
    workers: int = _doc("DataLoader worker processes per rank", 2)
    # optimisation
    batch_size: int = _doc("global batch: images per optimizer step over all ranks and accumulation", 32)
    grad_accum: int = _doc("gradient accumulation steps per optimizer step", 1)
    optimizer: str = _doc("adam, adamw, rmsprop or sgd", "adam")
    lr: float = _doc("learning rate for the global batch (not divided by the world size)", 1e-4)
    weight_decay: float = _doc("weight decay (decoupled for adamw)", 0.0)
    momentum: float = _doc("momentum for sgd and rmsprop", 0.9)
    scheduler: str = _doc("plateau (on validation loss), step, cosine or none", "plateau")
    plateau_factor: float = _doc("plateau: multiply the lr by this", 0.1)
    plateau_patience: int = _doc("plateau: epochs without improvement before reducing", 5)
    step_size: int = _doc("step: epochs between lr reductions", 10)
    step_gamma: float = _doc("step: multiply the lr by this", 0.1)
    min_lr: float = _doc("cosine: final learning rate", 0.0)
    epochs: int = _doc("maximum number of epochs", 50)
    early_stop_patience: int = _doc("stop after this many epochs without improvement (0 = never)", 10)
    grad_clip: float = _doc("clip the gradient norm to this (0 = no clipping)", 0.0)
    # loss
    lambda_clf: float = _doc("weight of the image-level BCE", 0.04)
    lambda_seg: float = _doc("weight of the mask Dice loss", 0.16)
    lambda_edge: float = _doc("weight of the edge Dice loss (MVSS-Net only)", 0.8)
    # speed
    precision: str = _doc("fp32, fp16 (autocast + GradScaler) or bf16 (autocast); float32 on a CPU without native arithmetic in that type", "fp32")
    channels_last: bool = _doc("NHWC memory format (faster convolutions on tensor cores)", False)
    compile: bool = _doc("torch.compile the model", False)
    winograd: bool = _doc("on a CPU in float32, 3x3 convolutions train by Winograd F(4x4, 3x3) where their shape pays (sdfl_lib.models.winograd; the same results to float32 rounding); false: PyTorch's direct convolution throughout", True)
    device: str = _doc("auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda or cuda:N", "auto")
    # reproducibility
    seed: int = _doc("seed for weights, sampling order and augmentation", 0)
    deterministic: bool = _doc("deterministic algorithms (bitwise repeatable, slower)", False)
    # outputs
    out_dir: str = _doc("run folder: config.yaml, metrics.csv, tb/, last.pt, best.pt, state.pt", "runs/train")
    overwrite: bool = _doc("allow starting a new run in a folder that holds one", False)
    checkpoint_every_steps: int = _doc("also save state.pt every N optimizer steps (0 = per epoch only)", 0)
    log_every_steps: int = _doc("TensorBoard scalars every N optimizer steps", 10)
    progress: bool = _doc("tqdm progress bars (rank 0)", True)
    keep_state: bool = _doc("write state.pt and last.pt (false: best.pt only, and state only when a signal stops the run: short runs)", True)
    # smoke runs
    max_steps: int = _doc("stop after this many optimizer steps in total, closing that epoch (0 = no limit)", 0)
    limit_train_batches: int = _doc("optimizer steps per epoch at most (0 = whole epoch)", 0)
    limit_val_batches: int = _doc("validation batches per rank at most (0 = whole set)", 0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check values that do not depend on the world size."""
        self.augment = normalize_augment(self.augment)
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("scheduler", SCHEDULERS),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        for name in ("batch_size", "grad_accum", "image_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "plateau_patience", "step_size", "early_stop_patience",
                     "checkpoint_every_steps", "log_every_steps", "max_steps",
                     "limit_train_batches", "limit_val_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value}")
        for name in ("weight_decay", "momentum", "grad_clip", "min_lr", "lambda_clf",
                     "lambda_seg", "lambda_edge"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("plateau_factor", "step_gamma"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

        self.device = check_device_name(self.device)
        if self.model_kwargs:  # an unknown keyword fails now, not after the data's pre-flight
            check_model_arguments(self.model, dict(self.model_kwargs))

    def per_rank_batch(self, world_size: int) -> int:
        """Images per forward pass on one rank; fails unless the global batch divides evenly."""
        denom = world_size * self.grad_accum
        if self.batch_size % denom:
            raise ValueError(
                f"batch_size={self.batch_size} (global) must be divisible by world_size x grad_accum"
                f" = {world_size} x {self.grad_accum} = {denom}"
            )
        return self.batch_size // denom

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all keys."""
        return dataclasses.asdict(self)

    def dump(self, path: str | Path) -> None:
        """Write the resolved config as YAML, one comment line per key."""
        lines = ["# sdfl training config (every key; see `sdfl train --help-config`)"]
        for f in dataclasses.fields(self):
            value = yaml.safe_dump({f.name: getattr(self, f.name)}, default_flow_style=True, width=10_000)
            lines.append(f"# {f.metadata['doc']}")
            lines.append(value.strip()[1:-1].strip() if value.startswith("{") else value.strip())
        with atomic_write(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys fail listing the valid ones."""
        values = {key: _coerce(key, value) for key, value in data.items()}
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
        """Read a YAML file (or defaults when None), then apply `key=value` overrides."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                loaded = yaml.safe_load(Path(path).read_text())
            except yaml.YAMLError as err:
                where = getattr(err, "problem_mark", None)
                at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
                problem = getattr(err, "problem", None) or type(err).__name__
                raise ValueError(f"{path}: not valid YAML{at}: {problem}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{path}: not a text (UTF-8) YAML file") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
            loaded = loaded or {}
            # A study parameter file keeps the training keys in its `train:` section.
            if isinstance(loaded.get("train"), dict):
                loaded = loaded["train"]
            data.update(loaded)
        data.update(parse_overrides(overrides))
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some keys changed (validated and coerced like overrides)."""
        data = self.to_dict()
        data.update(changes)
        return TrainConfig.from_dict(data)


def normalize_augment(value: Any) -> str:
    """`augment` as a policy name: true -> "flip", false -> "none"; an unknown value fails."""
    text = str(value).strip().lower()
    name = _AUGMENT_BOOLS.get(text, text)
    if name not in AUGMENTS:
        raise ValueError(f"augment={value!r}: choose one of {', '.join(AUGMENTS)} (true = flip,"
                         " false = none)")
    return name


def describe() -> str:
    """Every key with its type, default and doc, for `sdfl train --help-config`."""
    rows = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"  {f.name:<24} {_type_of(f.name).__name__:<6} {default!r:<14} {f.metadata['doc']}")
    return "\n".join(rows)


def parse_overrides(overrides: list[str] | dict | None) -> dict[str, Any]:
    """`["lr=1e-3", "precision=bf16"]` -> {"lr": "1e-3", ...}; malformed items fail clearly."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = value
    return out


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _type_of(key: str) -> type:
    hint = _HINTS[key]
    if isinstance(hint, types.GenericAlias):
        return typing.get_origin(hint)
    return hint


def _coerce(key: str, value: Any) -> Any:
    """Convert `value` (often a string from the command line) to the key's type."""
    if key not in _FIELDS:
        close = difflib.get_close_matches(key, list(_FIELDS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown config key {key!r}.{hint} Valid keys: {', '.join(_FIELDS)}")
    kind = _type_of(key)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError("expected true/false")
        if kind is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            if isinstance(value, str):
                number = float(value) if any(c in value for c in ".eE") else int(value)
            else:
                number = value
            if float(number) != int(number):
                raise ValueError("expected an integer")
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if kind is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value) or {}
            if not isinstance(value, dict):
                raise ValueError("expected a mapping such as {key: value}")
            return value
        return "" if value is None else str(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key {key}={value!r}: {err} ({_FIELDS[key].metadata['doc']})") from None
