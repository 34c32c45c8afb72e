"""The study's reports as a small site: `reports/<run>/NN_name.html` and `.ipynb`, and `index.html`.

An executed notebook keeps everything it printed (the run folder's copy is the full record); its
report keeps what a reader needs: the displayed results (tables, figures, text) and errors, not
the stream output (progress bars, notes, warnings: `sdfl study` showed them on its terminal). The
code cells are hidden in the HTML (the `.ipynb` beside it keeps them, and GitHub renders it);
every page has its own title and a navigation bar; links into the repository (`../docs/...`)
are rewritten to resolve from the reports folder; files of the run folder a report links to
(e.g. `train/config.yaml`) are copied into `files/`; and no absolute path of the machine that
ran it is left: the run folder, the repository and the Python environment are named, not shown.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from PIL import Image

from sdfl_lib.paths import REPO_ROOT
from sdfl_lib.viz.report import KEY_RESULTS_CLASS

REPO_URL = "https://github.com/sdfl-project/sdfl"
# The figure the index (and the README) opens with: a typical localization per forgery type.
HERO = Path("eval", "model", "figures", "typical.png")
_TEXT_FILES = {".yaml", ".yml", ".json", ".csv", ".md", ".txt"}
_MAX_COPY_BYTES = 2_000_000
_LINK = re.compile(r"(\]\(|href=\")([^)\"\s]+)")


@dataclass
class Page:
    """One report of the site: its stem (`03_train`) and title (from its first heading)."""

    stem: str
    title: str

    @property
    def short(self) -> str:
        number, _, name = self.stem.partition("_")
        return f"{number} {name}"


def page_title(nb) -> str:
    """The notebook's first markdown heading ("03 · Train"), else its name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.MULTILINE)
            if m:
                return m.group(1).strip()
    return nb.metadata.get("papermill", {}).get("input_path", "report")


def path_replacements(run_dir: Path, cwd: Path) -> list[tuple[str, str]]:
    """(absolute path, what a report shows instead), longest first: the run folder as a path
    relative to the working directory (or `$RUN_ROOT/<name>`), the repository and the working
    directory as relative paths, the Python environment as `$PYTHON_ENV`, the home folder as `~`."""
    run_dir, cwd = Path(run_dir).resolve(), Path(cwd).resolve()
    shown = os.path.relpath(run_dir, cwd) if run_dir.is_relative_to(cwd) else f"$RUN_ROOT/{run_dir.name}"
    pairs = {str(run_dir): shown, f"{REPO_ROOT}/": "", f"{cwd}/": "", str(REPO_ROOT): ".",
             str(cwd): ".", sys.prefix: "$PYTHON_ENV", sys.base_prefix: "$PYTHON",
             str(Path.home()): "~"}
    return sorted(((k, v) for k, v in pairs.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    """`text` with every absolute path of `replacements` replaced."""
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _rewrite_links(text: str, rewrite: Callable[[str], str | None]) -> str:
    """Markdown `](target)` and HTML `href="target"` links through `rewrite` (None: unchanged)."""
    def sub(m: re.Match) -> str:
        new = rewrite(m.group(2))
        return m.group(1) + (m.group(2) if new is None else new)

    return _LINK.sub(sub, text)


def _is_relative(target: str) -> bool:
    """A path relative to some folder: no scheme (`https:`, `data:`), no `#anchor`, no root."""
    return not re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|#|/)", target)


@dataclass
class SiteContext:
    """Where an executed notebook came from and where its report goes."""

    run_dir: Path
    reports_dir: Path
    source_dir: Path  # the notebooks' folder: what `../docs/x.md` in a markdown cell is relative to
    cwd: Path  # the kernel's working directory: what relative paths in outputs are relative to
    repo_root: Path | None = None  # the repository links into `docs/` point to (None: REPO_ROOT)

    def repo_link(self, target: str) -> str | None:
        """A link into the repository from the notebooks' folder, as the reports folder reaches it."""
        if not _is_relative(target):
            return None
        path, _, anchor = target.partition("#")
        resolved = (self.source_dir / path).resolve()
        root = (self.repo_root or REPO_ROOT).resolve()
        if not path or not resolved.exists() or not resolved.is_relative_to(root):
            return None
        rel = resolved.relative_to(root).as_posix()
        if self.reports_dir.resolve().is_relative_to(root):
            new = os.path.relpath(resolved, self.reports_dir.resolve())
        else:
            new = f"{REPO_URL}/blob/main/{rel}"
        return new + (f"#{anchor}" if anchor else "")

    def run_file_link(self, target: str) -> str | None:
        """A link to a file of the run folder: the file copied to `files/`, the link to the copy."""
        if not _is_relative(target):
            return None
        resolved = (self.cwd / target).resolve()
        run_dir = self.run_dir.resolve()
        if not resolved.is_file() or not resolved.is_relative_to(run_dir):
            return None
        rel = resolved.relative_to(run_dir)
        if resolved.stat().st_size > _MAX_COPY_BYTES:
            return None
        dest = self.reports_dir / "files" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if resolved.suffix in _TEXT_FILES:
            replacements = path_replacements(self.run_dir, self.cwd)
            dest.write_text(scrub(resolved.read_text(errors="replace"), replacements))
        else:
            shutil.copyfile(resolved, dest)
        return f"files/{rel.as_posix()}"


def clean_notebook(nb, ctx: SiteContext, keep_streams: bool = False):
    """A copy of an executed notebook for the reports: no stream output (unless `keep_streams`),
    links rewritten, no absolute paths (see the module's docstring)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, ctx.repo_link)
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if keep_streams or o.output_type != "stream"]
        for out in cell.outputs:
            for mime in ("text/html", "text/markdown"):
                if mime in out.get("data", {}):
                    text = "".join(out.data[mime]) if isinstance(out.data[mime], list) else out.data[mime]
                    out.data[mime] = _rewrite_links(text, ctx.run_file_link)
    nb.metadata.pop("widgets", None)
    replacements = [(json.dumps(a)[1:-1], json.dumps(b)[1:-1])
                    for a, b in path_replacements(ctx.run_dir, ctx.cwd)]
    return nbformat.from_dict(json.loads(scrub(json.dumps(nb), replacements)))


def _nav(pages: list[Page], current: str | None, study: str) -> str:
    items = [f'<a href="index.html"{" class=current" if current is None else ""}>{html.escape(study)}</a>']
    items += [f'<a href="{p.stem}.html"{" class=current" if p.stem == current else ""}>{html.escape(p.short)}</a>'
              for p in pages]
    return '<nav class="sdfl-nav">' + " ".join(items) + "</nav>"


def _prev_next(pages: list[Page], current: str) -> str:
    stems = [p.stem for p in pages]
    i = stems.index(current)
    links = []
    if i > 0:
        links.append(f'<a href="{pages[i - 1].stem}.html">← {html.escape(pages[i - 1].title)}</a>')
    links.append('<a href="index.html">all reports</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1].stem}.html">{html.escape(pages[i + 1].title)} →</a>')
    return '<nav class="sdfl-pager">' + " · ".join(links) + "</nav>"


def page_html(title: str, body: str, nav: str, footer: str = "") -> str:
    """A complete page around `body`: its title, the site's style sheet and navigation."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{SITE_CSS}</style>\n</head>\n<body>\n"
            f"{nav}\n<main>\n{body}\n</main>\n{footer}\n</body>\n</html>\n")


def render_report(executed: Path, ctx: SiteContext, pages: list[Page], study: str,
                  keep_streams: bool = False) -> Path:
    """Write `<stem>.ipynb` (the cleaned notebook) and `<stem>.html` (its page) into the reports
    folder; returns the HTML's path. `pages`: the site's reports, for the navigation;
    `keep_streams`: keep what the notebook printed (a failed notebook's report)."""
    nb = clean_notebook(nbformat.read(str(executed), as_version=4), ctx, keep_streams)
    ctx.reports_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(ctx.reports_dir / executed.name))
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, anchor_link_text="")
    body, _ = exporter.from_notebook_node(nb)
    stem = executed.stem
    if stem not in [p.stem for p in pages]:
        pages = [*pages, Page(stem, page_title(nb))]
    title = f"{page_title(nb)} — sdfl {study}"
    out = ctx.reports_dir / f"{stem}.html"
    out.write_text(page_html(title, body, _nav(pages, stem, study), _prev_next(pages, stem)),
                   encoding="utf-8")
    return out


def _key_results(nb) -> list[str]:
    """The HTML of the notebook's key-results tables (outputs marked with KEY_RESULTS_CLASS)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            if KEY_RESULTS_CLASS in text:
                found.append(text)
    return found


def _summary(nb) -> str:
    """The first paragraph under the notebook's title that says what it does (not the one saying
    which notebooks run before it), up to a list it introduces."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            paras = [p for p in re.split(r"\n\s*\n", cell.source)
                     if p.strip() and not p.startswith(("#", "**Before this notebook"))]
            if not paras:
                return ""
            lines = []
            for line in paras[0].splitlines():
                if re.match(r"^\s*(-|\*|\d+\.)\s", line):
                    break
                lines.append(line)
            text = " ".join(lines).strip()
            return text[:-1] + "." if text.endswith(":") else text
    return ""


def write_index(ctx: SiteContext, pages: list[Page], study: str) -> Path:
    """`index.html`: the study's hero figure (also written as `hero.jpg`), then each report with
    its summary, key results and link; also the run's parameters (`files/study.yaml`)."""
    parts = [f"<h1>sdfl study: {html.escape(study)}</h1>"]
    hero = ctx.run_dir / HERO
    if hero.is_file():  # a figure of photographs: a JPEG
        img = Image.open(hero).convert("RGB")
        img.thumbnail((1100, 10_000))
        img.save(ctx.reports_dir / "hero.jpg", quality=82, optimize=True)
        parts.append('<figure><img src="hero.jpg" alt="typical localizations">'
                     "<figcaption>A typical localization of each type of forgery (the test image of "
                     "median pixel F1): the image, its ground truth outlined, the model's predicted "
                     "region outlined (<a href=\"04_evaluate.html\">04 evaluate</a>).</figcaption></figure>")
    params = ctx.run_file_link(os.path.relpath(ctx.run_dir / "study.yaml", ctx.cwd))
    if params:
        parts.append(f'<p>The parameters of this run: <a href="{params}">study.yaml</a>.</p>')
    for page in pages:
        nb = nbformat.read(str(ctx.reports_dir / f"{page.stem}.ipynb"), as_version=4)
        parts.append(f'<section><h2><a href="{page.stem}.html">{html.escape(page.title)}</a></h2>')
        parts.append(markdown2html(_rewrite_links(_summary(nb), ctx.repo_link)))
        parts += _key_results(nb)
        parts.append("</section>")
    out = ctx.reports_dir / "index.html"
    out.write_text(page_html(f"sdfl study: {study}", "\n".join(parts), _nav(pages, None, study)),
                   encoding="utf-8")
    return out


def site_pages(executed_dir: Path) -> list[Page]:
    """The reports of the notebooks executed in `executed_dir` (`NN_name.ipynb`), in order."""
    return [Page(p.stem, page_title(nbformat.read(str(p), as_version=4)))
            for p in sorted(Path(executed_dir).glob("[0-9][0-9]_*.ipynb"))]


def render_site(ctx: SiteContext, study: str, skip: Sequence[str] = ()) -> list[Path]:
    """Every executed notebook of the run but those of `skip` (stems) as a report, then the index
    (so that every page's navigation lists every report); returns the pages written."""
    pages = site_pages(ctx.run_dir / "notebooks")
    written = [render_report(ctx.run_dir / "notebooks" / f"{p.stem}.ipynb", ctx, pages, study)
               for p in pages if p.stem not in skip]
    return [*written, write_index(ctx, pages, study)]


SITE_CSS = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;background:#fff}
main{max-width:1120px;margin:0 auto;padding:8px 24px 32px}
nav.sdfl-nav{position:sticky;top:0;z-index:2;background:#f6f7f9;border-bottom:1px solid #dde1e6;padding:8px 24px;text-align:center}
nav.sdfl-nav a{margin:0 10px;color:#0b5394;text-decoration:none}
nav.sdfl-nav a.current{font-weight:600;color:#1b1b1b}
nav.sdfl-pager{max-width:1100px;margin:0 auto 32px;padding:12px 24px;border-top:1px solid #dde1e6;text-align:center}
a{color:#0b5394}
h1{font-size:1.9em;margin:.8em 0 .4em}h2{font-size:1.45em;margin:1.4em 0 .4em;border-bottom:1px solid #e4e7eb}h3{font-size:1.15em}
.anchor-link{display:none}
code{font-size:.92em;background:#f3f4f6;padding:0 3px;border-radius:3px}
pre{background:#f6f7f9;padding:8px 10px;overflow-x:auto;font-size:13px;line-height:1.35}
.output_area{margin:6px 0}
.output_area img,figure img{display:block;max-width:100%;height:auto;margin:4px 0}
.output_stderr{background:#fdecea}
table{border-collapse:collapse;margin:8px 0;font-size:14px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#f6f7f9;font-weight:600}
.rendered_html table,.output_html{overflow-x:auto;max-width:100%}
.sdfl-key-results{border-left:4px solid #0173b2;padding:2px 0 2px 14px;margin:10px 0 18px}
.sdfl-closing{border-left:4px solid #029e73;padding:2px 0 2px 14px;margin:10px 0 18px}
.sdfl-caption,figcaption{color:#444;font-size:15px;margin:2px 0 20px}
.sdfl-note{color:#444;font-size:15px}
section{margin-bottom:28px}
"""
