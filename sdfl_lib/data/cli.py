"""`sdfl data ...`: prepare, split, validate, convert, explore, download and synth sub-commands.

Only argument parsing lives here; each handler calls the library function of the same stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdfl_lib.data.registry import DATASETS, prepare_names
from sdfl_lib.errors import UsageError, non_negative_int, positive_int


def _prepare(args: argparse.Namespace) -> int:
    from sdfl_lib.data.prepare import prepare, report_path  # why: not loaded by `sdfl --help`

    opts = {
        key: value
        for key, value in (
            ("real_frames", args.real_frames),
            ("fake_frames", args.fake_frames),
            ("methods", args.methods),
            ("compression", args.compression),
            ("limit", args.limit),
            ("edge_width", args.edge_width),
            ("drop_unmatched", args.drop_unmatched or None),
        )
        if value is not None
    }
    if args.drop_unmatched and args.name not in ("casia1", "casia2"):
        raise UsageError(f"--drop-unmatched applies to casia1 and casia2, not {args.name}")
    report = prepare(args.name, args.root, args.out, overwrite=args.overwrite, **opts)
    if report["errors"]:
        # The rows that could be prepared are written; what failed goes where errors go.
        print(f"sdfl data prepare: error: {len(report['errors'])} problem(s) while preparing "
              f"(first: {report['errors'][0]}); the manifest holds the "
              f"{report['counts']['rows']} rows that could be prepared, "
              f"{report_path(args.out)} lists every problem", file=sys.stderr)
        return 1
    return 0


def _parse_ratios(text: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(p) for p in text.replace(",", ":").split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"ratios look like 8:1:1, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(f"three non-negative ratios like 8:1:1, got {text!r}")
    return parts


def _split(args: argparse.Namespace) -> int:
    from sdfl_lib.data.split import split_manifest_file  # why: not loaded by `sdfl --help`

    paths = split_manifest_file(
        args.manifest,
        args.out_dir,
        preset=args.preset,
        ratios=args.ratios,
        real_ratios=args.real_ratios,
        fake_ratios=args.fake_ratios,
        seed=args.seed,
        stratify=args.stratify,
    )
    for part, path in paths.items():
        print(f"{part}: {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    # why: not loaded by `sdfl --help`
    from sdfl_lib.data.validate import print_report, validate_manifest
    from sdfl_lib.runtime import atomic_write

    report = validate_manifest(
        args.manifest, mask_policy=args.mask_policy, max_pixels=args.max_pixels
    )
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
        print(f"report written to {args.json}")
    return 1 if report["errors"] else 0


def _read_any(path: str, source: str):
    # why: not loaded by `sdfl --help`
    from sdfl_lib.data.manifest import read_authors_list, read_manifest

    if Path(path).suffix.lower() == ".csv":
        df = read_manifest(path)
        if source:
            df["source"] = source
        return df
    return read_authors_list(path, source=source)


def _convert(args: argparse.Namespace) -> int:
    # why: not loaded by `sdfl --help`
    from sdfl_lib.data.manifest import replace_prefix, write_authors_list, write_manifest

    df = _read_any(args.input, args.source)
    if not len(df):
        from sdfl_lib.data.manifest import ManifestError  # why: not loaded by `sdfl --help`

        raise ManifestError(f"{args.input} holds no rows: nothing to convert")
    for old, new in args.replace_prefix or []:
        df, changed = replace_prefix(df, old, new)
        print(f"replaced prefix {old!r} -> {new!r} in {changed} path(s)")
        if changed == 0:
            print(f"warning: no path starts with {old!r}", file=sys.stderr)
    if Path(args.output).suffix.lower() == ".csv":
        write_manifest(df, args.output, relative=not args.absolute)
    else:
        write_authors_list(df, args.output, relative=args.relative)
    print(f"{len(df)} rows written to {args.output}")
    return 0


def _explore(args: argparse.Namespace) -> int:
    from sdfl_lib.data.explore import save_figures  # why: not loaded by `sdfl --help`
    from sdfl_lib.errors import EXIT_UNSCORED  # why: not loaded by `sdfl --help`

    skipped: list[dict] = []
    paths = save_figures(args.manifest, args.out_dir, examples=args.examples, seed=args.seed,
                         skipped=skipped)
    for path in paths:
        print(path)
    if skipped:
        print(f"sdfl data explore: {len(skipped)} file(s) left out of the figures, listed in "
              f"{Path(args.out_dir) / 'unreadable.csv'}; first: {skipped[0]['error']}",
              file=sys.stderr)
        return EXIT_UNSCORED
    return 0


def _download(args: argparse.Namespace) -> int:
    from sdfl_lib.data.download import download  # why: not loaded by `sdfl --help`

    kwargs = {k: v for k, v in (("url", args.url), ("sha256", args.sha256)) if v}
    result = download(args.name, args.to, **kwargs)
    print(result)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from sdfl_lib.data.synth import synthesize  # why: not loaded by `sdfl --help`

    kwargs = {"size": args.size} if args.size else {}
    print(synthesize(args.out, args.n, args.seed, **kwargs))
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="make a manifest from a data set's own folder layout")
    p.add_argument("name", help=", ".join(prepare_names()))
    p.add_argument("--root", required=True, help="the data set's folder")
    p.add_argument("--out", required=True, help="manifest CSV to write (report JSON beside it)")
    p.add_argument("--real-frames", type=positive_int, help="ffpp: frames per real video (default 7)")
    p.add_argument("--fake-frames", type=positive_int, help="ffpp: frames per fake video (default 2)")
    p.add_argument("--methods", nargs="+", help="ffpp / icnc-deepfakes: manipulation methods")
    p.add_argument("--compression", help="ffpp: c0, c23 or c40 (default c23)")
    p.add_argument("--limit", type=positive_int, help="ffpp: at most this many videos per method")
    p.add_argument("--edge-width", type=positive_int, help="band width of generated edge maps")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a manifest that exists at --out (default: refuse)")
    p.add_argument("--drop-unmatched", action="store_true",
                   help="casia1/casia2: leave out tampered images without a mask (default: kept "
                        "as label-only fakes, listed in the report)")
    p.set_defaults(func=_prepare)


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="seeded, stratified train/val/test manifests")
    p.add_argument("manifest")
    p.add_argument("--out-dir", required=True)
    p.add_argument(
        "--preset", choices=("shallowfakes", "deepfakes"),
        help="the paper's ratios: 8:1:1, or 6:2:2 real and 5:2:3 fake",
    )
    p.add_argument("--ratios", type=_parse_ratios, help="train:val:test for every class")
    p.add_argument("--real-ratios", type=_parse_ratios, help="train:val:test for label 0")
    p.add_argument("--fake-ratios", type=_parse_ratios, help="train:val:test for label 1")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--stratify", choices=("label", "label+source"), default="label+source",
        help="groups split separately (default label+source)",
    )
    p.set_defaults(func=_split)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check every row of a manifest; non-zero exit on errors")
    p.add_argument("manifest")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--mask-policy", choices=("resize", "skip", "fail"), default="resize")
    p.add_argument("--max-pixels", type=positive_int, help="decompression-bomb limit (PIL's by default)")
    p.set_defaults(func=_validate)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="CSV manifest <-> authors' paths_*.txt, prefix rewriting")
    p.add_argument("input", help=".csv manifest or authors' .txt list")
    p.add_argument("output", help=".csv manifest or authors' .txt list")
    p.add_argument(
        "--replace-prefix", nargs=2, action="append", metavar=("OLD", "NEW"),
        help="rewrite paths starting with OLD (repeatable)",
    )
    p.add_argument("--source", default="", help="source name for rows read from a .txt list")
    p.add_argument("--absolute", action="store_true", help="CSV output: keep absolute paths")
    p.add_argument("--relative", action="store_true", help=".txt output: relative paths")
    p.set_defaults(func=_convert)


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="figures of a manifest: counts, sizes, mask areas, examples")
    p.add_argument("manifest")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--examples", type=non_negative_int, default=8)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=_explore)


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download and extract a data set")
    p.add_argument("name", help=", ".join(DATASETS))
    p.add_argument("--to", required=True, help="target folder")
    p.add_argument("--url", help="another address for the archive")
    p.add_argument("--sha256", help="expected SHA-256 of the archive")
    p.set_defaults(func=_download)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthetic forgeries for offline runs")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=positive_int, required=True)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--size", type=positive_int, help="image side in pixels")
    p.set_defaults(func=_synth)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `sdfl data ...` and its sub-commands."""
    data = subparsers.add_parser("data", help="prepare, split, validate and explore data sets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])
    # The order here is the order `sdfl data --help` lists them in.
    for add in (_add_prepare, _add_split, _add_validate, _add_convert, _add_explore,
                _add_download, _add_synth):
        add(sub)
