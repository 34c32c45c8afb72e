"""The command line's error contract: user mistakes end in one line and a documented exit code.

`sdfl <command>: error: <what> (<which file/row/key>)` on stderr, then:

- exit 2 (`EXIT_USAGE`): bad usage (an unknown option, a value out of range, a bad config key);
- exit 1 (`EXIT_FAILED`): bad data (a missing or unreadable file, a bad manifest row) or a failed run;
- exit 3 (`EXIT_UNSCORED`): the run completed but could not score some rows; it says how many and
  where they are listed (`--allow-unscored` turns this into 0).

`sdfl --debug ...` shows the traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import errno

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNSCORED = 0, 1, 2, 3
# Writes the system refuses: no space, a quota, a read-only file system, no permission.
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class UserError(Exception):
    """A mistake in what the user gave; `main` prints it as one line and exits `exit_code`."""

    exit_code = EXIT_FAILED


class UsageError(UserError, ValueError):
    """A bad option or setting (exit 2)."""

    exit_code = EXIT_USAGE


class DataError(UserError, ValueError):
    """Data that cannot be used: names the file, row or key (exit 1)."""

    exit_code = EXIT_FAILED


class OutputError(DataError):
    """A file that cannot be written (a full disk, a read-only folder, no permission): names it
    and the reason (exit 1)."""

    def __init__(self, path: object, cause: object) -> None:
        if isinstance(cause, OSError):
            cause = cause.strerror or str(cause)
        super().__init__(f"cannot write {path}: {cause}")


class FolderBusyError(DataError):
    """Another process writes into the output folder asked for (exit 1)."""


class MissingInput(DataError):
    """A notebook's input file that an earlier notebook writes is not there. In Jupyter it shows
    as its one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def exit_code_of(err: BaseException) -> int | None:
    """The exit code for a user mistake, or None for a fault of the program (a traceback).
    The project's own errors subclass `UsageError` or `DataError`; this module knows no other."""
    if isinstance(err, UserError):
        return err.exit_code
    if isinstance(err, (FileNotFoundError, FileExistsError, IsADirectoryError,
                        NotADirectoryError, PermissionError)):
        return EXIT_FAILED
    if isinstance(err, OSError) and err.errno in _OUTPUT_ERRNOS:
        return EXIT_FAILED  # a full disk or a read-only folder; the message names the file
    if isinstance(err, ValueError):
        return EXIT_USAGE
    return None


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(_number(float, text))
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float(_number(float, text))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value
