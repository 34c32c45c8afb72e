"""Synthetic forgeries for offline runs: `synthesize(out_dir, n, seed)` writes a small data set.

Built from the photographs scikit-image ships (nothing is downloaded): authentic random crops,
and fakes made by splicing, copy-move, removal (inpainting) and face blending, each with its
exact mask and edge map. A fraction `fake_ratio` of the samples (default 0.5, rounded half up) are fakes,
split evenly over the manipulations; a face sample whose crop shows no detectable face falls
back to splicing and is counted in `synth.json`. Every photo crop (base and donor alike) first
goes through a "camera" JPEG with probability `source_jpeg_prob` (quality from
`source_jpeg_quality`), as real photos arrive before they are edited; pasting, moving and
inpainting then break its block grid as real edits do. Each output is re-compressed as JPEG with
probability `jpeg_prob` (quality drawn from `jpeg_quality`), else stored as PNG; both classes
alike, so the file type tells nothing. The same arguments give the same files, bit for bit:
every sample draws from its own generator seeded by (seed, index).

Layout: `out_dir/images/NNNNN.{png,jpg}`, `masks/NNNNN.png`, `edges/NNNNN.png` (0/255),
`manifest.csv` (columns image, mask, edge, label, source, plus photo, donor, jpeg_quality) and
`synth.json` (the arguments and the counts).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from sdfl_lib.data import synth_ops as ops
from sdfl_lib.data.edges import mask_to_edge
from sdfl_lib.data.io import write_image
from sdfl_lib.data.manifest import write_manifest
from sdfl_lib.progress import tqdm

KINDS: tuple[str, ...] = ("splice", "copymove", "removal", "face")


@dataclass
class Sample:
    """One synthetic sample before it is written: the authentic crop it started from, too."""

    base: np.ndarray
    image: np.ndarray
    mask: np.ndarray | None
    source: str
    photo: str
    donor: str = ""
    fallback: bool = False


SOURCE_JPEG_PROB = 0.8
SOURCE_JPEG_QUALITY = (70, 95)


def make_sample(rng: np.random.Generator, kind: str, size: int = 256,
                feather: int = ops.DEFAULT_FEATHER, photos: tuple[str, ...] = ops.PHOTOS,
                source_jpeg_prob: float = SOURCE_JPEG_PROB,
                source_jpeg_quality: tuple[int, int] = SOURCE_JPEG_QUALITY) -> Sample:
    """One sample of `kind` ("authentic" or one of `KINDS`) at `size` x `size`, not compressed
    after the manipulation; its crops went through the "camera" JPEG (`ops.camera_jpeg`)."""
    def crop(name: str, box=None) -> np.ndarray:
        image = ops.random_crop(rng, ops.photo(name), size, box)
        return ops.camera_jpeg(rng, image, source_jpeg_prob, source_jpeg_quality)

    if kind == "face":
        name = ops.FACE_PHOTOS[int(rng.integers(len(ops.FACE_PHOTOS)))]
        base = crop(name, ops.face_box(name))
        try:
            image, mask = ops.face_blend(rng, base, feather)
            return Sample(base, image, mask, "synth-face", name)
        except ops.NoFaceFound:
            sample = _splice(rng, base, name, crop, feather, photos)
            sample.fallback = True
            return sample
    name = photos[int(rng.integers(len(photos)))]
    base = crop(name)
    if kind == "authentic":
        return Sample(base, base, None, "synth-authentic", name)
    if kind == "splice":
        return _splice(rng, base, name, crop, feather, photos)
    if kind == "copymove":
        image, mask = ops.copy_move(rng, base, feather)
        return Sample(base, image, mask, "synth-copymove", name)
    if kind == "removal":
        image, mask = ops.removal(rng, base)
        return Sample(base, image, mask, "synth-removal", name)
    raise ValueError(f"unknown manipulation {kind!r}: expected 'authentic' or one of {KINDS}")


def _splice(rng, base, name, crop, feather, photos) -> Sample:
    others = [p for p in photos if p != name] or list(photos)
    donor = others[int(rng.integers(len(others)))]
    image, mask = ops.splice(rng, base, crop(donor), feather)
    return Sample(base, image, mask, "synth-splice", name, donor)


def plan(n: int, seed: int, fake_ratio: float = 0.5, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """The kind of each of the `n` samples: round(n * fake_ratio) fakes spread evenly over
    `kinds`, the rest authentic, in a seeded random order."""
    if not 0.0 <= fake_ratio <= 1.0:
        raise ValueError(f"fake_ratio must be in [0, 1], got {fake_ratio}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown manipulation(s) {sorted(unknown)}: choose from {KINDS}")
    fakes = int(n * fake_ratio + 0.5)  # half up: an odd n gets the extra fake
    order = [kinds[i % len(kinds)] for i in range(fakes)] + ["authentic"] * (n - fakes)
    np.random.default_rng([seed, 0x5EED]).shuffle(order)
    return order


def _write_png(path: Path, array: np.ndarray) -> None:
    write_image(path, array)


def synthesize(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    size: int = 256,
    fake_ratio: float = 0.5,
    kinds: tuple[str, ...] = KINDS,
    jpeg_prob: float = 0.5,
    jpeg_quality: tuple[int, int] = (70, 95),
    feather: int = ops.DEFAULT_FEATHER,
    source_jpeg_prob: float = SOURCE_JPEG_PROB,
    source_jpeg_quality: tuple[int, int] = SOURCE_JPEG_QUALITY,
    progress: bool = True,
) -> Path:
    """Writes `n` synthetic samples into `out_dir`; returns `out_dir/manifest.csv`.

    Same arguments, same files (bitwise). See the module docstring for the layout and ratios.
    """
    _check_options(n, size, jpeg_quality, source_jpeg_prob, source_jpeg_quality)
    out = Path(out_dir)
    for sub in ("images", "masks", "edges"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    kinds_of = plan(n, seed, fake_ratio, tuple(kinds))
    rows, counts = [], Counter()
    # OpenCV's own threads only add overhead on 256-pixel images, and cost determinism nothing.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for index, kind in enumerate(tqdm(kinds_of, desc="synth", disable=not progress)):
            rng = np.random.default_rng([seed, index])
            sample = make_sample(rng, kind, size, feather, source_jpeg_prob=source_jpeg_prob,
                                 source_jpeg_quality=tuple(source_jpeg_quality))
            counts[sample.source] += 1
            counts["face_fallback"] += sample.fallback
            rows.append(_write_sample(out, f"{index:05d}", sample, rng, jpeg_prob, jpeg_quality))
    finally:
        cv2.setNumThreads(threads)
    manifest = write_manifest(pd.DataFrame(rows), out / "manifest.csv")
    config = {"n": n, "seed": seed, "size": size, "fake_ratio": fake_ratio,
              "kinds": list(kinds), "jpeg_prob": jpeg_prob, "jpeg_quality": list(jpeg_quality),
              "feather": feather, "source_jpeg_prob": source_jpeg_prob,
              "source_jpeg_quality": list(source_jpeg_quality), "face_detector": ops._face_detector()[0]}
    _write_report(out, config, counts)
    return manifest


def _check_options(n: int, size: int, jpeg_quality: tuple[int, int], source_jpeg_prob: float,
                   source_jpeg_quality: tuple[int, int]) -> None:
    """A ValueError naming the first option of `synthesize` out of its range."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    lo, hi = jpeg_quality
    if not 1 <= lo <= hi <= 100:
        raise ValueError(f"jpeg_quality must be a range within 1..100, got {jpeg_quality}")
    if not 1 <= source_jpeg_quality[0] <= source_jpeg_quality[1] <= 100:
        raise ValueError(f"source_jpeg_quality must be a range within 1..100, got {source_jpeg_quality}")
    if not 0.0 <= source_jpeg_prob <= 1.0:
        raise ValueError(f"source_jpeg_prob must be in [0, 1], got {source_jpeg_prob}")


def _write_sample(out: Path, stem: str, sample: Sample, rng: np.random.Generator, jpeg_prob: float,
                  jpeg_quality: tuple[int, int]) -> dict:
    """Writes a sample's image (JPEG with probability `jpeg_prob`, else PNG), mask and edge map;
    its manifest row."""
    lo, hi = jpeg_quality
    bgr = np.ascontiguousarray(sample.image[..., ::-1])
    quality = int(rng.integers(lo, hi + 1)) if rng.random() < jpeg_prob else 0
    if quality:
        image_path = out / "images" / f"{stem}.jpg"
        write_image(image_path, bgr, (cv2.IMWRITE_JPEG_QUALITY, quality))
    else:
        image_path = out / "images" / f"{stem}.png"
        _write_png(image_path, bgr)
    mask_path = edge_path = ""
    if sample.mask is not None:
        mask_path, edge_path = out / "masks" / f"{stem}.png", out / "edges" / f"{stem}.png"
        _write_png(mask_path, sample.mask * 255)
        _write_png(edge_path, mask_to_edge(sample.mask) * 255)
    return {
        "image": str(image_path), "mask": str(mask_path), "edge": str(edge_path),
        "label": int(sample.mask is not None), "source": sample.source,
        "photo": sample.photo, "donor": sample.donor, "jpeg_quality": quality,
    }


def _write_report(out: Path, config: dict, counts: Counter) -> None:
    """synth.json: the settings and the counts per kind (and the faces spliced instead)."""
    n = config["n"]
    report = {
        "config": config,
        "counts": {"authentic": counts["synth-authentic"], "fake": n - counts["synth-authentic"],
                   **{k: counts[k] for k in sorted(counts) if k != "face_fallback"},
                   "face_fallback": counts["face_fallback"]},
    }
    (out / "synth.json").write_text(json.dumps(report, indent=2) + "\n")
    if counts["face_fallback"]:
        print(f"synth: {counts['face_fallback']} face sample(s) had no detectable face and were "
              "spliced instead (see synth.json)")
