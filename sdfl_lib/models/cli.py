"""`sdfl weights list` and `sdfl weights download NAME`: the paper's published checkpoints."""

from __future__ import annotations

import argparse

import pandas as pd

from sdfl_lib.errors import positive_number


def register(subparsers) -> None:
    """Adds `weights list` and `weights download` to the `sdfl` command."""
    w = subparsers.add_parser("weights", help="the paper's published checkpoints by name")
    sub = w.add_subparsers(dest="weights_command", metavar="SUBCOMMAND")
    w.set_defaults(func=lambda args: (w.print_help(), 2)[1])
    ls = sub.add_parser(
        "list", help="table3-1 ... table3-9: model, training set, published numbers"
    )
    ls.set_defaults(func=_list)
    dl = sub.add_parser("download", help="fetch named weights into the cache (resumable)")
    dl.add_argument("name", help="e.g. table3-9 (see `sdfl weights list`)")
    dl.add_argument("--timeout", type=positive_number, default=30.0,
                    help="seconds per network wait (30)")
    dl.set_defaults(func=_download)


def _list(args: argparse.Namespace) -> int:
    # why: not loaded by `sdfl --help`
    from sdfl_lib.models.weights import TRAINING_SETS, WEIGHTS, weights_table

    print(pd.DataFrame(weights_table()).to_string(index=False))
    print(
        "numbers: the paper's pixel F1 / image F1 / combined F1 / AUC on each test set "
        f"(S, D = {TRAINING_SETS['S']}, {TRAINING_SETS['D']}); paper protocol"
    )
    print(f"cache: {next(iter(WEIGHTS.values())).path.parent}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from sdfl_lib.models.weights import download_weights  # why: not loaded by `sdfl --help`

    path = download_weights(args.name, timeout=args.timeout)  # errors: the one handler
    print(f"{args.name}: {path} (SHA-256 in {path.name}.sha256)")
    return 0
