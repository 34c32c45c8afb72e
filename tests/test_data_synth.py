"""Synthetic forgeries: exact masks, determinism, balance, manifest, face fallback."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sdfl_lib.data import synth_ops as ops
from sdfl_lib.data.edges import mask_to_edge
from sdfl_lib.data.io import load_image, load_mask
from sdfl_lib.data.manifest import read_manifest
from sdfl_lib.data.synth import KINDS, make_sample, plan, synthesize

FEATHER = ops.DEFAULT_FEATHER


@pytest.mark.parametrize("kind", KINDS)
def test_every_changed_pixel_lies_in_the_dilated_mask(kind):
    reach = 0 if kind == "removal" else FEATHER  # inpainting writes masked pixels only
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    found = 0
    for seed in range(4):
        sample = make_sample(np.random.default_rng([seed, 7]), kind, size=128)
        if sample.fallback:
            continue
        found += 1
        assert sample.source == f"synth-{kind}"
        assert sample.mask.dtype == np.uint8 and set(np.unique(sample.mask)) == {0, 1}
        changed = (sample.image != sample.base).any(axis=2)
        outside = changed & (cv2.dilate(sample.mask, kernel) == 0)
        assert not outside.any(), f"{kind}: {outside.sum()} changed pixels outside the mask"
        # A real manipulation: most of the masked region differs from the source photo.
        inside = changed[sample.mask.astype(bool)].mean()
        assert inside > 0.3, f"{kind}: only {inside:.0%} of the mask changed"
    assert found >= 2, f"{kind}: too few samples (face detector fell back)"


def test_authentic_sample_is_the_crop_itself():
    sample = make_sample(np.random.default_rng(3), "authentic", size=64)
    assert sample.mask is None and sample.source == "synth-authentic"
    assert sample.image is sample.base and sample.image.shape == (64, 64, 3)


def test_face_detector_finds_the_astronaut():
    x, y, w, h = ops.face_box("astronaut")
    # The face in skimage's astronaut photo lies around x 170-260, y 60-160 (512 x 512).
    assert 150 < x + w / 2 < 260 and 70 < y + h / 2 < 170 and 50 < w < 140


def test_same_seed_same_files_and_balance(tmp_path):
    a = synthesize(tmp_path / "a", 10, seed=5, size=64, jpeg_prob=0.5, progress=False)
    b = synthesize(tmp_path / "b", 10, seed=5, size=64, jpeg_prob=0.5, progress=False)
    c = synthesize(tmp_path / "c", 10, seed=6, size=64, jpeg_prob=0.5, progress=False)
    files_a = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.parent) for p in b.parent.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes(), rel
    assert (a.parent / "images").iterdir() and any(
        (c.parent / rel).exists() and (c.parent / rel).read_bytes() != (a.parent / rel).read_bytes()
        for rel in files_a if rel.parts[0] == "images"
    )
    df = read_manifest(a)
    assert list(df.columns[:5]) == ["image", "mask", "edge", "label", "source"]
    assert (df["label"] == 1).sum() == 5 and (df["label"] == 0).sum() == 5
    report = json.loads((a.parent / "synth.json").read_text())
    assert report["counts"]["fake"] == 5 and report["config"]["seed"] == 5


def test_manifest_rows_hold_exact_masks_and_edges(tmp_path):
    manifest = synthesize(tmp_path, 8, seed=1, size=64, jpeg_prob=1.0, progress=False)
    df = read_manifest(manifest)
    assert all(p.endswith(".jpg") for p in df["image"])
    for row in df.itertuples():
        image = load_image(row.image)
        assert image.shape == (64, 64, 3)
        if row.label == 0:
            assert row.mask == "" and row.edge == "" and row.source == "synth-authentic"
            continue
        mask = load_mask(row.mask, size=image.shape[:2], policy="fail")
        assert mask.any() and np.array_equal(load_mask(row.edge), mask_to_edge(mask))
        assert 70 <= int(row.jpeg_quality) <= 95  # extra columns are read as text


def test_no_face_falls_back_to_splicing_and_is_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(ops, "detect_faces", lambda image, min_size=24: [])
    manifest = synthesize(tmp_path, 8, seed=0, size=64, kinds=("face",), fake_ratio=1.0,
                          jpeg_prob=0.0, progress=False)
    df = read_manifest(manifest)
    assert set(df["source"]) == {"synth-splice"} and all(p.endswith(".png") for p in df["image"])
    assert json.loads((tmp_path / "synth.json").read_text())["counts"]["face_fallback"] == 8


def test_plan_is_balanced_and_checks_its_arguments():
    order = plan(41, seed=0)
    assert order.count("authentic") == 20
    assert {k: order.count(k) for k in KINDS} == {"splice": 6, "copymove": 5, "removal": 5,
                                                  "face": 5}
    with pytest.raises(ValueError, match="unknown manipulation"):
        plan(4, 0, kinds=("blur",))
    with pytest.raises(ValueError, match="fake_ratio"):
        plan(4, 0, fake_ratio=1.5)


def test_photos_pass_a_camera_jpeg_before_they_are_edited(tmp_path):
    raw = make_sample(np.random.default_rng(3), "authentic", size=64, source_jpeg_prob=0.0)
    cam = make_sample(np.random.default_rng(3), "authentic", size=64, source_jpeg_prob=1.0,
                      source_jpeg_quality=(75, 75))
    diff = np.abs(raw.image.astype(int) - cam.image.astype(int))
    assert diff.max() > 0 and diff.mean() < 8  # the same crop, with JPEG's small errors
    with pytest.raises(ValueError, match="source_jpeg_quality"):
        synthesize(tmp_path, 2, source_jpeg_quality=(90, 80), progress=False)
    with pytest.raises(ValueError, match="source_jpeg_prob"):
        synthesize(tmp_path, 2, source_jpeg_prob=1.5, progress=False)
