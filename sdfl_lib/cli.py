"""The `sdfl` command line: each stage registers its own sub-commands; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)`, adding its sub-commands with `set_defaults(func=...)`.
_COMMAND_MODULES = (
    "sdfl_lib.data.cli",
    "sdfl_lib.train.cli",
    "sdfl_lib.evaluate.cli",
    "sdfl_lib.models.cli",
    "sdfl_lib.study",
    "sdfl_lib.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser of `sdfl`."""
    from sdfl_lib import __version__

    parser = argparse.ArgumentParser(
        prog="sdfl",
        description="Shallow- and deep-fake image manipulation detection and localization.",
    )
    parser.add_argument("--version", action="version", version=f"sdfl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sdfl` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
