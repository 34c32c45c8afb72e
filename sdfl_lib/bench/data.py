"""`python -m sdfl_lib.bench data`: data loading and synthesis speed (prints figures, asserts nothing).

Without `--manifest` it measures the shared samples: the CASIA v1.0 JPEGs and the
FaceForensics++ frames (decode + resize + augment per worker process at `--size`), then the time
of `synthesize(n=200)`. A worker is emulated in this process: one torch and one OpenCV thread,
as a DataLoader worker runs. Target (issue 3): >= 50 images/s per worker on the CASIA JPEGs at
512x512; `sdfl data synth --n 200` under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd
import torch

from sdfl_lib.data.dataset import ManipulationDataset, decode_image
from sdfl_lib.data.synth import synthesize
from sdfl_lib.paths import shared_dir


def _casia1(root: Path) -> pd.DataFrame:
    """The casia1-sample JPEGs; masks matched by exact (revised) name where one exists."""
    masks = {p.name[: -len("_gt.png")]: p for p in root.glob("GT/*/*_gt.png")}
    rows = [{"image": str(p), "mask": "", "label": 0, "source": "casia1"}
            for p in sorted(root.glob("Au/*.jpg"))]
    rows += [{"image": str(p), "mask": str(masks.get(p.stem, "")), "label": 1, "source": "casia1"}
             for p in sorted(root.glob("Sp/*.jpg"))]
    return pd.DataFrame(rows).assign(edge="")


def _ffpp_frames(root: Path) -> pd.DataFrame:
    """The faceforensics-sample example frames, with their masks where they have one."""
    rows = []
    for p in sorted(root.glob("frames/*.png")):
        if p.stem.endswith("_mask"):
            continue
        mask = p.with_name(f"{p.stem}_mask.png")
        rows.append({"image": str(p), "mask": str(mask) if mask.exists() else "",
                     "label": int(mask.exists()), "source": "ffpp-frames"})
    return pd.DataFrame(rows).assign(edge="")


def measure_dataset(manifest, size: int, n: int, augment: str) -> dict:
    """Images/s of ManipulationDataset[i] (decode + resize + augment + tensor) in one worker,
    and of the decoding alone."""

    ds = ManipulationDataset(manifest, image_size=size, augment=augment)
    if len(ds) == 0:
        raise SystemExit("the manifest has no rows")
    for i in range(min(len(ds), 4)):  # warm-up: imports, caches, first allocations
        ds[i]
    start, cpu = time.perf_counter(), time.process_time()
    for k in range(n):
        ds[k % len(ds)]
    full, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    for k in range(n):
        decode_image(ds.images[k % len(ds)], size, ds.stats)
    decode = time.perf_counter() - start
    # CPU time says what a core of its own would do when other work shares the machine.
    return {"rows": len(ds), "items": n, "images_per_s": n / full, "ms_per_item": 1000 * full / n,
            "images_per_cpu_s": n / cpu, "decode_ms": 1000 * decode / n}


def measure_synth(n: int, size: int, seed: int = 0) -> float:
    """Seconds for `synthesize(n)` into a temporary folder."""

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthesize(tmp, n, seed, size=size)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Prints the figures; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m sdfl_lib.bench data", description=__doc__)
    parser.add_argument("--manifest", help="a manifest CSV (default: the shared samples)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n", type=int, default=200, help="items to time per data set")
    parser.add_argument("--augment", default="flip", choices=("none", "flip", "strong"))
    parser.add_argument("--synth", type=int, default=200, help="samples for the synth timing "
                        "(0: skip it)")
    parser.add_argument("--synth-only", action="store_true", help="only time synthesize")
    args = parser.parse_args(argv)



    # One worker process of a DataLoader: torch and OpenCV single-threaded.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    # The load average says how much other work shared the cores during the run.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}")
    if not args.synth_only:
        if args.manifest:
            sets = {Path(args.manifest).name: args.manifest}
        else:
            data = shared_dir() / "data"
            sets = {"casia1-sample (JPEG 384x256)": _casia1(data / "casia1-sample"),
                    "faceforensics-sample frames (PNG)": _ffpp_frames(data / "faceforensics-sample")}
        for name, manifest in sets.items():
            r = measure_dataset(manifest, args.size, args.n, args.augment)
            print(f"{name}: {r['images_per_s']:.1f} images/s per worker at {args.size}x{args.size} "
                  f"({r['images_per_cpu_s']:.1f} per CPU-second; augment={args.augment}; "
                  f"{r['ms_per_item']:.1f} ms/item, of which decoding {r['decode_ms']:.1f} ms; "
                  f"{r['items']} items over {r['rows']} rows)")
    if args.synth or args.synth_only:
        n = args.synth or 200
        cv2.setNumThreads(cv2.getNumberOfCPUs())
        seconds = measure_synth(n, 256)
        print(f"synthesize n={n} size=256: {seconds:.1f} s ({n / seconds:.1f} samples/s)")
    return 0
