"""The demo seed-spread benchmark runs end to end at a tiny scale and refuses bad arguments."""

from __future__ import annotations

import json
import re

import pytest

from sdfl_lib.bench import demo_seeds
from sdfl_lib.runtime import cpu_flags

TINY = ["--set", "data.synthetic_n=24", "--set", "data.synthetic_size=64", "--set", "train.epochs=1",
        "--set", "train.image_size=64", "--set", "train.batch_size=8"]  # fmt: skip


@pytest.mark.slow
def test_runs_each_seed_and_isa_and_prints_mean_and_sd(tmp_path, capsys):
    isas = ["native", "avx2"] if "avx2" in cpu_flags() else ["native"]
    argv = ["--seeds", "0", "1", "--isa", *isas, "--out", str(tmp_path / "runs"),
            "--json", str(tmp_path / "runs.json"), *TINY]  # fmt: skip
    assert demo_seeds.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^CPU: .+ \(\d+ cores; ISA .+; torch kernels \w+\)", out, re.M)
    assert re.search(r"^isa +seed +.*\ball +AUC +train_s +best_epoch$", out, re.M)
    for isa in isas:
        for seed in (0, 1):
            assert re.search(rf"^{isa} +{seed} +(\d\.\d{{3}}|n/a)", out, re.M)
        assert f"mean ± sd, {isa} (2 runs):" in out
    assert re.search(r"^  AUC +\d\.\d{3} ± \d\.\d{3}", out, re.M)
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [(r["isa"], r["seed"]) for r in runs] == [(i, s) for i in isas for s in (0, 1)]
    assert runs[0]["capability"] != "AVX2" or "avx512f" not in cpu_flags()
    if "avx2" in isas:
        assert runs[-1]["capability"] == "AVX2"  # the emulation took effect
        # Each ISA runs the same seeds on the same data, kept under --out.
        assert runs[-1]["row"].keys() == runs[1]["row"].keys()
    assert (tmp_path / "runs" / "data-1" / "test.csv").is_file()


def test_data_seed_makes_the_data_once_for_every_run(tmp_path, monkeypatch, capsys):
    made, trained = [], []
    monkeypatch.setattr(demo_seeds, "make_data", lambda p, seed, out: made.append(seed) or {"seed": seed})
    metrics = {"subsets": {"both": {"standard/pixel_f1@0.5": 0.5, "standard/image_auc": 0.9},
                           "source/synth-face": {"count/tampered": 3, "standard/pixel_f1@0.5": 0.8}}}

    def fake_run(isa, params, seed, data, out):
        trained.append((isa, seed, data["seed"]))
        return {"capability": "X", "train_s": 1.0, "best_epoch": 1, "metrics": metrics}

    monkeypatch.setattr(demo_seeds, "run_isolated", fake_run)
    args = demo_seeds._parse(["--seeds", "3", "4", "--data-seed", "7"])
    runs = demo_seeds.run_all(args, {}, tmp_path)
    assert made == [7] and trained == [("native", 3, 7), ("native", 4, 7)]
    assert runs[0]["row"] == {"face": 0.8, "all": 0.5, "AUC": 0.9}


def test_table_joins_the_types_of_every_run_and_marks_missing_ones():
    runs = [{"isa": "native", "seed": 0, "train_s": 5, "best_epoch": 2,
             "row": {"splice": 0.5, "all": 0.4, "AUC": 0.9}},
            {"isa": "native", "seed": 1, "train_s": 6, "best_epoch": 3,
             "row": {"face": 0.7, "splice": 0.7, "all": 0.6, "AUC": None}}]  # fmt: skip
    table = demo_seeds.format_table(runs)
    assert table.splitlines()[0].split()[2:6] == ["face", "splice", "all", "AUC"]
    assert "  n/a" in table.splitlines()[1]  # seed 0 has no face image in its split
    assert "  splice    0.600 ± 0.141" in table
    assert "  face      0.700 ± nan (1 of 2)" in table
    assert "  AUC       0.900 ± nan (1 of 2)" in table
    assert "mean ± sd, all" not in table  # one instruction set: no overall block


@pytest.mark.parametrize("argv, message", [
    (["--isa", "sse9"], "invalid choice: 'sse9'"),
    (["--seeds", "1", "1"], "must not repeat"),
    (["--seeds", "-1"], "must be >= 0, got -1"),
    (["--data-seed", "x"], "expected an integer, got 'x'"),
    (["--seeds"], "expected at least one argument"),
])  # fmt: skip
def test_bad_options_end_in_one_usage_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo_seeds.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message, code", [
    (["--params", "nowhere.yaml"], "parameters file not found: nowhere.yaml", 1),
    (["--set", "train.epochz=3"], "epochz", 2),
    (["--set", "train"], "expected KEY=VALUE", 2),
    (["--set", "data.synthetic_n=0"], "needs a study on synthetic data only", 2),
])  # fmt: skip
def test_bad_parameters_end_in_one_line_before_any_training(argv, message, code, tmp_path, capsys):
    assert demo_seeds.main([*argv, "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo-seeds: error:") and message in err and "\n" not in err
    assert not list(tmp_path.glob("run-*"))  # nothing trained


def test_a_mistake_met_in_a_run_ends_in_one_line(tmp_path, capsys):
    # The training set of 10 images holds no batch of 16: the run (another process) says so.
    assert demo_seeds.main(["--seeds", "0", "--set", "data.synthetic_n=16", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo-seeds: error:") and "fewer than one global batch (16)" in err
    assert "\n" not in err


def test_the_cpu_line_names_the_vector_instructions_and_torch_kernels(monkeypatch):
    import torch

    from sdfl_lib.runtime import CpuInfo

    monkeypatch.setattr("sdfl_lib.runtime.cpu_info", lambda: CpuInfo("Some CPU", frozenset({"avx2", "fma", "sse4_2"})))
    line = demo_seeds.describe_cpu()
    assert line.startswith("Some CPU (") and "; ISA avx2 fma; torch kernels" in line
    assert line.endswith(f"{torch.backends.cpu.get_cpu_capability()})")
    monkeypatch.setattr("sdfl_lib.runtime.cpu_info", lambda: CpuInfo("Some CPU", frozenset()))
    assert "ISA unknown" in demo_seeds.describe_cpu()
