"""`sdfl predict`: probability map, overlay and score of an image or a folder of images;
argument parsing and the files written. The work is `sdfl_lib.predict.engine.predict`."""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from torch import nn

from sdfl_lib.data import ImageReadError
from sdfl_lib.errors import EXIT_UNSCORED, DataError
from sdfl_lib.inference import calibration_batch, inference_model, model_image_size, resolve_model
from sdfl_lib.inference.options import add_model_args


def register(subparsers) -> None:
    """Adds `predict` to the `sdfl` command."""
    pr = subparsers.add_parser("predict", help="probability map, overlay and score of images")
    pr.add_argument("input", help="an image, or a folder of images")
    add_model_args(pr)
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument(
        "--allow-unscored",
        action="store_true",
        help="exit 0 even when some files could not be read (default: exit 3; they are listed)",
    )
    pr.set_defaults(func=_predict)


def _output_names(files: list[Path], root: Path | None) -> dict[Path, Path]:
    """Output name (relative, without suffix) of every input: the stem, or the whole file name
    where two inputs of one folder would share it (a.jpg, a.png, a.jpg.png), numbered if still
    equal, so that no prediction overwrites another."""
    rel = {f: (f.relative_to(root) if root else Path(f.name)) for f in files}
    stems = Counter(r.with_name(r.stem) for r in rel.values())
    names = {f: r.with_name(r.stem) if stems[r.with_name(r.stem)] == 1 else r for f, r in rel.items()}
    # A stem can still equal another file's whole name (a.png.jpg -> a.png, beside a.png).
    taken = Counter(names.values())
    for f in files:
        if taken[names[f]] > 1:
            names[f] = rel[f]
    seen: Counter = Counter()
    for f in files:
        seen[names[f]] += 1
        if seen[names[f]] > 1:
            names[f] = names[f].with_name(f"{names[f].name}.{seen[names[f]]}")
    return names


_OUTPUTS = ("*_map.png", "*_overlay.png", "*.json", "unreadable.csv")


def _inputs(src: Path, out: Path) -> tuple[list[Path], int]:
    """Every file under `src` (symlinks included, dangling ones too) but the outputs of a run
    into `out` (when `out` lies inside `src`), and how many outputs were left out: nothing is
    skipped unseen; what cannot be read is reported by the caller."""
    out = out.absolute()
    files, outputs = [], 0
    for p in sorted(src.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        inside = p.absolute() == out or out in p.absolute().parents
        if inside and any(p.match(pattern) for pattern in _OUTPUTS):
            outputs += 1  # a second run must not predict the first one's outputs
            continue
        files.append(p)
    return files, outputs


def inference_model_for(model: nn.Module, args: argparse.Namespace, images: list[Path]) -> nn.Module:
    """The model predict runs (`--backend`, `--int8`), int8 calibrated on the first
    `--calibration` readable `images`; exports are cached beside the model's checkpoint file."""
    size = model_image_size(model, args.image_size)
    calibration = calibration_batch(images[: args.calibration], size) if args.int8 else None
    return inference_model(
        model, args.backend, args.int8, size, calibration=calibration, images=len(images)
    )


def _predict(args: argparse.Namespace) -> int:
    from sdfl_lib.predict.engine import predict  # why: matplotlib (viz) only when predicting

    src, out = Path(args.input), Path(args.out)
    if src.is_dir():
        files, outputs = _inputs(src, out)
        if outputs:
            print(f"sdfl predict: {outputs} file(s) in {out} are outputs of an earlier run and "
                  "are not read as inputs", file=sys.stderr)
        if not files:
            raise DataError(f"no files in {src}")
    elif src.is_file():
        files = [src]
    else:
        raise DataError(f"no such file or folder: {src}")
    # A weights name (table3-N) is resolved once, inside; the model keeps its file for the export.
    model = resolve_model(args.checkpoint, args.method, args.device)
    model = inference_model_for(model, args, files)
    names = _output_names(files, src if src.is_dir() else None)
    failed = []
    for f in files:
        try:
            result = predict(f, model, image_size=args.image_size, threshold=args.threshold)
        except ImageReadError as err:
            if not src.is_dir():
                raise DataError(str(err)) from None  # one file asked for: a plain error
            cause = err.cause
            if f.is_symlink() and not f.exists():
                cause = "dangling symbolic link"
            elif not f.suffix:
                cause = f"no file extension, and not an image PIL can read ({cause})"
            failed.append({"file": str(f), "error": cause})
            continue
        name = names[f]
        paths = result.save(out / name.parent, name.name)
        print(f"{f}: score {result.score:.4f} -> {result.decision} ({paths['json']})")
    if not failed:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    listed = out / "unreadable.csv"
    with open(listed, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "error"])
        writer.writeheader()
        writer.writerows(failed)
    print(f"sdfl predict: {len(failed)} of {len(files)} file(s) could not be read, listed in "
          f"{listed}:", file=sys.stderr)
    for item in failed[:10]:
        print(f"  {item['file']}: {item['error']}", file=sys.stderr)
    return 0 if args.allow_unscored else EXIT_UNSCORED
