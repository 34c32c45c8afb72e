"""Where the project keeps caches and finds the shared sample data."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sdfl_lib.errors import FolderBusyError, MissingInput, OutputError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; folders are not locked there
    fcntl = None  # type: ignore[assignment]

F = TypeVar("F", bound=Callable[..., Any])

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
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Holds an exclusive lock on `folder` (an advisory lock on `folder/.sdfl.lock`, released by
    the system when the process ends, however it ends) while `command` writes into it; a second
    run into the same folder fails at once instead of interleaving its files with the first's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".sdfl.lock"
    if fcntl is None:
        yield
        return
    try:
        handle = open(path, "a+")
    except OSError as err:
        raise OutputError(path, err) from err
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusyError(
                f"{folder} is in use by {holder}: wait for it to finish, or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def holds_folder_lock(argument: str, command: str) -> Callable[[F], F]:
    """Decorator: the function runs under `folder_lock` on the folder passed as `argument`."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            folder = signature.bind(*args, **kwargs).arguments[argument]
            with folder_lock(folder, command):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def require_inputs(run_dir: str | os.PathLike, files: dict[str, str]) -> None:
    """Stop in one line when a file a notebook reads is not in the run folder: `files` maps each
    path (relative to `run_dir`) to the notebook that writes it, e.g. {"data/train.csv": "01_data"}."""
    for rel, maker in files.items():
        path = Path(run_dir, rel)
        if not path.exists():
            raise MissingInput(f"{path} is missing: run {maker}.ipynb first with the same run_dir "
                               "(it writes this file)")
