"""Seeded, stratified splits with the paper's ratios, and the paper's lists."""

from __future__ import annotations

import pandas as pd
import pytest

from sdfl_lib.data.manifest import read_manifest, write_manifest
from sdfl_lib.data.split import PRESETS, build_paper_lists, split_manifest, split_manifest_file


def _frame(n_real: int, n_fake: int, sources=("a", "b")) -> pd.DataFrame:
    rows = [(f"/r/{s}_{i}.png", 0, s) for s in sources for i in range(n_real)]
    rows += [(f"/f/{s}_{i}.png", 1, s) for s in sources for i in range(n_fake)]
    df = pd.DataFrame(rows, columns=["image", "label", "source"])
    df["mask"] = ["/m/x.png" if label else "" for label in df["label"]]
    df["edge"] = ""
    return df


def test_shallowfake_ratios_per_stratum_and_no_overlap():
    df = _frame(100, 50)
    parts = split_manifest(df, PRESETS["shallowfakes"], seed=1)
    for (label, source), n in [((0, "a"), 100), ((1, "b"), 50), ((1, "a"), 50)]:
        sizes = [((p["label"] == label) & (p["source"] == source)).sum() for p in parts.values()]
        assert sizes == [round(n * 0.8), round(n * 0.1), round(n * 0.1)]
    images = pd.concat(parts.values())["image"]
    assert len(images) == len(df) and images.is_unique


def test_deepfake_ratios_differ_by_label_and_counts_add_up():
    df = _frame(101, 77, sources=("ffpp",))
    parts = split_manifest(df, PRESETS["deepfakes"], seed=0)
    real = [int((p["label"] == 0).sum()) for p in parts.values()]
    fake = [int((p["label"] == 1).sum()) for p in parts.values()]
    assert real == [61, 20, 20] and sum(fake) == 77
    assert fake == [39, 15, 23]  # 5:2:3 of 77 = 38.5, 15.4, 23.1 by largest remainder


def test_seed_determinism_and_groups():
    df = _frame(40, 40)
    a, b = split_manifest(df, (8, 1, 1), seed=3), split_manifest(df, (8, 1, 1), seed=3)
    c = split_manifest(df, (8, 1, 1), seed=4)
    assert all(a[p]["image"].tolist() == b[p]["image"].tolist() for p in a)
    assert a["train"]["image"].tolist() != c["train"]["image"].tolist()
    df["video"] = [i // 4 for i in range(len(df))]
    parts = split_manifest(df, (6, 2, 2), seed=0, group="video")
    owners = {v: p for p, frame in parts.items() for v in frame["video"]}
    assert all(sum(v in frame["video"].values for frame in parts.values()) == 1 for v in owners)


def test_split_file_and_paper_lists(tmp_path):
    write_manifest(_frame(20, 10, sources=("casia2",)), tmp_path / "casia2.csv")
    write_manifest(_frame(5, 5, sources=("casia1",)), tmp_path / "casia1.csv")
    deep = _frame(30, 20, sources=("ffpp",))
    deep["video"] = [i // 2 for i in range(len(deep))]
    write_manifest(deep, tmp_path / "ffpp.csv")
    paths = split_manifest_file(tmp_path / "casia2.csv", tmp_path / "s", preset="shallowfakes")
    assert [len(read_manifest(paths[p])) for p in ("train", "val", "test")] == [24, 3, 3]
    lists = build_paper_lists(tmp_path / "paper", shallow_train=tmp_path / "casia2.csv",
                              deep=tmp_path / "ffpp.csv", shallow_tests=[tmp_path / "casia1.csv"])
    assert sorted(lists) == sorted(f"{n}_{p}" for n in ("shallow", "deep", "both")
                                   for p in ("train", "val", "test"))
    sizes = {k: len(read_manifest(v)) for k, v in lists.items()}
    assert sizes["shallow_test"] == 3 + 10
    assert sizes["both_train"] == sizes["shallow_train"] + sizes["deep_train"]
    with pytest.raises(ValueError, match="unknown preset"):
        split_manifest_file(tmp_path / "casia2.csv", tmp_path / "s", preset="x")


def test_sample_manifest_keeps_every_source_and_label() -> None:
    import pandas as pd

    from sdfl_lib.data.split import sample_manifest

    df = pd.DataFrame({"image": [f"{i}.png" for i in range(40)], "label": [i % 2 for i in range(40)],
                       "source": ["a"] * 30 + ["b"] * 8 + ["c"] * 2})
    small = sample_manifest(df, 6, seed=1)
    assert len(small) == 6 and list(small.index) == sorted(small.index)
    assert set(zip(small["source"], small["label"], strict=True)) == {("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)}
    assert sample_manifest(df, 6, seed=1).equals(small)
    assert sample_manifest(df, 0).equals(df) and sample_manifest(df, 100).equals(df)


def test_paper_splits_picks_one_use_of_the_named_manifests(tmp_path) -> None:
    from sdfl_lib.data.split import paper_splits

    write_manifest(_frame(20, 10, sources=("casia2",)), tmp_path / "casia2.csv")
    write_manifest(_frame(5, 5, sources=("casia1",)), tmp_path / "casia1.csv")
    write_manifest(_frame(30, 20, sources=("ffpp",)), tmp_path / "ffpp.csv")
    roles = {"shallow_train": "casia2", "deep": "ffpp", "shallow_tests": ["casia1"]}
    both = paper_splits(tmp_path, tmp_path / "lists", {**roles, "use": "both"}, seed=2)
    assert both == {p: tmp_path / "lists" / f"both_{p}.csv" for p in ("train", "val", "test")}
    shallow = paper_splits(tmp_path, tmp_path / "lists", {**roles, "use": "shallow"}, seed=2)
    assert len(read_manifest(shallow["test"])) == 3 + 10
    with pytest.raises(ValueError, match="'use'"):
        paper_splits(tmp_path, tmp_path / "lists", roles)
