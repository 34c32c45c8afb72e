"""Where the project keeps caches and finds the shared sample data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Folder for downloaded weights and archives: $SDFL_CACHE, else ~/.cache/sdfl."""
    return Path(os.environ.get("SDFL_CACHE", Path.home() / ".cache" / "sdfl"))


def shared_dir() -> Path:
    """The shared sample data and references: $SDFL_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("SDFL_SHARED", REPO_ROOT.parent / "shared"))
