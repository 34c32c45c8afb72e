"""The study's reports as a site, on throwaway notebooks: no stream output or warnings, hidden code,
titles, navigation, index, links into the repository and the run folder, no machine paths."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from report_checks import read_page, site_problems

from sdfl_lib import study
from sdfl_lib.study import site as study_site

PRINTS = (
    "import sys, warnings\n"
    "for i in range(40):\n"
    "    print(f'step {i}/40 loss 0.5')\n"
    "    print(f'\\rbar {i}%', end='', file=sys.stderr)\n"
    "warnings.warn('something odd')\n"
)


def _notebook(path: Path, title: str, params: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n**Before this notebook:** none.\n\n"
                                              f"What it does; see [the docs](../docs/guide.md#part).")]
    nb.cells += [p] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture()
def site(tmp_path: Path, monkeypatch) -> tuple[Path, Path, study.StudyResult]:
    repo = tmp_path / "repo"
    monkeypatch.setattr(study_site, "REPO_ROOT", repo)  # a repository of our own, reports inside it
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "guide.md").write_text("# guide\n")
    nbs = repo / "notebooks"
    nbs.mkdir()
    show = ("from IPython.display import HTML, display\n"
            "display(HTML('<div class=\"sdfl-key-results\"><table><tr><td>KEY 42</td></tr></table></div>'))\n")
    _notebook(nbs / "01_make.ipynb", "01 · Make", 'run_dir = "x"',
              PRINTS, "import pathlib\npathlib.Path(run_dir, 'made.txt').write_text('made in ' + run_dir)\n"
              "SECRET_CODE_TOKEN = 1\n" + show,
              "from sdfl_lib.viz import file_link\ndisplay(HTML(file_link(pathlib.Path(run_dir, 'made.txt'))))",
              "print(run_dir)\nrun_dir",
              "display(HTML('<div class=\"sdfl-closing\"><p>It came out.</p></div>'))")
    _notebook(nbs / "02_use.ipynb", "02 · Use", 'run_dir = "x"', show,
              "display(HTML('<div class=\"sdfl-closing\"><p>Used.</p></div>'))")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "t"}))
    reports = repo / "reports" / "t"
    res = study.run_study(tmp_path / "p.yaml", reports_dir=reports, run_root=tmp_path / "runs",
                          notebooks_dir=nbs)
    return repo, reports, res


def test_reports_keep_results_not_logs_code_or_paths(site) -> None:
    repo, reports, res = site
    assert site_problems(reports, res.run_dir, {"01_make", "02_use"}, {"01_make", "02_use"}) == []
    html = (reports / "01_make.html").read_text()
    assert "KEY 42" in html and "It came out." in html
    assert "step 3/40" not in html and "something odd" not in html  # logs and warnings: terminal only
    assert "SECRET_CODE_TOKEN" not in html  # code hidden in the HTML ...
    kept = nbformat.read(str(reports / "01_make.ipynb"), as_version=4)
    assert any("SECRET_CODE_TOKEN" in c.source for c in kept.cells)  # ... kept in the notebook beside it
    assert not any(o.output_type == "stream" for c in kept.cells for o in c.get("outputs", []))
    full = nbformat.read(str(res.run_dir / "notebooks" / "01_make.ipynb"), as_version=4)
    assert any("step 3/40" in o.get("text", "") for c in full.cells for o in c.get("outputs", []))
    # The run folder's path, also in papermill's parameters cell and metadata, is named, not shown.
    text = (reports / "01_make.ipynb").read_text()
    assert str(res.run_dir) not in text and 'run_dir = \\"$RUN_ROOT/t\\"' in text
    # A file of the run folder a report links to is copied beside it, its paths named too.
    assert (reports / "files" / "made.txt").read_text() == "made in $RUN_ROOT/t"
    assert 'href="files/made.txt"' in html


def test_titles_navigation_index_and_links(site) -> None:
    repo, reports, res = site
    pages = {p.name: read_page(p) for p in reports.glob("*.html")}
    assert pages["01_make.html"].title == "01 · Make — sdfl t"
    assert pages["02_use.html"].title == "02 · Use — sdfl t"
    assert {"index.html", "01_make.html", "02_use.html"} <= set(pages["01_make.html"].links)
    index = (reports / "index.html").read_text()
    assert index.count("KEY 42") == 2 and "What it does" in index and "Before this notebook" not in index
    # A link into docs/ resolves from the reports folder inside the repository (site_problems
    # checks it exists) ...
    assert 'href="../../docs/guide.md#part"' in (reports / "01_make.html").read_text()
    # ... and goes to the repository's page of the file from a reports folder outside it.
    ctx = study_site.SiteContext(res.run_dir, repo.parent / "elsewhere", repo / "notebooks", repo)
    assert ctx.repo_link("../docs/guide.md#part") == f"{study_site.REPO_URL}/blob/main/docs/guide.md#part"
    assert ctx.repo_link("../docs/missing.md") is None and ctx.repo_link("https://x.org/a") is None


def test_site_problems_catch_what_they_check(site) -> None:
    repo, reports, res = site
    page = reports / "02_use.html"
    clean = page.read_text()
    for bad, expect in [
        (clean.replace("</main>", "<pre class=\"output_stream\">" + "line\n" * 20 + "</pre></main>"),
         "lines of stream output"),
        (clean.replace("</main>", "<p>UserWarning: x</p></main>"), "warning text"),
        (clean.replace("02 · Use — sdfl t", "01 · Make — sdfl t"), "titles are not distinct"),
        (clean.replace("</main>", '<a href="nowhere.html">x</a></main>'), "broken link nowhere.html"),
        (clean.replace("sdfl-key-results", "x"), "no key-results block"),
        (clean.replace("sdfl-closing", "x"), "no closing block"),
        (clean.replace("</main>", f"<p>{res.run_dir}</p></main>"), "holds the run folder's path"),
    ]:
        page.write_text(bad)
        problems = site_problems(reports, res.run_dir, {"02_use"}, {"02_use"})
        assert any(expect in p for p in problems), (expect, problems)
    page.write_text(clean)
    (reports / "index.html").write_text((reports / "index.html").read_text().replace('href="02_use.html"', ""))
    assert any("no link to 02_use.html" in p for p in site_problems(reports, res.run_dir, set(), set()))


def test_failed_notebook_is_rendered_with_its_error_and_the_index(site, tmp_path: Path) -> None:
    repo, reports, res = site
    nb = repo / "notebooks" / "02_use.ipynb"
    node = nbformat.read(str(nb), as_version=4)
    node.cells.append(nbformat.v4.new_code_cell("raise ValueError('bad value here')"))
    nbformat.write(node, str(nb))
    with pytest.raises(study.StudyError, match="02_use.ipynb failed"):
        study.run_study(tmp_path / "p.yaml", only="02", reports_dir=reports, run_root=tmp_path / "runs",
                        notebooks_dir=repo / "notebooks")
    assert "bad value here" in (reports / "02_use.html").read_text()
    assert (reports / "index.html").is_file()
    state = json.loads((res.run_dir / study.STATE_FILE).read_text())
    assert state["02_use"]["status"] == "failed"


def test_execution_order_follows_what_each_notebook_reads() -> None:
    nbs = [study.Notebook(Path(f"{n}_{s}.ipynb"), n, s) for n, s in
           (("01", "data"), ("02", "modules"), ("03", "train"), ("04", "evaluate"), ("05", "optimization"))]
    assert [nb.number for nb in study.execution_order(nbs)] == ["01", "03", "02", "04", "05"]
    assert [nb.number for nb in study.execution_order([nbs[1], nbs[3]])] == ["02", "04"]
    other = [study.Notebook(Path(f"0{i}_x{i}.ipynb"), f"0{i}", f"x{i}") for i in (1, 2, 3)]
    assert study.execution_order(other) == other  # unknown sections: number order
