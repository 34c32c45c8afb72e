"""The training Dataset over a manifest, and the paper's class re-balancing sampler.

`ManipulationDataset(manifest, image_size=512, augment=False, normalize=False)` yields dicts:
`image` float32 (3, S, S) in [0, 1] (ImageNet mean/std when `normalize`), `mask` float32 (1, S, S)
in {0, 1} (zeros when absent), `edge` float32 (1, S, S) in {0, 1}, `label` float32 scalar,
`has_mask` (False only for label-only fakes: no pixel loss), `index`, `image_path`, `source`.

Images are decoded with `sdfl_lib.data.io`, resized with OpenCV (area when shrinking, linear when
enlarging; masks and edges with nearest neighbour, or area + threshold 0.5), then augmented with
albumentations: image, mask and edge get the same spatial transform. `augment=True` or "flip" is
the paper's (random horizontal and vertical flips); "strong" adds rotations, affine warps, colour
jitter, blur, noise, rescaling and JPEG re-compression. Big JPEGs are decoded at reduced size with
PIL's draft mode when that still leaves at least `image_size` pixels per side.

Use `worker_init` as the DataLoader's `worker_init_fn` (one OpenCV thread per worker, seeded
augmentations). `balanced_sampler(dataset, seed)` re-samples the classes to balance.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from sdfl_lib.data.edges import mask_to_edge
from sdfl_lib.data.io import MASK_POLICIES, ImageReadError, load_image, load_mask
from sdfl_lib.data.manifest import normalize_frame, read_manifest
from sdfl_lib.errors import DataError
from sdfl_lib.runtime import worker_init, worker_start_method  # noqa: F401  (the loaders' own)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTS = ("none", "flip", "strong")
_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_STD = np.asarray(IMAGENET_STD, np.float32)


def build_augment(kind: str | bool | None):
    """The albumentations pipeline for `kind` ("none", "flip" = the paper's, "strong"); None
    for no augmentation. `edge` is an extra target transformed like the mask."""
    if kind is True:
        kind = "flip"
    if kind in (None, False, "none"):
        return None
    import albumentations as A  # why: heavy, only when training augments

    flips = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if kind == "flip":
        ops = flips
    elif kind == "strong":
        ops = [
            *flips,
            A.RandomRotate90(p=0.5),
            A.Affine(scale=(0.8, 1.2), rotate=(-15, 15), translate_percent=(-0.05, 0.05),
                     fill=0, fill_mask=0, p=0.4),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.4),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 7)), A.GaussNoise(std_range=(0.01, 0.05))],
                    p=0.3),
            A.Downscale(scale_range=(0.5, 0.9), p=0.2),
            A.ImageCompression(quality_range=(60, 100), p=0.3),
        ]
    else:
        raise ValueError(f"augment must be one of {AUGMENTS}, True/False or an albumentations "
                         f"transform, got {kind!r}")
    return A.Compose(ops, additional_targets={"edge": "mask"})


def _resize(array: np.ndarray, size: int, binary: bool, area_threshold: bool = False) -> np.ndarray:
    h, w = array.shape[:2]
    if (h, w) == (size, size):
        return array
    if binary:
        if area_threshold:
            soft = cv2.resize(array.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            return (soft >= 0.5).astype(np.uint8)
        return cv2.resize(array, (size, size), interpolation=cv2.INTER_NEAREST)
    shrink = size < h or size < w
    return cv2.resize(array, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode_image(
    path: str, size: int | None, stats: Counter
) -> tuple[np.ndarray, tuple[int, int]]:
    """An image as the dataset decodes it for side `size`: RGB uint8 and the stored (H, W); big
    JPEGs are decoded by PIL at 1/2, 1/4 or 1/8 scale when that still leaves >= `size` pixels
    per side."""

    if size is not None and path.lower().endswith((".jpg", ".jpeg")):
        try:
            with Image.open(path) as img:
                if img.mode == "RGB" and min(img.size) >= 2 * size:
                    # Only plain RGB JPEGs take this path; every other mode is normalised by io.
                    stored = (img.height, img.width)
                    img.draft("RGB", (size, size))
                    stats["jpeg_draft"] += 1
                    return np.asarray(img.convert("RGB")), stored
        except OSError:
            pass  # load_image reports the problem with its own clear message
    image = load_image(path, stats=stats)
    return image, image.shape[:2]


class ManipulationDataset(Dataset):
    """Images, masks, edges and labels of a manifest, resized to `image_size` and augmented.

    Args:
        manifest: a manifest CSV path or a DataFrame as `read_manifest` returns it.
        image_size: side S of the square output (None: keep each image's size; batch size 1).
        augment: False/"none", True/"flip" (the paper's flips), "strong", or an albumentations
            transform taking image=, mask=, edge=.
        normalize: subtract the ImageNet mean and divide by its std after scaling to [0, 1].
        mask_policy: what to do with a mask whose size differs from its image: "resize" (nearest
            neighbour), "skip" (drop the mask: the sample becomes label-only) or "fail".
        mask_resize: "nearest", or "area" (area average thresholded at 0.5) for resizing masks.
        edge_from_mask: draw the edge from the (resized) mask when the manifest has none.
        seed: seed of the augmentations in the main process (workers: see `worker_init`).
    """

    def __init__(
        self,
        manifest: str | os.PathLike | pd.DataFrame,
        image_size: int | None = 512,
        augment: str | bool | Callable | None = False,
        normalize: bool = False,
        mask_policy: str = "resize",
        mask_resize: str = "nearest",
        edge_from_mask: bool = True,
        seed: int = 0,
    ) -> None:
        if isinstance(manifest, pd.DataFrame):
            frame = normalize_frame(manifest)
        else:
            frame = read_manifest(manifest)
        if mask_policy not in MASK_POLICIES:
            raise ValueError(f"mask_policy must be one of {MASK_POLICIES}, got {mask_policy!r}")
        if mask_resize not in ("nearest", "area"):
            raise ValueError(f"mask_resize must be 'nearest' or 'area', got {mask_resize!r}")
        if image_size is not None and image_size < 8:
            raise ValueError(f"image_size must be >= 8 or None, got {image_size}")

        self.images, self.masks = frame["image"].tolist(), frame["mask"].tolist()
        self.edges, self.sources = frame["edge"].tolist(), frame["source"].tolist()
        self.labels = frame["label"].to_numpy(dtype=np.int64)
        authentic_with_mask = int(((self.labels == 0) & (np.asarray(self.masks) != "")).sum())
        if authentic_with_mask:
            # Validation reports these as errors; here the label wins and the mask is all zero.
            warnings.warn(f"{authentic_with_mask} authentic row(s) have a mask: it is ignored "
                          "(run `sdfl data validate`)", stacklevel=2)
        self.has_mask = (self.labels == 0) | (np.asarray(self.masks) != "")
        self.image_size = image_size
        self.normalize = normalize
        self.mask_policy = mask_policy
        self.mask_resize = mask_resize
        self.edge_from_mask = edge_from_mask
        self.transform = augment if callable(augment) else build_augment(augment)
        self.set_seed(seed)
        self.stats: Counter = Counter()

    def set_seed(self, seed: int) -> None:
        """Re-seeds the augmentations (albumentations' own generator)."""
        if self.transform is not None and hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(seed) % 2**32)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        size = self.image_size
        image, (h, w) = decode_image(self.images[index], size, self.stats)
        mask = None
        if self.labels[index] == 1 and self.masks[index]:
            mask = load_mask(self.masks[index], size=(h, w), policy=self.mask_policy,
                             stats=self.stats)
        has_mask = bool(self.labels[index] == 0 or mask is not None)
        edge = None
        if mask is not None and self.edges[index]:
            edge = load_mask(self.edges[index], size=(h, w), policy="resize", stats=self.stats)
        out = size if size is not None else None
        if out is not None:
            image = _resize(image, out, binary=False)
        shape = image.shape[:2]
        if mask is None:
            mask = np.zeros(shape, np.uint8)
        elif out is not None:
            mask = _resize(mask, out, binary=True, area_threshold=self.mask_resize == "area")
        if edge is None:
            edge = mask_to_edge(mask) if self.edge_from_mask and mask.any() else np.zeros(shape, np.uint8)
        elif out is not None:
            edge = _resize(edge, out, binary=True)
        return image, mask, edge, has_mask

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        try:
            image, mask, edge, has_mask = self._load(index)
        except ImageReadError as err:
            # One-argument type: it crosses from a loader worker intact (ImageReadError does not).
            raise DataError(f"training item {index}: {err}") from None
        if self.transform is not None:
            result = self.transform(image=image, mask=mask, edge=edge)
            image, mask, edge = result["image"], result["mask"], result["edge"]
        # NumPy, not torch: torch's intra-op threads only contend with the loader's workers;
        # and CHW is made on the uint8 pixels, 4x less memory to shuffle than float32.
        chw = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
        pixels = np.multiply(chw, np.float32(1 / 255), dtype=np.float32)  # one pass, no temp
        if self.normalize:
            pixels -= _MEAN[:, None, None]
            pixels /= _STD[:, None, None]
        tensor = torch.from_numpy(pixels)
        return {
            "image": tensor,
            "mask": torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None],
            "edge": torch.from_numpy((np.asarray(edge) > 0).astype(np.float32))[None],
            "label": torch.tensor(float(self.labels[index]), dtype=torch.float32),
            "has_mask": has_mask,
            "index": index,
            "image_path": self.images[index],
            "source": self.sources[index],
        }


class BalancedSampler(Sampler[int]):
    """Draws indices with replacement so that every class (or group) is equally likely.

    Each epoch draws `num_samples` indices (default: the data set's length) with weights
    1 / (groups x size of the sample's group), from a generator seeded by (seed, epoch): call
    `set_epoch(epoch)` before each epoch, as with DistributedSampler. Under DDP use it *instead
    of* DistributedSampler: with `num_replicas` and `rank` (taken from torch.distributed when it
    is initialised) every rank draws the same global sequence and keeps its own share
    `[rank::num_replicas]`, all shares of equal length.
    """

    def __init__(self, groups: Sequence, seed: int = 0, num_samples: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if num_replicas is None or rank is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (
                dist.get_world_size() if ready else 1)
            rank = rank if rank is not None else (dist.get_rank() if ready else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        values = list(groups)
        if not values:
            raise ValueError("cannot balance an empty data set")
        counts = Counter(values)
        self.group_counts = dict(sorted(counts.items(), key=lambda kv: str(kv[0])))
        weights = [1.0 / (len(counts) * counts[v]) for v in values]
        self.weights = torch.tensor(weights, dtype=torch.double)
        self.seed, self.epoch = int(seed), 0
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        total = len(values) if num_samples is None else int(num_samples)
        self.num_samples = math.ceil(total / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch's draw (same on every rank)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True,
                                  generator=generator)
        return iter(drawn[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def balanced_sampler(dataset, seed: int = 0, by: str = "label", **kwargs) -> BalancedSampler:
    """The paper's class re-balancing: a seedable `BalancedSampler` over `dataset`'s labels
    (`by="label"`), or over its sources (`by="source"`) or both (`by="label+source"`)."""
    base, indices = dataset, None
    if isinstance(dataset, torch.utils.data.Subset):
        base, indices = dataset.dataset, list(dataset.indices)
    if not hasattr(base, "labels"):
        raise TypeError("balanced_sampler needs a ManipulationDataset (or a Subset of one)")
    keys = {
        "label": lambda i: int(base.labels[i]),
        "source": lambda i: base.sources[i],
        "label+source": lambda i: (int(base.labels[i]), base.sources[i]),
    }
    if by not in keys:
        raise ValueError(f"by must be one of {sorted(keys)}, got {by!r}")
    indices = range(len(base)) if indices is None else indices
    return BalancedSampler([keys[by](i) for i in indices], seed=seed, **kwargs)
