"""The layer contracts of `.importlinter` hold, and an import that runs upward breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # from the test extra (import-linter)


def _lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts on the sdfl_lib found under `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(REPO / ".importlinter")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "sdfl_lib", tmp_path / "sdfl_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return tmp_path


def test_the_package_keeps_its_contracts(tmp_path):
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    root = _copy(tmp_path)
    base = root / "sdfl_lib" / "models" / "base.py"
    base.write_text(base.read_text() + "\nimport sdfl_lib.bench  # noqa: E402,F401\n")
    result = _lint(root)
    assert result.returncode != 0
    out = result.stdout
    assert "sdfl_lib layers (top imports bottom, never the reverse) BROKEN" in out, out
    assert "sdfl_lib.models.base -> sdfl_lib.bench" in out, out
