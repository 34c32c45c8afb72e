"""TrainConfig: defaults, YAML round trip, key=value coercion, clear errors; the CLI's launcher."""

from __future__ import annotations

import dataclasses

import pytest

from sdfl_lib.train.config import TrainConfig, describe
from sdfl_lib.train.distributed import first_slurm_host, launch_env


def test_paper_defaults_and_every_key_documented():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.batch_size, c.epochs) == ("adam", 1e-4, 32, 50)
    assert (c.scheduler, c.plateau_factor, c.plateau_patience, c.early_stop_patience) == ("plateau", 0.1, 5, 10)
    assert (c.lambda_seg, c.lambda_clf, c.lambda_edge, c.image_size) == (0.16, 0.04, 0.8, 512)
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["doc"], f.name
        assert f.name in describe()


def test_yaml_round_trip_and_overrides(tmp_path):
    c = TrainConfig.load(None, ["lr=1e-3", "epochs=3", "precision=bf16", "channels_last=true",
                                "model_kwargs={fpn_channels: 64}", "val_manifest="])
    assert (c.lr, c.epochs, c.precision, c.channels_last) == (1e-3, 3, "bf16", True)
    assert c.model_kwargs == {"fpn_channels": 64}
    c.dump(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == c
    # A study parameter file: the `train:` section is the training config.
    (tmp_path / "study.yaml").write_text("data: {n: 3}\ntrain:\n  lr: 2e-4\n  batch_size: 8\n")
    s = TrainConfig.load(tmp_path / "study.yaml", ["epochs=2"])
    assert (s.lr, s.batch_size, s.epochs) == (2e-4, 8, 2)


@pytest.mark.parametrize(
    "item, message",
    [
        ("lrr=1", "unknown config key 'lrr'. Did you mean lr?"),
        ("epochs=2.5", "expected an integer"),
        ("channels_last=maybe", "expected true/false"),
        ("optimizer=lamb", "choose one of adam, adamw, rmsprop, sgd"),
        ("precision=fp8", "choose one of fp32, fp16, bf16"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("lr", "not of the form key=value"),
    ],
)
def test_bad_values_fail_clearly(item, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        TrainConfig.load(None, [item])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError, match="Valid keys: model, backbone"):
        TrainConfig.from_dict({"nonsense": 1})


def test_global_batch_divisibility():
    c = TrainConfig(batch_size=32, grad_accum=2)
    assert c.per_rank_batch(4) == 4
    assert c.per_rank_batch(1) == 16
    with pytest.raises(ValueError, match="divisible by world_size x grad_accum = 3 x 2 = 6"):
        c.per_rank_batch(3)


def test_launch_environment_torchrun_slurm_and_plain():
    assert launch_env({}) == (0, 1, 0, {})
    assert launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1, {})
    slurm = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "12345"}
    assert launch_env(slurm) == (5, 8, 1, {"MASTER_ADDR": "gpu07", "MASTER_PORT": "29845"})
    # An allocation without srun (a notebook inside sbatch) is one process.
    assert launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == (0, 1, 0, {})
    assert first_slurm_host("node1,node2") == "node1"
    assert first_slurm_host("a[1,3-5]") == "a1"


def test_nproc_restarts_under_torchrun():
    from sdfl_lib.train.launch import torchrun_command

    cmd = torchrun_command(["train", "--config", "x.yaml", "--nproc", "2", "lr=1e-3"], 2)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert cmd[6:] == ["sdfl_lib.cli", "train", "--config", "x.yaml", "lr=1e-3"]


def test_cli_help_config_and_bad_keys(capsys):
    from sdfl_lib.cli import main

    assert main(["train", "--help-config"]) == 0
    assert "lambda_seg" in capsys.readouterr().out
    assert main(["train", "nonsense=1"]) == 2
    assert "unknown config key 'nonsense'" in capsys.readouterr().err
    assert main(["train"]) == 2


def test_augment_names_a_policy_that_reaches_the_dataset(tmp_path):
    import albumentations as A
    import numpy as np
    from PIL import Image

    from sdfl_lib.train.build import build_datasets
    from sdfl_lib.train.state import resume_changes

    rows = ["image,mask,label,source,edge"]
    for i, label in enumerate((0, 1)):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{tmp_path / f'{i}.png'},,{label},toy,")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    kinds = {}
    for value in ("strong", "flip", "none", "true", "false"):
        (tmp_path / "c.yaml").write_text(
            f"train_manifest: {tmp_path / 'm.csv'}\nimage_size: 32\naugment: {value}\n")
        cfg = TrainConfig.load(tmp_path / "c.yaml")
        train, _ = build_datasets(cfg)
        ops = train.transform.transforms if train.transform is not None else []
        kinds[value] = (cfg.augment, {type(op) for op in ops})
    assert kinds["strong"][0] == "strong" and A.RandomRotate90 in kinds["strong"][1]
    assert kinds["flip"] == kinds["true"] == ("flip", {A.HorizontalFlip, A.VerticalFlip})
    assert kinds["none"] == kinds["false"] == ("none", set())
    assert TrainConfig(augment=True).augment == "flip"
    with pytest.raises(ValueError, match="augment='wild': choose one of none, flip, strong"):
        TrainConfig.load(None, ["augment=wild"])
    # A state saved when the key was a bool resumes under its policy name.
    assert resume_changes({"augment": True}, {"augment": "flip"}) == []
