"""One process or many: read torchrun / SLURM variables, start NCCL (GPU) or gloo (CPU)."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sdfl_lib.runtime import resolve_device


@dataclass
class DistEnv:
    """Where this process stands: rank, world size, local rank, its device and backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when gradients are averaged across several processes."""
        return self.world_size > 1


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list such as `gpu[03-05,9],cpu1` -> `gpu03`."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def launch_env(environ: dict[str, str] | None = None) -> tuple[int, int, int, dict[str, str]]:
    """(rank, world_size, local_rank, variables to set) from torchrun or `srun` variables.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Under `srun` (one task per
    GPU) SLURM_PROCID, SLURM_STEP_NUM_TASKS and SLURM_LOCALID give the same; MASTER_ADDR defaults
    to the first node of the job and MASTER_PORT to 29500 + job id mod 1000. A plain `python`
    (also inside an `salloc`/`sbatch` allocation, without `srun`) is one process.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
        return rank, world, local, {}
    if "SLURM_PROCID" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"])
        local = int(env.get("SLURM_LOCALID", "0"))
        extra = {}
        if "MASTER_ADDR" not in env:
            nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
            extra["MASTER_ADDR"] = first_slurm_host(nodes)
        if "MASTER_PORT" not in env:
            extra["MASTER_PORT"] = str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 1000)
        return rank, world, local, extra
    return 0, 1, 0, {}


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group the launcher describes (if any) and pick this rank's device.

    `device="auto"` uses cuda:LOCAL_RANK when CUDA is available, else the CPU. An existing process
    group (started by the caller) is reused and left open.
    """
    rank, world, local, extra = launch_env()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    dev = resolve_device(device)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = "nccl" if use_cuda else "gloo"
    owns = False
    if world > 1 and not dist.is_initialized():
        os.environ.update(extra)
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RuntimeError(f"{key} is not set: start several processes with torchrun or srun")
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=dev if use_cuda else None,
        )
        owns = True
    elif world > 1:
        backend = dist.get_backend()
    return DistEnv(rank, world, local, dev, backend if world > 1 else None, owns)


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all ranks (in place, returned); identity on one process."""
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: object, env: DistEnv) -> list[object]:
    """Every rank's value of a picklable object, on every rank (ordered by rank)."""
    if not env.distributed:
        return [obj]
    out: list[object] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    """Wait for all ranks."""
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Leave the process group if this module started it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()
