"""`python -m sdfl_lib.bench evaluate`: evaluation wall time against the model's forward time.

Target (issue 5): on the CPU, `evaluate` takes <= 1.1x the time of the model's forward pass over
the same images (reading, resizing, counting and writing <= 10 %, overlapped with the forward by
DataLoader workers and a writer thread). Prints images/s and the overhead; never asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sdfl_lib.data import load_image, read_manifest
from sdfl_lib.data.prepare import prepare
from sdfl_lib.data.synth import synthesize
from sdfl_lib.evaluate import evaluate
from sdfl_lib.inference import prepare_input
from sdfl_lib.models import build_model
from sdfl_lib.paths import shared_dir


def _manifest(data: str, n: int, size: int, tmp: Path) -> Path:
    if data == "synth":
        return synthesize(tmp / "synth", n, seed=0, size=size, progress=False)
    if data == "coverage":
        out = tmp / "coverage.csv"
        prepare("coverage", shared_dir() / "data" / "coverage-sample", out, edges=False,
                verbose=False)  # fmt: skip
        return out
    return Path(data)


def _forward_time(model: torch.nn.Module, batches: tuple) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        for b in batches:
            model(b)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdfl_lib.bench evaluate", description=__doc__)
    p.add_argument("--model", default="ours", help="model or method name (ours, upernet, ela...)")
    p.add_argument("--data", default="coverage",
                   help="coverage (the shared sample), synth, or a manifest CSV")  # fmt: skip
    p.add_argument("--n", type=int, default=16, help="images (synth only; else the manifest's)")
    p.add_argument("--synth-size", type=int, default=512, help="synthetic image size")
    p.add_argument("--image-size", type=int, default=256, help="model input size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="use the first N rows (0: all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args(argv)


    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _manifest(args.data, args.n, args.synth_size, Path(tmp))
        if args.limit:
            rows = read_manifest(manifest).head(args.limit)
            manifest = rows.drop(columns=["label_only"], errors="ignore")
        images = (manifest if not isinstance(manifest, Path) else read_manifest(manifest))["image"]
        images = images.tolist()
        model = build_model(args.model, image_size=args.image_size).eval()
        x = torch.stack([prepare_input(load_image(f), args.image_size) for f in images])
        batches = x.split(args.batch_size)
        with torch.no_grad():
            model(batches[0])  # warm-up, not timed
        before = _forward_time(model, batches)
        t0 = time.perf_counter()
        metrics = evaluate(model, manifest, Path(tmp) / "ev", batch_size=args.batch_size,
                           workers=args.workers, image_size=args.image_size, figures=False,
                           progress=False)  # fmt: skip
        wall = time.perf_counter() - t0
        after = _forward_time(model, batches)
    # The forward is timed before and after the evaluation: on a shared machine the load moves.
    forward = (before + after) / 2
    n = len(images)
    timing = metrics["timing"]
    print(f"model {args.model}, input {args.image_size}, {n} images from {args.data}, batch "
          f"{args.batch_size}, {args.workers} workers, {torch.get_num_threads()} torch threads, "
          f"device cpu")  # fmt: skip
    print(f"forward only:  {forward:8.2f} s  {n / forward:7.2f} images/s "
          f"(before {before:.2f} s, after {after:.2f} s)")  # fmt: skip
    print(f"evaluate:      {wall:8.2f} s  {n / wall:7.2f} images/s "
          f"(forward inside: {timing['forward_s']:.2f} s)")  # fmt: skip
    print(
        f"overhead:      {100 * (wall / forward - 1):+8.1f} %  (target <= +10 %: wall <= 1.1x forward)"
    )
    outside = wall - timing["forward_s"]
    print(
        f"outside the forward (I/O, resizing, counting, writing not overlapped): {outside:.2f} s "
        f"= {100 * outside / wall:.1f} % of the evaluation"
    )
    return 0
