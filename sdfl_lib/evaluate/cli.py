"""`sdfl evaluate` and `sdfl compare`: argument parsing only; the work is in
`sdfl_lib.evaluate.engine` and `sdfl_lib.evaluate.comparison`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdfl_lib.errors import EXIT_UNSCORED, non_negative_int, positive_int
from sdfl_lib.evaluate.config import add_setting_args, config_from_args
from sdfl_lib.inference.options import add_model_args

_SUMMARY_KEYS = (
    "paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc",
    "standard/pixel_f1@{t}", "standard/pixel_f1@best", "standard/image_f1@{t}",
    "standard/image_auc",
)  # fmt: skip


def register(subparsers) -> None:
    """Adds `evaluate` and `compare` to the `sdfl` command; evaluate's options are the model's,
    then one per setting of `EvalConfig` that has a flag (its help and default from there)."""
    ev = subparsers.add_parser("evaluate", help="evaluate a model or method on a manifest")
    add_model_args(ev)
    ev.add_argument("--manifest", required=True, help="manifest CSV (image,mask,edge,label,source)")
    ev.add_argument("--out", required=True, help="output folder")
    add_setting_args(ev)
    ev.add_argument(
        "--allow-unscored",
        action="store_true",
        help="exit 0 even when some rows could not be scored (default: exit 3; they are listed)",
    )
    ev.set_defaults(func=_evaluate)
    _register_compare(subparsers)


def _register_compare(subparsers) -> None:
    cp = subparsers.add_parser(
        "compare",
        help="paired comparison of evaluations on the same images",
        description="Each RUN against REFERENCE (evaluation folders written by sdfl evaluate) on "
        "the images both scored: every headline metric's difference (RUN minus REFERENCE) with a "
        "paired-bootstrap 95 %% interval, a two-sided p-value and a verdict (better, worse, "
        "within noise). Images scored in one run only are left out and named.",
    )
    cp.add_argument("reference", help="the evaluation folder the others are compared with")
    cp.add_argument("runs", nargs="+", metavar="run", help="evaluation folder(s) to compare")
    cp.add_argument("--subsets", default="both",
                    help="comma-separated subsets (default both; 'all': every non-empty one)")
    cp.add_argument("--ci", type=positive_int, default=1000, metavar="N",
                    help="bootstrap resamples (default 1000)")
    cp.add_argument("--seed", type=non_negative_int, default=0, help="resampling seed (0)")
    cp.add_argument("--out", default=None, help="also write the comparison to this JSON file")
    cp.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from sdfl_lib.evaluate.comparison import (  # why: not loaded by `sdfl --help`
        compare,
        comparison_text,
    )

    subsets = None if args.subsets == "all" else args.subsets.split(",")
    result = compare(args.reference, *args.runs, subsets=subsets, resamples=args.ci, seed=args.seed)
    print(comparison_text(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        records = result.table.astype(object).where(result.table.notna(), None).to_dict("records")
        out.write_text(json.dumps({"comparisons": records, "left_out": result.left_out}, indent=1) + "\n")
        print(f"written: {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sdfl_lib.evaluate.engine import evaluate  # why: not loaded by `sdfl --help`

    # A backend or int8 that cannot run here ends in one line (InferenceUnavailable: exit 1).
    metrics = evaluate(args.checkpoint, args.manifest, args.out, config=config_from_args(args))
    return _print_metrics(args, metrics)


def _print_metrics(args: argparse.Namespace, metrics: dict) -> int:
    from sdfl_lib.metrics.uncertainty import format_ci  # why: not loaded by `sdfl --help`

    keys = [k.format(t=f"{args.threshold:g}") for k in _SUMMARY_KEYS]
    for subset, m in metrics["subsets"].items():
        ci = m.get("intervals") or {}
        shown = ", ".join(
            f"{k}={format_ci(m[k], ci.get(k, {}).get('low'), ci.get(k, {}).get('high'), 4)}"
            for k in keys
            if k in m
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
