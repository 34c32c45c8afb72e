"""Data lists: the project's CSV manifest and the authors' `paths_*.txt` format.

Manifest CSV: columns `image, mask, edge, label, source` (mask/edge empty when absent), one row per
sample. Paths are relative to the manifest's folder unless absolute. Extra columns (e.g. a video
frame index) are kept after the standard ones.

Authors' format: one sample per line, `image mask edge label` separated by single spaces, the
literal `None` for an absent mask or edge. Paths may contain spaces; a line is parsed by this rule:

1. the label is the last token (0 or 1);
2. the rest is cut into three fields, each ending at a token boundary: the image field must end with
   a known image extension (`IMAGE_EXTENSIONS`), the mask and edge fields are either the single
   token `None` or end with a known image extension;
3. exactly one such cut must exist, else the line is reported as ambiguous (only possible when a
   folder name itself ends with an image extension followed by a space, e.g. `my.png dir/`).

A line with exactly four tokens is split as is (so image paths without an extension still work).
Relative paths in an authors' list are relative to the list's folder, like in the CSV.

Label 1 with no mask is a "label-only" fake (CIFAKE and similar): it is kept, flagged in the
derived `label_only` column, and never treated as an all-zero mask.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from sdfl_lib.errors import DataError
from sdfl_lib.runtime import atomic_write

MANIFEST_COLUMNS: tuple[str, ...] = ("image", "mask", "edge", "label", "source")
PATH_COLUMNS: tuple[str, ...] = ("image", "mask", "edge")
# Derived on reading, never written.
DERIVED_COLUMNS: tuple[str, ...] = ("label_only",)
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".jp2",
)
_ABSENT = {"", "none", "nan"}


class ManifestError(DataError):
    """A data list that cannot be read: names the file, the line and what is wrong."""


def _absolute(value: object, folder: str) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.strip()
    if text.lower() in _ABSENT:
        return ""
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        path = os.path.join(folder, path)
    return os.path.normpath(path)


def _relative(path: str, folder: str, relative: bool) -> str:
    if not path or not relative:
        return path
    rel = os.path.relpath(path, folder)
    # Only paths under the list's folder become relative; others stay absolute.
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        return path
    return Path(rel).as_posix()


def _finish(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Checks labels, fills `source` and adds the derived `label_only` flag."""
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = df.index[~labels.isin([0, 1])]
    if len(bad):
        row = int(bad[0])
        raise ManifestError(
            f"{where}: row {row + 1}: label must be 0 or 1, got {df['label'].iloc[row]!r} "
            f"({len(bad)} bad label(s) in all)"
        )
    df["label"] = labels.astype(int)
    df["source"] = df["source"].fillna("").astype(str)
    df["label_only"] = (df["label"] == 1) & (df["mask"] == "")
    return df


def normalize_frame(df: pd.DataFrame, where: str = "<DataFrame>") -> pd.DataFrame:
    """A manifest held in memory, in `read_manifest`'s form: a copy with a fresh index, `image`,
    `mask`, `edge` and `source` as strings ("" when absent), int 0/1 labels, the `label_only` flag.
    Paths are kept as given."""
    missing = [c for c in ("image", "label") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{where}: missing column(s) {missing}; a manifest needs {list(MANIFEST_COLUMNS)}"
        )
    df = df.reset_index(drop=True)
    for column in ("image", "mask", "edge", "source"):
        values = df[column] if column in df.columns else [""] * len(df)
        df[column] = [
            "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in values
        ]
    return _finish(df, where)


def duplicate_images(df: pd.DataFrame) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Images listed more than once: ({image: 1-based rows} with one label, {image: rows} listed
    with both labels). Paths are compared as read (absolute, normalised)."""
    same: dict[str, list[int]] = {}
    conflicting: dict[str, list[int]] = {}
    for image, group in df.groupby("image", sort=True):
        if len(group) < 2:
            continue
        rows = [int(i) + 1 for i in group.index]
        (conflicting if group["label"].nunique() > 1 else same)[str(image)] = rows
    return same, conflicting


def check_labels_agree(df: pd.DataFrame, where: str) -> None:
    """A `ManifestError` when one image is listed both authentic and tampered."""
    _, conflicting = duplicate_images(df)
    if conflicting:
        image, rows = next(iter(conflicting.items()))
        raise ManifestError(
            f"{where}: {image} is listed as both authentic and tampered ({rows_text(rows)}); "
            f"{len(conflicting)} such image(s) in all: fix the labels"
        )


def rows_text(numbers: list[int], show: int = 5) -> str:
    """`rows [3, 35]`, or the first `show` rows and how many there are in all."""
    if len(numbers) <= show:
        return f"rows {numbers}"
    return f"rows {str(numbers[:show])[:-1]}, ...] ({len(numbers)} in all)"


def _check_fields(path: Path) -> None:
    """Refuses a header that names a column twice and rows with more fields than the header
    (pandas would shift them under an index or drop the extra fields without a word)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return  # empty: pandas says so
        names = [name.strip() for name in header]
        for name in dict.fromkeys(n for n in names if n):
            where = [i + 1 for i, n in enumerate(names) if n == name]
            if len(where) > 1:
                raise ManifestError(f"{path}: column {name!r} appears {len(where)} times in the "
                                    f"header (columns {where}); keep one")
        long, row = [], 0
        for fields in reader:
            if not fields:
                continue  # a blank line, skipped as pandas skips it
            row += 1
            if len(fields) > len(header):
                long.append((row, reader.line_num, len(fields)))
    if long:
        row, line, n = long[0]
        trailing = " (a trailing comma?)" if n == len(header) + 1 else ""
        raise ManifestError(
            f"{path}: row {row} (line {line}) has {n} fields, the header {len(header)}"
            f"{trailing}; {len(long)} row(s) have more fields than the header"
        )


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a manifest CSV; returns absolute path strings ("" when absent), int labels.

    Adds a boolean `label_only` column: label 1 without a mask.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        _check_fields(path)
        # index_col=False: a row with an extra field never turns the first column into an index.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         index_col=False)
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: empty file; a manifest needs a header "
                            f"{','.join(MANIFEST_COLUMNS)} and one row per sample") from None
    except (UnicodeDecodeError, pd.errors.ParserError, csv.Error) as err:
        raise ManifestError(f"{path}: not a CSV manifest ({str(err).splitlines()[0]})") from None
    missing = [c for c in ("image", "label") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {missing}; a manifest needs {list(MANIFEST_COLUMNS)}"
        )
    for column in ("mask", "edge", "source"):
        if column not in df.columns:
            df[column] = ""
    folder = str(path.parent.absolute())
    for column in PATH_COLUMNS:
        df[column] = [_absolute(v, folder) for v in df[column]]
    empty = df.index[df["image"] == ""]
    if len(empty):
        raise ManifestError(f"{path}: row {int(empty[0]) + 1}: empty image path")
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS and c not in DERIVED_COLUMNS]
    df = df[list(MANIFEST_COLUMNS) + extra].copy()
    return _finish(df, str(path))


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, relative: bool = True) -> Path:
    """Writes a manifest CSV; paths under its folder become relative when `relative`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = str(path.parent.absolute())
    out = pd.DataFrame(index=range(len(df)))
    for column in PATH_COLUMNS:
        values = df[column] if column in df.columns else [""] * len(df)
        out[column] = [_relative(_absolute(v, os.getcwd()), folder, relative) for v in values]
    out["label"] = pd.to_numeric(pd.Series(list(df["label"])), errors="raise").astype(int)
    out["source"] = list(df["source"].fillna("").astype(str)) if "source" in df.columns else ""
    for column in df.columns:
        if column not in MANIFEST_COLUMNS and column not in DERIVED_COLUMNS:
            out[column] = list(df[column])
    with atomic_write(path) as tmp:
        out.to_csv(tmp, index=False, encoding="utf-8")
    return path


def _is_field_end(token: str) -> bool:
    return token.lower().endswith(IMAGE_EXTENSIONS)


def _split_line(tokens: list[str]) -> tuple[str, str, str]:
    """Cuts the tokens before the label into image, mask and edge (see the module docstring)."""
    if len(tokens) == 3:
        return tokens[0], tokens[1], tokens[2]
    n = len(tokens)
    cuts = []
    for i in range(1, n - 1):
        if not _is_field_end(tokens[i - 1]):
            continue
        for j in range(i + 1, n):
            mask, edge = tokens[i:j], tokens[j:]
            if all(
                f == ["None"] or ("None" not in f and _is_field_end(f[-1])) for f in (mask, edge)
            ):
                cuts.append((i, j))
    if len(cuts) != 1:
        why = "no" if not cuts else f"{len(cuts)}"
        raise ValueError(f"{why} way(s) to cut it into image, mask and edge")
    i, j = cuts[0]
    return " ".join(tokens[:i]), " ".join(tokens[i:j]), " ".join(tokens[j:])


def read_authors_list(path: str | os.PathLike, source: str = "") -> pd.DataFrame:
    """Reads an authors' `paths_*.txt` list (`image mask edge label`, `None` for absent)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"data list not found: {path}")
    folder = str(path.parent.absolute())
    rows = []
    # utf-8-sig: a byte-order mark (Windows editors) is not part of the first path.
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            tokens = line.strip().split(" ")
            if len(tokens) < 4:
                raise ManifestError(
                    f"{path}:{number}: expected 'image mask edge label', got {line!r}"
                )
            try:
                image, mask, edge = _split_line(tokens[:-1])
            except ValueError as err:
                raise ManifestError(f"{path}:{number}: cannot parse {line!r}: {err}") from None
            rows.append((image, mask, edge, tokens[-1]))
    df = pd.DataFrame(rows, columns=["image", "mask", "edge", "label"])
    for column in PATH_COLUMNS:
        df[column] = [_absolute(v, folder) for v in df[column]]
    df["source"] = source
    return _finish(df, str(path))


def write_authors_list(df: pd.DataFrame, path: str | os.PathLike, relative: bool = False) -> Path:
    """Writes an authors' list; absolute paths by default (as the authors' lists have)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = str(path.parent.absolute())
    lines = []
    for row in df.itertuples(index=False):
        fields = []
        for column in PATH_COLUMNS:
            value = _relative(_absolute(getattr(row, column, ""), os.getcwd()), folder, relative)
            fields.append(value or "None")
        lines.append(" ".join([*fields, str(int(row.label))]))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def replace_prefix(df: pd.DataFrame, old: str, new: str) -> tuple[pd.DataFrame, int]:
    """Rewrites path prefixes `old` -> `new` in image/mask/edge; returns the copy and #paths changed.

    A prefix is a whole folder: `/data` matches `/data` and `/data/x.jpg`, never `/database/x.jpg`.
    """
    out = df.copy()
    changed = 0
    if len(old) > 1:
        old = old.rstrip("/\\")
    new = new.rstrip("/\\") if len(new) > 1 and len(old) > 1 else new
    for column in PATH_COLUMNS:
        if column not in out.columns:
            continue
        values = []
        for value in out[column]:
            text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
            rest = text[len(old):]
            boundary = old.endswith(("/", "\\")) or rest == "" or rest[0] in "/\\"
            if text and text.startswith(old) and boundary:
                text = new + rest
                changed += 1
            values.append(text)
        out[column] = values
    return out, changed
