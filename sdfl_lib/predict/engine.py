"""Image prediction: probability map, heat-map overlay, image score and decision.

`predict(image, model)` predicts one image, `predict_batch(images, model)` several in one forward
pass (a video's frames, `sdfl_lib.predict.video`); input preparation and map restoration are
`sdfl_lib.inference`'s, shared with `sdfl_lib.evaluate`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from sdfl_lib.data import load_image
from sdfl_lib.data.io import exif_orientation, new_stats, orientation_note, write_image
from sdfl_lib.errors import DataError
from sdfl_lib.inference.inputs import model_image_size, prepare_input, restore_map
from sdfl_lib.runtime import atomic_write, autocast, model_device
from sdfl_lib.viz.overlay import heat_overlay


def map_to_png(prob: np.ndarray) -> np.ndarray:
    """Probability map -> uint8 grey image (0..255)."""
    return np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)


@dataclass
class Prediction:
    """What `predict` returns: the map at the image's own size, the score and the decision."""

    image: np.ndarray = field(repr=False)  # uint8 HxWx3 RGB
    prob_map: np.ndarray = field(repr=False)  # float32 HxW in [0, 1]
    score: float
    threshold: float
    source: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. an EXIF orientation not applied

    @property
    def decision(self) -> str:
        """ "tampered" when the image score is >= the threshold, else "authentic"."""
        return "tampered" if self.score >= self.threshold else "authentic"

    @property
    def overlay(self) -> np.ndarray:
        return heat_overlay(self.image, self.prob_map)

    def to_dict(self) -> dict:
        h, w = self.prob_map.shape
        return {
            "image": self.source,
            "score": self.score,
            "threshold": self.threshold,
            "decision": self.decision,
            "height": h,
            "width": w,
            "tampered_fraction": float((self.prob_map >= self.threshold).mean()),
            **({"notes": self.notes} if self.notes else {}),
        }

    def save(self, out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
        """Writes `name`_map.png, `name`_overlay.png and `name`.json under `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "map": out / f"{name}_map.png",
            "overlay": out / f"{name}_overlay.png",
            "json": out / f"{name}.json",
        }
        write_image(paths["map"], map_to_png(self.prob_map))
        write_image(paths["overlay"], cv2.cvtColor(self.overlay, cv2.COLOR_RGB2BGR))
        with atomic_write(paths["json"]) as tmp:  # the JSON last: it marks a complete output
            tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return paths


def predict(
    image: str | os.PathLike | np.ndarray,
    model: nn.Module,
    image_size: int | None = None,
    threshold: float = 0.5,
) -> Prediction:
    """Predicts one image (a path PIL can read, or uint8 HxWx3 RGB) with a model in eval mode.

    The image is resized to the model's input size; the map comes back at the image's own size.
    Unreadable files raise `sdfl_lib.data.ImageReadError` naming the file.
    """
    source, stats = "", new_stats()
    if not isinstance(image, np.ndarray):
        source = str(image)
        image = load_image(image, stats=stats)
    result = predict_batch([image], model, image_size, threshold, [source])[0]
    if stats.get("exif_orientation"):
        result.notes.append(orientation_note(exif_orientation(source)))
    return result


@torch.no_grad()
def predict_batch(
    images: list[np.ndarray],
    model: nn.Module,
    image_size: int | None = None,
    threshold: float = 0.5,
    sources: list[str] | None = None,
) -> list[Prediction]:
    """Predicts uint8 HxWx3 RGB arrays (any sizes) in one forward pass: what `predict` runs on
    one image and `sdfl_lib.predict.video` on a batch of a video's frames. Non-finite outputs
    (NaN: broken weights or precision) are refused, never written."""
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 HxWx3 RGB array, got {image.dtype} {image.shape}")
    device = model_device(model)
    size = model_image_size(model, image_size)
    x = torch.stack([prepare_input(image, size) for image in images]).to(device)
    with autocast(device):
        out = model(x)
    sources = sources or [""] * len(images)
    results = [
        Prediction(image, restore_map(out.mask_prob[i], image.shape[:2]).cpu().numpy(),
                   float(out.image_score[i]), threshold, sources[i])
        for i, image in enumerate(images)
    ]  # fmt: skip
    for r in results:
        if not math.isfinite(r.score) or not np.isfinite(r.prob_map).all():
            raise DataError(f"{r.source or 'the image'}: the model gave non-finite outputs (NaN or "
                            "infinity): its weights or its precision are broken; nothing was written")
    return results
