"""What DataLoader workers do for evaluation: read, perturb and resize each image, read its mask
at the image's own size under the mask policy; and where each predicted map is saved."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sdfl_lib.data import ImageReadError, load_image, load_mask
from sdfl_lib.data.io import MaskSizeError, image_hw
from sdfl_lib.inference.inputs import prepare_input


class EvalDataset(Dataset):
    """Items for `evaluate`: the resized input, the mask at the image's size, and what happened.

    `rows`: dicts with image, mask, label (from `read_manifest`). Authentic images without a mask
    file get an all-zero mask; tampered images without one are label-only (no pixel ground truth).
    An unreadable image, a missing or unreadable mask, and an authentic row whose mask marks
    tampered pixels become an item with `error` set: not scored, reported, never dropped.
    """

    def __init__(
        self,
        rows: list[dict],
        image_size: int,
        mask_policy: str = "resize",
        perturb: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> None:
        self.rows, self.image_size, self.mask_policy, self.perturb = (
            rows,
            image_size,
            mask_policy,
            perturb,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        item = {
            "i": i,
            "x": None,
            "mask": None,
            "size": None,
            "mask_event": "",
            "mask_size": "",
            "error": "",
            "fatal": None,
        }
        try:
            image = load_image(row["image"])
        except ImageReadError as err:
            item["error"] = str(err)
            return item
        size = image.shape[:2]  # the ground truth's size, whatever the perturbation does
        mask = None
        if row["mask"]:
            stats: Counter = Counter()
            try:
                mask = load_mask(row["mask"], size=size, policy=self.mask_policy, stats=stats)
            except MaskSizeError as err:
                # Policy "fail": the user asked evaluation to stop here. The error is rebuilt in
                # the main process (an exception raised in a loader worker loses its type).
                item["fatal"] = (err.path, err.mask_size, err.image_size)
                return item
            except ImageReadError as err:
                # A tampered row without its ground truth cannot be scored: an error, never a
                # silent label-only row.
                item["error"] = f"mask {err}"
                return item
            if stats["mask_resized"] or stats["mask_skipped"]:
                item["mask_event"] = "resized" if stats["mask_resized"] else "skipped"
                mh, mw = image_hw(row["mask"])
                item["mask_size"] = f"{mh}x{mw}"
            if mask is not None and int(row["label"]) == 0 and mask.any():
                item["error"] = (
                    f"authentic row (label 0) with a mask of {int(mask.sum())} tampered pixels: "
                    f"{row['mask']} (fix the label or the mask)"
                )
                return item
        if self.perturb is not None:
            image = self.perturb(image, int(row.get("row", i)))
        item["x"] = prepare_input(image, self.image_size)
        item["size"] = size
        if mask is not None:
            item["mask"] = torch.from_numpy(mask)
        return item


def collate(items: list[dict]) -> dict:
    """Stacks the readable inputs; keeps masks (each at its own size) and the rest as lists."""
    ok = [it for it in items if it["x"] is not None]
    x = torch.stack([it["x"] for it in ok]) if ok else None
    return {"x": x, "items": ok, "errors": [it for it in items if it["x"] is None]}


def map_paths(images: list[str], sources: list[str]) -> list[str]:
    """Relative PNG paths for predicted maps: <source>/<path below the images' common folder>.png.

    Keeps the data sets' folder structure, so equal basenames from different folders or sources
    never collide; files differing only by extension keep it (`a.jpg.png`, `a.tif.png`).
    """
    if not images:
        return []
    sources = [re.sub(r"[^\w.+-]+", "_", s).strip("._") for s in sources]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in images])
    rel = [Path(os.path.relpath(os.path.abspath(p), root)) for p in images]
    out = [
        (Path(s or "unknown") / r.with_suffix(".png")).as_posix()
        for r, s in zip(rel, sources, strict=True)
    ]
    images_per_name: dict[str, set] = {}
    for o, r in zip(out, rel, strict=True):
        images_per_name.setdefault(o, set()).add(r)
    out = [
        (Path(s or "unknown") / r.with_name(r.name + ".png")).as_posix()
        if len(images_per_name[o]) > 1
        else o
        for o, r, s in zip(out, rel, sources, strict=True)
    ]
    # The same image listed more than once (e.g. under two masks): number the repeats.
    seen = Counter()
    for k, o in enumerate(out):
        seen[o] += 1
        if seen[o] > 1:
            out[k] = f"{o[:-4]}.{seen[o]}.png"
    return out
