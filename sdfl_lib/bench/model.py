"""`python -m sdfl_lib.bench model`: inference and training images/s and peak memory of a model.

For `ours` (ResNet-50) on the CPU in fp32 it compares every inference and training path side by
side with an independent build of the authors' network (`sdfl_lib.bench.authors`), each path in
a fresh process (so its peak memory is its own), and says which path the library takes by
default; other settings measure the one model as built.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sdfl_lib.bench.authors import AuthorsOurs
from sdfl_lib.bench.demo_seeds import ISA_ENV
from sdfl_lib.inference import (
    OnnxModel,
    inference_model,
    optimize_for_inference,
    resolve_backend,
)
from sdfl_lib.models import ModelOutput, build_model
from sdfl_lib.models.winograd import use_winograd
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import (
    autocast,
    cpu_family,
    cpu_info,
    cpu_native,
    instruction_sets,
    resolve_device,
)
from sdfl_lib.train import TrainConfig
from sdfl_lib.train.build import build_optimizer
from sdfl_lib.train.malloc import tune_malloc
from sdfl_lib.train.step import TrainStep

DTYPES = ("fp32", "bf16", "fp16")  # precisions of `sdfl_lib.runtime.autocast`


def conv_probe(
    dtype: str, device: str | torch.device = "cpu", repeats: int = 2
) -> dict[str, float]:
    """GFLOP/s of one 3x3 conv (128 -> 128 channels, 32x32) in fp32 and under `dtype` autocast:
    a seconds-long check of what a low-precision type gives before a model run that may take
    hours (on CPUs without native bf16, oneDNN falls back to a reference kernel)."""
    dev = resolve_device(device)
    conv = nn.Conv2d(128, 128, 3, padding=1).to(dev).eval()
    x = torch.rand(1, 128, 32, 32, device=dev)
    flops = 2 * 128 * 128 * 9 * 32 * 32
    out = {}
    for name in ("fp32", dtype):
        with torch.inference_mode(), autocast(dev, name, emulated=True):
            conv(x)
            n = repeats * 5 if name == "fp32" else repeats  # fp32 is fast: average more
            sec = _timed(lambda: conv(x), n, dev, "probe", False)  # noqa: B023
        out[f"{name}_gflops"] = flops / sec / 1e9
    return out


def device_description(device: torch.device) -> str:
    """A one-line name of the device the figures are for."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    have = ", ".join(instruction_sets()) or "none of AVX2, AVX-512, VNNI, BF16, AMX"
    line = f"{cpu_info().name}, {torch.get_num_threads()} threads; instruction sets: {have}"
    # Caps that make this CPU run another family's kernels (ONNX Runtime has none: its routes
    # still use everything the CPU has).
    caps = [f"{k}={os.environ[k]}" for k in ISA_ENV["avx2"] if os.environ.get(k)]
    return line + (f"; PyTorch capped by {' '.join(caps)}" if caps else "")



# Peak resident memory every inference route must stay within (export and int8 included).
MEMORY_BOUND_MB = 3 * 1024
# What each CPU family's figures leave unmeasured, to be run there.
_OTHER_FAMILY = {
    "AVX-512": "AVX2-only CPU (AMD Zen 2/3, Intel cores before AVX-512, many laptops)",
    "AVX2": "AVX-512 CPU (Intel Xeon since Skylake-SP, AMD Zen 4; with VNNI for int8)",
    "other": "AVX2-only CPU and AVX-512 CPU",
}


def other_family_note(size: int, batch: int) -> str:
    """One line: which CPU family these figures do not cover, and the command to run there."""
    family = cpu_family()
    here = f"an {family} CPU" if family != "other" else "a CPU with neither AVX2 nor AVX-512"
    return (
        f"{_OTHER_FAMILY[family]} not measured (these figures are from {here}): run "
        f"`python -m sdfl_lib.bench model --size {size} --batch {batch}` there"
    )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux (bytes on macOS): the process's peak resident set.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loss_batch(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A fake batch's targets for `PaperLoss` (every image a fake with a mask and an edge): the
    cost of the loss, not its value, matters here."""
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    return {"label": torch.ones(batch, device=device), "mask": mask, "edge": mask,
            "has_mask": torch.ones(batch, dtype=torch.bool, device=device)}


def _timed(step: Any, n: int, device: torch.device, desc: str, progress: bool) -> float:
    """Seconds per call of `step` over `n` calls (after the caller's warm-up)."""
    _sync(device)
    start = time.perf_counter()
    for _ in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        step()
    _sync(device)
    return (time.perf_counter() - start) / n


def bench_model(
    model_name: str = "ours",
    size: int = 512,
    batch: int = 2,
    dtype: str = "fp32",
    channels_last: bool = False,
    device: str | torch.device = "cpu",
    backbone: str = "resnet50",
    iters: int = 3,
    warmup: int = 1,
    train: bool = True,
    fold_bn: bool = True,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Measure one model: inference and training images/s and peak memory on `device`.

    Inference runs in eval mode under `torch.inference_mode`, on `optimize_for_inference`'s copy
    (batch norm folded into the convolutions) unless `fold_bn` is False; training is the
    trainer's step (`TrainStep`: forward, the paper's loss, backward and an Adam step; on the CPU
    with Winograd convolutions where they pay, as `sdfl train`). `dtype`
    "bf16"/"fp16" use autocast (fp16 training with a GradScaler); on a CPU without native
    arithmetic in that type only `conv_probe` runs, unless `force`. Returns a dict of the
    settings and figures (memory in MiB; on the CPU it is the process's peak resident set, so the
    training figure includes everything before it).
    """

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dev = resolve_device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    result: dict[str, Any] = {
        "model": model_name, "backbone": backbone, "size": size, "batch": batch, "dtype": dtype,
        "channels_last": channels_last, "device": device_description(dev),
        "torch": torch.__version__, "fold_bn": fold_bn,
    }  # fmt: skip
    if dev.type == "cpu":
        result["cpu_native_bf16"] = cpu_native("bf16")
        if dtype != "fp32" and not cpu_native(dtype) and not force:
            # Whole-model figures would take hours; say what the type gives on one conv instead.
            result.update(conv_probe(dtype, dev), skipped=True)
            return result
    torch.manual_seed(0)
    model = build_model(model_name, image_size=size, backbone=backbone).to(dev, memory_format=fmt)
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    timing = _Timing(dev, iters, warmup, progress)
    timing.reset_peak()  # the folded copy's memory counts for inference
    fast = optimize_for_inference(model.eval(), channels_last) if fold_bn else model.eval()
    result.update(_bench_inference(fast, x, dtype, timing))
    if train:
        model = copy.deepcopy(model).train()  # the Bayar projection mutates; keep runs apart
        use_winograd(model, dev.type == "cpu")  # as `sdfl train` trains on this device
        result.update(_bench_training(model, x, dtype, timing))
    return result


@dataclass(frozen=True)
class _Timing:
    """Where and how `bench_model` times a step."""

    device: torch.device
    iters: int
    warmup: int
    progress: bool

    def reset_peak(self) -> None:
        """Start the GPU's peak memory count afresh (the CPU's peak RSS cannot be reset)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def images_per_s(self, step: Any, batch: int, desc: str) -> float:
        """Images/s of `step` (on a batch of `batch`) after the warm-up calls."""
        for _ in range(self.warmup):
            step()
        return batch / _timed(step, self.iters, self.device, desc, self.progress)


def _bench_inference(fast: nn.Module, x: torch.Tensor, dtype: str, timing: _Timing) -> dict:
    """Inference images/s and peak memory of `fast` (in eval mode) on `x`."""

    def infer() -> None:
        with torch.inference_mode(), autocast(timing.device, dtype, emulated=True):
            fast(x)

    img_s = timing.images_per_s(infer, len(x), "inference")
    return {"inference_img_s": img_s, "inference_peak_mb": _peak_memory_mb(timing.device)}


def _bench_training(model: nn.Module, x: torch.Tensor, dtype: str, timing: _Timing) -> dict:
    """Training images/s and peak memory: the trainer's step with Adam at 1e-4 on `x`."""
    step = TrainStep(torch.optim.Adam(model.parameters(), lr=1e-4), device=timing.device,
                     precision=dtype, emulated=True)
    targets = _loss_batch(len(x), x.shape[-1], timing.device)
    timing.reset_peak()
    img_s = timing.images_per_s(lambda: step.step(model, x, targets), len(x), "training")
    return {"training_img_s": img_s, "training_peak_mb": _peak_memory_mb(timing.device)}


def format_result(r: dict[str, Any]) -> str:
    """The figures as printed lines."""
    lines = [
        f"model {r['model']} ({r['backbone']}), {r['size']}x{r['size']}, batch {r['batch']}, "
        f"{r['dtype']}{', channels_last' if r['channels_last'] else ''}"
        f"{', BN folded for inference' if r['fold_bn'] else ''}",
        f"device: {r['device']} (torch {r['torch']})",
    ]
    if "cpu_native_bf16" in r:
        native = "yes" if r["cpu_native_bf16"] else "no (no AVX512-BF16/AMX: bf16 is emulated)"
        lines.append(f"CPU native bf16: {native}")
    if r.get("skipped"):
        dt = r["dtype"]
        lines.append(
            f"{dt} is not native on this CPU: one 3x3 conv runs at {r[f'{dt}_gflops']:.2f} GFLOP/s "
            f"under {dt} autocast vs {r['fp32_gflops']:.1f} GFLOP/s in fp32 "
            f"({r['fp32_gflops'] / r[f'{dt}_gflops']:.0f}x slower); the model run is skipped "
            f"(--force runs it anyway)."
        )
        return "\n".join(lines)
    mem = "peak RSS" if "cpu_native_bf16" in r else "peak allocated"
    lines.append(
        f"inference: {r['inference_img_s']:.3f} img/s, {mem} {r['inference_peak_mb']:.0f} MiB"
    )
    if "training_img_s" in r:
        lines.append(
            f"training:  {r['training_img_s']:.3f} img/s, {mem} {r['training_peak_mb']:.0f} MiB"
        )
    return "\n".join(lines)


def _parse_paths(spec: str | None, train: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ "infer:a,b train:c" -> the two path lists (all of them where a task is not named)."""
    if not spec:
        return INFERENCE_PATHS, TRAINING_PATHS if train else ()
    chosen = {"infer": (), "train": ()}
    for part in spec.split():
        task, _, names = part.partition(":")
        known = {"infer": INFERENCE_PATHS, "train": TRAINING_PATHS}.get(task)
        if known is None:
            raise SystemExit(f"--paths: unknown task {task!r} (infer, train)")
        paths = tuple(n for n in names.split(",") if n)
        bad = [n for n in paths if n not in known]
        if bad:
            raise SystemExit(f"--paths: unknown {task} path(s) {bad}; known: {', '.join(known)}")
        chosen[task] = paths
    return chosen["infer"], chosen["train"] if train else ()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sdfl_lib.bench model", description=__doc__)
    parser.add_argument("--model", default="ours")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="channels-last layout for model and input (on CPUs: faster inference, but slower "
        "backward passes with torch 2.14)",
    )
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (after warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-train", action="store_true", help="measure inference only")
    parser.add_argument(
        "--force", action="store_true", help="run bf16/fp16 on a CPU without native support"
    )
    parser.add_argument(
        "--no-fold", action="store_true", help="infer with the model as built (BN not folded)"
    )
    parser.add_argument(
        "--paths",
        default=None,
        help="side-by-side paths, e.g. infer:authors,onnx,int8 train:authors,ours (default: all, "
        "for ours/resnet50 on the CPU in fp32; 'none' measures the one model as built)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run `bench_model` (or the side-by-side `compare`), print the
    figures."""
    args = _parser().parse_args(argv)
    if args.worker:
        r = _worker(*args.worker, args.size, args.batch, args.iters, args.warmup)
        print(json.dumps(r, default=str))
        return 0
    side_by_side = (
        args.model == "ours" and args.backbone == "resnet50" and args.dtype == "fp32"
        and torch.device(args.device).type == "cpu" and args.paths != "none"
    )  # fmt: skip
    if side_by_side:
        infer, train = _parse_paths(args.paths, not args.no_train)
        r = compare(args.size, args.batch, args.iters, args.warmup, infer, train)
        print(format_comparison(r))
        return 0 if all("error" not in x for x in r["rows"]) else 1
    result = bench_model(
        args.model,
        args.size,
        args.batch,
        args.dtype,
        args.channels_last,
        args.device,
        backbone=args.backbone,
        iters=args.iters,
        warmup=args.warmup,
        train=not args.no_train,
        fold_bn=not args.no_fold,
        force=args.force,
    )
    print(format_result(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Side by side: the authors' network and every path of the library, one fresh process each.

# path -> what it measures. Inference paths are `inference_model` backends; "authors" is the
# independent build of the original network, run as its code runs (eager, nothing folded).
INFERENCE_PATHS = ("authors", "eager", "optimized", "compile", "onnx", "int8")
# Training: the authors' network with the C library's malloc; ours as `sdfl train` runs it
# (malloc tuned, Winograd convolutions where they pay); ours with glibc's default malloc and ours
# with direct convolutions (what each of the two gives); ours compiled.
TRAINING_PATHS = ("authors", "ours-default-malloc", "ours-direct", "ours", "ours-compiled")


def _worker_model(kind: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    if kind != "authors":
        return build_model("ours", image_size=size)

    class Outputs(nn.Module):
        """The authors' (image logit, mask logits) as a ModelOutput, for the shared loss."""

        def __init__(self) -> None:
            super().__init__()
            self.net = AuthorsOurs()

        def forward(self, x: torch.Tensor) -> ModelOutput:
            return ModelOutput(*self.net(x))

    return Outputs()


def _worker(task: str, path: str, size: int, batch: int, iters: int, warmup: int) -> dict:
    """One path's figures in this process (called in a fresh process by `compare`)."""

    dev = torch.device("cpu")
    x = torch.rand(batch, 3, size, size)
    result: dict[str, Any] = {"task": task, "path": path}
    run = _training_run(path, x, result) if task == "train" else _inference_run(path, x, result)
    for _ in range(warmup):
        run()
    result["peak_mb"] = _peak_memory_mb(dev)  # before anything else is built in this process
    # The authors' network runs in turns with an inference path, so both see the same neighbours.
    others = {"authors": _authors_inference(size, x, warmup)} if task == "infer" and path != "authors" else {}
    result.update(_time_in_turns(run, others, iters, batch))
    return result


def _training_run(path: str, x: torch.Tensor, result: dict[str, Any]) -> Any:
    """The training step of a path (the trainer's `TrainStep`, fp32 on the CPU)."""
    if path in ("ours", "ours-direct", "ours-compiled"):
        result["malloc"] = tune_malloc()  # what `fit` does before building anything
    model = _worker_model(path, x.shape[-1]).train()
    if path in ("ours", "ours-default-malloc", "ours-compiled"):
        # What `fit` switches on the CPU (compiled, the convolutions run direct under inductor).
        result["winograd_convs"] = use_winograd(model)
    step_model = torch.compile(model) if path == "ours-compiled" else model
    if path == "authors":  # their training script's optimizer
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    else:  # what `sdfl train` builds for optimizer: adam (fused where PyTorch has it)
        optimizer = build_optimizer(TrainConfig(lr=1e-4), model.parameters())
    step = TrainStep(optimizer, device="cpu", precision="fp32")
    targets = _loss_batch(len(x), x.shape[-1], torch.device("cpu"))
    return lambda: step.step(step_model, x, targets)


def _inference_run(path: str, x: torch.Tensor, result: dict[str, Any]) -> Any:
    """The inference call of a path, prepared (exported, quantized, compiled) first as predict
    and evaluate prepare it: the PyTorch model is replaced by the route's, so it is freed before
    an ONNX Runtime session is built. The time and peak RSS that took in `result`."""
    size = x.shape[-1]
    fast = _worker_model(path, size).eval()
    start = time.perf_counter()
    if path != "authors":
        calibration = torch.rand(4, 3, size, size) if path == "int8" else None
        backend = "onnx" if path == "int8" else path
        # The run's own export cache (onnx exports, int8 then quantizes that export).
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["XDG_CACHE_HOME"] = os.environ.get("SDFL_BENCH_CACHE", tmp)
            fast = inference_model(
                fast, backend, path == "int8", size, calibration=calibration,
                log=lambda m: None,
                min_agreement=0.0,  # speed only here; `bench int8` checks accuracy
            )  # fmt: skip
            if isinstance(fast, OnnxModel):
                fast.load()  # while the export's files exist
        if path == "int8":
            result["int8_agreement"] = fast.int8_agreement
    if path == "compile":
        with torch.inference_mode():
            fast(x)  # compilation happens on the first call
    result["prepare_s"] = time.perf_counter() - start
    result["prepare_peak_mb"] = _peak_memory_mb(torch.device("cpu"))

    def run() -> None:
        with torch.inference_mode():
            fast(x)

    return run


def _authors_inference(size: int, x: torch.Tensor, warmup: int) -> Any:
    """The authors' network's inference call, warmed up."""
    authors = _worker_model("authors", size).eval()

    def run_authors() -> None:
        with torch.inference_mode():
            authors(x)

    for _ in range(warmup):
        run_authors()
    return run_authors


def _time_in_turns(run: Any, others: dict[str, Any], iters: int, batch: int) -> dict[str, Any]:
    """img/s (fastest and median call), img per CPU-second and the system share of `run`, and
    img/s of each of `others` called in turns with it."""
    # Each call timed on its own: on a shared machine the neighbours only ever add time, so the
    # fastest call is the closest to what the path does; the median is shown beside it.
    walls: dict[str, list[float]] = {"self": [], **{k: [] for k in others}}
    cpus = []
    for _ in range(iters):
        for name, fn in others.items():
            t0 = time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run()
        walls["self"].append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(
            (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, r1.ru_stime - r0.ru_stime)
        )
    result: dict[str, Any] = {
        "img_s": batch / min(walls["self"]),
        "img_s_median": batch / sorted(walls["self"])[len(walls["self"]) // 2],
    }
    if "authors" in others:
        result["authors_img_s"] = batch / min(walls["authors"])
    cpu = min(c for c, _ in cpus)
    result["img_per_cpu_s"] = batch / cpu if cpu > 0 else None
    result["sys_share"] = sum(s for _, s in cpus) / max(sum(c for c, _ in cpus), 1e-9)
    return result


def compare(
    size: int = 512,
    batch: int = 2,
    iters: int = 3,
    warmup: int = 1,
    inference_paths: tuple[str, ...] = INFERENCE_PATHS,
    training_paths: tuple[str, ...] = TRAINING_PATHS,
    timeout: float = 3600,
    progress: bool = True,
) -> dict[str, Any]:
    """Figures of each path, each measured in a fresh `python -m sdfl_lib.bench.model` process;
    a path that fails is reported with its error, not dropped."""

    rows = []
    cache = tempfile.TemporaryDirectory()
    env = {k: v for k, v in os.environ.items() if k != "SDFL_MALLOC"}
    env["SDFL_BENCH_CACHE"] = cache.name
    jobs = [("infer", p) for p in inference_paths] + [("train", p) for p in training_paths]
    for task, path in tqdm(jobs, desc="paths", disable=not progress, leave=False):
        cmd = [sys.executable, "-m", "sdfl_lib.bench.model", "--worker", task, path,
               "--size", str(size), "--batch", str(batch), "--iters", str(iters),
               "--warmup", str(warmup)]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if done.returncode or not lines:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                rows.append(
                    {"task": task, "path": path, "error": f"exit {done.returncode}: {tail}"}
                )
            else:
                rows.append(json.loads(lines[-1]))
        except subprocess.TimeoutExpired:
            rows.append({"task": task, "path": path, "error": f"timed out after {timeout:.0f} s"})
        if progress:  # a long run shows each path as it finishes
            tqdm.write(json.dumps(rows[-1], default=str), file=sys.stderr)
    cache.cleanup()
    default = resolve_backend(build_model("ours", image_size=32, backbone="resnet18").eval())
    return {
        "size": size,
        "batch": batch,
        "iters": iters,
        "device": device_description(torch.device("cpu")),
        "torch": torch.__version__,
        "rows": rows,
        "default_inference": default,
        "default_training": "ours",
    }


def format_comparison(r: dict[str, Any]) -> str:
    """The side-by-side table as printed lines."""
    lines = [
        f"model ours (resnet50), {r['size']}x{r['size']}, batch {r['batch']}, fp32, "
        f"{r['iters']} timed iterations per path, each path in a fresh process",
        f"device: {r['device']} (torch {r['torch']})",
    ]
    for task, title in (("infer", "inference"), ("train", "training")):
        rows = [x for x in r["rows"] if x["task"] == task]
        if not rows:
            continue
        base = next((x.get("img_s") for x in rows if x["path"] == "authors"), None)
        lines.append(f"{title}:")
        base_cpu = next((x.get("img_per_cpu_s") for x in rows if x["path"] == "authors"), None)
        lines.append(
            f"  {'path':<20} {'img/s':>7} {'x authors':>9} {'median':>7} {'img/CPU-s':>9} "
            f"{'x authors':>9} {'sys':>4} {'peak RSS MiB':>12}  notes"
        )
        default = r["default_inference"] if task == "infer" else r["default_training"]
        for x in rows:
            if "error" in x:
                lines.append(f"  {x['path']:<20} failed: {x['error']}")
                continue
            # Inference: against the authors' network timed in turns in the same process.
            own_base = x.get("authors_img_s") or base
            ratio = f"{x['img_s'] / own_base:.2f}x" if own_base else "-"
            per_cpu = x.get("img_per_cpu_s") or 0.0
            ratio_cpu = f"{per_cpu / base_cpu:.2f}x" if base_cpu and per_cpu else "-"
            sys_share = f"{x['sys_share']:.0%}" if x.get("sys_share") is not None else "-"
            notes = _path_notes(x, default)
            lines.append(
                f"  {x['path']:<20} {x['img_s']:7.3f} {ratio:>9} {x['img_s_median']:7.3f} "
                f"{per_cpu:9.3f} {ratio_cpu:>9} "
                f"{sys_share:>4} {x['peak_mb']:12.0f}  " + "; ".join(notes)
            )
    lines.append(
        "img/s: the fastest timed call (neighbours on a shared machine only add time), median "
        "beside it; inference 'x authors': against the authors' network timed in turns with the "
        "path in its process; img/CPU-s: per second of the process's CPU time (user + system, all "
        "threads); sys: the system (page fault) share of that time"
    )
    lines.append(
        f"the library uses by default on this CPU: inference {r['default_inference']!r}, "
        f"training {r['default_training']!r}"
    )
    lines.append(memory_summary(r["rows"]))
    lines.append(other_family_note(r["size"], r["batch"]))
    return "\n".join(lines)


def _path_notes(x: dict[str, Any], default: str) -> list[str]:
    """The notes column of one path's row."""
    notes = []
    if x["path"] == default:
        notes.append("library default here")
    if x.get("prepare_s", 0) > 0.5:
        notes.append(f"prepared in {x['prepare_s']:.0f} s (once; exports are cached)")
    if x.get("malloc"):
        notes.append("malloc tuned")
    if x.get("winograd_convs"):
        notes.append(f"{x['winograd_convs']} 3x3 convs by Winograd where they pay")
    if x.get("int8_agreement") is not None:
        notes.append(f"masks agree with fp32 on {x['int8_agreement']:.1%} (random weights)")
    if x["task"] == "infer" and x["peak_mb"] > MEMORY_BOUND_MB:
        notes.append(f"ABOVE {MEMORY_BOUND_MB / 1024:g} GiB")
    return notes


def memory_summary(rows: list[dict]) -> str:
    """One line: the inference routes' peak RSS (export and quantization included) against
    `MEMORY_BOUND_MB`, naming those above it."""
    measured = [x for x in rows if x["task"] == "infer" and "peak_mb" in x]
    if not measured:
        return "peak RSS: no inference route measured"
    over = [f"{x['path']} {x['peak_mb'] / 1024:.2f} GiB" for x in measured
            if x["peak_mb"] > MEMORY_BOUND_MB]  # fmt: skip
    top = max(measured, key=lambda x: x["peak_mb"])
    head = (
        f"peak RSS of the inference routes (fresh process each, export and int8 quantization "
        f"included): at most {top['peak_mb'] / 1024:.2f} GiB ({top['path']})"
    )
    if over:
        return f"{head}; ABOVE the {MEMORY_BOUND_MB / 1024:g} GiB bound: {', '.join(over)}"
    return f"{head}; every route within {MEMORY_BOUND_MB / 1024:g} GiB"


if __name__ == "__main__":
    sys.exit(main())
