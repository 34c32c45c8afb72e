"""fit(): run folder, accumulation == full batch, exact resume after SIGKILL/SIGTERM, non-finite loss.

A tiny registered model (GroupNorm, so per-process batches normalise like the full batch) and an
in-memory data set keep each test to seconds; tests with the real models (and two processes under torchrun) are in test_train_models.py.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from sdfl_lib.models.base import ModelOutput, register_model
from sdfl_lib.train import NonFiniteLossError, TrainConfig, fit

SIZE = 16


class TinyNet(nn.Module):
    """Conv + GroupNorm: mask logits per pixel, image logit from pooled features."""

    nan_after = 0  # forward calls before the outputs turn NaN (0 = never); class-level for tests

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU())
        self.mask = nn.Conv2d(8, 1, 1)
        self.image = nn.Linear(8, 1)
        self.calls = 0

    def forward(self, x):
        f = self.body(x)
        out = ModelOutput(self.image(f.mean((2, 3))), self.mask(f))
        self.calls += 1
        if TinyNet.nan_after and self.calls > TinyNet.nan_after:
            out.image_logit = out.image_logit * float("nan")
        return out


@register_model
def train_test_tiny(image_size=SIZE, backbone="none", pretrained=False, **kw):
    model = TinyNet()
    model.sdfl_spec = {"name": "train_test_tiny", "image_size": image_size, "backbone": backbone}
    return model


class ToyItems(Dataset):
    """Agreed item dicts: rectangles spliced into noise; every 4th fake is label-only.

    Random flips draw from torch's global generator, which `fit` seeds per item.
    """

    def __init__(self, n=24, seed=0, augment=True, delay=0.0, signal_at=-1):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, SIZE, SIZE, generator=g)
        self.labels = [i % 3 != 0 for i in range(n)]  # 2:1 fakes, so balancing matters
        self.masks = torch.zeros(n, 1, SIZE, SIZE)
        for i, fake in enumerate(self.labels):
            if fake:
                y, x = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
                self.masks[i, :, y : y + SIZE // 3, x : x + SIZE // 3] = 1
                self.images[i, 0] += self.masks[i, 0] * 0.5
        self.augment, self.delay, self.signal_at, self.reads = augment, delay, signal_at, 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(self.delay)
        image, mask = self.images[i], self.masks[i]
        if self.augment and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        label_only = self.labels[i] and i % 4 == 1
        return {"image": image, "mask": mask if not label_only else torch.zeros_like(mask),
                "edge": torch.zeros_like(mask), "label": torch.tensor(float(self.labels[i])),
                "has_mask": not label_only, "index": i, "image_path": f"toy/{i}.png", "source": "toy"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(out_dir, **kw) -> TrainConfig:
    base = dict(model="train_test_tiny", image_size=SIZE, batch_size=4, epochs=2, lr=1e-2,
                workers=0, progress=False, out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def initial_weights() -> dict[str, torch.Tensor]:
    """The weights `fit` starts from with seed 0."""
    torch.manual_seed(0)
    return train_test_tiny().state_dict()


def weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(Path(run_dir) / "last.pt", weights_only=True)["state_dict"]


def test_fit_writes_the_run_folder(tmp_path):
    result = fit(tiny_config(tmp_path / "run", epochs=3, scheduler="step", step_size=1),
                 train_dataset=ToyItems(), val_dataset=ToyItems(n=10, seed=1, augment=False))
    run = tmp_path / "run"
    assert result.status == "completed" and result.epochs == 3 and result.global_step == 18
    assert TrainConfig.load(run / "config.yaml").lr == 1e-2
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    for key in ("train_loss", "train_clf", "train_seg", "val_loss", "val_clf", "val_seg", "lr",
                "time_s", "images_per_s"):
        assert float(rows[-1][key]) >= 0, key
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-2, 1e-3, 1e-4])
    assert any(p.name.startswith("events") for p in (run / "tb").iterdir())
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["format"] == "sdfl" and best["epoch"] == result.best_epoch
    assert best["metrics"]["val_loss"] == pytest.approx(result.best_loss)
    assert best["config"]["model"] == "train_test_tiny"
    # An improving epoch's best.pt is its last.pt, linked; a later epoch's last.pt leaves it be.
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 3
    assert os.path.samefile(run / "best.pt", run / "last.pt") is (result.best_epoch == 3)
    state = torch.load(run / "state.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (3, 0, 18)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "bad_epochs"} <= set(state)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit(tiny_config(run), train_dataset=ToyItems())


def test_keep_state_false_leaves_best_only_once_the_run_ends(tmp_path):
    run = tmp_path / "short"
    result = fit(tiny_config(run, keep_state=False), train_dataset=ToyItems())
    assert result.status == "completed"
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt"]


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    one = fit(tiny_config(tmp_path / "one", epochs=1, limit_train_batches=3),
              train_dataset=ToyItems(), val_dataset=ToyItems(n=6, seed=1, augment=False))
    fit(tiny_config(tmp_path / "accum", epochs=1, limit_train_batches=3, grad_accum=4),
        train_dataset=ToyItems(), val_dataset=ToyItems(n=6, seed=1, augment=False))
    a, b = weights(tmp_path / "accum"), weights(tmp_path / "one")
    start = initial_weights()
    assert any((b[k] - start[k]).abs().max() > 1e-3 for k in b)  # the runs did move
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    rows = list(csv.DictReader(open(tmp_path / "accum" / "metrics.csv")))
    assert float(rows[0]["train_loss"]) == pytest.approx(one.metrics[0]["train_loss"], abs=1e-6)


def run_for_kill(out_dir: str) -> None:
    """Entry of the subprocess that the next test kills (slow items so it can be caught)."""
    fit(tiny_config(out_dir, checkpoint_every_steps=1, workers=1, deterministic=True),
        train_dataset=ToyItems(delay=0.02))


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path):
    run = tmp_path / "killed"
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
           f"import {Path(__file__).stem} as t; t.run_for_kill({str(run)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            state = run / "state.pt"
            if state.exists() and torch.load(state, weights_only=True)["global_step"] >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(run / "state.pt", weights_only=True)
    assert killed_at["epoch"] == 0 and 0 < killed_at["step_in_epoch"] < 6, "not killed mid-epoch"
    resumed = fit(resume=run, overrides=["workers=0"], train_dataset=ToyItems())
    full = fit(tiny_config(tmp_path / "full", deterministic=True), train_dataset=ToyItems())
    assert resumed.global_step == full.global_step == 12
    a, b = weights(run), weights(tmp_path / "full")
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]


def test_sigterm_saves_state_and_stops_cleanly_then_resumes(tmp_path, capsys):
    run = tmp_path / "term"
    stopped = fit(tiny_config(run), train_dataset=ToyItems(signal_at=4 * 4 + 2))
    assert stopped.status == "interrupted" and stopped.signal == signal.SIGTERM
    state = torch.load(run / "state.pt", weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (0, 5)  # the step in progress was finished
    assert "sdfl train --resume" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    fit(resume=run, train_dataset=ToyItems())
    fit(tiny_config(tmp_path / "full"), train_dataset=ToyItems())
    a, b = weights(run), weights(tmp_path / "full")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(TinyNet, "nan_after", 6 * 2 + 3)  # NaN in the third epoch
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 3, step 4.*last good state"):
        fit(tiny_config(run, epochs=4), train_dataset=ToyItems())
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["epoch"] == 2
    last = weights(run)
    assert all(torch.isfinite(v).all() for v in last.values())
    assert all(torch.equal(last[k], state["model"][k]) for k in last)


def test_plateau_schedule_and_early_stopping_follow_the_monitored_loss(tmp_path, monkeypatch):
    from sdfl_lib.train import engine

    flat = {"val_loss": 0.5, "val_clf": 0.5, "val_seg": 0.5}
    monkeypatch.setattr(engine._Run, "_validate", lambda self: dict(flat))
    result = fit(tiny_config(tmp_path / "run", epochs=6, plateau_patience=0, early_stop_patience=2),
                 train_dataset=ToyItems(), val_dataset=ToyItems(n=4))
    assert result.status == "early_stopped" and result.epochs == 3 and result.best_epoch == 1
    assert [r["lr"] for r in result.metrics] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert [r["best"] for r in result.metrics] == [True, False, False]


@pytest.mark.parametrize("native", [True, False], ids=["native", "emulated"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_channels_last_run(tmp_path, precision, native, monkeypatch, capsys):
    from sdfl_lib import runtime

    # As on a CPU with (or without) native arithmetic in that type; GPUs always take it.
    monkeypatch.setattr(runtime, "cpu_native", lambda dtype="bf16": native)
    result = fit(tiny_config(tmp_path / precision, epochs=1, precision=precision, channels_last=True),
                 train_dataset=ToyItems())
    assert result.status == "completed" and result.global_step == 6
    state = torch.load(tmp_path / precision / "state.pt", weights_only=True)
    # On a CPU fp16 always runs in float32 (its CPU kernels are slower), so no GradScaler state.
    assert not state["scaler"]
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / precision).values())
    out = capsys.readouterr().out
    said = f"note: precision {precision}: " in out and "running in float32" in out
    assert said is not (precision == "bf16" and native)


def test_winograd_convolutions_follow_the_config_and_may_change_on_resume(tmp_path, monkeypatch,
                                                                           capsys):
    from sdfl_lib.train import build

    seen = []
    real = build.use_winograd
    monkeypatch.setattr(build, "use_winograd",
                        lambda model, enabled=True: seen.append(enabled) or real(model, enabled))
    fit(tiny_config(tmp_path / "on", epochs=1), train_dataset=ToyItems())
    fit(tiny_config(tmp_path / "off", epochs=1, winograd=False), train_dataset=ToyItems())
    assert seen == [True, False]
    assert "Winograd" not in capsys.readouterr().out  # the tiny model has no convolution for it
    assert "winograd: false" in (tmp_path / "off" / "config.yaml").read_text()
    result = fit(resume=tmp_path / "off", overrides=["winograd=true", "epochs=2"],
                 train_dataset=ToyItems())
    assert result.status == "completed" and seen == [True, False, True]
    changes = (tmp_path / "off" / "config_changes.csv").read_text()
    assert "winograd" in changes
    # A model with convolutions it applies to says so once.
    monkeypatch.setattr(build, "use_winograd", lambda model, enabled=True: 3)
    fit(tiny_config(tmp_path / "said", epochs=1), train_dataset=ToyItems())
    out = capsys.readouterr().out
    assert out.count("note: 3 3x3 convolutions train by Winograd F(4x4, 3x3)") == 1


def test_bad_setups_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="divisible by world_size x grad_accum = 1 x 3 = 3"):
        fit(tiny_config(tmp_path / "a", grad_accum=3), train_dataset=ToyItems())
    with pytest.raises(ValueError, match="fewer than one global batch"):
        fit(tiny_config(tmp_path / "b", batch_size=32), train_dataset=ToyItems())
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(resume=tmp_path / "missing", overrides=["model=train_test_tiny"], train_dataset=ToyItems())
    with pytest.raises(ValueError, match="train_manifest is empty"):
        fit(tiny_config(tmp_path / "c"))


@pytest.mark.parametrize("optimizer", ["adamw", "rmsprop", "sgd"])
def test_each_optimizer_trains(tmp_path, optimizer):
    result = fit(tiny_config(tmp_path / optimizer, epochs=1, limit_train_batches=2, optimizer=optimizer,
                             weight_decay=1e-4, scheduler="cosine"), train_dataset=ToyItems())
    start = initial_weights()
    moved = weights(tmp_path / optimizer)
    assert result.global_step == 2 and any(not torch.equal(moved[k], start[k]) for k in start)


def test_resume_applies_changed_keys_and_records_the_step(tmp_path, capsys):
    run = tmp_path / "run"
    fit(tiny_config(run, epochs=1, scheduler="none"), train_dataset=ToyItems())
    resumed = fit(resume=run, overrides=["epochs=2", "lr=1e-3"], train_dataset=ToyItems())
    assert resumed.epochs == 2 and resumed.global_step == 12
    assert [r["lr"] for r in resumed.metrics] == pytest.approx([1e-2, 1e-3])
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    recorded = {c["key"]: c for c in state["changes"]}
    assert recorded["lr"]["global_step"] == 6 and recorded["lr"]["old"] == 1e-2
    assert recorded["epochs"]["new"] == 2
    changes = list(csv.DictReader(open(run / "config_changes.csv")))
    assert {c["key"] for c in changes} == {"lr", "epochs"}
    assert "resume: lr 0.01 -> 0.001 from global step 6" in capsys.readouterr().out

    # A finished run says so and trains nothing.
    again = fit(resume=run, train_dataset=ToyItems())
    assert again.status == "completed" and again.global_step == 12
    assert "is finished (completed: epoch 2 of 2" in capsys.readouterr().out


@pytest.mark.parametrize("edit", ["image_size=32", "backbone=resnet18", "batch_size=8",
                                  "seed=1", "model=upernet"])
def test_resume_refuses_keys_that_cannot_change_in_one_line(tmp_path, edit):
    from sdfl_lib.errors import UsageError

    run = tmp_path / "run"
    fit(tiny_config(run, epochs=1), train_dataset=ToyItems())
    key, _, new = edit.partition("=")
    with pytest.raises(UsageError, match=rf"cannot change {key} \(was .*, now '?{new}'?\)"):
        fit(resume=run, overrides=["epochs=2", edit], train_dataset=ToyItems())


def test_resume_from_a_corrupt_state_falls_back_to_the_previous_one(tmp_path, capsys):
    from sdfl_lib.errors import DataError

    run = tmp_path / "run"
    fit(tiny_config(run, epochs=2), train_dataset=ToyItems())
    previous = torch.load(run / "state.prev.pt", weights_only=True)
    assert (previous["epoch"], previous["global_step"]) == (1, 6)
    (run / "state.pt").write_bytes(b"cut off")
    resumed = fit(resume=run, train_dataset=ToyItems())
    assert "not a readable training state" in capsys.readouterr().out
    assert resumed.global_step == 12 and resumed.epochs == 2
    (run / "state.pt").write_bytes(b"cut off")
    (run / "state.prev.pt").write_text("also broken")
    with pytest.raises(DataError, match="init_checkpoint=.*last.pt"):
        fit(resume=run, train_dataset=ToyItems())


def test_run_files_get_the_usual_mode_not_0600(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(run, epochs=1), train_dataset=ToyItems())
    mask = os.umask(0)
    os.umask(mask)
    for name in ("last.pt", "best.pt", "state.pt", "metrics.csv"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
