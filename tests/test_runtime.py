"""One device vocabulary, one autocast policy, one DataLoader construction, Colab set-up."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch

from sdfl_lib import runtime
from sdfl_lib.paths import REPO_ROOT


def test_device_names_resolve_the_same_everywhere(monkeypatch) -> None:
    assert runtime.resolve_device("auto") == torch.device("cpu")  # this machine has no GPU
    assert runtime.resolve_device(None) == torch.device("cpu")
    assert runtime.resolve_device(" CPU ") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "tpu", "cpu:0"):
        with pytest.raises(runtime.DeviceError, match=f"device '{bad}' is not one of auto, cpu, cuda"):
            runtime.resolve_device(bad)
    for missing in ("cuda", "cuda:1"):
        with pytest.raises(runtime.DeviceError, match="CUDA|CUDA device"):
            runtime.resolve_device(missing)


def test_auto_picks_the_local_rank_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert runtime.resolve_device("auto") == torch.device("cuda", 3)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 3)
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_LOCALID", "2")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert runtime.resolve_device("auto") == torch.device("cuda", 2)
    with pytest.raises(runtime.DeviceError, match="has 4 CUDA device"):
        runtime.resolve_device("cuda:4")


def test_autocast_policy(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert runtime.autocast_dtype(cpu, "auto") is None  # CPU inference stays in float32
    assert runtime.autocast_dtype(cpu, "fp32") is None
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert runtime.autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert runtime.precision_note(cpu, "bf16") is None
    with runtime.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    # A type the CPU would only emulate (several times slower) runs in float32, and says so.
    assert runtime.autocast_dtype(cpu, "fp16") is None
    assert "running in float32" in runtime.precision_note(cpu, "fp16")
    # fp16 stays a GPU precision even where the CPU has AVX512-FP16 (its kernels are slower).
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "avx512_fp16", "amx_fp16"}))
    assert runtime.autocast_dtype(cpu, "fp16") is None
    assert "a GPU precision" in runtime.precision_note(cpu, "fp16")
    assert runtime.autocast_dtype(cpu, "fp16", emulated=True) is torch.float16  # benchmarks
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    assert runtime.autocast_dtype(cpu, "bf16") is None
    assert "running in float32" in runtime.precision_note(cpu, "bf16")
    with runtime.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert runtime.precision_note(torch.device("cuda"), "fp16") is None
    with runtime.autocast("auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    with pytest.raises(ValueError, match="precision 'half'"):
        runtime.autocast_dtype(cpu, "half")


def test_train_config_takes_the_vocabulary() -> None:
    from sdfl_lib.train import TrainConfig

    assert TrainConfig(device="CUDA:1").device == "cuda:1"
    with pytest.raises(ValueError, match="device 'gpu' is not one of"):
        TrainConfig(device="gpu")


def test_predict_and_evaluate_accept_auto(tmp_path) -> None:
    """`device: auto` reached `torch.device("auto")` in evaluation before the runtime module."""
    from sdfl_lib.inference import resolve_model

    model = resolve_model(method="ela", device="auto")
    assert runtime.model_device(model) == torch.device("cpu")


def test_make_loader_workers_are_seeded_and_single_threaded() -> None:
    class Probe(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            import cv2

            return torch.tensor([torch.get_num_threads(), cv2.getNumThreads(), i])

    rows = torch.cat(list(runtime.make_loader(Probe(), batch_size=2, workers=2)))
    assert rows[:, 0].tolist() == [1, 1, 1, 1]
    assert sorted(rows[:, 2].tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="workers must be >= 0"):
        runtime.make_loader(Probe(), workers=-1)


def _install_cell(name: str) -> str:
    nb = nbformat.read(str(REPO_ROOT / "notebooks" / name), as_version=4)
    return next(c.source for c in nb.cells if "colab-install" in c.metadata.get("tags", []))


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO_ROOT / "notebooks").glob("0*.ipynb")))
def test_colab_cell_installs_only_in_colab_without_the_package(name, monkeypatch) -> None:
    import importlib.util
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    source = _install_cell(name)
    exec(compile(source, name, "exec"), {})  # here: no Colab, nothing happens
    assert calls == []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(source, name, "exec"), {})  # Colab with the package installed: nothing either
    assert calls == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "sdfl_lib" else real(n, *a))
    exec(compile(source, name, "exec"), {})
    assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"]
    assert calls[0][-1].startswith("sdfl @ git+https://github.com/")


def test_colab_setup_mounts_drive_when_a_path_lies_on_it(monkeypatch) -> None:
    mounted = []
    assert runtime.colab_setup("/content/drive/MyDrive/runs") is False  # not in Colab
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert runtime.colab_setup("runs/demo", [{"name": "casia2", "root": "data/casia2"}]) is False
    assert mounted == []
    assert runtime.colab_setup("runs/x", [{"root": "/content/drive/MyDrive/sdfl/data/casia2"}]) is True
    assert mounted == ["/content/drive"]


def test_a_bad_device_on_the_command_line_is_one_line(tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    from sdfl_lib.cli import main

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,mask,edge,label,source\na.png,,,0,t\n")
    for cmd in (["evaluate", "--method", "ela", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "e")],
                ["predict", str(tmp_path / "a.png"), "--method", "ela", "--out", str(tmp_path / "p")]):
        assert main([*cmd, "--device", "gpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"sdfl {cmd[0]}: error: device 'gpu' is not one of auto, cpu, cuda or cuda:N", err


def test_cpu_flags_read_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_vnni\n\n")
    monkeypatch.setattr(runtime, "Path", lambda _: info)
    assert runtime.cpu_flags() == {"fpu", "avx2", "avx512_vnni"}
    monkeypatch.setattr(runtime, "Path", lambda _: tmp_path / "missing")
    assert runtime.cpu_flags() == frozenset()


def test_cpu_info_reads_one_name_and_the_flags() -> None:
    info = runtime.cpu_info()
    assert info.name and isinstance(info.flags, frozenset)
    assert runtime.cpu_flags() == info.flags
    if Path("/proc/cpuinfo").is_file():
        assert info.flags, "a Linux CPU lists its flags"


def test_one_cache_root(monkeypatch, tmp_path) -> None:
    from sdfl_lib.paths import cache_dir

    monkeypatch.delenv("SDFL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sdfl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "sdfl"
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), runtime.atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    with runtime.atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]
