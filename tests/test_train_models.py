"""fit() with the real models and data set at tiny sizes: authors'-format init, two processes under
torchrun (`sdfl train --nproc 2`) matching one process, and the saved model reloading."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from test_train_engine import one_thread  # noqa: F401  (autouse fixture: one thread)

from sdfl_lib.data import synthesize
from sdfl_lib.models import build_model, load_model
from sdfl_lib.train import TrainConfig, fit

SMALL = {"ppm_channels": 16, "fpn_channels": 16}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), 8, seed=3, size=48, progress=False)


def small_config(manifest, out_dir, **kw) -> TrainConfig:
    base = dict(model="upernet", backbone="resnet18", model_kwargs=SMALL, image_size=32,
                train_manifest=str(manifest), val_manifest=str(manifest), batch_size=4, epochs=1,
                limit_train_batches=2, workers=0, progress=False, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def test_fine_tune_from_an_authors_format_checkpoint(tmp_path, manifest):
    torch.manual_seed(123)
    source = build_model("upernet", image_size=32, backbone="resnet18", **SMALL)
    authors = {f"module.{k}": v for k, v in source.state_dict().items()}  # as DDP saved them
    torch.save(authors, tmp_path / "authors.pth")
    result = fit(small_config(manifest, tmp_path / "run", init_checkpoint=str(tmp_path / "authors.pth"),
                              lr=1e-9))
    assert result.status == "completed" and result.global_step == 2
    trained = load_model(result.best_checkpoint)
    torch.manual_seed(0)  # what fit builds before loading the file
    fresh = dict(build_model("upernet", image_size=32, backbone="resnet18", **SMALL).named_parameters())
    for name, param in trained.named_parameters():  # started from the file, not from seed 0
        torch.testing.assert_close(param, dict(source.named_parameters())[name], atol=1e-6, rtol=0)
    assert any(not torch.equal(fresh[n], p) for n, p in trained.named_parameters())
    out = trained(torch.rand(1, 3, 32, 32))
    assert out.mask_logit.shape == (1, 1, 32, 32)


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process(tmp_path, manifest):
    keys = ["model=upernet", "backbone=resnet18", f"model_kwargs={SMALL}", "image_size=32",
            f"train_manifest={manifest}", f"val_manifest={manifest}", "batch_size=4", "epochs=1",
            "limit_train_batches=2", "workers=0", "progress=false", "optimizer=sgd", "lr=0.05",
            "freeze_bn=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "sdfl_lib.cli", "train", "--nproc", "2", f"out_dir={tmp_path / 'ddp'}",
         *keys], capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "on 2 process(es)" in run.stdout and "global batch 4 = 2 x 1 x 2" in run.stdout
    one = fit(TrainConfig.load(None, [*keys, f"out_dir={tmp_path / 'one'}"]))
    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    single = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    torch.manual_seed(0)
    start = build_model("upernet", image_size=32, backbone="resnet18", **SMALL).state_dict()
    assert any(not torch.equal(single["state_dict"][k], start[k]) for k in start)
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, atol=1e-5, rtol=0)
    # Every rank validated its share; the all-reduced loss is the one-process loss.
    assert ddp["metrics"]["val_loss"] == pytest.approx(one.metrics[0]["val_loss"], abs=1e-5)


def test_workers_started_by_a_fork_server_as_in_a_notebook(tmp_path, manifest, monkeypatch):
    # Notebook kernels start loader workers from a fork server: the training and validation
    # data must survive pickling there.
    monkeypatch.setenv("SDFL_WORKER_START", "forkserver")
    result = fit(small_config(manifest, tmp_path / "run", workers=2))
    assert result.status == "completed" and result.global_step == 2
