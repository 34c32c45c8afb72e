"""TrainingState: the counters of a run as state.pt keeps them (the file's keys stay readable)."""

from __future__ import annotations

import math

import torch

from sdfl_lib.train.state import TrainingState, fresh_acc

# The counters' keys in state.pt, as every saved state holds them.
KEYS = {"epoch", "step_in_epoch", "global_step", "best", "best_epoch", "bad_epochs", "metrics",
        "acc", "has_edge", "changes"}


def test_counters_keep_the_files_keys_and_round_trip(tmp_path):
    fresh = TrainingState()
    assert set(fresh.to_dict()) == KEYS
    assert (fresh.epoch, fresh.global_step, fresh.best, fresh.acc) == (0, 0, math.inf, fresh_acc())
    s = TrainingState(epoch=2, step_in_epoch=3, global_step=15, best=0.5, best_epoch=2,
                      bad_epochs=1, metrics=[{"epoch": 1}], has_edge=True,
                      changes=[{"key": "lr", "old": 1e-4, "new": 1e-3}])
    saved = s.to_dict()
    s.metrics.append({"epoch": 3})  # what was saved is a copy
    assert saved["metrics"] == [{"epoch": 1}]
    torch.save(saved, tmp_path / "state.pt")
    back = TrainingState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert back == TrainingState(**{**saved, "metrics": [{"epoch": 1}]})


def test_a_state_saved_before_resumes_were_recorded_loads():
    old = {k: v for k, v in TrainingState(epoch=1, global_step=6).to_dict().items()
           if k != "changes"}
    old.update(format="sdfl-train-state", version=1, model={})  # other keys of the file
    s = TrainingState.from_dict(old)
    assert (s.epoch, s.global_step, s.changes) == (1, 6, [])
