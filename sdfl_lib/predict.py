"""Single-image prediction: probability map, heat-map overlay, image score and decision.

`predict(image, model)` is the entry point; the same input preparation (resize to the model's
size, scale to [0, 1]) and map restoration (bilinear back to the image's own size) serve
`sdfl_lib.evaluate`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.runtime import autocast, model_device, resolve_device

DEFAULT_IMAGE_SIZE = 512


def prepare_input(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 (3, size, size) in [0, 1] (bilinear resize, as the paper)."""
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized).permute(2, 0, 1).float().div_(255)


def restore_map(prob: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) or (1, h, w) probability map resized bilinearly to `size` = (H, W), float32."""
    prob = prob.float().reshape(1, 1, *prob.shape[-2:])
    if tuple(prob.shape[-2:]) != tuple(size):
        prob = F.interpolate(prob, size=tuple(size), mode="bilinear", align_corners=False)
    return prob[0, 0].clamp_(0, 1)


def model_image_size(model: nn.Module, image_size: int | None = None) -> int:
    """`image_size` when given, else the size the model was built for, else 512."""
    if image_size:
        return int(image_size)
    spec = getattr(model, "sdfl_spec", None) or {}
    return int(spec.get("image_size") or DEFAULT_IMAGE_SIZE)


def resolve_model(
    model_or_checkpoint: nn.Module | str | os.PathLike | None = None,
    method: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A model in eval mode on `device`: given as a module, a checkpoint path or named weights
    (`table3-9`, see `sdfl_lib.models.weights`), or a method name (a classical baseline such as
    "ela" or "noise", or any registered model name)."""
    from sdfl_lib.models import build_model, load_model

    if (model_or_checkpoint is None) == (method is None):
        raise ValueError("give exactly one of a model/checkpoint or a method name")
    if method is not None:
        model = build_model(method)
    elif isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
    else:
        from sdfl_lib.models.weights import resolve_checkpoint

        path = resolve_checkpoint(model_or_checkpoint)  # a path, or a name such as table3-9
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        model = load_model(path, map_location="cpu")
    return model.to(resolve_device(device)).eval()


def calibration_batch(images: list, size: int) -> torch.Tensor:
    """(N, 3, size, size) inputs from the readable ones of `images` (paths or uint8 HxWx3 RGB),
    prepared as for prediction: what int8 quantization calibrates on."""
    from sdfl_lib.data import ImageReadError, load_image

    batch = []
    for image in images:
        try:
            batch.append(
                prepare_input(image if isinstance(image, np.ndarray) else load_image(image), size)
            )
        except ImageReadError:
            continue  # the prediction itself reports it
    return torch.stack(batch) if batch else torch.empty(0, 3, size, size)


def heat_overlay(image: np.ndarray, prob: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with a jet heat map of `prob` (HxW in [0, 1]), uint8 HxWx3."""
    heat = cv2.applyColorMap(np.round(prob * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


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
        cv2.imwrite(str(paths["map"]), map_to_png(self.prob_map))
        cv2.imwrite(str(paths["overlay"]), cv2.cvtColor(self.overlay, cv2.COLOR_RGB2BGR))
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return paths


@torch.no_grad()
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
    from sdfl_lib.data import load_image

    source = ""
    if not isinstance(image, np.ndarray):
        source = str(image)
        image = load_image(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {image.dtype} {image.shape}")
    device = model_device(model)
    x = prepare_input(image, model_image_size(model, image_size))[None].to(device)
    with autocast(device):
        out = model(x)
    prob = restore_map(out.mask_prob[0], image.shape[:2]).cpu().numpy()
    return Prediction(image, prob, float(out.image_score[0]), threshold, source)
