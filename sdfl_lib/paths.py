"""Where the project keeps caches and finds the shared sample data."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kw: Any) -> Iterator[IO]:
    """Opens a temporary file beside `path` and moves it over `path` only when the block ends
    without an error, so that a failed or interrupted write never leaves half a file (or
    destroys the one that was there)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **open_kw) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
