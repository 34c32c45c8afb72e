"""`python -m sdfl_lib.bench train --model ours --size 512 --batch 2`: training images/s and memory.

Runs the real engine (`fit`) on in-memory random images and masks (no disk, no decoding), two
epochs of `--steps` optimizer steps each; the second epoch's speed is reported, so start-up and
first-iteration costs are left out. Peak memory: per GPU on CUDA, the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import torch
from torch.utils.data import Dataset

from sdfl_lib.runtime import cpu_info
from sdfl_lib.train import TrainConfig, fit


class RandomItems(Dataset):
    """`n` training items of the agreed form: random images, half of them fakes with a square mask."""

    def __init__(self, n: int, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=generator)
        self.labels = [i % 2 for i in range(n)]
        self.size = size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        mask = torch.zeros(1, self.size, self.size)
        if self.labels[i]:
            mask[:, self.size // 4 : self.size // 2, self.size // 4 : self.size // 2] = 1
        return {"image": self.images[i], "mask": mask, "edge": torch.zeros_like(mask),
                "label": torch.tensor(float(self.labels[i])), "has_mask": True, "index": i,
                "image_path": f"random/{i}", "source": "random"}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdfl_lib.bench train", description=__doc__)
    p.add_argument("--model", default="ours")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=2, help="global batch (per GPU under torchrun: / N)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per measured epoch")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = its default)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse options, train two short epochs, print images/s and peak memory."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            model=args.model, backbone=args.backbone, image_size=args.size, batch_size=args.batch,
            grad_accum=args.grad_accum, precision=args.precision, channels_last=args.channels_last,
            compile=args.compile, device=args.device, epochs=2, limit_train_batches=args.steps,
            early_stop_patience=0, workers=0, balance_classes=False, augment=False, out_dir=out,
            scheduler="none", log_every_steps=10**9,
        )
        gpu = torch.cuda.is_available() and args.device != "cpu"
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        result = fit(config, train_dataset=RandomItems(args.batch * args.steps, args.size))
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 reports (its own GPU)
        return 0
    print(_report(args, result.metrics, gpu, wall, cpu))
    return 0


def _report(args: argparse.Namespace, metrics: list[dict], gpu: bool, wall: float, cpu: float) -> str:
    """The printed figures: the second epoch's images/s, peak memory, and on the CPU the share
    of the cores the process got."""
    measured = metrics[-1]
    if gpu:
        memory = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB per GPU"
        where = torch.cuda.get_device_name()
    else:
        memory = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
        where = f"CPU ({cpu_info().name}, {torch.get_num_threads()} threads)"
    share = ""
    if not gpu:
        # On a shared machine the process gets only part of its threads' cores; scale to estimate
        # the speed on an idle one (an estimate: say so wherever it is quoted).
        cores = cpu / max(wall, 1e-9)
        idle = measured["images_per_s"] * torch.get_num_threads() / max(cores, 1e-9)
        share = (f"\n  CPU share: {cores:.2f} cores busy for {torch.get_num_threads()} threads"
                 f" (load average {os.getloadavg()[0]:.1f}); idle-machine estimate {idle:.3f} images/s")
    return (f"train {args.model} ({args.backbone}) {args.size}x{args.size}, batch {args.batch},"
            f" {args.precision}{', channels_last' if args.channels_last else ''}"
            f"{', compiled' if args.compile else ''} on {where}\n"
            f"  {measured['images_per_s']:.3f} images/s ({measured['time_s'] / args.steps:.2f} s per step,"
            f" second epoch of {args.steps} steps; first epoch {metrics[0]['images_per_s']:.3f}"
            f" images/s); {memory}; wall {wall:.0f} s{share}")
