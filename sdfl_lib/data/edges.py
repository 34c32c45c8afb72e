"""Edge maps from masks: the band along the manipulated region's contour (MVSS-Net's edge target).

MVSS-Net draws the edge ground truth with OpenCV: the region's contours are found with
`cv2.findContours` and drawn with `cv2.drawContours` at a given thickness. A contour drawn with
thickness `w` is a band of about `w` pixels centred on the boundary pixels (about w/2 inside and
w/2 outside the region). We use every contour, holes included (`RETR_LIST`), without
approximation (`CHAIN_APPROX_NONE`), so that the band follows the mask pixel by pixel.

`DEFAULT_EDGE_WIDTH` = 5 pixels at the mask's own resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_EDGE_WIDTH = 5


def mask_to_edge(mask: np.ndarray, width: int = DEFAULT_EDGE_WIDTH) -> np.ndarray:
    """uint8 {0, 1} HxW contour band of a binary mask (any non-zero pixel is manipulated)."""
    if mask.ndim != 2:
        raise ValueError(f"mask_to_edge needs a 2-D mask, got shape {mask.shape}")
    if width < 1:
        raise ValueError(f"edge width must be >= 1, got {width}")
    binary = (mask > 0).astype(np.uint8)
    edge = np.zeros_like(binary)
    if not binary.any():
        return edge
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(edge, contours, -1, 1, thickness=width)
    return edge
