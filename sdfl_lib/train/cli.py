"""`sdfl train --config params/X.yaml [key=value ...] [--nproc N] [--resume RUN_DIR]`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from sdfl_lib.errors import UsageError, positive_int
from sdfl_lib.train.launch import torchrun_command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train a model (CPU, one GPU, or several processes with --nproc / torchrun / srun)",
        description="Train a model. The learning rate is the one for the global batch_size (all"
        " processes and accumulation steps together); the paper: batch_size=32 lr=1e-4.",
    )
    p.add_argument("--config", help="YAML file of training keys (a study file's `train:` section works)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config keys to change")
    p.add_argument("--nproc", type=positive_int, default=1, help="start N processes on this machine (torchrun)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its state.pt")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sdfl_lib.train.config import describe  # why: not loaded by `sdfl --help`

    if args.help_config:
        print("training config keys (name, type, default, meaning):")
        print(describe())
        return 0
    if not (args.config or args.resume or args.overrides):
        raise UsageError("give --config FILE and/or key=value items (or --resume RUN_DIR);"
                         " --help-config lists the keys")
    if args.nproc > 1 and "RANK" not in os.environ:
        argv = sys.argv[1:] if sys.argv[1:2] == ["train"] else ["train", *_args_to_argv(args)]
        return subprocess.call(torchrun_command(argv, args.nproc))
    from sdfl_lib.train.engine import fit  # why: not loaded by `sdfl --help`

    # Bad keys and values (exit 2), bad data and a failed run (exit 1) end in one line: `sdfl_lib.cli`.
    result = fit(args.config or ({} if not args.resume else None), resume=args.resume,
                 overrides=args.overrides)
    if result.status == "interrupted":
        return 128 + result.signal
    return 0


def _args_to_argv(args: argparse.Namespace) -> list[str]:
    """Rebuild the command line from parsed arguments (when called as a function, not a script)."""
    argv = []
    if args.config:
        argv += ["--config", args.config]
    if args.resume:
        argv += ["--resume", args.resume]
    return argv + list(args.overrides)
