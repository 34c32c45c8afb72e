"""Batches whose order depends only on (seed, epoch): sharded over ranks, resumable at any step."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_order(labels: Sequence[int] | np.ndarray, seed: int, epoch: int, balance: bool) -> np.ndarray:
    """The global sample order of one epoch: a permutation, or a class-balanced draw.

    Balanced (the paper's re-sampling): N draws with replacement, each class with probability 1/K,
    uniform within the class. Depends only on (seed, epoch), never on the world size.
    """
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng([seed, epoch, 0x5DF1])
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if not balance or len(classes) < 2:
        return rng.permutation(n)
    weight_of = dict(zip(classes.tolist(), (1.0 / (len(classes) * counts)).tolist(), strict=True))
    p = np.array([weight_of[c] for c in labels.tolist()])
    return rng.choice(n, size=n, replace=True, p=p / p.sum())


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
        labels: Sequence[int] | np.ndarray,
        global_batch: int,
        world_size: int,
        rank: int,
        grad_accum: int,
        seed: int,
        balance: bool,
        max_steps_per_epoch: int = 0,
    ):
        self.labels = np.asarray(labels)
        self.global_batch = global_batch
        self.world_size = world_size
        self.rank = rank
        self.grad_accum = grad_accum
        self.micro = global_batch // (world_size * grad_accum)
        self.seed = seed
        self.balance = balance
        self.max_steps_per_epoch = max_steps_per_epoch
        self.epoch = 0
        self.start_step = 0
        if self.steps_per_epoch() < 1:
            raise ValueError(
                f"the training set has {len(self.labels)} images, fewer than one global batch"
                f" ({global_batch}): lower batch_size"
            )

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the last partial global batch is dropped)."""
        steps = len(self.labels) // self.global_batch
        return min(steps, self.max_steps_per_epoch) if self.max_steps_per_epoch else steps

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's order and the first step to produce."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch() - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.labels, self.seed, self.epoch, self.balance)
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

    Seeds Python, NumPy and torch, and an albumentations pipeline found as `transform`/`augment` on
    the dataset, so augmentation depends on (seed, epoch, position) only: not on the worker, the
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
            for name in ("transform", "augment", "augmentation", "transforms"):
                pipeline = getattr(self.dataset, name, None)
                if hasattr(pipeline, "set_random_seed"):
                    pipeline.set_random_seed(seed % 2**32)
        else:
            index = key
        return self.dataset[index]


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Image labels of a dataset, from its manifest when it has one, else by reading its items."""
    for name in ("labels", "label"):
        values = getattr(dataset, name, None)
        if values is not None and not callable(values):
            return np.asarray(values).astype(np.int64)
    for name in ("manifest", "df", "frame", "table"):
        frame = getattr(dataset, name, None)
        if frame is not None and hasattr(frame, "columns") and "label" in frame.columns:
            return frame["label"].to_numpy().astype(np.int64)
    return np.array([int(dataset[i]["label"]) for i in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def shard_indices(n: int, world_size: int, rank: int) -> list[int]:
    """This rank's share of n validation samples (strided, no padding, no repeats)."""
    return list(range(rank, n, world_size))
