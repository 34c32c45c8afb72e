"""Training in several processes on this machine: torchrun re-running `sdfl train`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
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


def launch(config, nproc: int, resume: str | os.PathLike | None = None) -> int:
    """Train `config` (a TrainConfig) in `nproc` processes on this machine with torchrun, showing
    their output as it comes (in a notebook too, where a child's own output would not appear).
    Raises RuntimeError naming the exit status when the run fails."""
    out = os.fspath(config.out_dir)
    os.makedirs(out, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=out, prefix="launch-", delete=False) as f:
        path = f.name
    config.dump(path)
    argv = ["train", "--config", path] + (["--resume", os.fspath(resume)] if resume else [])
    try:
        proc = subprocess.Popen(torchrun_command(argv, nproc), stdout=subprocess.PIPE,
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
