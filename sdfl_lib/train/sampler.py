"""Batches whose order depends only on (seed, epoch): sharded over ranks, resumable at any step."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sdfl_lib.data import balanced_sampler


def epoch_orders(dataset: Dataset, seed: int, balance: bool) -> Callable[[int], list[int]]:
    """epoch -> the global sample order of that epoch, depending only on (seed, epoch).

    Balanced: the data package's class re-balancing sampler drawn as one replica (the paper's
    re-sampling, N draws with replacement); otherwise a permutation. Never depends on the world size.
    """
    if balance:
        sampler = balanced_sampler(dataset, seed=seed, num_replicas=1, rank=0)

        def balanced(epoch: int) -> list[int]:
            sampler.set_epoch(epoch)
            return list(sampler)

        return balanced
    n = len(dataset)  # type: ignore[arg-type]

    def permuted(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=generator).tolist()

    return permuted


def item_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of the augmentation of the sample at `position` in the epoch's order."""
    return int(np.random.SeedSequence([seed, epoch, position, 0xA06]).generate_state(1)[0])


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Per-rank micro-batches of `(index, item_seed)` for the optimizer steps of one epoch.

    Step s uses the global batch order[s*G:(s+1)*G]; its chunk `a*W + r` (size G/(W*A)) goes to rank
    r at accumulation step a. `set_epoch(e, start_step)` skips the steps already taken, so a resumed
    run sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        orders: Callable[[int], Sequence[int]],
        n: int,
        global_batch: int,
        world_size: int,
        rank: int,
        grad_accum: int,
        seed: int,
        max_steps_per_epoch: int = 0,
    ):
        self.orders, self.n = orders, n
        self.global_batch = global_batch
        self.world_size = world_size
        self.rank = rank
        self.grad_accum = grad_accum
        self.micro = global_batch // (world_size * grad_accum)
        self.seed = seed
        self.max_steps_per_epoch = max_steps_per_epoch
        self.epoch = 0
        self.start_step = 0
        if self.steps_per_epoch() < 1:
            raise ValueError(
                f"the training set has {n} images, fewer than one global batch"
                f" ({global_batch}): lower batch_size"
            )

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the last partial global batch is dropped)."""
        steps = self.n // self.global_batch
        return min(steps, self.max_steps_per_epoch) if self.max_steps_per_epoch else steps

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's order and the first step to produce."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch() - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.orders(self.epoch)
        b, g = self.micro, self.global_batch
        for step in range(self.start_step, self.steps_per_epoch()):
            for a in range(self.grad_accum):
                begin = step * g + (a * self.world_size + self.rank) * b
                yield [
                    (int(order[pos]), item_seed(self.seed, self.epoch, pos))
                    for pos in range(begin, begin + b)
                ]


class SeededItems(Dataset):
    """Wraps a dataset so that item `(index, seed)` is drawn with all random generators seeded.

    Seeds Python, NumPy and torch, and the dataset's own augmentation generator (`set_seed`), so
    augmentation depends on (seed, epoch, position) only: not on the worker, the
    number of workers, or where a run was resumed.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int):
        if isinstance(key, tuple):
            index, seed = key
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            if hasattr(self.dataset, "set_seed"):  # ManipulationDataset: its albumentations seed
                self.dataset.set_seed(seed % 2**32)
        else:
            index = key
        return self.dataset[index]


def shard_indices(n: int, world_size: int, rank: int) -> list[int]:
    """This rank's share of n validation samples (strided, no padding, no repeats)."""
    return list(range(rank, n, world_size))
