"""`sdfl doctor`: the machine's set-up, and what a parameter file needs that is missing."""

from __future__ import annotations

import pytest

from sdfl_lib.cli import main
from sdfl_lib.paths import REPO_ROOT, shared_dir
from sdfl_lib.study.smoke import sample_sets

PAPER = str(REPO_ROOT / "params" / "paper.yaml")


def test_doctor_reports_the_machine(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "resnet50-imagenet.pth").write_bytes(b"x")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for line in ("torch ", "cuDNN", "nvcc", "ninja", "c++", "native bf16", "Precise RoI Pooling:",
                 "the PPM pools with the exact PyTorch path", f"cache folder {tmp_path}",
                 "the paper's CSAIL ResNet-50 (resnet50-imagenet.pth): present", "0 problem(s)"):
        assert line in out, line


def test_doctor_lists_what_a_parameter_file_lacks(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the file's relative data roots do not exist here
    assert main(["doctor", "--params", PAPER]) == 1
    out = capsys.readouterr().out
    assert "device 'auto' -> cpu" in out
    assert "MISSING nist16: data/nist16 absent; needs NC2016_Test0613.zip" in out
    assert "casia2: data/casia2 absent; 01 downloads CASIA2.0_revised.zip" in out  # automatic: no problem
    assert "MISSING train.pretrained: no ImageNet weights for 'resnet50'" in out
    assert main(["doctor", "--params", PAPER, "--set", "device=cuda:1", "--set", "train.pretrained=false",
                 "--set", "data.datasets=[]"]) == 1
    assert "MISSING device 'cuda:1': this machine has 0 CUDA device(s)" in capsys.readouterr().out
    assert main(["doctor", "--params", str(tmp_path / "nope.yaml")]) == 1
    assert "MISSING parameters file not found" in capsys.readouterr().out


@pytest.mark.skipif(not (shared_dir() / "data" / "casia2-sample").is_dir(), reason="no shared samples")
def test_doctor_passes_a_file_pointed_at_present_data(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    sets = sample_sets(shared_dir() / "data") + ["train.pretrained=false"]
    assert main(["doctor", "--params", PAPER, *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "casia1: " in out and "present" in out and "0 problem(s)" in out


def test_doctor_checks_keys_and_values_as_study_does(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    (tmp_path / "broken.yaml").write_text("name: x\ntrain: {epochs: 3\n")
    cases = [
        (["--params", str(tmp_path / "broken.yaml")], "broken.yaml: not valid YAML (line 3"),
        (["--params", PAPER, "--set", "train.epochs=three"], "section 'train': config key epochs"),
        (["--params", PAPER, "--set", "seed=abc"], "seed: expected a whole number"),
        (["--params", PAPER, "--set", "evaluate.bacth_size=2"], "'bacth_size' in section 'evaluate'"),
    ]  # fmt: skip
    for extra, message in cases:
        assert main(["doctor", *extra]) == 2, extra
        captured = capsys.readouterr()
        line = captured.err.strip().splitlines()[-1]  # after torch's own notes on the machine
        assert line.startswith("sdfl doctor: error: ") and message in line
        assert f"MISSING {line.split('error: ', 1)[1]}" in captured.out  # in the report too
