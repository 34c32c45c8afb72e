"""Preparers of ready-made frame sets: the authors' deepfake frames and CIFAKE."""

from __future__ import annotations

from pathlib import Path

from sdfl_lib.data.preparers.common import Report, find_dir, list_images, row

REAL_PREFIXES = ("youtube_", "actors_")


def prepare_icnc_deepfakes(
    root: Path, out_dir: Path, report: Report, methods: list[str] | None = None
) -> list:
    """The authors' frames (`ICNC2023-Deepfakes.tar.xz`): `{image,mask,edge}/<Method>/
    <Method>_<target>_<source>_<frame>.png`; real frames are named `youtube_*` / `actors_*`."""
    image_dir = find_dir(root, "image")
    if image_dir is None:
        report.errors.append(f"no image/ folder under {root}")
        return []
    base = image_dir.parent
    wanted = {m.lower() for m in methods} if methods else None
    rows = []
    for image in list_images(image_dir, recursive=True):
        relative = image.relative_to(image_dir)
        folder = relative.parts[0] if len(relative.parts) > 1 else ""
        if image.name.lower().startswith(REAL_PREFIXES):
            kind = image.name.split("_", 1)[0].lower()
            rows.append(row(image, 0, f"ffpp-{kind}", method=folder))
            report.add(f"real_{kind}")
            continue
        if wanted is not None and folder.lower() not in wanted:
            continue
        mask, edge = base / "mask" / relative, base / "edge" / relative
        if not mask.is_file():
            report.unmatched_images.append(str(image))
            report.excluded.append({"image": str(image), "reason": "no mask in mask/", "kept": "no"})
            continue
        rows.append(row(image, 1, f"ffpp-{folder.lower()}", mask, edge if edge.is_file() else "",
                        method=folder))
        report.add(f"fake_{folder}")
        if not edge.is_file():
            report.add("edges_missing")
    return rows


def prepare_cifake(root: Path, out_dir: Path, report: Report) -> list:
    """CIFAKE: `{train,test}/{REAL,FAKE}/*`; fakes have no masks (label-only fakes)."""
    rows = []
    for subset in ("train", "test"):
        folder = find_dir(root, subset)
        if folder is None:
            report.warnings.append(f"no {subset}/ folder under {root}")
            continue
        for kind, label in (("REAL", 0), ("FAKE", 1)):
            sub = find_dir(folder, kind)
            images = list_images(sub) if sub else []
            report.add(f"{subset}_{kind.lower()}", len(images))
            rows += [row(p, label, "cifake", subset=subset) for p in images]
    if not rows:
        report.errors.append(f"no CIFAKE images (train|test)/(REAL|FAKE) under {root}")
    report.notes.append("CIFAKE fakes carry image labels only: kept as label-only fakes")
    return rows
