"""Where and how the library runs: one device vocabulary, one autocast policy, one way to build
DataLoaders and start their workers.

Every entry point (training, evaluation, prediction, benchmarks, the notebooks and the CLI) takes
the same device names, resolved by `resolve_device`:

- `auto`: this process's GPU when CUDA is available (cuda:LOCAL_RANK under torchrun or srun),
  else the CPU;
- `cpu`; `cuda` (this process's GPU, as with `auto`); `cuda:N` (that GPU).

The autocast policy (`autocast`): `fp32` computes in float32; `bf16` / `fp16` autocast to that
type on any device; `auto` (inference's default) is bf16 on a GPU that supports it, else fp16 on a
GPU, and float32 on the CPU (whose bf16 is emulated and slow on most processors).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import platform
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from sdfl_lib.errors import OutputError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    """A device name outside the vocabulary, or a GPU asked for where there is none."""


def local_rank(environ: dict[str, str] | None = None) -> int:
    """This process's index on its node: LOCAL_RANK (torchrun), SLURM_LOCALID in a multi-task
    srun step, else 0."""
    env = os.environ if environ is None else environ
    if "LOCAL_RANK" in env:
        return int(env["LOCAL_RANK"])
    if "SLURM_LOCALID" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        return int(env["SLURM_LOCALID"])
    return 0


def check_device_name(device: str | torch.device | None) -> str:
    """The device name, normalised, when it belongs to the vocabulary (whether or not this machine
    has that device); DeviceError naming it otherwise."""
    if isinstance(device, torch.device):
        return str(device)
    name = "auto" if device is None or str(device).strip() == "" else str(device).strip().lower()
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(f"device {device!r} is not one of {DEVICE_CHOICES}")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a name of the vocabulary (`auto`, `cpu`, `cuda`, `cuda:N`); None is
    `auto`. Raises DeviceError naming the value for anything else or for a missing GPU."""
    if isinstance(device, torch.device):
        return device
    name = check_device_name(device)
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine (use auto or cpu)")
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    index = int(name[5:])
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise DeviceError(f"device {device!r}: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def model_device(model: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


# /proc/cpuinfo flags that give a CPU native arithmetic in each low-precision type.
_NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_native(dtype: str = "bf16") -> bool:
    """Whether the CPU computes in `dtype` ("bf16"/"fp16") natively (AVX512-BF16/FP16 or AMX)."""
    return bool(cpu_flags() & set(_NATIVE_FLAGS.get(dtype, ())))


def autocast_dtype(
    device: torch.device, precision: str = "auto", emulated: bool = False
) -> torch.dtype | None:
    """The dtype `autocast` computes in for `precision` on `device`; None for float32. A CPU
    without native arithmetic in the asked type gets float32 (`precision_note` says why), unless
    `emulated` (benchmarks that measure what the emulation costs)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and precision in _DTYPES and not emulated and not _cpu_pays(precision):
        return None  # several times slower than float32 there, for no gain
    return _DTYPES.get(precision)


def _cpu_pays(precision: str) -> bool:
    """Whether autocast to `precision` is worth it on this CPU: bf16 with native arithmetic.
    fp16 never is: PyTorch's CPU fp16 kernels, even on AVX512-FP16, trained the paper's network
    some 30x slower than float32 (61 s a step against 1.9 s at 64x64 on a Xeon with AVX512-FP16)."""
    return precision == "bf16" and cpu_native("bf16")


def precision_note(device: torch.device, precision: str) -> str | None:
    """One line when `precision` asks for a type this CPU would run slower than float32, else
    None."""
    if device.type != "cpu" or precision not in _DTYPES or autocast_dtype(device, precision):
        return None
    if precision == "fp16":
        return ("precision fp16: a GPU precision; PyTorch's fp16 kernels on a CPU are many times "
                "slower than float32 (even with AVX512-FP16); running in float32")
    return (
        f"precision {precision}: this CPU has no native {precision} arithmetic "
        f"({' or '.join(_NATIVE_FLAGS[precision])}), where autocast is several times slower "
        "than float32; running in float32"
    )


def autocast(
    device: torch.device | str, precision: str = "auto", emulated: bool = False
) -> contextlib.AbstractContextManager:
    """The mixed-precision context of the policy above (a no-op for float32); `emulated` as in
    `autocast_dtype`."""
    device = resolve_device(device)
    dtype = autocast_dtype(device, precision, emulated)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def worker_start_method(num_workers: int) -> str | None:
    """DataLoader `multiprocessing_context` for `num_workers`: "forkserver" inside a Jupyter
    kernel (or as $SDFL_WORKER_START says), else the platform default.

    Forking a kernel process copies locks held by its other threads (and OpenCV's thread pool), and
    workers forked that way can wait on them forever; a fork server starts workers from a clean
    process instead.
    """
    if num_workers <= 0:
        return None
    method = os.environ.get("SDFL_WORKER_START")
    if method is None and "ipykernel" in sys.modules:
        method = "forkserver"
    if method and method not in mp.get_all_start_methods():
        raise ValueError(
            f"SDFL_WORKER_START={method!r} is not a start method here; "
            f"choose one of {mp.get_all_start_methods()}"
        )
    return method


def worker_init(worker_id: int, forked: bool = False) -> None:
    """DataLoader `worker_init_fn`: one thread per worker for torch and OpenCV (the cores are the
    forward pass's), and the dataset's augmentations seeded from torch's per-worker seed (which
    changes each epoch and follows the loader's generator)."""

    torch.set_num_threads(1)
    # Reconfiguring OpenCV's thread pool in a *forked* child can deadlock; `make_loader` switches
    # it off in the parent before forking instead.
    if not forked:
        cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    set_seed = getattr(getattr(info, "dataset", None), "set_seed", None)
    if callable(set_seed):
        set_seed(seed)


def make_loader(
    dataset: Dataset,
    *,
    workers: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = 1,
    batch_sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    persistent: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader with the library's worker start method and worker init, pinned memory on
    CUDA; `workers` below 0 is an error."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    method = worker_start_method(workers)
    forked = workers > 0 and (method or mp.get_start_method(allow_none=True) or "fork") == "fork"
    if forked:
        cv2.setNumThreads(0)
    kwargs: dict[str, Any] = {"batch_sampler": batch_sampler} if batch_sampler is not None else {
        "batch_size": batch_size}
    return DataLoader(
        dataset,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=resolve_device(device).type == "cuda",
        worker_init_fn=partial(worker_init, forked=forked) if workers else None,
        multiprocessing_context=method,
        persistent_workers=persistent and workers > 0,
        generator=generator,
        **kwargs,
    )


DRIVE_ROOT = "/content/drive"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as /proc/cpuinfo describes it."""

    name: str  # "model name" (the platform's processor name where there is none)
    flags: frozenset[str]  # feature flags (empty where /proc/cpuinfo cannot be read)


def cpu_info() -> CpuInfo:
    """The CPU's model name and feature flags, read from /proc/cpuinfo."""
    name, flags = "", frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return CpuInfo(name or platform.processor() or platform.machine(), flags)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (`cpu_info().flags`)."""
    return cpu_info().flags


# The instruction sets that decide CPU inference and training speed, as /proc/cpuinfo names them.
_INSTRUCTION_SETS = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni", "amx_int8"),
    "BF16": ("avx512_bf16", "amx_bf16"),
    "AMX": ("amx_tile",),
}


def instruction_sets(flags: frozenset[str] | None = None) -> list[str]:
    """Which of AVX2, AVX-512, VNNI, BF16 and AMX the CPU (or `flags`) has, in that order."""
    flags = cpu_flags() if flags is None else flags
    return [name for name, names in _INSTRUCTION_SETS.items() if flags & set(names)]


def cpu_family(flags: frozenset[str] | None = None) -> str:
    """"AVX-512", "AVX2" (AVX2 without AVX-512) or "other": the vector width the CPU's fp32
    kernels (oneDNN, ONNX Runtime's MLAS) run at, which sets its speed figures apart."""
    have = instruction_sets(flags)
    return "AVX-512" if "AVX-512" in have else "AVX2" if "AVX2" in have else "other"


def release_memory() -> None:
    """Collect garbage and give the C heap's free pages back to the system (glibc
    `malloc_trim`), so that the next large step's peak does not stack on freed memory."""
    gc.collect()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def replace_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a finished temporary file over `path` durably: its bytes are flushed to disk first
    (fsync), then `os.replace` swaps it in, so readers see the old file or the whole new one."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in `path`'s folder to write to; when the block ends without error
    it replaces `path` (`replace_file`: fsync, `os.replace`), else it is removed. A reader never
    sees a half-written file, and an interrupted write leaves the old one in place. A write the
    system refuses raises `OutputError` naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        replace_file(tmp, path)
    except OSError as err:
        # A full disk or a read-only folder fails without naming the file (ENOSPC) or names the
        # temporary one: the message names the file the caller wrote.
        raise OutputError(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)


def in_colab() -> bool:
    """Whether this is a Google Colab kernel."""
    return "google.colab" in sys.modules


def colab_setup(*values: Any) -> bool:
    """In Colab, mount Google Drive when any path among `values` (strings, or lists and dicts
    holding them: run folders, data roots) lies on it; elsewhere nothing. True when mounted."""
    if not in_colab():
        return False

    def paths(v: Any) -> list[str]:
        if isinstance(v, dict):
            return [p for x in v.values() for p in paths(x)]
        if isinstance(v, (list, tuple)):
            return [p for x in v for p in paths(x)]
        return [str(v)] if isinstance(v, (str, os.PathLike)) else []

    if not any(p == DRIVE_ROOT or p.startswith(DRIVE_ROOT + "/") for p in paths(list(values))):
        return False
    if os.path.isdir(os.path.join(DRIVE_ROOT, "MyDrive")):
        return True  # mounted already
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(DRIVE_ROOT)
    return True
