"""Manifests and authors' lists, image/mask loading, edge maps."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfl_lib.data.edges import mask_to_edge
from sdfl_lib.data.io import ImageReadError, MaskSizeError, load_image, load_mask
from sdfl_lib.data.manifest import (
    ManifestError,
    read_authors_list,
    read_manifest,
    replace_prefix,
    write_authors_list,
    write_manifest,
)

AUTHORS = (
    "/data/my set/Tp/a b.jpg /data/my set/Gt/a b_gt.png /data/my set/Edge/a b.png 1\n"
    "/data/Au/x.jpg None None 0\n"
    "/data/CASIA 2/Tp/c.tif /data/CASIA 2/Gt/c_gt.png None 1\n"
    "/data/cifake/FAKE/1 (2).jpg None None 1\n"
)


def test_authors_csv_authors_round_trip_unchanged(tmp_path):
    (tmp_path / "paths_train.txt").write_text(AUTHORS)
    df = read_authors_list(tmp_path / "paths_train.txt", source="x")
    assert df["image"].tolist()[0] == "/data/my set/Tp/a b.jpg"
    assert df["edge"].tolist() == ["/data/my set/Edge/a b.png", "", "", ""]
    assert df["label"].tolist() == [1, 0, 1, 1]
    assert df["label_only"].tolist() == [False, False, False, True]
    write_manifest(df, tmp_path / "sub" / "m.csv")
    back = read_manifest(tmp_path / "sub" / "m.csv")
    write_authors_list(back, tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == AUTHORS


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    (tmp_path / "img").mkdir()
    df = pd.DataFrame({"image": [str(tmp_path / "img" / "a.png"), "/elsewhere/b.png"],
                       "mask": ["", ""], "edge": ["", ""], "label": [0, 1], "source": ["s", "s"]})
    write_manifest(df, tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text()
    assert "img/a.png" in text and str(tmp_path) not in text and "/elsewhere/b.png" in text
    back = read_manifest(tmp_path / "m.csv")
    assert back["image"].tolist() == [str(tmp_path / "img" / "a.png"), "/elsewhere/b.png"]
    (tmp_path / "rel.txt").write_text("img/a b.png None None 0\n")
    assert read_authors_list(tmp_path / "rel.txt")["image"][0] == str(tmp_path / "img" / "a b.png")


def test_replace_prefix_counts_changed_paths():
    df = pd.DataFrame({"image": ["/old/a.png", "/x/b.png"], "mask": ["/old/m.png", ""],
                       "edge": ["", ""], "label": [1, 0], "source": ["", ""]})
    out, changed = replace_prefix(df, "/old", "/new root")
    assert changed == 2
    assert out["image"].tolist() == ["/new root/a.png", "/x/b.png"]
    assert out["mask"].tolist() == ["/new root/m.png", ""]


def test_bad_lists_fail_with_line_numbers(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("/a.png None None 0\n/b.png None None 2\n")
    with pytest.raises(ManifestError, match="row 2: label must be 0 or 1"):
        read_authors_list(bad)
    ambiguous = tmp_path / "amb.txt"
    ambiguous.write_text("/d/x.png y/a.png /d/x.png y/m.png None 1\n")
    with pytest.raises(ManifestError, match=r"amb.txt:1: cannot parse"):
        read_authors_list(ambiguous)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na.png,0\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(csv)


def _save(array, path, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_load_image_normalises_and_counts_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    stats: Counter = Counter()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "grey16.png"), rgb[..., 0].astype(np.uint16) * 257)
    for name in ("cmyk.jpg", "pal.png", "rgba.png", "grey.png", "rgb16.png", "grey16.png"):
        out = load_image(tmp_path / name, stats)
        assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    assert stats == Counter(cmyk=1, palette=1, rgba=1, grey=2, **{"16bit": 2})
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "grey16.png")[..., 1], rgb[..., 0])
    np.testing.assert_array_equal(load_image(tmp_path / "rgb16.png"), rgb[..., ::-1])


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        load_image(tmp_path / "t.jpg")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="decompression bomb"):
        load_image(tmp_path / "big.png", max_pixels=1000)


def test_load_mask_thresholds_rgba_and_size_policies(tmp_path):
    mask = np.zeros((10, 20), np.uint8)
    mask[2:6, 4:12] = 255
    rgba = np.dstack([mask, mask, mask, np.full_like(mask, 255)])
    stats: Counter = Counter()
    out = load_mask(_save(rgba, tmp_path / "rgba.png"), stats=stats)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1} and out.sum() == 32
    alpha = np.dstack([np.zeros((10, 20, 3), np.uint8), mask])
    assert load_mask(_save(alpha, tmp_path / "alpha.png")).sum() == 32
    soft = mask.copy()
    soft[0, 0], soft[9, 19] = 100, 200
    # The one mask rule: every non-zero level is tampered, the faint 100 included.
    assert load_mask(_save(soft, tmp_path / "soft.png"), stats=stats).sum() == 34
    assert stats == Counter(mask_rgba=1, mask_non_binary=1)
    small = _save(mask[::2, ::2], tmp_path / "small.png")
    resized = load_mask(small, size=(10, 20), stats=stats)
    assert resized.shape == (10, 20) and resized.sum() == 32
    assert load_mask(small, size=(10, 20), policy="skip", stats=stats) is None
    assert stats["mask_resized"] == 1 and stats["mask_skipped"] == 1
    with pytest.raises(MaskSizeError, match="mask is 5x10"):
        load_mask(small, size=(10, 20), policy="fail")


def test_mask_to_edge_is_a_band_on_the_contour():
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    edge = mask_to_edge(mask, width=5)
    assert edge[20, 20] == 0 and edge[0, 0] == 0
    assert edge[10, 20] == 1 and edge[8, 20] == 1 and edge[12, 20] == 1
    assert edge[14, 20] == 0 and edge[6, 20] == 0
    assert mask_to_edge(np.zeros((5, 5), np.uint8)).sum() == 0


def test_normalize_frame_gives_an_in_memory_manifest_read_manifests_form() -> None:
    import numpy as np

    from sdfl_lib.data.manifest import normalize_frame

    raw = pd.DataFrame({"image": ["a.png", "b.png"], "mask": [np.nan, "m.png"], "label": ["0", 1.0]},
                       index=[5, 9])
    df = normalize_frame(raw)
    assert list(df.index) == [0, 1] and "source" not in raw and list(raw.index) == [5, 9]
    assert df["mask"].tolist() == ["", "m.png"] and df["edge"].tolist() == ["", ""]
    assert df["source"].tolist() == ["", ""] and df["label"].tolist() == [0, 1]
    assert df["label_only"].tolist() == [False, False]
    with pytest.raises(ManifestError, match="<DataFrame>: row 2: label must be 0 or 1"):
        normalize_frame(raw.assign(label=[0, 2]))
    with pytest.raises(ManifestError, match="missing column"):
        normalize_frame(raw.drop(columns="label"))
