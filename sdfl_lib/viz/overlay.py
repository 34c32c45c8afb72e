"""A probability map drawn over its image as a jet heat map (predict's overlays, report figures)."""

from __future__ import annotations

import cv2
import numpy as np


def heat_overlay(image: np.ndarray, prob: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with a jet heat map of `prob` (HxW in [0, 1]), uint8 HxWx3."""
    heat = cv2.applyColorMap(np.round(prob * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)
