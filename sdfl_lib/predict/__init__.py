"""Prediction of single images: `predict(image, model) -> Prediction` (map, overlay, score,
decision) and `sdfl predict` (`sdfl_lib.predict.cli`)."""

from __future__ import annotations

from typing import Any

__all__ = ["Prediction", "map_to_png", "predict"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `sdfl --help` (which imports predict.cli) does not import matplotlib.
    if name in __all__:
        from sdfl_lib.predict import engine  # why: lazy, see above

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
