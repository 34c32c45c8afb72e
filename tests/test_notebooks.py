"""The study's notebooks: committed without outputs, one parameters cell, short; params files agree
with them; and the whole study runs at smoke size with every notebook drawing its figures."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from report_checks import site_problems

from sdfl_lib import study
from sdfl_lib.paths import REPO_ROOT

NOTEBOOKS = study.find_notebooks()
PARAMS = sorted((REPO_ROOT / "params").glob("*.yaml"))
MAX_CODE_LINES = 40
# Figures each executed notebook must at least draw at smoke size.
MIN_FIGURES = {"01_data": 3, "02_modules": 8, "03_train": 1, "04_evaluate": 5, "05_optimization": 3}


def _code_lines(cell) -> int:
    return sum(1 for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#"))


def test_the_five_notebooks_exist() -> None:
    assert [nb.stem for nb in NOTEBOOKS] == list(MIN_FIGURES)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_committed_notebook_is_clean(nb: study.Notebook) -> None:
    node = nbformat.read(str(nb.path), as_version=4)
    nbformat.validate(node)
    code = [c for c in node.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{nb.path.name}: code cells {dirty} hold outputs; strip them before committing"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{nb.path.name}: needs exactly one cell tagged 'parameters'"
    # Parameters are plain assignments of literals, so papermill and the YAML can set every one.
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.Assign), f"{nb.path.name}: parameters cell holds {ast.dump(stmt)[:60]}"
        ast.literal_eval(stmt.value)
    install = [c for c in code if "colab-install" in c.metadata.get("tags", [])]
    assert len(install) == 1 and code.index(install[0]) < code.index(tagged[0]), (
        f"{nb.path.name}: needs one cell tagged 'colab-install' before the parameters")
    lines = sum(_code_lines(c) for c in code if c is not tagged[0] and c is not install[0])
    assert lines <= MAX_CODE_LINES, f"{nb.path.name}: {lines} lines of code (at most {MAX_CODE_LINES})"
    for c in code:
        ast.parse(c.source)
        # Work passes between notebooks through the run folder only: no hard-coded run paths.
        assert not re.search(r"['\"]runs/", c.source) or c is tagged[0], f"{nb.path.name}: path into runs/"


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.name)
def test_params_files_match_the_notebooks(params: Path) -> None:
    values = study.notebook_parameters(study.load_params(params), NOTEBOOKS, source=params.name)
    assert set(values) == {nb.section for nb in NOTEBOOKS}
    train = yaml.safe_load(params.read_text()).get("train")
    if train:
        from sdfl_lib.train.config import TrainConfig

        TrainConfig.from_dict(train)  # the train section is a valid training config on its own


def test_environment_yml_matches_pyproject() -> None:
    import tomllib

    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    missing = sorted(set(deps) - set(pip))
    assert not missing, f"environment.yml lacks {missing} (keep it the same set as pyproject.toml)"


def _figures(path: Path) -> int:
    node = nbformat.read(str(path), as_version=4)
    return sum(bool({"image/png", "image/jpeg"} & set(o.get("data", {})))
               for c in node.cells for o in c.get("outputs", []))


def _streams(path: Path) -> str:
    node = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in node.cells for o in c.get("outputs", []) if o.output_type == "stream")


@pytest.mark.slow
def test_smoke_study_runs_every_notebook(tmp_path: Path, capfd) -> None:
    # `device: auto`, as every file meant for a GPU says, resolved by each notebook the same way.
    result = study.run_study(
        REPO_ROOT / "params" / "smoke.yaml", reports_dir=tmp_path / "reports", run_root=tmp_path / "runs",
        sets=["device=auto", "train.progress=true"],
    )
    shown = capfd.readouterr().err
    assert "epoch 1/1" in shown and "img/s" in shown, "training progress on the terminal"
    assert "evaluate: 100%" in shown, "evaluation progress on the terminal"
    assert [p.stem for p in result.executed] == ["01_data", "03_train", "02_modules", "04_evaluate", "05_optimization"]
    for path in result.executed:
        assert _figures(path) >= MIN_FIGURES[path.stem], f"{path.name}: {_figures(path)} figures"
        html = (tmp_path / "reports" / f"{path.stem}.html").read_text()
        assert len(re.findall(r"data:image/(png|jpeg);base64", html)) >= MIN_FIGURES[path.stem]
    run = result.run_dir
    for f in ("data/train.csv", "data/val.csv", "data/test.csv", "train/metrics.csv",
              "train/best.pt", "eval/model/metrics.json"):
        assert (run / f).is_file(), f"missing hand-over file {f}"
    # 04 compares the model with its baseline on the same images; 05 each variant with the
    # baseline trained with the same seed (smoke.yaml: two seeds), and says so per variant.
    assert "model vs ela [both]" in (tmp_path / "reports" / "04_evaluate.html").read_text()
    for seed in (0, 1):
        for name in ("baseline", "rmsprop"):
            config = yaml.safe_load((run / "optim" / name / f"seed{seed}" / "config.yaml").read_text())
            assert config["seed"] == seed, (name, seed)
    html = (tmp_path / "reports" / "05_optimization.html").read_text()
    assert "vs baseline" in html and "over 2 seeds" in html
    # The rendered site: results, not logs; key results first, a closing cell; titles, working
    # links, an index, no path of this machine.
    key_results = {"01_data", "03_train", "04_evaluate", "05_optimization"}
    assert site_problems(tmp_path / "reports", run, key_results, set(MIN_FIGURES)) == []
    for path in result.executed:  # no warning at its source either (the terminal shows it)
        assert not re.search(r"\w*Warning\b|IProgress", _streams(path)), path.name


def test_a_notebook_run_alone_names_the_missing_file_and_its_notebook(tmp_path: Path) -> None:
    with pytest.raises(study.StudyError) as err:
        study.run_study(REPO_ROOT / "params" / "smoke.yaml", only="04", run_root=tmp_path / "runs",
                        reports_dir=tmp_path / "reports")
    first = str(err.value).splitlines()[0]
    assert re.search(r"04_evaluate\.ipynb failed at cell \d+ .*MissingInput: .*/train/best\.pt is "
                     r"missing: run 03_train\.ipynb first", first), first
    # The report shows that one line, not a traceback.
    html = (tmp_path / "reports" / "04_evaluate.html").read_text()
    assert "run 03_train.ipynb first" in html and "Traceback" not in html
