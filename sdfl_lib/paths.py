"""Where the project keeps caches and finds the shared sample data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The one cache root (downloaded weights and archives, ONNX exports, built extensions):
    $SDFL_CACHE, else $XDG_CACHE_HOME/sdfl, else ~/.cache/sdfl."""
    if os.environ.get("SDFL_CACHE"):
        return Path(os.environ["SDFL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdfl"


def shared_dir() -> Path:
    """The shared sample data and references: $SDFL_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("SDFL_SHARED", REPO_ROOT.parent / "shared"))
