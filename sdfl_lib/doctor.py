"""`sdfl doctor [--params FILE]`: what this machine has for the study, and what a parameter file
needs that is missing.

Reports the versions of Python, PyTorch, CUDA, cuDNN, nvcc, ninja and the C++ compiler; the
devices and their bf16 support; whether the Precise RoI Pooling CUDA extension builds and loads
(and what runs instead when it does not); the cache folders and the weight files in them. With a
parameter file it checks its device, data roots, weights and checkpoints. Exit status 1 when the
file needs something that is missing, else 0.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdfl_lib.errors import DataError


@dataclass
class Report:
    """Lines of the report, by section, and the problems that make a parameter file fail."""

    sections: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, section: str, line: str) -> None:
        self.sections.setdefault(section, []).append(line)

    def problem(self, section: str, line: str) -> None:
        self.add(section, f"MISSING {line}")
        self.problems.append(line)

    def text(self) -> str:
        out = []
        for name, lines in self.sections.items():
            out.append(f"{name}:")
            out += [f"  {ln}" for ln in lines]
        out.append(f"{len(self.problems)} problem(s)" + (" (the MISSING lines)" if self.problems else ""))
        return "\n".join(out)


def _tool_version(cmd: list[str], pattern: str = r"(\d+\.\d+(\.\d+)?)") -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        return "not found"
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{exe} (does not run: {err})"
    text = res.stdout + res.stderr
    if "release" in text:  # nvcc: "Cuda compilation tools, release 13.0, V13.0.48"
        text = text[text.index("release"):]
    m = re.search(pattern, text)
    return f"{m.group(1) if m else text.strip().splitlines()[0] if text.strip() else '?'} ({exe})"


def _cpu_name() -> str:
    from sdfl_lib.runtime import cpu_info  # why: not loaded by `sdfl --help`

    return cpu_info().name


def environment(report: Report, build_extension: bool = False) -> None:
    """Versions, devices, the CUDA extension and the cache folders."""
    import torch  # why: not loaded by `sdfl --help`

    from sdfl_lib.runtime import cpu_native  # why: not loaded by `sdfl --help`

    sec = "versions"
    report.add(sec, f"python {platform.python_version()} ({sys.executable})")
    report.add(sec, f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU build)'}, "
                    f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'}")
    for mod in ("torchvision", "timm", "albumentations", "papermill"):
        try:
            version = __import__(mod).__version__
        except ImportError:
            version = "not installed"
        report.add(sec, f"{mod} {version}")
    # why: not loaded by `sdfl --help`
    from sdfl_lib.cuda.extension import _ensure_ninja_on_path, find_cuda_home

    report.add(sec, f"nvcc {_tool_version(['nvcc', '--version'])}; CUDA toolkit {find_cuda_home() or 'not found'}")
    _ensure_ninja_on_path()
    report.add(sec, f"ninja {_tool_version(['ninja', '--version'])}")
    report.add(sec, f"c++ {_tool_version(['c++', '--version'])}")

    sec = "devices"
    cpu = _cpu_name()
    report.add(sec, f"cpu: {cpu}, {torch.get_num_threads()} threads, native bf16 "
                    f"{'yes' if cpu_native('bf16') else 'no (precision bf16 trains in float32 here)'}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            report.add(sec, f"cuda:{i}: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                            f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        report.add(sec, "cuda: no device (device auto runs on the CPU)")
    _extension(report, build_extension)
    _caches(report)


def _extension(report: Report, build: bool) -> None:
    import torch  # why: not loaded by `sdfl --help`

    # why: not loaded by `sdfl --help`
    from sdfl_lib.cuda.extension import ExtensionUnavailable, build_directory, load_extension

    sec = "Precise RoI Pooling"
    fallback = "the PPM pools with the exact PyTorch path (the same numbers, slower on GPUs)"
    if not torch.cuda.is_available() and not build:
        report.add(sec, f"CUDA extension not used: no CUDA device; {fallback}")
        return
    arch = None if torch.cuda.is_available() else "9.0"
    try:
        ops = load_extension(arch)
    except ExtensionUnavailable as err:
        report.add(sec, f"CUDA extension unavailable: {err}; {fallback}")
        return
    where = "compiled only (no device to load it on)" if arch else "loaded"
    report.add(sec, f"CUDA extension {where}: {ops.library}")
    if arch:
        report.add(sec, f"build folder {build_directory(arch)}")


def _caches(report: Report) -> None:
    # why: not loaded by `sdfl --help`
    from sdfl_lib.models.encoder import CSAIL_RESNET50, pretrained_dir
    from sdfl_lib.paths import cache_dir  # why: not loaded by `sdfl --help`

    sec = "caches"
    report.add(sec, f"cache folder {cache_dir()} ($SDFL_CACHE){'' if cache_dir().is_dir() else ' (not created yet)'}")
    weights = sorted(p.name for p in pretrained_dir().glob("*")) if pretrained_dir().is_dir() else []
    report.add(sec, f"ImageNet weights in {pretrained_dir()}: {', '.join(weights) or 'none'}")
    csail = CSAIL_RESNET50["file"]
    report.add(sec, f"the paper's CSAIL ResNet-50 ({csail}): "
                    + ("present" if csail in weights else f"absent (get {CSAIL_RESNET50['url']})"))


def check_params(report: Report, params_path: str | Path, sets: list[str] | None = None
                 ) -> Exception | None:
    """What a study parameter file needs: its device, data roots, weights and checkpoints; its
    keys and values checked as `sdfl study` checks them. Returns the file's usage error (bad YAML,
    an unknown key, a value of the wrong type), listed in the report too, or None."""
    import torch  # why: not loaded by `sdfl --help`

    from sdfl_lib.data.registry import DATASETS  # why: not loaded by `sdfl --help`

    # why: not loaded by `sdfl --help`
    from sdfl_lib.runtime import DeviceError, resolve_device

    # why: not loaded by `sdfl --help`
    from sdfl_lib.study import ParameterError, StudyError, checked_parameters
    from sdfl_lib.study.smoke import weights_present  # why: not loaded by `sdfl --help`

    sec = f"parameters {params_path}"
    try:
        params, *_ = checked_parameters(params_path, sets or ())
    except StudyError as err:
        report.problem(sec, str(err))
        return err if isinstance(err, ParameterError) else None
    device = params.get("device", "auto")
    try:
        dev = resolve_device(device)
        report.add(sec, f"device {device!r} -> {dev}")
    except DeviceError as err:
        report.problem(sec, str(err))
    nproc = int(params.get("nproc", 1) or 1)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if nproc > 1:
        report.add(sec, f"nproc {nproc}: " + (f"{gpus} GPU(s) here" if gpus else "no GPU here, processes on the CPU (gloo)"))
    data = params.get("data") or {}
    for ds in data.get("datasets") or []:
        _check_dataset(report, sec, ds, DATASETS)
    train = params.get("train") or {}
    if train.get("pretrained"):
        bb = str(train.get("backbone", "resnet50"))
        if weights_present(bb):
            report.add(sec, f"train.pretrained: ImageNet weights for {bb!r} present")
        else:
            report.problem(sec, f"train.pretrained: no ImageNet weights for {bb!r} in the cache (see 'caches' above)")
    for where, value in (("train.init_checkpoint", train.get("init_checkpoint")),
                         ("evaluate.checkpoint", (params.get("evaluate") or {}).get("checkpoint"))):
        if value and not Path(value).is_file():
            report.problem(sec, f"{where}: {value} does not exist")
    return None


def _check_dataset(report: Report, sec: str, ds: Any, registry: dict) -> None:
    if not isinstance(ds, dict) or "name" not in ds:
        report.problem(sec, f"data.datasets entry {ds!r} needs a name and a root")
        return
    name, root = ds["name"], Path(str(ds.get("root", "")))
    info = registry.get(name)
    if info is None:
        report.problem(sec, f"data set {name!r} is not one of {', '.join(registry)}")
        return
    if root.is_dir() and any(root.iterdir()):
        report.add(sec, f"{name}: {root} present")
        return
    auto = [f.filename for f in info.files if f.url]
    manual = [f for f in info.files if not f.url]
    if ds.get("download") and not manual:
        report.add(sec, f"{name}: {root} absent; 01 downloads {', '.join(auto)} (needs internet)")
        return
    needs = "; ".join(f"{f.filename}: {f.manual}" for f in manual) or (
        f"`sdfl data download {name} --to {root}` (or download: true)")
    report.problem(sec, f"{name}: {root} absent; needs {needs}")


def _main(args: argparse.Namespace) -> int:
    report = Report()
    environment(report, build_extension=args.build_extension)
    usage = check_params(report, args.params, args.set) if args.params else None
    print(report.text())
    if usage is not None:
        raise usage  # after the report: one line and exit 2, as `sdfl study` ends for it
    if report.problems:  # after the report: one line and exit 1, as every command ends
        raise DataError(f"{len(report.problems)} problem(s), the MISSING lines above; first: "
                        f"{report.problems[0]}")
    return 0


def register(subparsers: Any) -> None:
    """Add `sdfl doctor` to the command line."""
    p = subparsers.add_parser("doctor", help="what this machine has, and what a parameter file needs",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--params", default=None, help="a study parameter file to check, e.g. params/paper.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="as in `sdfl study --set`")
    p.add_argument("--build-extension", action="store_true",
                   help="compile the CUDA extension even without a GPU (takes minutes the first time)")
    p.set_defaults(func=_main)
