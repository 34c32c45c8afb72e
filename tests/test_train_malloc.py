"""Training's malloc tuning: applied once per process, opt-out by SDFL_MALLOC=default."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CODE = """
import ctypes, json, resource
from sdfl_lib.train.malloc import tune_malloc
applied = tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # what a training step does with its large tensors, 64 MiB each
        p = libc.malloc(64 << 20); ctypes.memset(p, 1, 64 << 20); libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(json.dumps({"applied": applied, "again": tune_malloc() == applied, "faults": faults()}))
"""


def _run(env_value: str | None) -> dict:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "SDFL_MALLOC"}
    if env_value is not None:
        env["SDFL_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_tuned_malloc_reuses_large_blocks_instead_of_faulting_them_in():
    tuned, default = _run(None), _run("default")
    assert tuned["applied"] == {"mmap_max": 0, "trim_threshold": 2**31 - 1, "top_pad": 64 << 20}
    assert tuned["again"] and default["applied"] is None
    # 20 fresh 64 MiB blocks fault in 20 x 16384 pages with mmap'd blocks; reused, almost none.
    assert default["faults"] > 100_000
    assert tuned["faults"] < default["faults"] / 10
