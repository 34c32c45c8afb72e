"""`sdfl train --config params/X.yaml [key=value ...] [--nproc N] [--resume RUN_DIR]`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from sdfl_lib.errors import positive_int


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


def _torchrun_command(argv: list[str], nproc: int) -> list[str]:
    """The command that re-runs this `sdfl train` under torchrun with N local processes."""
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item == "--nproc":
            skip = True
            continue
        if item.startswith("--nproc="):
            continue
        rest.append(item)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "sdfl_lib.cli", *rest]


def _run(args: argparse.Namespace) -> int:
    from sdfl_lib.train.config import describe

    if args.help_config:
        print("training config keys (name, type, default, meaning):")
        print(describe())
        return 0
    if not (args.config or args.resume or args.overrides):
        print("sdfl train: give --config FILE and/or key=value items (or --resume RUN_DIR);"
              " --help-config lists the keys", file=sys.stderr)
        return 2
    if args.nproc > 1 and "RANK" not in os.environ:
        argv = sys.argv[1:] if sys.argv[1:2] == ["train"] else ["train", *_args_to_argv(args)]
        return subprocess.call(_torchrun_command(argv, args.nproc))
    from sdfl_lib.train.engine import fit

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


def launch(config, nproc: int, resume: str | os.PathLike | None = None) -> int:
    """Train `config` (a TrainConfig) in `nproc` processes on this machine with torchrun, showing
    their output as it comes (in a notebook too, where a child's own output would not appear).
    Raises RuntimeError naming the exit status when the run fails."""
    import tempfile

    out = os.fspath(config.out_dir)
    os.makedirs(out, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=out, prefix="launch-", delete=False) as f:
        path = f.name
    config.dump(path)
    argv = ["train", "--config", path] + (["--resume", os.fspath(resume)] if resume else [])
    try:
        proc = subprocess.Popen(_torchrun_command(argv, nproc), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        # Chunks, not lines: progress bars redraw with carriage returns.
        while chunk := os.read(proc.stdout.fileno(), 4096):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        code = proc.wait()
    finally:
        os.unlink(path)
    if code:
        raise RuntimeError(f"training with {nproc} processes failed (torchrun exit status {code})")
    return code
