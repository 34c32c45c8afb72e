"""The training Dataset (item contract, resizing, joint augmentation) and the balanced sampler."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from sdfl_lib.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ManipulationDataset,
    balanced_sampler,
    build_augment,
    worker_init,
)
from sdfl_lib.data.io import load_image, load_mask
from sdfl_lib.errors import DataError


def _png(path, array) -> str:
    cv2.imwrite(str(path), array[..., ::-1] if array.ndim == 3 else array)
    return str(path)


def _blocks(rng, size, cells=8) -> np.ndarray:
    """A {0, 1} map of random square blocks (so nearest and linear resampling agree)."""
    small = (rng.random((cells, cells)) < 0.4).astype(np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)


@pytest.fixture()
def coded(tmp_path):
    """Images whose red channel is the mask and green channel the edge, as a manifest."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        mask, edge = _blocks(rng, 64), _blocks(rng, 64, cells=16)
        image = np.stack([mask * 255, edge * 255, rng.integers(0, 256, (64, 64))], -1)
        rows.append({"image": _png(tmp_path / f"{i}.png", image.astype(np.uint8)),
                     "mask": _png(tmp_path / f"{i}_m.png", mask * 255),
                     "edge": _png(tmp_path / f"{i}_e.png", edge * 255), "label": 1,
                     "source": "coded"})
    return pd.DataFrame(rows)


def test_item_contract(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 255
    df = pd.DataFrame([
        {"image": _png(tmp_path / "a.png", image), "mask": "", "edge": "", "label": 0,
         "source": "au"},
        {"image": _png(tmp_path / "b.png", image), "mask": _png(tmp_path / "b_m.png", mask),
         "edge": "", "label": 1, "source": "tp"},
        {"image": _png(tmp_path / "c.png", image), "mask": "", "edge": "", "label": 1,
         "source": "cifake"},
    ])
    ds = ManipulationDataset(df, image_size=32)
    authentic, fake, label_only = ds[0], ds[1], ds[2]
    assert set(fake) == {"image", "mask", "edge", "label", "has_mask", "index", "image_path",
                         "source"}
    assert fake["image"].shape == (3, 32, 32) and fake["image"].dtype == torch.float32
    assert 0.0 <= fake["image"].min() and fake["image"].max() <= 1.0
    for key in ("mask", "edge"):
        assert fake[key].shape == (1, 32, 32) and fake[key].dtype == torch.float32
        assert set(fake[key].unique().tolist()) == {0.0, 1.0}
    assert fake["label"].dtype == torch.float32 and fake["label"].shape == ()
    assert (fake["label"], fake["has_mask"], fake["index"]) == (1.0, True, 1)
    assert fake["image_path"] == df["image"][1] and fake["source"] == "tp"
    assert authentic["has_mask"] and authentic["mask"].sum() == 0 and authentic["label"] == 0
    # Label-only fake: kept, flagged, and its all-zero mask is never used as ground truth.
    assert not label_only["has_mask"] and label_only["label"] == 1
    assert ds.has_mask.tolist() == [True, True, False]
    batch = torch.utils.data.default_collate([authentic, fake, label_only])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["has_mask"].tolist() == [1, 1, 0]


def test_normalize_uses_imagenet_statistics(coded):
    plain = ManipulationDataset(coded, image_size=64)[0]["image"]
    normed = ManipulationDataset(coded, image_size=64, normalize=True)[0]["image"]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(normed, (plain - mean) / std, atol=1e-5)


@pytest.mark.parametrize("augment", ["flip", "strong"])
def test_image_mask_and_edge_are_transformed_together(coded, augment):
    reference = ManipulationDataset(coded, image_size=64)
    ds = ManipulationDataset(coded, image_size=64, augment=augment, seed=3)
    moved = agree_mask = agree_edge = 0.0
    draws = 24
    for i in range(draws):
        item = ds[i % len(ds)]
        red, green = item["image"][0] > 0.5, item["image"][1] > 0.5
        agree_mask += (red == item["mask"][0].bool()).float().mean().item()
        agree_edge += (green == item["edge"][0].bool()).float().mean().item()
        moved += not torch.equal(item["mask"], reference[i % len(ds)]["mask"])
        if augment == "flip":  # flips move pixels exactly: the channels are the masks
            assert torch.equal(red, item["mask"][0].bool()) and torch.equal(green, item["edge"][0].bool())
    assert moved >= draws / 3, "the augmentation hardly ever moved anything"
    # Misaligned targets would agree on about half the pixels; blur, noise, colour jitter and
    # rescaling only blur the channels' block borders.
    assert agree_mask / draws > 0.93 and agree_edge / draws > 0.9


def test_augment_is_seeded(coded):
    a = ManipulationDataset(coded, image_size=64, augment="strong", seed=9)
    b = ManipulationDataset(coded, image_size=64, augment="strong", seed=9)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    with pytest.raises(ValueError, match="augment must be one of"):
        build_augment("wild")


def test_resized_masks_stay_binary_and_mask_policy(tmp_path):
    image = np.full((90, 120, 3), 128, np.uint8)
    mask = np.zeros((45, 60), np.uint8)  # another size than its image
    mask[5:30, 10:40] = 255
    df = pd.DataFrame([{"image": _png(tmp_path / "i.png", image),
                        "mask": _png(tmp_path / "m.png", mask), "edge": "", "label": 1,
                        "source": "s"}])
    for how in ("nearest", "area"):
        item = ManipulationDataset(df, image_size=50, mask_resize=how)[0]
        assert set(item["mask"].unique().tolist()) == {0.0, 1.0} and item["has_mask"]
        assert abs(item["mask"].mean().item() - (mask > 0).mean()) < 0.03
        assert item["edge"].sum() > 0  # drawn from the mask when the manifest has none
    skipped = ManipulationDataset(df, image_size=50, mask_policy="skip")[0]
    assert not skipped["has_mask"] and skipped["mask"].sum() == 0
    with pytest.raises(DataError, match="training item 0: .*mask is 45x60"):
        ManipulationDataset(df, image_size=50, mask_policy="fail")[0]


def test_big_jpeg_draft_decode_matches_full_decode(tmp_path):
    rng = np.random.default_rng(2)
    smooth = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (640, 560),
                        interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    df = pd.DataFrame([{"image": str(path), "mask": "", "edge": "", "label": 0, "source": "s"}])
    ds = ManipulationDataset(df, image_size=128)
    fast = ds[0]["image"].numpy().transpose(1, 2, 0) * 255
    full = cv2.resize(load_image(path), (128, 128), interpolation=cv2.INTER_AREA)
    assert ds.stats["jpeg_draft"] == 1 and np.abs(fast - full).mean() < 3


def test_on_casia2_sample(shared_data):
    folder = shared_data / "casia2-sample"
    rows = [{"image": str(p), "mask": str(folder / "Gt" / f"{p.stem}_gt.png"), "edge": "",
             "label": 1, "source": "casia2"} for p in sorted((folder / "Tp").iterdir())[:4]]
    ds = ManipulationDataset(pd.DataFrame(rows), image_size=96, augment="flip")
    for i, row in enumerate(rows):
        item = ds[i]
        original = load_mask(row["mask"])
        assert item["image"].shape == (3, 96, 96) and item["has_mask"]
        assert abs(item["mask"].mean().item() - original.mean()) < 0.05


def test_balanced_sampler_balances_and_is_seeded(tmp_path):
    labels = [0] * 90 + [1] * 10
    df = pd.DataFrame({"image": [f"/x/{i}.png" for i in range(100)], "label": labels})
    ds = ManipulationDataset(df, image_size=32)
    sampler = balanced_sampler(ds, seed=4, num_samples=4000)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 4000
    assert 0.45 < np.mean([labels[i] for i in drawn]) < 0.55
    assert drawn == list(balanced_sampler(ds, seed=4, num_samples=4000))
    sampler.set_epoch(1)
    assert list(sampler) != drawn
    # DDP: each rank keeps its own share of the same global draw.
    shares = []
    for rank in range(3):
        s = balanced_sampler(ds, seed=4, num_replicas=3, rank=rank)
        s.set_epoch(2)
        shares.append(list(s))
    assert all(len(share) == 34 for share in shares)
    whole = balanced_sampler(ds, seed=4, num_samples=102)
    whole.set_epoch(2)
    merged = [shares[i % 3][i // 3] for i in range(102)]
    assert merged == list(whole)
    subset = torch.utils.data.Subset(ds, list(range(80, 100)))  # 10 authentic, 10 fake
    assert max(balanced_sampler(subset, seed=0)) < 20


def test_dataloader_workers_are_reproducible(coded):
    ds = ManipulationDataset(coded, image_size=64, augment="strong")

    def run() -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=3, num_workers=2, worker_init_fn=worker_init,
            generator=torch.Generator().manual_seed(11), sampler=balanced_sampler(ds, seed=1),
        )
        return torch.cat([batch["image"] for batch in loader])

    first = run()
    assert first.shape == (6, 3, 64, 64) and torch.equal(first, run())
