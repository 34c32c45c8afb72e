"""Builds the Precise RoI Pooling CUDA extension on first use (ninja, cached) and loads it."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sdfl_lib.paths import cache_dir

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("prroi_pool.cpp", "prroi_pool.cu")
EXTENSION_NAME = "sdfl_prroi"


class ExtensionUnavailable(RuntimeError):
    """The CUDA extension cannot be built or loaded here; the message says why."""


class ToolMissing(ExtensionUnavailable):
    """No CUDA build of PyTorch, no CUDA toolkit, or no ninja: nothing to build with here."""


class PrRoIOps(NamedTuple):
    """The loaded kernels: `forward(features, rois, ph, pw, scale)`, `backward(grad, rois, n, h, w, scale)`."""

    forward: object
    backward: object
    library: str


# One build attempt per process and arch list: the ops, or the reason they are unavailable.
_loaded: dict[str, PrRoIOps | ExtensionUnavailable] = {}
build_seconds: dict[str, float] = {}


def _is_cuda_root(path: str | os.PathLike | None) -> bool:
    return bool(path) and (Path(path) / "include" / "cuda_runtime.h").is_file() and any(
        (Path(path) / "bin" / exe).is_file() for exe in ("nvcc", "nvcc.exe")
    )


def _cpp_extension() -> Any:
    """torch.utils.cpp_extension, imported without its import-time warning on machines without
    CUDA (the callers report what is there; a second line on stderr would only repeat it)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension  # why: heavy, only when the extension is built

    return cpp_extension


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, PyTorch's guess, /usr/local/cuda*, or nvcc's.

    PyTorch guesses the root as nvcc's grandparent, which is wrong when `nvcc` on PATH is a
    wrapper script (e.g. /usr/local/bin/nvcc), so every candidate is checked for the headers.
    """
    cpp_extension = _cpp_extension()
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), cpp_extension.CUDA_HOME]
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(os.path.realpath(nvcc)).parent.parent))
    return next((str(c) for c in candidates if _is_cuda_root(c)), None)


def _ensure_ninja_on_path() -> bool:
    """Put the `ninja` wheel's binary on PATH (a venv's python run without activating it)."""
    if _cpp_extension().is_ninja_available():
        return True
    with contextlib.suppress(ImportError):
        import ninja  # the PyPI wheel ships the binary in BIN_DIR

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    bindir = str(Path(sys.executable).parent)
    if (Path(bindir) / "ninja").is_file():
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return _cpp_extension().is_ninja_available()


def _arch_list(arch_list: str | None) -> str | None:
    """Compute capabilities to build for: the argument, $TORCH_CUDA_ARCH_LIST, else the device's."""
    if arch_list:
        return arch_list
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return None


def build_directory(arch_list: str) -> Path:
    """Cache folder of the build for this PyTorch, CUDA and arch list."""
    tag = f"torch{torch.__version__.split('+')[0]}_cu{torch.version.cuda}_sm{arch_list.replace(' ', '-').replace(';', '-')}"
    return cache_dir() / "torch_extensions" / f"{EXTENSION_NAME}_{tag}"


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _ops(library: str) -> PrRoIOps:
    ns = torch.ops.sdfl_prroi
    return PrRoIOps(forward=ns.forward, backward=ns.backward, library=library)


def _build(arch_list: str, verbose: bool) -> PrRoIOps:
    cpp_extension = _cpp_extension()
    if torch.version.cuda is None:
        raise ToolMissing(f"this PyTorch ({torch.__version__}) is a CPU-only build")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise ToolMissing("no CUDA toolkit (nvcc and headers) found; set CUDA_HOME")
    if not _ensure_ninja_on_path():
        raise ToolMissing("ninja is not installed (pip install ninja)")
    # PyTorch reads CUDA_HOME once at import; point it at the toolkit that has the headers.
    cpp_extension.CUDA_HOME = cuda_home
    os.environ.setdefault("CUDA_HOME", cuda_home)
    build_dir = build_directory(arch_list)
    build_dir.mkdir(parents=True, exist_ok=True)
    if not (build_dir / f"{EXTENSION_NAME}.so").is_file():
        # First use: the compile takes a minute or more, say so rather than hang silently.
        print(f"sdfl: building the Precise RoI Pooling CUDA kernels for sm_{arch_list} in {build_dir} "
              "(first use only)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        with _env("TORCH_CUDA_ARCH_LIST", arch_list):
            cpp_extension.load(
                name=EXTENSION_NAME,
                sources=[str(SOURCE_DIR / s) for s in SOURCES],
                extra_include_paths=[str(SOURCE_DIR)],
                extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3"],
                build_directory=str(build_dir),
                verbose=verbose,
                is_python_module=False,  # ops register themselves as torch.ops.sdfl_prroi.*
            )
    except Exception as exc:  # a failed compile or an incompatible toolkit: report why
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # The compiler's own error lines say most; else the message's last lines.
        errors = [ln for ln in lines if "error" in ln.lower() and not ln.startswith("FAILED")]
        tail = " | ".join((errors or lines)[-4:]) or type(exc).__name__
        raise ExtensionUnavailable(
            f"building the extension in {build_dir} failed ({type(exc).__name__}: {tail})"
        ) from exc
    build_seconds[arch_list] = time.perf_counter() - start
    return _ops(str(build_dir / f"{EXTENSION_NAME}.so"))


def load_extension(arch_list: str | None = None, verbose: bool = False) -> PrRoIOps:
    """The compiled CUDA kernels (`forward`, `backward`); built on first use and cached on disk.

    `arch_list` (e.g. "9.0") picks the compute capabilities; by default $TORCH_CUDA_ARCH_LIST or
    the current device's. Raises `ExtensionUnavailable` with the reason when it cannot be built;
    a failed build is not retried in the same process.
    """
    arch = _arch_list(arch_list)
    if arch is None:
        raise ToolMissing("no CUDA device to build for; pass arch_list (e.g. '9.0') to compile only")
    cached = _loaded.get(arch)
    if cached is None and _loaded:
        # The ops of an earlier build are registered already; a second library cannot be.
        first = next(iter(_loaded.values()))
        if isinstance(first, PrRoIOps):
            return first
    if cached is None:
        try:
            cached = _build(arch, verbose)
        except ExtensionUnavailable as exc:
            cached = exc
        _loaded[arch] = cached
    if isinstance(cached, ExtensionUnavailable):
        raise cached
    return cached
