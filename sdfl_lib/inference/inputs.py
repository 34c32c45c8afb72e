"""What goes into a model and what comes out of it: input preparation (resize to the model's
size, scale to [0, 1]), map restoration (bilinear back to the image's own size), the model's
input size, and int8 calibration batches prepared the same way. Shared by predict and evaluate."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.data import ImageReadError, load_image

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


def calibration_batch(images: list, size: int) -> torch.Tensor:
    """(N, 3, size, size) inputs from the readable ones of `images` (paths or uint8 HxWx3 RGB),
    prepared as for prediction: what int8 quantization calibrates on."""
    batch = []
    for image in images:
        try:
            batch.append(
                prepare_input(image if isinstance(image, np.ndarray) else load_image(image), size)
            )
        except ImageReadError:
            continue  # the prediction itself reports it
    return torch.stack(batch) if batch else torch.empty(0, 3, size, size)
