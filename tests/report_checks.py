"""What a rendered study (reports/<run>/) must hold, as a list of problems (empty: none); shared by
the site's unit tests and the smoke study's test."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

MAX_STREAM_LINES = 15
KEY_RESULTS, CLOSING = "sdfl-key-results", "sdfl-closing"


class _Page(HTMLParser):
    """A page's title, links, the text of its stream outputs, its visible text, and where its
    key-results block and its first image start."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.links, self.stream, self.text = "", [], [], []
        self.first_key_results = self.first_image = None
        self._stack: list[tuple[str, bool]] = []
        self._in_title = self._skip = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        inside = any(s for _, s in self._stack) or "output_stream" in classes
        if tag not in ("img", "br", "meta", "link", "hr", "input"):
            self._stack.append((tag, inside))
        self._in_title = tag == "title"
        self._skip = tag in ("style", "script")
        if KEY_RESULTS in classes and self.first_key_results is None:
            self.first_key_results = self.getpos()
        if tag == "img" and self.first_image is None:
            self.first_image = self.getpos()
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()[0] == tag:
                break
        self._in_title = self._skip = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.text.append(data)
            if self._stack and self._stack[-1][1]:
                self.stream.append(data)


def read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _broken(page: _Page, folder: Path) -> list[str]:
    out = []
    for link in page.links:
        if re.match(r"^([a-z][a-z0-9+.-]*:|#)", link):  # http(s), data:, mailto:, anchors
            continue
        target = (folder / unquote(link.split("#")[0])).resolve()
        if not target.exists():
            out.append(link)
    return out


def site_problems(reports: Path, run_dir: Path, key_results: set[str], closing: set[str]) -> list[str]:
    """Everything wrong with the site in `reports`: each page (`NN_*.html`) has at most
    MAX_STREAM_LINES lines of stream output, no warning text, its own title, a key-results block
    before its first figure where `key_results` names its stem, a closing block where `closing`
    does; the index links every page; no link is broken; no file holds the run folder's path."""
    problems = []
    pages = sorted(reports.glob("[0-9][0-9]_*.html"))
    if not pages:
        return [f"{reports}: no reports"]
    titles: dict[str, str] = {}
    for path in [*pages, reports / "index.html"]:
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        page, html = read_page(path), path.read_text(encoding="utf-8")
        lines = [ln for ln in "".join(page.stream).splitlines() if ln.strip()]
        if len(lines) > MAX_STREAM_LINES:
            problems.append(f"{path.name}: {len(lines)} lines of stream output")
        warned = re.findall(r"\w*Warning\b[^\n]{0,60}", " ".join(page.text))
        if warned:
            problems.append(f"{path.name}: warning text {warned[:2]}")
        titles.setdefault(page.title.strip(), path.name)
        problems += [f"{path.name}: broken link {link}" for link in _broken(page, path.parent)]
        stem = path.stem
        if stem in key_results and (page.first_key_results is None or (
                page.first_image is not None and page.first_image < page.first_key_results)):
            problems.append(f"{path.name}: no key-results block before its first figure")
        if stem in closing and CLOSING not in html:
            problems.append(f"{path.name}: no closing block")
        if path.name == "index.html":
            missing = [p.name for p in pages if p.name not in page.links]
            problems += [f"index.html: no link to {m}" for m in missing]
    if len(titles) != len(pages) + 1:
        problems.append(f"titles are not distinct: {sorted(titles)}")
    for path in reports.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".yaml", ".json", ".csv", ".md"):
            if str(run_dir.resolve()) in path.read_text(encoding="utf-8", errors="replace"):
                problems.append(f"{path.relative_to(reports)}: holds the run folder's path {run_dir}")
    return problems
