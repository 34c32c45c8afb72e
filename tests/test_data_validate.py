"""Validation of a manifest of crafted bad files: exact counts, errors vs warnings."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfl_lib.data.manifest import write_manifest
from sdfl_lib.data.validate import validate_manifest


@pytest.fixture()
def bad_manifest(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    d = tmp_path / "files"
    (d / "other").mkdir(parents=True)
    Image.fromarray(rgb).save(d / "good.png")
    Image.fromarray(rgb).save(d / "trunc.jpg", quality=95)
    data = (d / "trunc.jpg").read_bytes()
    (d / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    cv2.imwrite(str(d / "deep.png"), rgb.astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("P").save(d / "pal.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(d / "grey.png")
    Image.fromarray(rgb).save(d / "other" / "good.png")  # same basename as files/good.png
    for name in ("soft_t.png", "auth.png", "small_t.png"):  # one image, one label
        Image.fromarray(rgb).save(d / name)
    mask = np.zeros((16, 20), np.uint8)
    mask[4:8, 4:10] = 255
    Image.fromarray(mask).save(d / "mask.png")
    soft = mask.copy()
    soft[0, 0] = 90
    Image.fromarray(soft).save(d / "soft.png")
    Image.fromarray(mask[::2, ::2]).save(d / "small.png")
    rows = [
        ("good.png", "", 0),  # 1 fine
        ("trunc.jpg", "", 0),  # 2 truncated
        ("cmyk.jpg", "", 0),  # 3
        ("deep.png", "", 0),  # 4 16-bit
        ("pal.png", "", 0),  # 5
        ("rgba.png", "", 0),  # 6
        ("grey.png", "", 0),  # 7
        ("soft_t.png", "soft.png", 1),  # 8 non-binary mask
        ("auth.png", "mask.png", 0),  # 9 authentic with a mask
        ("small_t.png", "small.png", 1),  # 10 mask of another size
        ("other/good.png", "", 1),  # 11 label-only fake; duplicate basename
        ("missing.png", "", 0),  # 12 missing
    ]
    df = pd.DataFrame({
        "image": [str(d / r[0]) for r in rows],
        "mask": [str(d / r[1]) if r[1] else "" for r in rows],
        "edge": "", "label": [r[2] for r in rows], "source": "crafted",
    })
    return write_manifest(df, tmp_path / "bad.csv")


def test_validation_counts_every_problem_exactly(bad_manifest):
    report = validate_manifest(bad_manifest, progress=False)
    c = report["counts"]
    assert report["rows"] == 12 and not report["ok"]
    assert (c["unreadable_image"], c["missing_image"], c["authentic_with_mask"]) == (1, 1, 1)
    assert (c["cmyk"], c["16bit"], c["palette"], c["rgba"], c["grey"]) == (1, 1, 1, 1, 1)
    assert (c["mask_non_binary"], c["mask_size_mismatch"], c["mask_resized"]) == (1, 1, 1)
    assert (c["label_only"], c["duplicate_basename"], c["decompression_bomb"]) == (1, 1, 0)
    kinds = {(e["row"], e["kind"]) for e in report["errors"]}
    assert kinds == {(2, "unreadable_image"), (9, "authentic_with_mask"), (12, "missing_image")}
    assert "truncated" in next(e["detail"] for e in report["errors"] if e["row"] == 2)


def test_mask_policy_and_bomb_limit(bad_manifest):
    report = validate_manifest(bad_manifest, mask_policy="fail", progress=False)
    assert report["counts"]["mask_size_mismatch_fail"] == 1
    assert report["counts"]["mask_resized"] == 0
    report = validate_manifest(bad_manifest, mask_policy="skip", progress=False)
    assert report["counts"]["mask_skipped"] == 1
    report = validate_manifest(bad_manifest, max_pixels=100, progress=False)
    bombs = sorted(e["row"] for e in report["errors"] if e["kind"] == "decompression_bomb")
    assert bombs == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_shared_samples_validate(shared_data, tmp_path):
    from sdfl_lib.data.prepare import prepare

    prepare("coverage", shared_data / "coverage-sample", tmp_path / "cov.csv", verbose=False)
    report = validate_manifest(tmp_path / "cov.csv", progress=False)
    assert report["ok"] and report["counts"]["mask_size_mismatch"] == 1
    assert report["counts"]["mask_resized"] == 1
