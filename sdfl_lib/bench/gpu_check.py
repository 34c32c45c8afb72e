"""`make gpu-check`: everything only a GPU can show, in one go, printed as figures.

Sections: the CUDA extension's build; kernel vs exact PyTorch path (forward and backward, every
dtype); kernel speed; the model benchmark; a few AMP training steps of `ours` with the paper's
loss; evaluation throughput. A missing piece prints "skipped: reason"; the exit status is 1 when
a check that ran failed. Without CUDA it runs the CPU-side checks (compile only) and exits 0
unless one of those failed. Needs only torch and the project (`PYTHONPATH=. python3 -m ...`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from sdfl_lib.cuda import extension, prroi_pool2d, prroi_pool_whole
from sdfl_lib.cuda.extension import ExtensionUnavailable, find_cuda_home, load_extension
from sdfl_lib.models import build_model
from sdfl_lib.paths import REPO_ROOT, shared_dir
from sdfl_lib.runtime import autocast
from sdfl_lib.study import run_study
from sdfl_lib.study.smoke import sample_sets
from sdfl_lib.train.loss import PaperLoss
from sdfl_lib.train.step import TrainStep
from sdfl_lib.viz import headline


class Skipped(Exception):
    """A section cannot run here; the message says why."""


class Checks:
    """Runs sections, prints their figures, and remembers which checks failed."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def section(self, title: str, fn: Callable[[], None]) -> None:
        print(f"\n== {title}", flush=True)
        try:
            fn()
        except Skipped as exc:
            print(f"  skipped: {exc}")
        except Exception as exc:  # a crash in one section must not hide the others
            traceback.print_exc()
            self.check(title, False, f"crashed: {type(exc).__name__}: {exc}")

    def check(self, name: str, ok: bool, detail: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        if not ok:
            self.failed.append(name)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], iters: int, warmup: int = 2) -> float:
    """Seconds per call (after warm-up), synchronising the device."""
    for _ in range(warmup):
        fn()
    _sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync()
    return (time.perf_counter() - start) / iters


def _random_rois(n: int, h: int, w: int, k: int, scale: float, device: str) -> torch.Tensor:
    """ROIs in input coordinates (1/scale of the map), some past the border, one of zero size."""
    gen = torch.Generator().manual_seed(0)
    b = torch.randint(0, n, (k, 1), generator=gen).double()
    xy0 = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) * 1.1 - 1.0
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) * 0.7 + 0.2
    rois = torch.cat([b, xy0, xy0 + wh], 1)
    rois[:, 1:] /= scale
    rois[0, 3] = rois[0, 1]
    return rois.to(device)


# --- sections ---------------------------------------------------------------------------------


def environment() -> None:
    print(f"  torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA toolkit: {find_cuda_home()}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"  device: {p.name}, {p.total_memory / 2**30:.1f} GiB, sm_{p.major}{p.minor}, "
              f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        print("  no CUDA device: this check needs a GPU; running the CPU-side checks only")


def build_extension(checks: Checks) -> None:
    arch = None if torch.cuda.is_available() else "9.0"
    start = time.perf_counter()
    try:
        ops = extension.load_extension(arch_list=arch)
    except extension.ToolMissing as exc:  # nothing to build with: the PyTorch path serves
        raise Skipped(f"{exc}; prroi_pool2d uses the exact PyTorch path") from exc
    except extension.ExtensionUnavailable as exc:
        checks.check("extension build", False, str(exc))
        return
    took = time.perf_counter() - start
    built = extension.build_seconds.get(arch or extension._arch_list(None) or "", took)
    checks.check("extension build", True, f"{took:.1f} s this call (build step {built:.1f} s; "
                 f"a cached build takes ~0 s), {ops.library}")


def _require_kernel() -> None:
    if not torch.cuda.is_available():
        raise Skipped("needs a CUDA device")
    try:
        load_extension()
    except ExtensionUnavailable as exc:
        raise Skipped(f"CUDA kernels unavailable: {exc}") from exc


def kernel_accuracy(checks: Checks) -> None:
    _require_kernel()
    n, c, h, w, k, ph, pw, scale = 4, 32, 24, 28, 300, 7, 7, 0.5
    gen = torch.Generator().manual_seed(1)
    f64 = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).cuda()
    rois = _random_rois(n, h, w, k, scale, "cuda")
    g64 = torch.randn(k, c, ph, pw, generator=gen, dtype=torch.float64).cuda()
    ref_in = f64.clone().requires_grad_(True)
    ref = prroi_pool2d(ref_in, rois, ph, pw, scale, backend="torch")
    (ref_grad,) = torch.autograd.grad(ref, ref_in, g64)
    tols = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}
    for dtype, tol in tols.items():
        x = f64.to(dtype).requires_grad_(True)
        out = prroi_pool2d(x, rois, ph, pw, scale, backend="cuda")
        (grad,) = torch.autograd.grad(out, x, g64.to(dtype))
        d_out = (out.double() - ref).abs().max().item()
        d_grad = (grad.double() - ref_grad).abs().max().item()
        checks.check(f"kernel vs exact {str(dtype)[6:]}", d_out < tol and d_grad < tol and out.dtype == dtype,
                     f"max|d| forward {d_out:.2e}, backward {d_grad:.2e} (tolerance {tol:g})")
    whole_rois = torch.tensor([[b, 0.0, 0.0, w, h] for b in range(n)], device="cuda", dtype=torch.float64)
    for bins in (1, 2, 3, 6):
        d = (prroi_pool2d(f64.float(), whole_rois, bins, bins, 1.0, backend="cuda")
             - prroi_pool_whole(f64.float(), bins)).abs().max().item()
        checks.check(f"whole-map separable vs kernel, {bins}x{bins}", d < 1e-4, f"max|d| {d:.2e}")
    fd = f64[:1, :2, :8, :9].clone().requires_grad_(True)
    small = torch.tensor([[0, -0.5, 0.3, 6.2, 7.9], [0, 2.0, 1.5, 9.5, 4.0]], dtype=torch.float64, device="cuda")
    ok = torch.autograd.gradcheck(lambda x: prroi_pool2d(x, small, 2, 3, 1.0, backend="cuda"), (fd,))
    checks.check("gradcheck of the kernel (float64)", bool(ok), "passed" if ok else "failed")


def kernel_speed(checks: Checks) -> None:
    _require_kernel()
    n, c, h, w, k, ph, pw, scale = 8, 256, 64, 64, 512, 7, 7, 0.25
    f = torch.randn(n, c, h, w, device="cuda", requires_grad=True)
    rois = _random_rois(n, h, w, k, scale, "cuda").float()
    for backend in ("cuda", "torch"):
        fwd = _time(lambda b=backend: prroi_pool2d(f.detach(), rois, ph, pw, scale, backend=b), 10)
        both = _time(lambda b=backend: prroi_pool2d(f, rois, ph, pw, scale, backend=b).sum().backward(), 10)
        print(f"  ROIs {k} x {c} ch on {n}x{h}x{w}, {ph}x{pw} bins, fp32, {backend:5s}: "
              f"forward {fwd * 1e3:.2f} ms, forward+backward {both * 1e3:.2f} ms")
    c5 = torch.randn(16, 2048, 16, 16, device="cuda")
    whole = torch.tensor([[b, 0.0, 0.0, 16, 16] for b in range(16)], device="cuda")
    sep = _time(lambda: [prroi_pool_whole(c5, s) for s in (1, 2, 3, 6)], 20)
    ker = _time(lambda: [prroi_pool2d(c5, whole, s, s, 1.0, backend="cuda") for s in (1, 2, 3, 6)], 20)
    print(f"  PPM pooling (16x2048x16x16, bins 1/2/3/6): separable map {sep * 1e3:.3f} ms, kernel {ker * 1e3:.3f} ms")


def model_bench(checks: Checks, runs: list[tuple[int, list[str]]]) -> None:
    if not torch.cuda.is_available():
        raise Skipped("needs a CUDA device")
    try:
        bench = importlib.import_module("sdfl_lib.bench.model")
    except ImportError as exc:
        raise Skipped(f"sdfl_lib.bench.model not available ({exc})") from exc
    for batch, extra in runs:
        argv = ["--model", "ours", "--size", "512", "--batch", str(batch), *extra]
        print(f"  $ python -m sdfl_lib.bench model {' '.join(argv)}", flush=True)
        try:
            rc = bench.main(argv)
        except torch.cuda.OutOfMemoryError:  # a size this card cannot hold is a figure, not a fault
            print(f"  batch {batch} {' '.join(extra)}: out of GPU memory")
            rc = 0
        checks.check(f"bench model batch {batch} {' '.join(extra)}", rc in (0, None), f"exit {rc}")
        torch.cuda.empty_cache()


def _fixed_batch(batch: int, size: int, device: str) -> dict:
    """One fixed batch with a visible manipulation (a brightened box) in every other image."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=gen)
    label = (torch.arange(batch) % 2).float()
    mask = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        if label[i]:
            y, x = torch.randint(0, size // 2, (2,), generator=gen).tolist()
            box = (slice(None), slice(y, y + size // 3), slice(x, x + size // 4))
            mask[i][box] = 1
            image[i][box] = image[i][box] * 0.5 + 0.5
    batch_dict = {"image": image, "label": label, "mask": mask, "edge": torch.zeros_like(mask),
                  "has_mask": torch.ones(batch, dtype=torch.bool)}
    return {k: v.to(device) for k, v in batch_dict.items()}


def _peak_gib(device: str) -> str:
    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else "peak n/a on CPU"


def _needs(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise Skipped("needs a CUDA device")


def amp_training(
    checks: Checks, steps: int, batch: int, size: int = 512, device: str = "cuda",
    backbone: str = "resnet50", dtypes: tuple[str, ...] = ("bf16", "fp16"),
) -> None:
    """A few AMP steps of `ours` with the paper's loss on one fixed batch: finite and decreasing."""
    _needs(device)
    data = _fixed_batch(batch, size, device)
    image = data["image"].contiguous(memory_format=torch.channels_last)
    for key in dtypes:
        name = "fp16+GradScaler" if key == "fp16" else key
        if device == "cuda" and key == "bf16" and not torch.cuda.is_bf16_supported():
            print(f"  {name}: skipped: device has no bf16")
            continue
        torch.manual_seed(0)
        model = build_model("ours", image_size=size, backbone=backbone).to(device)
        model = model.to(memory_format=torch.channels_last).train()
        step = TrainStep(torch.optim.Adam(model.parameters(), lr=1e-4), device=device,
                         precision=key, emulated=True)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        losses, skipped = _amp_steps(step, model, image, data, steps)
        _sync()
        per_step = (time.perf_counter() - start) / steps
        finite = all(v == v and abs(v) != float("inf") for v in losses)
        first, last = losses[0], min(losses[-2:])
        checks.check(f"AMP {name} training, batch {batch} at {size}", finite and last < first,
                     f"loss {first:.4f} -> {losses[-1]:.4f} in {steps} steps ({skipped} skipped by the scaler, "
                     f"{per_step:.3f} s/step, {batch / per_step:.1f} img/s incl. warm-up, {_peak_gib(device)})")
        del model, step
        if device == "cuda":
            torch.cuda.empty_cache()


def _amp_steps(step: TrainStep, model: torch.nn.Module, image: torch.Tensor, data: dict,
               steps: int) -> tuple[list[float], int]:
    """The losses of `steps` training steps, and how many of them the scaler skipped."""
    losses, skipped, scaler = [], 0, step.scaler
    for _ in range(steps):
        loss = step.backward(model, image, data).total
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        step.update()
        skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)  # inf/nan grads: step skipped
        losses.append(float(loss.detach()))
    return losses, skipped


def eval_throughput(
    checks: Checks, batch: int, size: int = 512, device: str = "cuda", iters: int = 5,
    backbone: str = "resnet50", dtypes: tuple[str, ...] = ("fp32", "bf16", "fp16"),
) -> None:
    """Inference images/s of `ours` in fp32, bf16 and fp16 autocast, channels_last."""
    _needs(device)
    model = build_model("ours", image_size=size, backbone=backbone).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    for name in dtypes:

        def step(precision=name) -> None:
            with torch.inference_mode(), autocast(device, precision, emulated=True):
                out = model(x)
                _ = (out.mask_prob, out.image_score)  # what an evaluation computes
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sec = _time(step, iters, warmup=1)
        print(f"  eval ours {size}, batch {batch}, {name}, channels_last: {batch / sec:.1f} img/s, {_peak_gib(device)}")


# The paper's training list (CASIA v2 train + the deepfake frames' train split), for epoch times.
PAPER_TRAIN_IMAGES = 18_678


def _speed_of(batch: int, size: int, device: str, precision: str, steps: int, backbone: str) -> tuple[float, float, str]:
    """(training img/s, evaluation img/s, training peak memory) of `ours` on one fixed batch."""

    torch.manual_seed(0)
    model = build_model("ours", image_size=size, backbone=backbone).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device == "cuda")
    data = _fixed_batch(batch, size, device)
    image = data["image"].contiguous(memory_format=torch.channels_last)
    # Without a GradScaler even in fp16 (a GPU without bf16): the figure is the step's speed.
    step = TrainStep(opt, PaperLoss(0.04, 0.16), device=device, precision=precision, scaler=False)

    def train_step() -> None:
        step.step(model, image, data)

    def eval_step() -> None:
        with torch.inference_mode(), autocast(device, precision):
            out = model(image)
            _ = (out.mask_prob, out.image_score)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = _time(train_step, steps, warmup=2)
    peak = _peak_gib(device)
    model.eval()
    eval_s = _time(eval_step, steps, warmup=1)
    return batch / train_s, batch / eval_s, peak


def paper_speed(checks: Checks, batches: tuple[int, ...] = (8, 32), size: int = 512, device: str = "cuda",
                steps: int = 4, backbone: str = "resnet50") -> None:
    """Training and evaluation img/s of `ours` at `size`, bf16, channels-last, per batch (a batch
    that does not fit is said so), peak memory, and the epoch time of the paper's list."""
    _needs(device)
    precision = "bf16" if device != "cuda" or torch.cuda.is_bf16_supported() else "fp16"
    todo = list(batches)
    while todo:
        batch = todo.pop(0)
        try:
            train_ips, eval_ips, peak = _speed_of(batch, size, device, precision, steps, backbone)
        except torch.cuda.OutOfMemoryError:
            print(f"  batch {batch}: out of GPU memory at {size}, {precision}"
                  + (f"; trying {batch // 2}" if batch // 2 > min(batches) else ""))
            torch.cuda.empty_cache()
            if batch // 2 > min(batches):  # the largest batch that fits
                todo.insert(0, batch // 2)
            continue
        epoch_min = PAPER_TRAIN_IMAGES / train_ips / 60
        checks.check(f"ours {size} {precision} channels-last batch {batch}", train_ips > 0 and eval_ips > 0,
                     f"training {train_ips:.1f} img/s ({peak}), evaluation {eval_ips:.1f} img/s; "
                     f"an epoch of the paper's {PAPER_TRAIN_IMAGES:,} training images: {epoch_min:.1f} min")
        if device == "cuda":
            torch.cuda.empty_cache()


def study_smoke(checks: Checks, samples: str | None, params: str = "params/paper.yaml") -> None:
    """`sdfl study --params params/paper.yaml --smoke` on the sample data sets (device auto)."""



    root = Path(samples) if samples else shared_dir() / "data"
    try:
        sets = sample_sets(root)
    except FileNotFoundError as err:
        raise Skipped(f"{err} (pass --samples DIR)") from err
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_study(REPO_ROOT / params, smoke=True, sets=sets, run_root=tmp,
                           reports_dir=Path(tmp) / "reports", echo=False)
        seconds = time.perf_counter() - start
        metrics = json.loads((result.run_dir / "eval" / "model" / "metrics.json").read_text())
        cfg = yaml.safe_load((result.run_dir / "train" / "config.yaml").read_text())
        used = ", ".join(f"{k}={cfg.get(k)}" for k in ("device", "precision", "channels_last"))
        checks.check(f"study {params} --smoke", len(result.executed) == 5,
                     f"{len(result.executed)} notebooks in {seconds:.0f} s {result.seconds}; training {used}; "
                     f"{headline(metrics)}")


def main(argv: list[str] | None = None) -> int:
    """Run every section; exit status 1 if a check that ran failed."""
    parser = argparse.ArgumentParser(prog="python -m sdfl_lib.bench gpu-check", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer model runs (batch 8 only, 6 steps)")
    parser.add_argument("--skip-models", action="store_true", help="only the Precise RoI Pooling checks")
    parser.add_argument("--samples", default=None,
                        help="folder of the sample data sets for the study at smoke scale (default ../shared/data)")
    parser.add_argument("--skip-study", action="store_true", help="leave out the study at smoke scale")
    args = parser.parse_args(argv)
    checks = Checks()
    checks.section("environment", environment)
    checks.section("Precise RoI Pooling: CUDA extension build", lambda: build_extension(checks))
    checks.section("Precise RoI Pooling: kernel vs exact path", lambda: kernel_accuracy(checks))
    checks.section("Precise RoI Pooling: speed", lambda: kernel_speed(checks))
    if not args.skip_models:
        cl = ["--channels-last"]
        runs = [(8, ["--dtype", "fp32"]), (8, ["--dtype", "bf16", *cl])]
        if not args.quick:
            runs += [(32, ["--dtype", "fp32", *cl]), (32, ["--dtype", "bf16", *cl]), (32, ["--dtype", "fp16", *cl])]
        checks.section("model benchmark (sdfl_lib.bench.model)", lambda: model_bench(checks, runs))
        checks.section("AMP training steps, paper loss", lambda: amp_training(checks, 6 if args.quick else 10, 8))
        checks.section("evaluation throughput", lambda: eval_throughput(checks, 16))
        checks.section("ours at 512, bf16, channels-last: batch 8 and 32", lambda: paper_speed(checks))
    if not args.skip_study:
        checks.section("the study at smoke scale (params/paper.yaml, device auto)",
                       lambda: study_smoke(checks, args.samples))
    print()
    if checks.failed:
        print(f"gpu-check: {len(checks.failed)} check(s) failed: {', '.join(checks.failed)}")
        return 1
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; the GPU checks need one (CPU-side checks passed)")
    else:
        print("gpu-check: all checks that ran passed")
    return 0
