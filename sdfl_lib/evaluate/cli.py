"""`sdfl evaluate` and `sdfl predict`: argument parsing only; the work is in `evaluate` and
`sdfl_lib.predict`."""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from sdfl_lib.errors import EXIT_UNSCORED, non_negative_int, positive_int, probability

_SUMMARY_KEYS = (
    "paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc",
    "standard/pixel_f1@{t}", "standard/pixel_f1@best", "standard/image_f1@{t}",
    "standard/image_auc",
)  # fmt: skip


def _band(text: str) -> str:
    """argparse type: a boundary band, B or IN:OUT pixels."""
    from sdfl_lib.metrics.counts import band_label

    try:
        band_label(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        help="a checkpoint (.pt) written by sdfl train, an authors' .pth, or the name of the "
        "paper's published weights (table3-1 ... table3-9, see `sdfl weights list`)",
    )
    src.add_argument(
        "--method", help="a classical baseline (ela, noise) or a registered model name"
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="model input size (default: the model's own, else 512)",
    )
    p.add_argument(
        "--threshold", type=probability, default=0.5, help="decision threshold in [0, 1] (0.5)"
    )
    p.add_argument("--device", default="auto", help="auto (this process's GPU if any, else cpu), cpu, cuda or cuda:N")
    p.add_argument(
        "--backend",
        choices=("auto", "eager", "optimized", "compile", "onnx"),
        default="auto",
        help="inference route (default auto: ONNX Runtime on the CPU for ours/upernet when "
        "installed, exported once and cached next to the checkpoint; else batch norm folded, "
        "channels-last PyTorch)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 static quantization (onnx backend), calibrated on the first "
        "--calibration images of the run; refused when its masks stray from fp32's",
    )
    p.add_argument("--calibration", type=positive_int, default=32, help="int8 calibration images (32)")


def register(subparsers) -> None:
    """Adds `evaluate` and `predict` to the `sdfl` command."""
    ev = subparsers.add_parser("evaluate", help="evaluate a model or method on a manifest")
    _model_args(ev)
    ev.add_argument("--manifest", required=True, help="manifest CSV (image,mask,edge,label,source)")
    ev.add_argument("--out", required=True, help="output folder")
    ev.add_argument("--protocol", choices=("paper", "standard", "both"), default="both")
    ev.add_argument(
        "--subsets",
        default=None,
        help="comma-separated subsets (both, shallowfakes, deepfakes, source/NAME)",
    )
    ev.add_argument(
        "--robustness",
        default=None,
        help="e.g. jpeg,blur,noise_sigma,noise_var,resize or jpeg:90/70/50,resize:0.5/1.5 "
        "(noise_sigma: levels are standard deviations; noise_var: variances, as IMDL-BenCo)",
    )
    ev.add_argument("--batch-size", type=positive_int, default=8)
    ev.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader workers")
    ev.add_argument(
        "--mask-policy",
        choices=("resize", "skip", "fail"),
        default="resize",
        help="standard protocol: masks of another size than their image (default: nearest "
        "resize); the paper protocol always leaves them out of paper/pixel_f1",
    )
    ev.add_argument(
        "--boundary-band",
        type=_band,
        default="0",
        metavar="PX",
        help="also report standard pixel F1 leaving out pixels within PX of the mask's boundary, "
        "or IN:OUT pixels inside/outside it (TruFor: 7:5); keys standard/pixel_f1_band{PX}px@t; "
        "default 0: off",
    )
    ev.add_argument("--no-maps", action="store_true", help="do not save predicted maps")
    ev.add_argument("--no-figures", action="store_true", help="do not draw figures")
    ev.add_argument("--no-resume", action="store_true", help="start over in --out")
    ev.add_argument(
        "--allow-unscored",
        action="store_true",
        help="exit 0 even when some rows could not be scored (default: exit 3; they are listed)",
    )
    ev.set_defaults(func=_evaluate)

    pr = subparsers.add_parser("predict", help="probability map, overlay and score of images")
    pr.add_argument("input", help="an image, or a folder of images")
    _model_args(pr)
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument(
        "--allow-unscored",
        action="store_true",
        help="exit 0 even when some files could not be read (default: exit 3; they are listed)",
    )
    pr.set_defaults(func=_predict)


def _evaluate(args: argparse.Namespace) -> int:
    from sdfl_lib.evaluate.engine import evaluate

    # A backend or int8 that cannot run here ends in one line (InferenceUnavailable: exit 1).
    return _print_metrics(args, _run_evaluate(evaluate, args))


def _run_evaluate(evaluate, args: argparse.Namespace) -> dict:
    return evaluate(
        args.checkpoint, args.manifest, args.out, protocol=args.protocol,
        subsets=args.subsets.split(",") if args.subsets else None, robustness=args.robustness,
        batch_size=args.batch_size, workers=args.workers, image_size=args.image_size,
        threshold=args.threshold, mask_policy=args.mask_policy, method=args.method,
        device=args.device, save_maps=not args.no_maps, resume=not args.no_resume,
        figures=not args.no_figures, boundary_band=args.boundary_band, backend=args.backend,
        int8=args.int8, calibration=args.calibration,
    )  # fmt: skip


def _print_metrics(args: argparse.Namespace, metrics: dict) -> int:
    keys = [k.format(t=f"{args.threshold:g}") for k in _SUMMARY_KEYS]
    for subset, m in metrics["subsets"].items():
        shown = ", ".join(
            f"{k}={'undefined' if m[k] is None else format(m[k], '.4f')}" for k in keys if k in m
        )
        print(f"[{subset}] n={m['count/images']}: {shown}")
    mm = metrics["mask_size_mismatch"]
    if mm["count"]:
        print(
            f"masks of another size than their image: {mm['count']} (standard protocol: "
            f"{mm['policy']}; paper protocol: left out of paper/pixel_f1):"
        )
        for r in mm["images"]:
            print(f"  {r['mask']}: mask {r['mask_size']}, image {r['image_size']}")
    print(f"report: {Path(args.out) / 'report.md'}")
    unscored = metrics["errors"]["count"]
    if unscored:
        print(
            f"sdfl evaluate: {unscored} row(s) could not be scored and are left out of every "
            f"metric; listed under 'errors' in {Path(args.out) / 'metrics.json'} and in report.md",
            file=sys.stderr,
        )
        for e in metrics["errors"]["images"][:5]:
            print(f"  row {e['row']}: {e['error']}", file=sys.stderr)
        return 0 if args.allow_unscored else EXIT_UNSCORED
    return 0


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


def inference_model_for(
    model, args: argparse.Namespace, images: list[Path], checkpoint: Path | None = None
):
    """The model predict runs (`--backend`, `--int8`), int8 calibrated on the first
    `--calibration` readable `images`; exports are cached beside the `checkpoint` file."""
    from sdfl_lib.models.inference import inference_model
    from sdfl_lib.predict import calibration_batch, model_image_size

    size = model_image_size(model, args.image_size)
    calibration = calibration_batch(images[: args.calibration], size) if args.int8 else None
    return inference_model(
        model, args.backend, args.int8, size, checkpoint=checkpoint,
        calibration=calibration, images=len(images),
    )  # fmt: skip


def _predict(args: argparse.Namespace) -> int:
    from sdfl_lib.data import ImageReadError
    from sdfl_lib.errors import DataError
    from sdfl_lib.predict import predict, resolve_model

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
    checkpoint = None
    if args.checkpoint:  # a weights name (table3-N) is resolved once, for the model and export
        from sdfl_lib.models.weights import resolve_checkpoint

        checkpoint = resolve_checkpoint(args.checkpoint)
    model = resolve_model(checkpoint, args.method, args.device)
    model = inference_model_for(model, args, files, checkpoint)
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
