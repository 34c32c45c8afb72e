"""The study runner on throwaway notebooks: parameters, hand-over through the run folder, failures."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from sdfl_lib import study


def _notebook(path: Path, params_src: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture()
def study_dir(tmp_path: Path) -> Path:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(
        nbs / "01_make.ipynb",
        'run_dir = "x"\nseed = 0\ncount = 1',
        "import pathlib, sys\n"
        "pathlib.Path(run_dir, 'made.txt').write_text(str(count * 10 + seed))\n"
        "print('EXE', sys.executable)",
    )
    _notebook(
        nbs / "02_use.ipynb",
        'run_dir = "x"\nuse = {"scale": 1.0}',
        "import pathlib\nvalue = int(pathlib.Path(run_dir, 'made.txt').read_text())\n"
        "import matplotlib.pyplot as plt\nscale = use['scale']\nplt.plot([0, value * scale]); plt.show()\n"
        "print('VALUE', value * scale)",
    )
    params = {"name": "t", "seed": 2, "make": {"count": 4}, "use": {"scale": 0.5}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _outputs(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_runs_notebooks_in_order_and_renders_html(study_dir: Path) -> None:
    res = study.run_study(
        study_dir / "p.yaml", reports_dir=study_dir / "rep", run_root=study_dir / "runs",
        notebooks_dir=study_dir / "nbs",
    )
    assert res.run_dir == (study_dir / "runs" / "t").resolve()
    assert [p.name for p in res.executed] == ["01_make.ipynb", "02_use.ipynb"]
    assert (res.run_dir / "made.txt").read_text() == "42"  # count=4 from its section, seed=2 common
    assert "VALUE 21.0" in _outputs(res.executed[1])
    # The kernel is this interpreter, not whatever `python3` resolves to.
    assert f"EXE {sys.executable}" in _outputs(res.executed[0])
    html = (study_dir / "rep" / "02_use.html").read_text()
    assert "data:image/png;base64" in html
    assert (res.run_dir / "study.yaml").is_file()
    assert set(res.seconds) == {"01_make", "02_use"}


def test_failing_cell_names_notebook_and_cell(study_dir: Path) -> None:
    (study_dir / "runs" / "t").mkdir(parents=True)  # 02 alone: made.txt is missing
    with pytest.raises(study.StudyError, match=r"02_use\.ipynb failed at cell \d+ .*FileNotFoundError"):
        study.run_study(
            study_dir / "p.yaml", only="02", reports_dir=study_dir / "rep",
            run_root=study_dir / "runs", notebooks_dir=study_dir / "nbs",
        )
    assert "FileNotFoundError" in (study_dir / "rep" / "02_use.html").read_text()


def test_unknown_keys_fail_before_running(study_dir: Path) -> None:
    bad = yaml.safe_load((study_dir / "p.yaml").read_text())
    bad["make"]["cuont"] = 2
    (study_dir / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(study.StudyError, match=r"'cuont' in section 'make' not a parameter of 01_make"):
        study.run_study(study_dir / "bad.yaml", run_root=study_dir / "runs",
                        notebooks_dir=study_dir / "nbs")
    bad = {"name": "t", "epochs": 3}
    (study_dir / "bad2.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(study.StudyError, match="top-level key 'epochs'"):
        study.run_study(study_dir / "bad2.yaml", run_root=study_dir / "runs",
                        notebooks_dir=study_dir / "nbs")
    assert not (study_dir / "runs").exists()


def test_select_and_cli(study_dir: Path) -> None:
    nbs = study.find_notebooks(study_dir / "nbs")
    assert [n.stem for n in study.select_notebooks(nbs, "2,make")] == ["01_make", "02_use"]
    with pytest.raises(study.StudyError, match="valid: 01_make, 02_use"):
        study.select_notebooks(nbs, "07")
    parser = argparse.ArgumentParser()
    study.register(parser.add_subparsers())
    args = parser.parse_args(["study", "--params", str(study_dir / "missing.yaml")])
    with pytest.raises(study.StudyError, match="parameters file not found"):
        args.func(args)  # `sdfl_lib.cli.main` turns it into one line, exit 1


def test_set_items_change_values_without_editing_the_file(study_dir: Path) -> None:
    params = {"name": "t", "train": {"epochs": 1}, "data": {"datasets": [{"name": "a", "root": "x"}]}}
    out = study.apply_sets(params, ["train.epochs=3", "data.datasets.0.root=/data/a", "seed=7",
                                    "train.lr=1.0e-4", "evaluate.robustness=[jpeg, blur]", "train.amp=true"])
    assert out["train"] == {"epochs": 3, "lr": 1e-4, "amp": True}
    assert out["data"]["datasets"][0] == {"name": "a", "root": "/data/a"} and out["seed"] == 7
    assert out["evaluate"]["robustness"] == ["jpeg", "blur"]
    assert params["train"] == {"epochs": 1}  # the caller's dict is left alone
    for item, message in (("train.epochs", "expected KEY=VALUE"), ("data.datasets.3.root=y", "not an index of a list of 1"),
                          ("train.epochs.x=1", "train.epochs is a value, not a section"),
                          ("seed=[1", "the value is not YAML")):
        with pytest.raises(study.StudyError, match=re.escape(message)):
            study.apply_sets(params, [item])
    res = study.run_study(study_dir / "p.yaml", sets=["make.count=5"], reports_dir=study_dir / "rep",
                          run_root=study_dir / "runs", notebooks_dir=study_dir / "nbs")
    assert (res.run_dir / "made.txt").read_text() == "52"


def test_set_and_smoke_reach_the_command_line(study_dir: Path, capsys) -> None:
    from sdfl_lib.cli import main

    smoke = str(study.REPO_ROOT / "params" / "smoke.yaml")
    for item, message in (("modules.imagesize=3", "'imagesize' in section 'modules' not a parameter"),
                          ("train.epohcs=2", "section 'train': unknown config key 'epohcs'. Did you mean epochs?"),
                          ("train.lr=-1", "lr must be > 0"),
                          ("train.model_kwargs={depth: 3}", "takes no 'depth'")):
        rc = main(["study", "--params", smoke, "--smoke", "--set", item, "--run-root", str(study_dir / "runs")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("sdfl study: error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (study_dir / "runs" / "smoke-smoke" / "notebooks" / "01_data.ipynb").exists()


def _resume_dir(tmp_path: Path) -> Path:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_make.ipynb", 'run_dir = "x"\ncount = 1',
              "import pathlib\npathlib.Path(run_dir, 'made.txt').write_text(str(count))")
    _notebook(nbs / "02_go.ipynb", 'run_dir = "x"\nresume = False',
              "import pathlib\nwith open(pathlib.Path(run_dir, 'resumes.txt'), 'a') as f:\n    f.write(f'{resume}\\n')\n"
              "assert not pathlib.Path(run_dir, 'fail').exists(), 'stopped'\nprint('GO done')")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "r", "make": {"count": 2}}))
    return tmp_path


def test_resume_skips_finished_notebooks_and_continues_the_stopped_one(tmp_path: Path, capsys) -> None:
    d = _resume_dir(tmp_path)
    kw = dict(reports_dir=d / "rep", run_root=d / "runs", notebooks_dir=d / "nbs", resume=True)
    run = (d / "runs" / "r").resolve()
    run.mkdir(parents=True)
    (run / "fail").touch()  # 02 stops as a preempted job would
    with pytest.raises(study.StudyError, match="02_go.ipynb failed"):
        study.run_study(d / "p.yaml", **kw)
    (run / "fail").unlink()
    capsys.readouterr()
    res = study.run_study(d / "p.yaml", **kw)
    out = capsys.readouterr().out
    assert "01_make.ipynb: finished earlier with the same parameters, skipped" in out
    assert [p.name for p in res.executed] == ["02_go.ipynb"] and [p.name for p in res.skipped] == ["01_make.ipynb"]
    # The stopped notebook continues (resume=True); the first run started afresh.
    assert (run / "resumes.txt").read_text().split() == ["False", "True"]
    res = study.run_study(d / "p.yaml", **kw)
    assert res.executed == [] and len(res.skipped) == 2
    # A changed parameter re-runs its notebook and the ones after it, which start afresh.
    res = study.run_study(d / "p.yaml", sets=["make.count=3"], **kw)
    out = capsys.readouterr().out
    assert "01_make.ipynb: re-runs, changed since the last run: count" in out
    assert "02_go.ipynb: re-runs, it reads what make wrote again" in out
    assert len(res.executed) == 2 and (run / "resumes.txt").read_text().split() == ["False", "True", "False"]
    # Without --resume everything runs afresh, as before.
    res = study.run_study(d / "p.yaml", **{**kw, "resume": False}, sets=["make.count=3"])
    assert len(res.executed) == 2


def test_progress_is_echoed_while_a_notebook_runs(tmp_path: Path, capsys) -> None:
    d = _resume_dir(tmp_path)
    kw = dict(reports_dir=d / "rep", run_root=d / "runs", notebooks_dir=d / "nbs")
    study.run_study(d / "p.yaml", **kw)
    assert "GO done" in capsys.readouterr().err
    study.run_study(d / "p.yaml", echo=False, **kw)
    assert "GO done" not in capsys.readouterr().err


def test_smoke_keeps_every_choice_of_the_file() -> None:
    from sdfl_lib.study.smoke import SMOKE_SIZE, smoke_params

    for path in sorted((study.REPO_ROOT / "params").glob("*.yaml")):
        params = study.load_params(path)
        small, notes = smoke_params(params, gpus=0)
        assert small["name"] == f"{params['name']}-smoke"
        assert small["device"] == params["device"] and small.get("nproc", 1) == min(params.get("nproc", 1), 2)
        train, before = small["train"], params["train"]
        for key in ("model", "backbone", "precision", "channels_last", "sync_bn", "optimizer", "lambda_clf"):
            assert train.get(key) == before.get(key), (path.name, key)
        assert train["image_size"] == SMOKE_SIZE and train["epochs"] == 1 and train["limit_train_batches"] == 2
        assert train["batch_size"] % (small.get("nproc", 1) * train["grad_accum"]) == 0
        assert small["data"].get("datasets") == params["data"].get("datasets")
        assert small["data"].get("paper_lists") == params["data"].get("paper_lists")
        assert small["evaluate"]["baselines"] == params["evaluate"]["baselines"]
        from sdfl_lib.evaluate.robustness import parse_robustness

        kinds = {p.kind for p in parse_robustness(params["evaluate"]["robustness"])}
        assert set(small["evaluate"]["robustness"]) == kinds
        assert all(len(v) == 1 for v in small["evaluate"]["robustness"].values())
        seeds = params["optimization"].get("seeds")
        assert small["optimization"].get("seeds") == (seeds[:2] if seeds else seeds)
        assert len(small["optimization"]["variants"]) <= 1 and small["data"]["max_test"] == 12
        if params.get("nproc", 1) > 2:
            assert any("nproc" in n for n in notes)


def _exited(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")
def test_a_dead_kernel_ends_in_one_line_renders_the_notebook_and_leaves_no_process(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(
        nbs / "01_die.ipynb", 'run_dir = "x"', "print('before the end')",
        "import os, pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "pathlib.Path(run_dir, 'child.pid').write_text(str(child.pid))\n"
        "time.sleep(0.5)\n"
        "os.kill(os.getpid(), 9)  # as the out-of-memory killer does",
    )
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "t"}))
    with pytest.raises(study.StudyError) as exc:
        study.run_study(tmp_path / "p.yaml", reports_dir=tmp_path / "rep",
                        run_root=tmp_path / "runs", notebooks_dir=nbs, echo=False)
    message = str(exc.value)
    assert "\n" not in message and "01_die.ipynb: the kernel died in cell 3 (import os, pathlib" in message
    assert "out of memory" in message and "process(es) it left were stopped" in message
    assert "before the end" in (tmp_path / "rep" / "01_die.html").read_text()
    child = int((tmp_path / "runs" / "t" / "child.pid").read_text())
    assert _exited(child)
    state = json.loads((tmp_path / "runs" / "t" / "study_state.json").read_text())
    assert state["01_die"]["status"] == "failed"


def test_every_value_is_checked_before_a_kernel_starts(study_dir: Path, capsys) -> None:
    from sdfl_lib.cli import main

    argv = ["study", "--params", str(study_dir / "p.yaml"), "--run-root", str(study_dir / "runs")]
    (study_dir / "empty.yaml").write_text("# nothing yet\n")
    (study_dir / "broken.yaml").write_text("name: t\nmake: {count: 4\n")
    cases = [
        (["--set", "seed=abc"], "seed: expected a whole number (the default is 0), got 'abc'"),
        (["--set", "seed=[1]"], "seed: expected a whole number (the default is 0), got [1]"),
        (["--set", "make.count=true"], "make.count: expected a whole number"),
        (["--set", "use.scale=fast"], "use: scale: expected a number (the default is 1.0), got 'fast'"),
        (["--set", "seed=-3"], "seed: must be >= 0, got -3"),

    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(study.ParameterError, match=re.escape(message)):
            study.run_study(study_dir / "p.yaml", sets=extra[1:], run_root=study_dir / "runs",
                            notebooks_dir=study_dir / "nbs")
    for path, message in ((study_dir / "empty.yaml", "holds no parameters; start from a file"),
                          (study_dir / "broken.yaml", "broken.yaml: not valid YAML (line 3, column 1)")):
        argv[2] = str(path)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (study_dir / "runs").exists()  # no kernel started, no run folder made
