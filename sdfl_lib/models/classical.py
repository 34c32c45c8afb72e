"""Classical, training-free baselines usable wherever a model is: "ela" and "noise".

Both are parameter-free `nn.Module`s that take the usual (B, 3, H, W) input in [0, 1], compute on
the CPU, and return a `ModelOutput` like every learned model. Their pixel logit is a robust z-score
of a local statistic against the image's own median, shifted so that probability 0.5 means
"`z_threshold` robust standard deviations away"; the image logit is the 99th percentile of the
pixel logits (a region that stands out makes the image suspicious).

- `ela`: error level analysis (Krawetz, "A picture's worth...", Black Hat 2007): recompress as JPEG
  at `quality`; regions pasted from another source recompress with another error level.
- `noise`: local noise level by Immerkær's estimator ("Fast noise variance estimation", CVIU 1996):
  spliced regions often carry another noise level than the rest of the image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.models.base import ModelOutput, register_model

_GREY = (0.2989, 0.5870, 0.1140)
# Immerkær's noise kernel: the difference of two Laplacians, blind to planes and ramps.
_IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_MAD_TO_SIGMA = 1.4826


def _robust_z(stat: torch.Tensor, floor: float) -> torch.Tensor:
    """(stat - median) / (1.4826 * MAD) per image of a (B, 1, H, W) map; MAD floored at `floor`."""
    flat = stat.flatten(1)
    med = flat.median(dim=1).values
    mad = (flat - med[:, None]).abs().median(dim=1).values.clamp(min=floor)
    return (stat - med[:, None, None, None]) / (_MAD_TO_SIGMA * mad[:, None, None, None])


def _local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    return F.avg_pool2d(x, window, stride=1, padding=window // 2, count_include_pad=False)


def _percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Per-image q-quantile (0..1) of a (B, ...) tensor, (B, 1)."""
    flat = x.flatten(1)
    k = max(1, min(flat.shape[1], math.ceil(q * flat.shape[1])))
    return flat.kthvalue(k, dim=1).values[:, None]


class _Classical(nn.Module):
    """Shared skeleton: a local statistic on the CPU -> robust z-score -> ModelOutput."""

    z_threshold: float

    def statistic(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _keep_settings(self, *values: float) -> None:
        # Settings as a persistent buffer: a checkpoint of the method records what it ran with.
        self.register_buffer("settings", torch.tensor(values, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        with torch.no_grad():
            z = self.statistic(x.detach().float().cpu().clamp(0, 1))
            mask_logit = z - self.z_threshold
            image_logit = _percentile(mask_logit, 0.99)
        return ModelOutput(image_logit=image_logit.to(x.device), mask_logit=mask_logit.to(x.device))


class ErrorLevelAnalysis(_Classical):
    """Error level analysis.

    quality: JPEG quality of the recompression (90). window: side of the local mean of the error
    (9 px). z_threshold: robust z-score at which a pixel's probability is 0.5 (3).
    """

    def __init__(self, quality: int = 90, window: int = 9, z_threshold: float = 3.0) -> None:
        super().__init__()
        self.quality, self.window, self.z_threshold = int(quality), int(window) | 1, z_threshold
        self._keep_settings(self.quality, self.window, z_threshold)

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        u8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        again = np.stack([self._recompress(im) for im in u8])
        error = np.abs(u8.astype(np.float32) - again).mean(3)[:, None] / 255
        return _robust_z(_local_mean(torch.from_numpy(error), self.window), floor=1e-3)

    def _recompress(self, image: np.ndarray) -> np.ndarray:
        # The channel order does not matter for the error: encode the array as it is.
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)


class NoiseInconsistency(_Classical):
    """Local noise level inconsistency; both noisier and cleaner regions stand out (|z|).

    window: side of the local noise estimate (15 px). z_threshold: as for `ErrorLevelAnalysis`.
    """

    def __init__(self, window: int = 15, z_threshold: float = 3.0) -> None:
        super().__init__()
        self.window, self.z_threshold = int(window) | 1, z_threshold
        self._keep_settings(self.window, z_threshold)
        self.register_buffer("kernel", _IMMERKAER[None, None].clone(), persistent=False)

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        grey = sum(w * x[:, i : i + 1] for i, w in enumerate(_GREY)) * 255
        response = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.kernel.cpu())
        sigma = math.sqrt(math.pi / 2) / 6 * _local_mean(response.abs(), self.window)
        return _robust_z(torch.log(sigma + 0.5), floor=0.05).abs()


@register_model
def ela(
    image_size: int = 512,
    quality: int = 90,
    window: int = 9,
    z_threshold: float = 3.0,
    backbone: str | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """Error level analysis baseline (training-free; `backbone`/`pretrained` are ignored)."""
    return ErrorLevelAnalysis(quality, window, z_threshold)


@register_model
def noise(
    image_size: int = 512,
    window: int = 15,
    z_threshold: float = 3.0,
    backbone: str | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """Local noise inconsistency baseline (training-free; `backbone`/`pretrained` are ignored)."""
    return NoiseInconsistency(window, z_threshold)
