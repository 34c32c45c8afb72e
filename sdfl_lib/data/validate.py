"""`validate_manifest(path)`: every row of a manifest read as training would read it, and counted.

Errors (the command exits non-zero): missing files, unreadable or truncated images and masks,
decompression bombs, label 0 with a non-empty mask, a mask size mismatch under the "fail" policy.
Counted warnings: CMYK / 16-bit / float / palette / RGBA / grey images (normalised on load), EXIF
orientation tags (not applied: the stored pixel grid is used), non-binary
masks (several grey levels: every non-zero pixel is tampered), masks of another size (resized or
skipped by the policy), RGBA masks, label-only fakes, tampered rows whose mask is all zero, images
listed twice, duplicate basenames (two files of the same name confuse per-image outputs).
Errors also: an image listed both authentic and tampered, a manifest without rows.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdfl_lib.data.io import (
    MASK_POLICIES,
    ImageReadError,
    MaskSizeError,
    exif_orientation,
    image_hw,
    load_image,
    load_mask,
    orientation_note,
)
from sdfl_lib.data.manifest import duplicate_images, read_manifest, rows_text
from sdfl_lib.errors import DataError
from sdfl_lib.progress import tqdm

# Keys of `report["counts"]` that are errors; the others are warnings.
ERROR_KINDS = (
    "missing_image", "missing_mask", "missing_edge", "unreadable_image", "unreadable_mask",
    "unreadable_edge", "decompression_bomb", "authentic_with_mask", "mask_size_mismatch_fail",
    "conflicting_labels", "empty_manifest",
)
WARNING_KINDS = (
    "cmyk", "16bit", "float", "palette", "rgba", "grey", "other_mode", "exif_orientation",
    "mask_non_binary", "mask_rgba",
    "mask_size_mismatch", "mask_resized", "mask_skipped", "label_only", "duplicate_basename",
    "duplicate_image", "tampered_empty_mask",
)


def _classify(err: ImageReadError, what: str) -> str:
    if err.cause == "file not found":
        return f"missing_{what}"
    if "decompression bomb" in err.cause:
        return "decompression_bomb"
    return f"unreadable_{what}"


class _Notes:
    """The report's counts and its error and warning items, noted row by row."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.errors: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []

    def __call__(self, kind: str, row: int, file: str, detail: str = "") -> None:
        self.counts[kind] += 1
        item = {"row": row, "kind": kind, "path": file, "detail": detail}
        (self.errors if kind in ERROR_KINDS else self.warnings).append(item)

    def stats(self, stats: Counter, row: int, file: str,
              detail: Callable[[str], str] = lambda kind: "") -> None:
        """One note per count of each kind a loader's `stats` holds."""
        for kind, n in stats.items():
            for _ in range(n):
                self(kind, row, file, detail(kind))


def validate_manifest(
    path: str | os.PathLike,
    mask_policy: str = "resize",
    max_pixels: int | None = None,
    progress: bool = True,
    decode: bool = True,
) -> dict[str, Any]:
    """Checks every row of the manifest at `path`; returns a JSON-ready report.

    `decode=False` (training's pre-flight) reads only the images' headers, which is fast; masks
    and edges are always decoded, since the mask rule looks at their pixels.

    `report["counts"]` counts each kind (see ERROR_KINDS / WARNING_KINDS), `report["errors"]` and
    `report["warnings"]` list `{row, kind, path, detail}` items, `report["ok"]` is True without errors.
    """
    if mask_policy not in MASK_POLICIES:
        raise ValueError(f"mask policy must be one of {MASK_POLICIES}, got {mask_policy!r}")
    df = read_manifest(path)
    note = _Notes()
    rows = tqdm(df.itertuples(), total=len(df), desc="validate", unit="row", disable=not progress)
    for r in rows:
        number = int(r.Index) + 1
        shape, orientation = _check_image(r.image, number, note, decode, max_pixels)
        if r.label == 1 and not r.mask:
            note("label_only", number, r.image, "label 1 without a mask")
        for what, file in (("mask", r.mask), ("edge", r.edge)):
            if file:
                _check_mask(what, file, r.label, number, note, shape, orientation, mask_policy)
    _note_duplicates(df, note)
    if not len(df):
        note("empty_manifest", 0, str(path), "no rows (a header only)")
    return _report(path, df, mask_policy, note)


def _check_image(
    image: str, number: int, note: _Notes, decode: bool, max_pixels: int | None
) -> tuple[tuple[int, int] | None, int]:
    """Notes what reading the image found; returns its (height, width), None when it cannot be
    read, and its EXIF orientation (1 without a tag)."""
    image_stats: Counter = Counter()
    shape = None
    try:
        if decode:
            shape = load_image(image, stats=image_stats, max_pixels=max_pixels).shape[:2]
        else:
            shape = image_hw(image)
    except ImageReadError as err:
        note(_classify(err, "image"), number, image, err.cause)
    orientation = exif_orientation(image) if image_stats.get("exif_orientation") else 1
    note.stats(image_stats, number, image,
               lambda kind: orientation_note(orientation) if kind == "exif_orientation" else "")
    return shape, orientation


def _check_mask(
    what: str, file: str, label: int, number: int, note: _Notes,
    shape: tuple[int, int] | None, orientation: int, mask_policy: str,
) -> None:
    """Notes what reading a mask or edge map (`what`) found: its values, its size against the
    image's under the policy, and for a mask the rule that label 0 has none and label 1 has one."""
    stats: Counter = Counter()
    try:
        mask = load_mask(file, size=None, stats=stats)
    except ImageReadError as err:
        note(_classify(err, what), number, file, err.cause)
        return
    note.stats(stats, number, file,
               lambda kind: "several grey levels: every non-zero pixel counts as tampered"
               if kind == "mask_non_binary" else "")
    if shape is not None and mask.shape != shape:
        detail = f"{what} {mask.shape[0]}x{mask.shape[1]}, image {shape[0]}x{shape[1]}"
        if orientation >= 5 and mask.shape == shape[::-1]:
            detail += (f"; it fits the photo as displayed (EXIF orientation "
                       f"{orientation}): rotate the {what} to the stored pixels")
        note("mask_size_mismatch", number, file, detail)
        try:
            load_mask(file, size=shape, policy=mask_policy, stats=Counter())
            note("mask_resized" if mask_policy == "resize" else "mask_skipped", number, file)
        except MaskSizeError as err:
            note("mask_size_mismatch_fail", number, file, err.cause)
    if what == "mask" and label == 0 and mask.any():
        note("authentic_with_mask", number, file, f"{int(mask.sum())} manipulated pixels")
    if what == "mask" and label == 1 and not mask.any():
        note("tampered_empty_mask", number, file, "label 1 but no tampered pixel")


def _report(path: str | os.PathLike, df: Any, mask_policy: str, note: _Notes) -> dict[str, Any]:
    """The JSON-ready report, every kind counted (0 when never seen)."""
    counts = note.counts
    for kind in (*ERROR_KINDS, *WARNING_KINDS):
        counts.setdefault(kind, 0)
    return {
        "manifest": str(Path(path).absolute()),
        "rows": len(df),
        "authentic": int((df["label"] == 0).sum()),
        "tampered": int((df["label"] == 1).sum()),
        "mask_policy": mask_policy,
        "ok": not note.errors,
        "counts": dict(counts),
        "errors": note.errors,
        "warnings": note.warnings,
    }


def _note_duplicates(df: Any, note: _Notes) -> None:
    """Images listed twice (with one label or both), and file names shared by several images;
    the rows summarised (the first five and the count) however many there are."""
    same, conflicting = duplicate_images(df)
    for image, numbers in conflicting.items():
        note("conflicting_labels", numbers[0], image, f"labels 0 and 1 in {rows_text(numbers)}")
    for image, numbers in same.items():
        note("duplicate_image", numbers[0], image, rows_text(numbers))
    names = df["image"].map(os.path.basename)
    for name, group in df.groupby(names, sort=True)["image"]:
        if group.nunique() > 1:
            note("duplicate_basename", int(group.index[0]) + 1, str(name),
                 rows_text([int(i) + 1 for i in group.index]))


def print_report(report: dict[str, Any], limit: int = 20) -> None:
    """Prints a validation report as a table of counts and the first problems."""
    print(f"manifest: {report['manifest']}")
    print(f"rows: {report['rows']} (authentic {report['authentic']}, tampered {report['tampered']}),"
          f" mask policy: {report['mask_policy']}")
    print(f"{'check':<28}{'kind':<9}{'count':>7}")
    for kind in (*ERROR_KINDS, *WARNING_KINDS):
        level = "error" if kind in ERROR_KINDS else "warning"
        print(f"{kind:<28}{level:<9}{report['counts'].get(kind, 0):>7}")
    for title in ("errors", "warnings"):
        items = report[title]
        for item in items[:limit]:
            print(f"  {title[:-1]} row {item['row']}: {item['kind']}: {item['path']} {item['detail']}")
        if len(items) > limit:
            print(f"  ... {len(items) - limit} more {title}")
    print("OK" if report["ok"] else f"{len(report['errors'])} error(s)")


def preflight(path: str | os.PathLike, what: str = "manifest", mask_policy: str = "resize") -> dict:
    """Training's check before anything is built: every file exists and its header decodes, and
    the rows follow the mask rule. All problems at once in one `DataError`; returns the report."""

    report = validate_manifest(path, mask_policy=mask_policy, progress=False, decode=False)
    if report["errors"]:
        kinds: dict[str, list[dict]] = {}
        for e in report["errors"]:
            kinds.setdefault(e["kind"], []).append(e)
        listed = "; ".join(
            f"{kind} x{len(items)} (row {items[0]['row']}: {items[0]['path']}"
            f"{' ' + items[0]['detail'] if items[0]['detail'] else ''})"
            for kind, items in kinds.items()
        )
        raise DataError(
            f"{what} {report['manifest']} has {len(report['errors'])} problem(s): {listed}; "
            f"`sdfl data validate {path}` lists them all"
        )
    return report
