"""`python -m sdfl_lib.bench model`: inference and training images/s and peak memory of a model."""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sdfl_lib.runtime import resolve_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# /proc/cpuinfo flags that give a CPU native arithmetic in each low-precision type.
_NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_native(dtype: str = "bf16") -> bool:
    """Whether the CPU computes in `dtype` ("bf16"/"fp16") natively (AVX512-BF16/FP16 or AMX)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return any(f in flags for f in _NATIVE_FLAGS.get(dtype, ()))


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
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=DTYPES[name], enabled=name != "fp32"),
        ):
            conv(x)
            n = repeats * 5 if name == "fp32" else repeats  # fp32 is fast: average more
            sec = _timed(lambda: conv(x), n, dev, "probe", False)  # noqa: B023
        out[f"{name}_gflops"] = flops / sec / 1e9
    return out


def device_description(device: torch.device) -> str:
    """A one-line name of the device the figures are for."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux (bytes on macOS): the process's peak resident set.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _paper_loss(out: Any, mask: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """0.04 BCE(image) + 0.16 Dice(mask), the paper's weights (cost, not accuracy, matters here)."""
    bce = nn.functional.binary_cross_entropy_with_logits(out.image_logit.float().flatten(), label)
    p = torch.sigmoid(out.mask_logit.float())
    dice = 1 - (2 * (p * mask).sum() + 1) / ((mask * mask).sum() + (p * p).sum() + 1)
    return 0.04 * bce + 0.16 * dice


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
    (batch norm folded into the convolutions) unless `fold_bn` is False; training is forward,
    the paper's loss, backward and an Adam step. `dtype` "bf16"/"fp16" use autocast (fp16 training with a
    GradScaler); on a CPU without native arithmetic in that type only `conv_probe` runs, unless
    `force`. Returns a dict of the settings and figures (memory in MiB; on the CPU it is the
    process's peak resident set, so the training figure includes everything before it).
    """
    from sdfl_lib.models import build_model, optimize_for_inference

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    dev = resolve_device(device)
    amp = dtype != "fp32"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    result: dict[str, Any] = {
        "model": model_name,
        "backbone": backbone,
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "channels_last": channels_last,
        "device": device_description(dev),
        "torch": torch.__version__,
        "fold_bn": fold_bn,
    }
    if dev.type == "cpu":
        result["cpu_native_bf16"] = cpu_native("bf16")
        if amp and not cpu_native(dtype) and not force:
            # Whole-model figures would take hours; say what the type gives on one conv instead.
            result.update(conv_probe(dtype, dev), skipped=True)
            return result
    torch.manual_seed(0)
    model = build_model(model_name, image_size=size, backbone=backbone).to(dev, memory_format=fmt)
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    autocast = (
        (lambda: torch.autocast(dev.type, dtype=DTYPES[dtype])) if amp else contextlib.nullcontext
    )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    model.eval()
    fast = optimize_for_inference(model, channels_last) if fold_bn else model

    def infer() -> None:
        with torch.inference_mode(), autocast():
            fast(x)

    for _ in range(warmup):
        infer()
    sec = _timed(infer, iters, dev, "inference", progress)
    result["inference_img_s"] = batch / sec
    result["inference_peak_mb"] = _peak_memory_mb(dev)

    if train:
        model = copy.deepcopy(model).train()  # the Bayar projection mutates; keep runs apart
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(dev.type, enabled=dtype == "fp16")
        mask = (torch.rand(batch, 1, size, size, device=dev) > 0.5).float()
        label = torch.ones(batch, device=dev)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
            scaler.scale(_paper_loss(out, mask, label)).backward()
            scaler.step(optimizer)
            scaler.update()

        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for _ in range(warmup):
            train_step()
        sec = _timed(train_step, iters, dev, "training", progress)
        result["training_img_s"] = batch / sec
        result["training_peak_mb"] = _peak_memory_mb(dev)
    return result


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


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run `bench_model`, print the figures."""
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
    args = parser.parse_args(argv)
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
