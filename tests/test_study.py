"""The study runner on throwaway notebooks: parameters, hand-over through the run folder, failures."""

from __future__ import annotations

import argparse
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
    assert args.func(args) == 1
