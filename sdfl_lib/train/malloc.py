"""glibc malloc tunables for training: keep freed large blocks for reuse instead of returning
them to the kernel, so every step's multi-megabyte activations do not page-fault anew.

By default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with fresh `mmap`s
and gives freed heap tops back to the kernel; a training step allocates and frees the same few
hundred large tensors each time, so each step touches (and the kernel zeroes) fresh pages —
about a quarter of the CPU time of a ResNet-50 training step here. `tune_malloc` switches both
off for the process with `mallopt`, which acts on every later allocation (no re-exec needed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_MiB = 1 << 20
# What `tune_malloc` sets: no mmap'd blocks (all from the reusable heap), no trimming of the
# heap top, and heap growth in 64 MiB steps.
DEFAULTS = {
    "mmap_max": 0,
    "trim_threshold": 1 << 62,
    "top_pad": 64 * _MiB,
}
# SDFL_MALLOC=default leaves the C library's own settings alone.
ENV = "SDFL_MALLOC"

_applied: dict[str, int] | None = None


def tune_malloc(**settings: int) -> dict[str, int] | None:
    """Apply `DEFAULTS` (updated with `settings`) to this process's glibc malloc once; returns what
    was set, or None where it does not apply (not glibc, or SDFL_MALLOC=default)."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV, "").lower() in ("default", "off", "0"):
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    wanted = {**DEFAULTS, **settings}
    params = {
        "mmap_max": _M_MMAP_MAX,
        "trim_threshold": _M_TRIM_THRESHOLD,
        "top_pad": _M_TOP_PAD,
        "mmap_threshold": _M_MMAP_THRESHOLD,
    }
    done = {}
    for name, value in wanted.items():
        value = min(int(value), 2**31 - 1)  # mallopt takes an int
        if mallopt(params[name], value) == 1:
            done[name] = value
    _applied = done
    return done
