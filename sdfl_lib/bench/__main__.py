"""`python -m sdfl_lib.bench WHAT ...`: benchmarks that print figures (never timed assertions)."""

from __future__ import annotations

import importlib
import sys

# WHAT -> module with `main(argv) -> int`.
_BENCHES = {
    "model": "sdfl_lib.bench.model",
    "int8": "sdfl_lib.bench.int8",
    "train": "sdfl_lib.bench.train",
    "data": "sdfl_lib.bench.data",
    "evaluate": "sdfl_lib.bench.evaluate",
    "gpu-check": "sdfl_lib.bench.gpu_check",
    "demo-seeds": "sdfl_lib.bench.demo_seeds",
    "winograd": "sdfl_lib.bench.winograd",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to one benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _BENCHES:
        print(f"usage: python -m sdfl_lib.bench {{{','.join(_BENCHES)}}} [options]", file=sys.stderr)
        return 2
    return int(importlib.import_module(_BENCHES[argv[0]]).main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
