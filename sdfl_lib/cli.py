"""The `sdfl` command line: each stage registers its own sub-commands; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

# Each module exposes `register(subparsers)`, adding its sub-commands with `set_defaults(func=...)`.
_COMMAND_MODULES = (
    "sdfl_lib.data.cli",
    "sdfl_lib.train.cli",
    "sdfl_lib.evaluate.cli",
    "sdfl_lib.predict.cli",
    "sdfl_lib.models.cli",
    "sdfl_lib.study.runner",
    "sdfl_lib.doctor",
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake in one line as every other error (exit 2); sub-command
    parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser of `sdfl`."""
    from sdfl_lib import __version__  # why: not loaded by `sdfl --help`

    parser = _Parser(
        prog="sdfl",
        description="Shallow- and deep-fake image manipulation detection and localization.",
    )
    parser.add_argument("--version", action="version", version=f"sdfl {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """`sdfl evaluate`, `sdfl data split`: the command as the user typed it."""
    words = ["sdfl", getattr(args, "command", None) or ""]
    sub = getattr(args, f"{args.command}_command", None) if args.command else None
    return " ".join(w for w in [*words, sub or ""] if w)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sdfl` console script (the error contract: `sdfl_lib.errors`)."""
    from sdfl_lib.errors import exit_code_of  # why: not loaded by `sdfl --help`

    argv = list(sys.argv[1:] if argv is None else argv)
    # `--debug` is accepted anywhere on the line, so that it can be added to a failing command.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named after the command they were given to, as the other usage errors
        name = _command_name(args)
        print(f"{name}: error: unrecognized arguments: {' '.join(unknown)} (`{name} --help` lists "
              "the options)", file=sys.stderr)
        return 2
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{_command_name(args)}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        code = exit_code_of(err)
        if debug or code is None:
            raise
        message = "; ".join(line for line in (str(err) or type(err).__name__).splitlines() if line)
        print(f"{_command_name(args)}: error: {message}", file=sys.stderr)
        return code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
