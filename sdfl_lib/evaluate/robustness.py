"""Perturbations for robustness curves: JPEG, Gaussian blur, Gaussian noise, resizing.

Levels follow IMDL-BenCo (JPEG quality 100..50, blur kernel 3..23, noise levels 3..23) plus
resizing (scale 0.5..1.5), which the field rarely tests. Gaussian noise comes in two semantics,
named apart: `noise_sigma@L` adds noise of standard deviation L (grey levels 0..255);
`noise_var@L` takes L as a variance, as IMDL-BenCo does (it passes each level to albumentations'
`GaussNoise(var_limit=(L, L))`), i.e. a standard deviation of sqrt(L): 1.7..4.8 for its levels.
`noise` is short for `noise_sigma`. A perturbation applies to the uint8 RGB image at its own size,
before the model's resize; the ground truth stays the original mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_LEVELS: dict[str, tuple[float, ...]] = {
    "jpeg": (100, 90, 80, 70, 60, 50),
    "blur": (3, 7, 11, 15, 19, 23),
    "noise_sigma": (3, 7, 11, 15, 19, 23),
    "noise_var": (3, 7, 11, 15, 19, 23),
    "resize": (0.5, 0.75, 1.25, 1.5),
}
ALIASES = {"noise": "noise_sigma"}
# Axis names for the curves.
LEVEL_NAMES = {
    "jpeg": "JPEG quality",
    "blur": "Gaussian kernel size",
    "noise_sigma": "noise standard deviation (grey levels)",
    "noise_var": "noise variance (IMDL-BenCo's levels)",
    "resize": "scale",
}


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one level; callable on (uint8 HxWx3 RGB image, sample index)."""

    kind: str
    level: float
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ALIASES.get(self.kind, self.kind))
        if self.kind not in DEFAULT_LEVELS:
            raise ValueError(
                f"unknown perturbation {self.kind!r}; choose from {list(DEFAULT_LEVELS)}"
            )
        bad = {
            "jpeg": not 1 <= self.level <= 100,
            "blur": self.level < 1 or int(self.level) % 2 == 0 or self.level != int(self.level),
            "noise_sigma": self.level < 0,
            "noise_var": self.level < 0,
            "resize": self.level <= 0,
        }[self.kind]
        if bad:
            rule = {
                "jpeg": "a quality in 1..100",
                "blur": "an odd kernel size >= 1",
                "noise_sigma": "a standard deviation >= 0",
                "noise_var": "a variance >= 0",
                "resize": "a scale > 0",
            }[self.kind]
            raise ValueError(f"{self.kind} level {self.level:g}: expected {rule}")

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.level:g}"

    @property
    def sigma(self) -> float | None:
        """The noise's standard deviation in grey levels (None for other kinds)."""
        if self.kind == "noise_sigma":
            return float(self.level)
        return float(np.sqrt(self.level)) if self.kind == "noise_var" else None

    def __call__(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        if self.kind == "jpeg":
            ok, buf = cv2.imencode(
                ".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(self.level)]
            )
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
        if self.kind == "blur":
            k = int(self.level)
            return cv2.GaussianBlur(image, (k, k), 0)
        if self.sigma is not None:
            # Seeded per image so that a resumed or repeated run sees the same noise.
            rng = np.random.default_rng([self.seed, index])
            noisy = image.astype(np.float32) + rng.normal(0, self.sigma, image.shape)
            return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        h, w = image.shape[:2]
        size = (max(1, round(w * self.level)), max(1, round(h * self.level)))
        interp = cv2.INTER_AREA if self.level < 1 else cv2.INTER_LINEAR
        return cv2.resize(image, size, interpolation=interp)


def parse_robustness(spec: str | dict | list | None) -> list[Perturbation]:
    """Perturbations from "jpeg,blur" (default levels), "jpeg:90/70/50,noise_var:3/23", a list of
    kinds, or a dict kind -> levels (None for the defaults); "noise" means "noise_sigma"."""
    if not spec:
        return []
    if isinstance(spec, str):
        items: dict = {}
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            kind, _, levels = part.partition(":")
            items[kind.strip()] = [float(v) for v in levels.split("/")] if levels else None
        spec = items
    elif isinstance(spec, (list, tuple)):
        spec = {k: None for k in spec}
    out = []
    for kind, levels in spec.items():
        kind = ALIASES.get(kind, kind)
        if kind not in DEFAULT_LEVELS:
            raise ValueError(f"unknown perturbation {kind!r}; choose from {list(DEFAULT_LEVELS)}")
        out += [Perturbation(kind, float(v)) for v in (levels or DEFAULT_LEVELS[kind])]
    return out
