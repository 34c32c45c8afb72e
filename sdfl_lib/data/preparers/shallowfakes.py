"""Preparers of the shallowfake benchmarks: CASIA v2.0, CASIA v1.0, Columbia, COVERAGE, NIST16.

CASIA tampered images whose ground truth cannot be found stay in the manifest as label-only fakes
(image-level metrics only), listed in the report under `label_only`; `drop_unmatched=True` leaves
them out (listed under `excluded`). The other sets exclude such images and list them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdfl_lib.data.io import ImageReadError, image_hw, load_image, load_mask
from sdfl_lib.data.preparers.common import (
    Report,
    find_dir,
    is_image,
    list_images,
    row,
    write_binary_png,
)

_NO_MASK = "no ground-truth mask: excluded"
_NO_MASK_DROPPED = "no ground-truth mask: left out (drop_unmatched=True)"


def _casia_key(stem: str) -> tuple[tuple[str, str], int] | None:
    """((id, id) sorted, trailing number) of a CASIA name like Sp_D_NRN_A_ani0080_sec0005_0426.

    A dot counts as an underscore: some original names read `..._ani0054.0257`.
    """
    parts = re.split(r"[_.]", stem)
    if len(parts) < 4 or not parts[-1].isdigit():
        return None
    a, b = parts[-3], parts[-2]
    return (min(a, b), max(a, b)), int(parts[-1])


def _ground_truths(root: Path) -> dict[str, Path]:
    """Every `<name>_gt.<ext>` file under root, by <name>."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*_gt.*")):
        if is_image(path):
            found.setdefault(path.stem[: -len("_gt")], path)
    return found


def _match_casia(
    tampered: list[Path], gts: dict[str, Path], report: Report, drop_unmatched: bool, source: str
) -> list[dict[str, Any]]:
    """Each tampered image's mask, by the first rule that finds exactly one unused mask:

    1. the same name ("exact");
    2. the same two ids, either order, and trailing number ("revised-name": the ground truth is
       named after the revised file names, which fix the order of the ids);
    3. the same trailing number, held by no other mask, and at least one id in common
       ("serial-number": the original names carry typos such as `ant0063` for `nat0063`).

    Tampered images without a mask are kept as label-only fakes (listed), or left out when
    `drop_unmatched`.
    """
    m = _CasiaMatch(gts, report, source)
    pending = [image for image in tampered if not m.exact(image)]
    keys = {name: _casia_key(name) for name in gts}
    by_key: dict[tuple, list[str]] = {}
    by_number: dict[int, list[str]] = {}
    for name, key in keys.items():
        if key is not None:
            by_number.setdefault(key[1], []).append(name)
            if name not in m.used:
                by_key.setdefault(key, []).append(name)
    still = [(image, key) for image in pending if (key := m.revised_name(image, by_key)) != ()]
    # Only after every exact and revised-name match, so a typo cannot take another image's mask.
    for image, key in still:
        if not m.serial_number(image, key, keys, by_number):
            m.unmatched(image, drop_unmatched)
    report.unused_masks += [str(gts[n]) for n in gts if n not in m.used]
    report.add("masks_matched", len(m.used))
    if report.label_only:
        report.notes.append(
            f"{len(report.label_only)} tampered image(s) without a mask kept as label-only fakes "
            "(image-level metrics only; drop_unmatched=True / --drop-unmatched leaves them out)"
        )
    return m.rows


class _CasiaMatch:
    """The rows of `_match_casia` and the masks used so far, one rule per method."""

    def __init__(self, gts: dict[str, Path], report: Report, source: str) -> None:
        self.gts, self.report, self.source = gts, report, source
        self.rows: list[dict[str, Any]] = []
        self.used: set[str] = set()

    def _take(self, image: Path, name: str, match: str) -> None:
        self.used.add(name)
        self.rows.append(row(image, 1, self.source, self.gts[name], match=match))
        self.report.add(f"masks_matched_{match.replace('-', '_')}")

    def exact(self, image: Path) -> bool:
        """Rule 1: a mask of the same name."""
        if image.stem not in self.gts:
            return False
        self._take(image, image.stem, "exact")
        return True

    def revised_name(self, image: Path, by_key: dict[tuple, list[str]]) -> tuple | None:
        """Rule 2: the one unused mask with the same ids and number; () when matched, else the
        image's key for rule 3 (None when several masks share its ids)."""
        key = _casia_key(image.stem)
        candidates = [n for n in by_key.get(key, []) if n not in self.used] if key else []
        if len(candidates) == 1:
            self._take(image, candidates[0], "revised-name")
            self.report.notes.append(
                f"{image.name} matched {self.gts[candidates[0]].name} by ids and number")
            return ()
        if candidates:
            self.report.warnings.append(
                f"{image.name}: {len(candidates)} masks share its ids: {candidates}")
            return None
        return key

    def serial_number(self, image: Path, key: tuple | None, keys: dict[str, tuple | None],
                      by_number: dict[int, list[str]]) -> bool:
        """Rule 3: the one mask with the same trailing number, unused, sharing an id."""
        same_number = by_number.get(key[1], []) if key else []
        name = same_number[0] if len(same_number) == 1 else None
        common = sorted(set(key[0]) & set(keys[name][0])) if name and name not in self.used else []
        if not common:
            return False
        self._take(image, name, "serial-number")
        self.report.notes.append(
            f"{image.name} matched {self.gts[name].name} by its unique number {key[1]:04d} "
            f"and id {common[0]} (the other id differs)"
        )
        return True

    def unmatched(self, image: Path, drop_unmatched: bool) -> None:
        """No mask: a label-only fake, or left out with `drop_unmatched` (listed either way)."""
        self.report.unmatched_images.append(str(image))
        if drop_unmatched:
            self.report.excluded.append({"image": str(image), "reason": _NO_MASK_DROPPED, "kept": "no"})
        else:
            self.rows.append(row(image, 1, self.source, match="none"))
            self.report.label_only.append(str(image))


# Each version's serial numbers: v1.0 `Au_arc_0055`, `Sp_D_NRN_A_ani0080_sec0005_0426` (4 digits);
# v2.0 `Au_ani_00001`, `Tp_D_CRD_S_N_ani00028_ani00058_00148` (5 digits).
_CASIA_DIGITS = {"casia1": 4, "casia2": 5}


def _other_casia(source: str, images: list[Path]) -> str:
    """Why the images are the other CASIA version's ("" when any is this one's)."""
    digits = [len(p.stem.rsplit("_", 1)[-1]) for p in images if p.stem.rsplit("_", 1)[-1].isdigit()]
    other = next(name for name in _CASIA_DIGITS if name != source)
    theirs = digits.count(_CASIA_DIGITS[other])
    if theirs and _CASIA_DIGITS[source] not in digits:
        return (f"the {theirs} image(s) carry {_CASIA_DIGITS[other]}-digit serial numbers, as in "
                f"{other}, not {_CASIA_DIGITS[source]} as in {source}: is this the other data "
                f"set? (`sdfl data prepare {other}`)")
    return ""


def _casia(root: Path, report: Report, drop_unmatched: bool, source: str, tp_names: tuple) -> list:
    au_dir = find_dir(root, "Au")
    tp_dir = find_dir(root, *tp_names)
    if tp_dir is None and au_dir is None:
        report.errors.append(f"no Au/ or {'/'.join(tp_names)} folder under {root}")
        return []
    authentic = list_images(au_dir) if au_dir else []
    # In CASIA v1.0 the tampered images sit in Sp/ and CM/ subfolders of Tp/ ("Modified Tp").
    tampered = list_images(tp_dir, recursive=True) if tp_dir else []
    tampered = [p for p in tampered if not p.stem.endswith("_gt")]
    other = _other_casia(source, authentic + tampered)
    if other:
        report.errors.append(other)
        return []
    report.add("authentic_found", len(authentic))
    report.add("tampered_found", len(tampered))
    rows = [row(p, 0, source, match="") for p in authentic]
    return rows + _match_casia(tampered, _ground_truths(root), report, drop_unmatched, source)


def prepare_casia2(root: Path, out_dir: Path, report: Report, drop_unmatched: bool = False) -> list:
    """CASIA v2.0: `Au/` authentic, `Tp/` tampered, masks `<name>_gt.png` anywhere below root."""
    return _casia(root, report, drop_unmatched, "casia2", ("Tp",))


def prepare_casia1(root: Path, out_dir: Path, report: Report, drop_unmatched: bool = False) -> list:
    """CASIA v1.0: `Au/`, tampered in `Sp/` (or `Tp/`), masks named after the revised names (see
    `_match_casia` for the matching rules)."""
    return _casia(root, report, drop_unmatched, "casia1", ("Sp", "Tp", "Modified Tp"))


def columbia_mask(edgemask: np.ndarray, tampered_channel: int = 1) -> np.ndarray:
    """The spliced region of a Columbia `edgemask` (RGB): pixels dominated by one colour.

    The edgemask paints the two cameras' regions in red (host) and green (spliced region); the
    files are JPEGs, so a pixel counts as spliced when its `tampered_channel` (1 = green) is above
    127 and above each other channel by more than 64, which ignores compression noise and the
    boundary line drawn between the regions.
    """
    rgb = edgemask.astype(np.int16)
    chosen = rgb[..., tampered_channel]
    others = np.delete(rgb, tampered_channel, axis=2).max(axis=2)
    return ((chosen > 127) & (chosen - others > 64)).astype(np.uint8)


def prepare_columbia(
    root: Path, out_dir: Path, report: Report, tampered_channel: int = 1
) -> list:
    """Columbia uncompressed: `4cam_auth/`, `4cam_splc/` and `4cam_splc/edgemask/` (see
    `columbia_mask` for how the region mask is derived; written under `masks/columbia/`)."""
    auth, splc = find_dir(root, "4cam_auth"), find_dir(root, "4cam_splc")
    if auth is None or splc is None:
        report.errors.append(f"no 4cam_auth/ and 4cam_splc/ folders under {root}")
        return []
    rows = [row(p, 0, "columbia") for p in list_images(auth)]
    edge_dir = splc / "edgemask"
    for image in list_images(splc):
        candidates = sorted(edge_dir.glob(f"{image.stem}_edgemask.*")) if edge_dir.is_dir() else []
        if not candidates:
            report.unmatched_images.append(str(image))
            report.excluded.append({"image": str(image), "reason": _NO_MASK, "kept": "no"})
            continue
        try:
            mask = columbia_mask(load_image(candidates[0]), tampered_channel)
        except ImageReadError as err:
            report.errors.append(str(err))
            continue
        if not mask.any():
            report.warnings.append(f"{candidates[0].name}: no spliced region found in the edgemask")
        path = write_binary_png(mask, out_dir / "masks" / "columbia" / f"{image.stem}.png")
        rows.append(row(image, 1, "columbia", path))
        report.add("masks_derived")
    report.notes.append("ground truth = spliced region derived from the colour-coded edgemask")
    return rows


def prepare_coverage(root: Path, out_dir: Path, report: Report) -> list:
    """COVERAGE: `image/N.tif` authentic, `image/Nt.tif` tampered, `mask/Nforged.tif` the ground
    truth; masks of another size than their image are reported (the loader resizes them)."""
    image_dir, mask_dir = find_dir(root, "image"), find_dir(root, "mask")
    if image_dir is None or mask_dir is None:
        report.errors.append(f"no image/ and mask/ folders under {root}")
        return []
    rows = []
    images = {p.stem: p for p in list_images(image_dir)}
    pairs = sorted((s for s in images if s.isdigit()), key=int)
    for pair in pairs:
        rows.append(row(images[pair], 0, "coverage", pair=pair))
        tampered = images.get(f"{pair}t")
        if tampered is None:
            report.warnings.append(f"pair {pair}: no tampered image {pair}t")
            continue
        masks = sorted(mask_dir.glob(f"{pair}forged.*"))
        if not masks:
            report.unmatched_images.append(str(tampered))
            report.excluded.append({"image": str(tampered), "reason": _NO_MASK, "kept": "no"})
            continue
        tampered_hw, mask_hw = image_hw(tampered), image_hw(masks[0])
        if tampered_hw != mask_hw:
            report.size_mismatches.append({
                "pair": pair, "image": str(tampered), "mask": str(masks[0]),
                "image_size": list(tampered_hw), "mask_size": list(mask_hw),
            })
        rows.append(row(tampered, 1, "coverage", masks[0], pair=pair))
    lone = sorted(s for s in images if not s.isdigit() and s[:-1] not in pairs)
    report.warnings += [f"{images[s].name}: tampered image without its authentic pair" for s in lone]
    return rows


def _find_reference(root: Path) -> Path | None:
    for pattern in ("*manipulation-ref.csv", "*-ref.csv"):
        found = sorted(p for p in root.rglob(pattern) if "reference" in p.parts)
        if found:
            return found[0]
    return None


def prepare_nist16(
    root: Path, out_dir: Path, report: Report, reference: str | None = None,
    include_authentic: bool = False,
) -> list:
    """NIST Nimble 2016 (NC2016_Test): the reference CSV (`|`-separated, `IsTarget`,
    `ProbeFileName`, `ProbeMaskFileName`). NIST masks mark the manipulated region in black: they are
    inverted into `masks/nist16/`. Only the target probes are kept unless `include_authentic`
    (the paper counts no NIST16 authentic images)."""
    ref = Path(reference) if reference else _find_reference(root)
    if ref is None or not ref.is_file():
        report.errors.append(f"no NC2016 reference CSV (reference/manipulation/*-ref.csv) under {root}")
        return []
    table = pd.read_csv(ref, sep="|", dtype=str, keep_default_na=False)
    needed = {"ProbeFileName", "ProbeMaskFileName", "IsTarget"}
    if not needed <= set(table.columns):
        report.errors.append(f"{ref}: missing column(s) {sorted(needed - set(table.columns))}")
        return []
    base = ref.parents[2] if len(ref.parents) > 2 else root

    def resolve(name: str) -> Path | None:
        for folder in (base, root):
            if name and (folder / name).is_file():
                return folder / name
        return None

    rows, seen = [], set()
    for record in table.itertuples(index=False):
        probe_name = record.ProbeFileName
        if probe_name in seen:
            continue
        seen.add(probe_name)
        probe = resolve(probe_name)
        if probe is None:
            report.errors.append(f"probe listed in {ref.name} not found: {probe_name}")
            continue
        if record.IsTarget.strip().upper() != "Y":
            report.add("authentic_found")
            if include_authentic:
                rows.append(row(probe, 0, "nist16"))
            continue
        report.add("tampered_found")
        mask_file = resolve(record.ProbeMaskFileName)
        if mask_file is None:
            report.unmatched_images.append(str(probe))
            report.excluded.append({"image": str(probe), "reason": _NO_MASK, "kept": "no"})
            continue
        try:
            inverted = 1 - load_mask(mask_file)
        except ImageReadError as err:
            report.errors.append(str(err))
            continue
        path = write_binary_png(inverted, out_dir / "masks" / "nist16" / f"{probe.stem}.png")
        rows.append(row(probe, 1, "nist16", path))
    if not include_authentic:
        report.notes.append("non-target probes left out (include_authentic=True keeps them)")
    return rows
