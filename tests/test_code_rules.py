"""Code rules the project holds itself to: no function in sdfl_lib over 60 lines.

The functions longer than that today are listed with their current length; they may only
shrink, and each leaves the list once it is split into named steps (issue 18, stage 2)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 60

# (file, qualified name) -> its length in lines today, the most it may have.
LONG_FUNCTIONS: dict[tuple[str, str], int] = {
}


def function_lengths(root: Path = REPO / "sdfl_lib") -> dict[tuple[str, str], int]:
    """(file relative to the repository, Class.method or outer.inner) -> lines from `def` to its
    last line, for every function under `root`."""
    lengths: dict[tuple[str, str], int] = {}

    def visit(node: ast.AST, rel: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                lengths[(rel, name)] = child.end_lineno - child.lineno + 1
                visit(child, rel, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, rel, prefix + child.name + ".")
            else:
                visit(child, rel, prefix)

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text()), path.relative_to(root.parent).as_posix(), "")
    return lengths


def test_no_function_over_60_lines_but_the_listed_ones_which_only_shrink():
    lengths = function_lengths()
    too_long = {
        f"{rel}: {name} has {n} lines (at most {LONG_FUNCTIONS.get((rel, name), MAX_LINES)})"
        for (rel, name), n in lengths.items()
        if n > LONG_FUNCTIONS.get((rel, name), MAX_LINES)
    }
    assert not too_long, "split into named steps:\n" + "\n".join(sorted(too_long))
    gone = {f"{rel}: {name}" for rel, name in LONG_FUNCTIONS if (rel, name) not in lengths}
    short = {f"{rel}: {name}" for (rel, name) in LONG_FUNCTIONS
             if (rel, name) in lengths and lengths[(rel, name)] <= MAX_LINES}
    assert not gone | short, "take off LONG_FUNCTIONS: " + ", ".join(sorted(gone | short))


def test_the_rule_sees_a_long_function(tmp_path):
    pkg = tmp_path / "sdfl_lib"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"class A:\n    def f(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    lengths = {name: n for (_, name), n in function_lengths(pkg).items()}
    assert lengths == {"A.f": MAX_LINES + 1}
