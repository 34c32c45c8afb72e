"""What every preparer shares: finding files, writing masks and edges, the report."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdfl_lib.data.io import write_image
from sdfl_lib.data.manifest import IMAGE_EXTENSIONS


@dataclass
class Report:
    """A preparer's account of what it found: counts, what stayed unmatched, what is odd."""

    dataset: str
    root: str
    manifest: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    unmatched_images: list[str] = field(default_factory=list)
    unused_masks: list[str] = field(default_factory=list)
    size_mismatches: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    label_only: list[str] = field(default_factory=list)  # tampered, kept without a mask
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.dataset}: {self.manifest}"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.counts.items())]
        for title, items in (
            ("unmatched images", self.unmatched_images),
            ("unused masks", self.unused_masks),
            ("size mismatches", self.size_mismatches),
            ("excluded", self.excluded),
            ("label-only fakes (no mask)", self.label_only),
            ("warnings", self.warnings),
            ("errors", self.errors),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:20]]
                if len(items) > 20:
                    lines.append(f"    ... {len(items) - 20} more (see the JSON report)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of a folder, sorted by name (hidden and non-image files left out)."""
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image(p) and not p.name.startswith("."))


def find_dir(root: Path, *names: str) -> Path | None:
    """The first folder below `root` (root included) whose name is one of `names`, any case."""
    wanted = {n.lower() for n in names}
    if root.name.lower() in wanted:
        return root
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        for d in dirnames:
            if d.lower() in wanted:
                return Path(dirpath) / d
    return None


def write_binary_png(array: np.ndarray, path: Path) -> Path:
    """Writes a {0, 1} map as a 0/255 PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, (array > 0).astype(np.uint8) * 255)


def row(image: Path | str, label: int, source: str, mask: Path | str = "", edge: Path | str = "",
        **extra: Any) -> dict[str, Any]:
    """One manifest row as a dict."""
    return {"image": str(image), "mask": str(mask) if mask else "", "edge": str(edge) if edge else "",
            "label": int(label), "source": source, **extra}
