"""Evaluation of a model or a classical method on a manifest: both metric protocols with 95 %
intervals and floors, per-subset report with figures, robustness curves. `evaluate(...)` is the
entry point (also `sdfl evaluate`); `compare(reference, run, ...)` compares evaluations on the
same images (also `sdfl compare`). The settings of `evaluate` are the fields of `EvalConfig`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalConfig", "compare", "evaluate", "parse_robustness", "DEFAULT_LEVELS"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `sdfl --help` does not import torch and matplotlib.
    if name == "evaluate":
        from sdfl_lib.evaluate.engine import evaluate  # why: lazy, see above

        return evaluate
    if name == "EvalConfig":
        from sdfl_lib.evaluate.config import EvalConfig  # why: lazy, see above

        return EvalConfig
    if name == "compare":
        from sdfl_lib.evaluate.comparison import compare

        return compare
    if name in ("parse_robustness", "DEFAULT_LEVELS"):
        from sdfl_lib.evaluate import robustness  # why: lazy, see above

        return getattr(robustness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
