"""Shared fixtures: the sample data and checkpoint references read in place from ../shared."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from sdfl_lib.paths import shared_dir

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
