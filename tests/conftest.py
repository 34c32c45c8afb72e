"""Shared fixtures: the sample data and checkpoint references read in place from ../shared."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from sdfl_lib.paths import shared_dir  # loads no torch: the setting below still applies

# Under `make test`'s workers (pytest-xdist) each worker, and every process it starts, gets an equal
# share of the cores, set before anything loads torch: two 2-thread OpenMP teams on 2 cores wait on
# each other at every barrier (a demo training beside the two workers ran 4-5x slower), while one thread
# each keeps both cores busy.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))

SHARED = shared_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder (sample data in data/, checkpoint references in reference/)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED} (set SDFL_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared: Path) -> Path:
    return shared / "data"


@pytest.fixture(scope="session")
def synth_weights(shared: Path):
    """The reference module `synth_weights.py`, imported in place."""
    ref = str(shared / "reference")
    if ref not in sys.path:
        sys.path.insert(0, ref)
    import synth_weights

    return synth_weights


@pytest.fixture(scope="session")
def coverage_manifest(shared_data: Path, tmp_path_factory) -> Path:
    """The COVERAGE sample prepared (without edges) into a manifest, once; read it, don't change it."""
    from sdfl_lib.data.prepare import prepare

    manifest = tmp_path_factory.mktemp("coverage") / "coverage.csv"
    prepare("coverage", shared_data / "coverage-sample", manifest, edges=False, verbose=False)
    return manifest


@pytest.fixture()
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The shipped parameter files' smoke studies take minutes each; the rest of the slow tests tens of
# seconds. Collected first, they start first: with `make test`'s two workers, fed one test at a
# time, the long ones then run side by side instead of one after the other at the end.
_LONGEST_FIRST = ("test_params_files.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.name in _LONGEST_FIRST else 1

    items.sort(key=rank)  # stable: the order within each rank is the collection order
