"""Evaluation of a model or a classical method on a manifest: both metric protocols with 95 %
intervals and floors, per-subset report with figures, robustness curves. `evaluate(...)` is the
entry point (also `sdfl evaluate`); `compare(reference, run, ...)` compares evaluations on the
same images (also `sdfl compare`). The settings of `evaluate` are the fields of `EvalConfig`.
"""

from __future__ import annotations

from sdfl_lib.lazy import lazy_getattr

__all__ = ["EvalConfig", "compare", "evaluate", "parse_robustness", "DEFAULT_LEVELS"]

# Lazy, so that `sdfl --help` does not import torch and matplotlib: each name and its module.
_EXPORTS = {
    "evaluate": "engine",
    "EvalConfig": "config",
    "compare": "comparison",
    "parse_robustness": "robustness",
    "DEFAULT_LEVELS": "robustness",
}
__getattr__ = lazy_getattr(__name__, _EXPORTS)
