"""Every shipped parameter file runs: each one at smoke scale through `sdfl study --smoke`,
offline on the CPU, the GPU files on the real sample data sets; the SLURM script's launch path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sdfl_lib.paths import REPO_ROOT, shared_dir
from sdfl_lib.study.smoke import sample_sets

SAMPLES = shared_dir() / "data"
NOTEBOOKS = ["01_data", "02_modules", "03_train", "04_evaluate", "05_optimization"]
needs_samples = pytest.mark.skipif(not (SAMPLES / "casia2-sample").is_dir(), reason="no shared samples")


@pytest.fixture(autouse=True)
def _free_disk(tmp_path: Path):
    """A study of the paper's network writes gigabytes of checkpoints: gone after each test."""
    yield
    import shutil

    shutil.rmtree(tmp_path, ignore_errors=True)


def _study(tmp_path: Path, params: str, *sets: str, run_root: bool = True) -> tuple[Path, str]:
    """`sdfl study --params FILE --smoke` as a user runs it; (run folder, its terminal output)."""
    cmd = [sys.executable, "-m", "sdfl_lib.cli", "study", "--params", str(REPO_ROOT / "params" / params),
           "--smoke", "--reports", str(tmp_path / "reports")]
    if run_root:
        cmd += ["--run-root", str(tmp_path / "runs")]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "SDFL_OFFLINE": "1", "SDFL_CACHE": str(tmp_path / "cache")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    name = yaml.safe_load((REPO_ROOT / "params" / params).read_text())["name"]
    return tmp_path / "runs" / f"{name}-smoke", out


def _check_study(run: Path, tmp_path: Path, params: str) -> dict:
    """Every notebook executed and rendered; training kept the file's choices; metrics written."""
    for nb in NOTEBOOKS:
        assert (run / "notebooks" / f"{nb}.ipynb").is_file(), nb
        assert (tmp_path / "reports" / f"{nb}.html").is_file(), nb
    chosen = yaml.safe_load((REPO_ROOT / "params" / params).read_text())["train"]
    used = yaml.safe_load((run / "train" / "config.yaml").read_text())
    for key in ("model", "backbone", "precision", "channels_last", "lambda_clf", "lambda_seg", "optimizer"):
        if key in chosen:
            assert used[key] == chosen[key], key
    assert used["image_size"] == 64 and used["device"] == yaml.safe_load(
        (REPO_ROOT / "params" / params).read_text()).get("device", "auto")
    return json.loads((run / "eval" / "model" / "metrics.json").read_text())


def _check_paper_lists(run: Path, metrics: dict) -> None:
    import pandas as pd

    test = pd.read_csv(run / "data" / "test.csv")
    train = pd.read_csv(run / "data" / "train.csv")
    # Trained on CASIA v2 and the FF++ frames (2 videos a class in the sample: all in train, as
    # whole videos), tested on CASIA v1, COVERAGE and CASIA v2's test part.
    assert set(test["source"]) >= {"casia1", "coverage", "casia2"}
    assert "casia2" in set(train["source"]) and any(s.startswith("ffpp") for s in train["source"])
    assert set(train["label"]) == {0, 1}
    assert {"both", "shallowfakes"} <= set(metrics["subsets"])
    both = metrics["subsets"]["both"]
    assert any(k.startswith("paper/") for k in both) and any(k.startswith("standard/") for k in both)
    assert metrics["table3"], "Table III beside the paper-protocol numbers"
    assert metrics.get("robustness"), "robustness curves"


@pytest.mark.slow
def test_demo_file_at_smoke_scale(tmp_path: Path) -> None:
    run, _ = _study(tmp_path, "demo.yaml")
    _check_study(run, tmp_path, "demo.yaml")


@pytest.mark.slow
@needs_samples
def test_paper_file_on_the_real_samples(tmp_path: Path) -> None:
    run, out = _study(tmp_path, "paper.yaml", *sample_sets(SAMPLES))
    metrics = _check_study(run, tmp_path, "paper.yaml")
    _check_paper_lists(run, metrics)
    assert "pretrained off: no ImageNet weights" in out  # said, not silently changed
    for baseline in ("ela", "noise"):
        assert (run / "eval" / baseline / "metrics.json").is_file()
    assert list((run / "optim").glob("*/eval/metrics.json")), "the optimization study ran"


@pytest.mark.slow
@needs_samples
def test_colab_file_with_drive_redirected(tmp_path: Path) -> None:
    runs = tmp_path / "drive"  # the file's run_root on Google Drive, redirected
    default, out = _study(tmp_path, "colab.yaml", *sample_sets(SAMPLES), f"run_root={runs}", run_root=False)
    assert not default.exists()
    run = runs / "colab-smoke"
    metrics = json.loads((run / "eval" / "model" / "metrics.json").read_text())
    _check_paper_lists(run, metrics)
    used = yaml.safe_load((run / "train" / "config.yaml").read_text())
    assert used["precision"] == "fp16" and used["grad_accum"] == 2 and used["checkpoint_every_steps"] == 1
    # The file's fp16 is for a GPU: a CPU trains in float32, and says so.
    assert "note: precision fp16: a GPU precision" in out and "running in float32" in out


@pytest.mark.slow
@needs_samples
def test_multigpu_file_runs_two_processes(tmp_path: Path) -> None:
    run, out = _study(tmp_path, "multigpu.yaml", *sample_sets(SAMPLES))
    metrics = _check_study(run, tmp_path, "multigpu.yaml")
    _check_paper_lists(run, metrics)
    assert "nproc 4 -> 2" in out
    train_nb = (run / "notebooks" / "03_train.ipynb").read_text()
    assert "on 2 process(es)" in train_nb, "03 trained with torchrun on 2 processes (gloo)"


@pytest.mark.slow
def test_slurm_script_parses_and_launches_the_study(tmp_path: Path) -> None:
    script = REPO_ROOT / "params" / "slurm_study.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "srun.log"
    # srun stub: records its arguments and environment, then runs the command it was given.
    (stub / "srun").write_text(
        "#!/bin/bash\n"
        f'echo "srun $*" > {log}\necho "OMP_NUM_THREADS=$OMP_NUM_THREADS" >> {log}\n'
        'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
    )
    (stub / "srun").chmod((stub / "srun").stat().st_mode | stat.S_IEXEC)
    # `sdfl` as the venv provides it, here through this interpreter.
    (stub / "sdfl").write_text(f'#!/bin/bash\nexec {sys.executable} -m sdfl_lib.cli "$@"\n')
    (stub / "sdfl").chmod((stub / "sdfl").stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(REPO_ROOT),
           "SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_ID": "77", "PARAMS": "params/smoke.yaml"}
    res = subprocess.run(["bash", str(script), "--smoke", "--only", "02", "--run-root", str(tmp_path / "runs"),
                          "--reports", str(tmp_path / "reports")], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    recorded = log.read_text()
    assert "srun --ntasks=1 sdfl study --params params/smoke.yaml --resume --smoke --only 02" in recorded
    assert "OMP_NUM_THREADS=2" in recorded
    assert (tmp_path / "runs" / "smoke-smoke" / "notebooks" / "02_modules.ipynb").is_file()


def test_single_class_training_list_warns_and_trains(tmp_path: Path, capsys) -> None:
    from sdfl_lib import data
    from sdfl_lib.train import TrainConfig, fit

    if not (SAMPLES / "casia2-sample").is_dir():
        pytest.skip("no shared samples")
    manifest = data.prepare("casia2", SAMPLES / "casia2-sample", tmp_path / "casia2.csv")["manifest"]
    config = TrainConfig(model="upernet", backbone="resnet18", image_size=32, batch_size=2, epochs=1,
                         limit_train_batches=1, train_manifest=str(manifest), out_dir=str(tmp_path / "t"),
                         workers=0, progress=False, device="auto")
    result = fit(config)
    assert result.status == "completed"
    assert "holds only tampered images (label 1)" in capsys.readouterr().out


def _kill_kernels_of(study_pid: int) -> None:
    """SIGKILL every process started by the kernels of the study `study_pid` (found by the
    study's `KERNEL_TAG`, "<kernel dir>:<study pid>", in their environment) and wait for them."""
    import signal
    import time

    from sdfl_lib.study.runner import KERNEL_TAG, _gone

    prefix, suffix = f"{KERNEL_TAG}=".encode(), f":{study_pid}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            entries = environ.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if any(e.startswith(prefix) and e.endswith(suffix) for e in entries):
            pids.append(int(environ.parent.name))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_study_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A study killed mid-training (a Colab disconnect, a preemption) continues with --resume:
    01 is skipped, 03 resumes from its state file instead of starting over."""
    import signal
    import time

    cmd = [sys.executable, "-m", "sdfl_lib.cli", "study", "--params", str(REPO_ROOT / "params" / "smoke.yaml"),
           "--only", "01,03", "--resume", "--run-root", str(tmp_path / "runs"), "--reports", str(tmp_path / "rep"),
           "--set", "train.epochs=3", "--set", "train.limit_train_batches=3"]
    env = {**os.environ, "SDFL_OFFLINE": "1"}
    state = tmp_path / "runs" / "smoke" / "train" / "state.pt"
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the study's session
    proc.wait()
    # The kernel runs in a session of its own (jupyter_client starts it so) and would notice its
    # parent's death only on its next poll, ~1 s, enough for it to finish another epoch here:
    # kill it (and its workers) too, as a preemption would, before reading what was saved.
    _kill_kernels_of(proc.pid)
    assert state.is_file(), "the first epoch did not finish"
    import pandas as pd
    import torch

    # Epochs done as the state file says: the kill may land after state.pt and before metrics.csv
    # of the same epoch (resuming rewrites metrics.csv from the state).
    done = torch.load(state, weights_only=False)["epoch"]
    assert done < 3, "killed too late to test anything"
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "01_data.ipynb: finished earlier with the same parameters, skipped" in out
    assert f"resuming {state.parent} at epoch {done + 1}" in out
    metrics = pd.read_csv(state.parent / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]
