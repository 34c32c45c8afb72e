"""Prediction of images and videos: `predict(image, model) -> Prediction` (map, overlay, score,
decision), `predict(video, model, out_dir=...) -> VideoPrediction` (frame by frame,
`sdfl_lib.predict.video`), and `sdfl predict` (`sdfl_lib.predict.cli`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from sdfl_lib.data.video import is_video
from sdfl_lib.lazy import lazy_getattr

if TYPE_CHECKING:
    from torch import nn

    from sdfl_lib.predict.engine import Prediction
    from sdfl_lib.predict.video import VideoPrediction

__all__ = ["Prediction", "VideoPrediction", "map_to_png", "predict", "predict_batch", "predict_video"]
_LAZY = {"Prediction": "engine", "map_to_png": "engine", "predict_batch": "engine",
         "VideoPrediction": "video", "predict_video": "video"}  # fmt: skip


# Lazy, so that `sdfl --help` (which imports predict.cli) does not import matplotlib.
__getattr__ = lazy_getattr(__name__, _LAZY)


def predict(
    image: str | os.PathLike | np.ndarray,
    model: nn.Module,
    image_size: int | None = None,
    threshold: float = 0.5,
    out_dir: str | os.PathLike | None = None,
    **video_options: Any,
) -> Prediction | VideoPrediction:
    """An image (a path PIL can read, or uint8 HxWx3 RGB) through `engine.predict`; a video
    file (by its suffix, `sdfl_lib.data.video.is_video`) frame by frame into `out_dir` through
    `video.predict_video`, which takes the `video_options` (sampling, batch_size, ...)."""
    if not isinstance(image, np.ndarray) and is_video(image):
        if out_dir is None:
            raise ValueError(f"{image}: a video needs out_dir= for its outputs (frames.csv, ...)")
        from sdfl_lib.predict.video import predict_video  # why: lazy, see __getattr__

        return predict_video(image, model, out_dir, image_size=image_size, threshold=threshold,
                             **video_options)  # fmt: skip
    if out_dir is not None or video_options:
        raise ValueError(f"out_dir= and {sorted(video_options)} are for videos, not images")
    from sdfl_lib.predict.engine import predict as predict_image  # why: lazy, see __getattr__

    return predict_image(image, model, image_size, threshold)
