"""`sdfl evaluate` and `sdfl predict`: argument parsing only; the work is in `evaluate` and
`sdfl_lib.predict`."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

_SUMMARY_KEYS = (
    "paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc",
    "standard/pixel_f1@{t}", "standard/pixel_f1@best", "standard/image_f1@{t}",
    "standard/image_auc",
)  # fmt: skip


def _model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint", help="a checkpoint (.pt) written by sdfl train / make_checkpoint"
    )
    src.add_argument(
        "--method", help="a classical baseline (ela, noise) or a registered model name"
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: the model's own, else 512)",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold (0.5)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
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
    p.add_argument("--calibration", type=int, default=8, help="int8 calibration images (8)")


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
        help="e.g. jpeg,blur,noise,resize or jpeg:90/70/50,resize:0.5/1.5",
    )
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    ev.add_argument(
        "--mask-policy",
        choices=("resize", "skip", "fail"),
        default="resize",
        help="masks of another size than their image (default: nearest resize)",
    )
    ev.add_argument("--no-maps", action="store_true", help="do not save predicted maps")
    ev.add_argument("--no-figures", action="store_true", help="do not draw figures")
    ev.add_argument("--no-resume", action="store_true", help="start over in --out")
    ev.set_defaults(func=_evaluate)

    pr = subparsers.add_parser("predict", help="probability map, overlay and score of images")
    pr.add_argument("input", help="an image, or a folder of images")
    _model_args(pr)
    pr.add_argument("--out", required=True, help="output folder")
    pr.set_defaults(func=_predict)


def _evaluate(args: argparse.Namespace) -> int:
    from sdfl_lib.evaluate.engine import evaluate
    from sdfl_lib.models.inference import InferenceUnavailable

    try:
        metrics = _run_evaluate(evaluate, args)
    except InferenceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return _print_metrics(args, metrics)


def _run_evaluate(evaluate, args: argparse.Namespace) -> dict:
    return evaluate(
        args.checkpoint, args.manifest, args.out, protocol=args.protocol,
        subsets=args.subsets.split(",") if args.subsets else None, robustness=args.robustness,
        batch_size=args.batch_size, workers=args.workers, image_size=args.image_size,
        threshold=args.threshold, mask_policy=args.mask_policy, method=args.method,
        device=args.device, save_maps=not args.no_maps, resume=not args.no_resume,
        figures=not args.no_figures, backend=args.backend, int8=args.int8,
        calibration=args.calibration,
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
        print(f"masks of another size than their image: {mm['count']} ({mm['policy']}):")
        for r in mm["images"]:
            print(f"  {r['mask']}: mask {r['mask_size']}, image {r['image_size']}")
    if metrics["errors"]["count"]:
        print(f"unreadable files: {metrics['errors']['count']} (listed in metrics.json)")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def inference_model_for(model, args: argparse.Namespace, images: list[Path]):
    """The model predict runs (`--backend`, `--int8`), int8 calibrated on the first
    `--calibration` readable `images`."""
    from sdfl_lib.models.inference import inference_model
    from sdfl_lib.predict import calibration_batch, model_image_size

    size = model_image_size(model, args.image_size)
    calibration = calibration_batch(images[: args.calibration], size) if args.int8 else None
    return inference_model(
        model, args.backend, args.int8, size, checkpoint=args.checkpoint, calibration=calibration
    )


def _predict(args: argparse.Namespace) -> int:
    from sdfl_lib.data import ImageReadError
    from sdfl_lib.models.inference import InferenceUnavailable
    from sdfl_lib.predict import predict, resolve_model

    src = Path(args.input)
    if src.is_dir():
        from PIL import Image

        known = set(Image.registered_extensions())
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in known)
        if not files:
            print(f"error: no image files in {src}", file=sys.stderr)
            return 1
    elif src.is_file():
        files = [src]
    else:
        print(f"error: no such file or folder: {src}", file=sys.stderr)
        return 1
    model = resolve_model(args.checkpoint, args.method, args.device)
    try:
        model = inference_model_for(model, args, files)
    except InferenceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    # Output names drop the extension unless two inputs in one folder share a stem (a.jpg, a.png).
    stems = Counter((f.parent, f.stem) for f in files)
    failed = 0
    for f in files:
        try:
            result = predict(f, model, image_size=args.image_size, threshold=args.threshold)
        except ImageReadError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        rel = f.relative_to(src) if src.is_dir() else Path(f.name)
        out_dir = Path(args.out) / rel.parent
        paths = result.save(out_dir, rel.stem if stems[(f.parent, f.stem)] == 1 else rel.name)
        print(f"{f}: score {result.score:.4f} -> {result.decision} ({paths['json']})")
    if failed:
        print(f"{failed} of {len(files)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0
