"""Shared fixtures: the sample data and checkpoint references read in place from ../shared."""

from __future__ import annotations

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
