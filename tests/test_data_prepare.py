"""Preparers against the real samples in ../shared/data and faithful small layouts."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sdfl_lib.data.io import load_mask
from sdfl_lib.data.manifest import read_manifest
from sdfl_lib.data.prepare import PREPARERS, prepare, report_path
from sdfl_lib.data.preparers.ffpp import difference_mask, frame_indices
from sdfl_lib.data.preparers.shallowfakes import columbia_mask


def test_casia1_sample_keeps_all_16_tampered_images(shared_data, tmp_path):
    out = tmp_path / "casia1.csv"
    report = prepare("casia1", shared_data / "casia1-sample", out, verbose=False)
    c = report["counts"]
    assert (c["authentic_found"], c["tampered_found"]) == (15, 16)
    assert (c["masks_matched"], c["masks_matched_exact"], c["masks_matched_revised_name"]) == (15, 12, 3)
    assert (c["tampered"], c["tampered_with_mask"], c["label_only"]) == (16, 15, 1)
    lone = "Sp_D_NNN_A_sec0049_sec0049_0117.jpg"
    assert [p.rsplit("/", 1)[1] for p in report["unmatched_images"]] == [lone]
    assert [p.rsplit("/", 1)[1] for p in report["label_only"]] == [lone]
    assert report["excluded"] == [] and any("label-only" in n for n in report["notes"])
    df = read_manifest(out)
    assert (df["label"] == 0).sum() == 15 and (df["label"] == 1).sum() == 16
    with_mask = df[(df.label == 1) & (df["mask"] != "")]
    assert len(with_mask) == 15 and (with_mask["edge"] != "").all()
    assert df.loc[df["image"].str.endswith(lone), "mask"].iloc[0] == ""
    revised = df[df["image"].str.endswith("Sp_D_NRN_A_ani0080_sec0005_0426.jpg")]
    assert revised["mask"].iloc[0].endswith("Sp_D_NRN_A_sec0005_ani0080_0426_gt.png")
    assert json.loads(report_path(out).read_text())["counts"]["masks_matched"] == 15
    dropped = prepare("casia1", shared_data / "casia1-sample", tmp_path / "d.csv",
                      drop_unmatched=True, edges=False, verbose=False)
    assert dropped["counts"]["tampered"] == 15 and dropped["counts"]["label_only"] == 0
    assert dropped["excluded"][0]["kept"] == "no" and dropped["excluded"][0]["image"].endswith(lone)


def _casia1_layout(root):
    """Original CASIA v1.0 names under Sp/, the revised-name masks under GT/Sp/, one per typo kind."""
    pixel = np.zeros((4, 4, 3), np.uint8)
    images = [
        "Sp_D_NRN_A_cha0011_cha0042_0507",  # exact
        "Sp_D_NRN_A_ani0080_sec0005_0426",  # ids swapped in the revised name
        "Sp_D_NRN_A_ant0063_cha0010_0300",  # `ant0063` for `nat0063`
        "Sp_D_NRN_A_sec0012_ani0054.0257",  # a dot before the number
        "Sp_D_NRN_A_pla0001_art0020_0333",  # the target id differs
        "Sp_D_NNN_A_sec0049_sec0049_0117",  # no mask at all
        "Sp_D_NRN_A_arc0001_arc0002_0500",  # two masks carry 0500: ambiguous, not matched
        "Sp_D_NRN_A_txt0001_txt0002_0600",  # 0600's mask shares no id: not matched
    ]
    masks = [
        "Sp_D_NRN_A_cha0011_cha0042_0507", "Sp_D_NRN_A_sec0005_ani0080_0426",
        "Sp_D_NRN_A_nat0063_cha0010_0300", "Sp_D_NRN_A_sec0012_ani0054_0257",
        "Sp_D_NRN_A_pla0001_art0021_0333", "Sp_D_NRN_A_arc0001_arc0009_0500",
        "Sp_D_NRN_A_nat0001_arc0002_0500", "Sp_D_NRN_A_cha0001_cha0002_0600",
    ]  # fmt: skip
    (root / "Au").mkdir(parents=True)
    Image.fromarray(pixel).save(root / "Au" / "Au_ani_0001.jpg")
    for name in images:
        (root / "Sp").mkdir(exist_ok=True)
        Image.fromarray(pixel).save(root / "Sp" / f"{name}.jpg")
    for name in masks:
        (root / "GT" / "Sp").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(root / "GT" / "Sp" / f"{name}_gt.png")
    return images, masks


def test_casia1_typos_matched_by_unique_number_and_one_id(tmp_path):
    images, masks = _casia1_layout(tmp_path / "casia1")
    report = prepare("casia1", tmp_path / "casia1", tmp_path / "m.csv", edges=False, verbose=False)
    df = read_manifest(tmp_path / "m.csv")
    got = {Path(i).stem: (Path(m).name[:-7] if m else "", k)
           for i, m, k in zip(df["image"], df["mask"], df["match"], strict=True) if "Sp_" in i}
    assert got == {
        images[0]: (masks[0], "exact"),
        images[1]: (masks[1], "revised-name"),
        images[2]: (masks[2], "serial-number"),
        images[3]: (masks[3], "revised-name"),
        images[4]: (masks[4], "serial-number"),
        images[5]: ("", "none"),
        images[6]: ("", "none"),
        images[7]: ("", "none"),
    }
    c = report["counts"]
    assert (c["masks_matched_exact"], c["masks_matched_revised_name"]) == (1, 2)
    assert c["masks_matched_serial_number"] == 2 and c["label_only"] == 3
    notes = [n for n in report["notes"] if "unique number" in n]
    assert len(notes) == 2 and "cha0010" in notes[0] and "pla0001" in notes[1]
    assert len(report["unused_masks"]) == 3


def test_cli_prepare_drop_unmatched(tmp_path, capsys):
    from sdfl_lib.cli import main

    _casia1_layout(tmp_path / "casia1")
    argv = ["data", "prepare", "casia1", "--root", str(tmp_path / "casia1"), "--out"]
    assert main([*argv, str(tmp_path / "k.csv")]) == 0
    assert "label-only fakes (no mask) (3)" in capsys.readouterr().out
    assert main([*argv, str(tmp_path / "d.csv"), "--drop-unmatched"]) == 0
    assert (read_manifest(tmp_path / "d.csv")["label"] == 1).sum() == 5
    assert main(["data", "prepare", "coverage", "--root", str(tmp_path), "--out",
                 str(tmp_path / "c.csv"), "--drop-unmatched"]) == 2
    assert "--drop-unmatched applies to casia1 and casia2" in capsys.readouterr().err


def test_casia2_and_coverage_samples(shared_data, tmp_path):
    report = prepare("casia2", shared_data / "casia2-sample", tmp_path / "c2.csv", verbose=False)
    assert report["counts"]["tampered_with_mask"] == 17 and report["counts"]["authentic"] == 0
    assert report["unmatched_images"] == [] and report["unused_masks"] == []
    report = prepare("coverage", shared_data / "coverage-sample", tmp_path / "cov.csv", verbose=False)
    assert (report["counts"]["authentic"], report["counts"]["tampered_with_mask"]) == (11, 11)
    assert [m["pair"] for m in report["size_mismatches"]] == ["41"]
    assert report["size_mismatches"][0]["mask_size"] != report["size_mismatches"][0]["image_size"]
    df = read_manifest(tmp_path / "cov.csv")
    assert df.loc[df.label == 1, "mask"].str.endswith("forged.tif").all()
    # Generated edge maps are at the image's size, even where the mask is not.
    edge = df.loc[df["pair"].astype(str) == "41", "edge"].iloc[-1]
    assert Image.open(edge).size == (588, 376)


def test_ffpp_sample_frames_masks_and_source_index(shared_data, tmp_path):
    out = tmp_path / "ff" / "frames.csv"
    report = prepare("ffpp", shared_data / "faceforensics-sample", out,
                     real_frames=1, fake_frames=1, verbose=False)
    df = read_manifest(out)
    fakes, reals = df[df.label == 1], df[df.label == 0]
    assert sorted(fakes["video"]) == ["004_982", "634_660"]
    assert sorted(reals["video"].astype(str).str.zfill(3)) == ["004", "634"]
    assert sorted(fakes["source"]) == ["ffpp-faceswap", "ffpp-neuraltextures"]
    assert {Path(f).name for f in df["video_file"]} == {"004.mp4", "634.mp4", "004_982.mp4", "634_660.mp4"}
    assert report["counts"]["masks_from_difference"] == 2
    for r in fakes.itertuples():
        mask = load_mask(r.mask)
        assert mask.shape == (720, 1280) and 0 < mask.mean() < 0.2
        assert int(r.source_frame) == int(r.frame) == frame_indices(309 if "004" in r.video else 338, 1)[0]
        assert r.edge
    assert report["counts"]["label_only"] == 0


def test_difference_mask_finds_the_changed_region():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-3, 4, real.shape), 0, 255).astype(np.uint8)
    fake[40:80, 60:110] = 255 - fake[40:80, 60:110]
    mask = difference_mask(real, fake)
    truth = np.zeros((120, 160), np.uint8)
    truth[40:80, 60:110] = 1
    assert (mask & truth).sum() / truth.sum() > 0.95
    # Outside the region only the blur's halo (sigma = 1.2 px) may be marked.
    halo = cv2.dilate(truth, np.ones((9, 9), np.uint8))
    assert (mask & (1 - halo)).sum() == 0


def _png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_columbia_region_from_colour_coded_edgemask(tmp_path):
    root = tmp_path / "columbia"
    img = np.zeros((30, 40, 3), np.uint8)
    _png(img, root / "4cam_auth" / "canong3_02_sub_01.tif")
    _png(img, root / "4cam_splc" / "canong3_canonxt_sub_01.tif")
    _png(img, root / "4cam_splc" / "canong3_canonxt_sub_02.tif")
    code = np.zeros((30, 40, 3), np.uint8)
    code[..., 0] = 255  # host region in red
    code[5:20, 10:30] = (0, 255, 0)  # spliced region in green
    code[5, 10:30] = (255, 255, 0)  # boundary line
    edgemask = root / "4cam_splc" / "edgemask" / "canong3_canonxt_sub_01_edgemask.jpg"
    edgemask.parent.mkdir(parents=True)
    cv2.imwrite(str(edgemask), code[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
    report = prepare("columbia", root, tmp_path / "col.csv", verbose=False)
    assert report["counts"]["authentic"] == 1 and report["counts"]["tampered_with_mask"] == 1
    assert len(report["excluded"]) == 1
    df = read_manifest(tmp_path / "col.csv")
    mask = load_mask(df.loc[df.label == 1, "mask"].iloc[0])
    truth = np.zeros((30, 40), np.uint8)
    truth[6:20, 10:30] = 1
    assert np.abs(mask.astype(int) - truth).sum() <= 20
    assert columbia_mask(code).sum() == 14 * 20


def test_nist16_reference_csv_and_inverted_masks(tmp_path):
    root = tmp_path / "NC2016_Test0613"
    mask = np.full((20, 20), 255, np.uint8)
    mask[5:10, 5:10] = 0  # NIST marks the manipulated region in black
    _png(np.zeros((20, 20, 3), np.uint8), root / "probe" / "NC2016_0001.jpg")
    _png(np.zeros((20, 20, 3), np.uint8), root / "probe" / "NC2016_0002.jpg")
    _png(mask, root / "reference" / "manipulation" / "mask" / "NC2016_0001.png")
    (root / "reference" / "manipulation" / "NC2016-manipulation-ref.csv").write_text(
        "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget\n"
        "manipulation|NC2016_0001|probe/NC2016_0001.jpg|reference/manipulation/mask/NC2016_0001.png|Y\n"
        "manipulation|NC2016_0002|probe/NC2016_0002.jpg||N\n"
    )
    report = prepare("nist16", root, tmp_path / "nist.csv", verbose=False)
    assert (report["counts"]["tampered"], report["counts"]["authentic"]) == (1, 0)
    df = read_manifest(tmp_path / "nist.csv")
    assert load_mask(df["mask"][0]).sum() == 25
    report = prepare("nist16", root, tmp_path / "n2.csv", include_authentic=True, verbose=False)
    assert report["counts"]["authentic"] == 1


def test_icnc_deepfakes_and_cifake_layouts(tmp_path):
    root = tmp_path / "icnc"
    frame, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    for sub in ("image", "mask", "edge"):
        _png(mask if sub != "image" else frame, root / sub / "Deepfakes" / "Deepfakes_000_003_0010.png")
    _png(frame, root / "image" / "FaceSwap" / "FaceSwap_001_002_0005.png")  # no mask
    _png(frame, root / "image" / "Original" / "youtube_000_0010.png")
    _png(frame, root / "image" / "Original" / "actors_01__walk_0003.png")
    report = prepare("icnc-deepfakes", root, tmp_path / "icnc.csv", verbose=False)
    c = report["counts"]
    assert (c["authentic"], c["tampered_with_mask"], c["real_youtube"], c["real_actors"]) == (2, 1, 1, 1)
    assert len(report["unmatched_images"]) == 1 and "edges_generated" not in c
    root = tmp_path / "cifake"
    for subset in ("train", "test"):
        for kind in ("REAL", "FAKE"):
            for i in range(2):
                _png(np.zeros((32, 32, 3), np.uint8), root / subset / kind / f"{i}.jpg")
    report = prepare("cifake", root, tmp_path / "cifake.csv", verbose=False)
    assert report["counts"]["label_only"] == 4 and report["counts"]["authentic"] == 4
    assert read_manifest(tmp_path / "cifake.csv")["label_only"].sum() == 4


def test_unknown_name_and_missing_root(tmp_path):
    assert sorted(PREPARERS) == sorted(
        ["casia2", "casia1", "columbia", "coverage", "nist16", "icnc-deepfakes", "ffpp", "cifake"]
    )
    with pytest.raises(ValueError, match="known: casia1"):
        prepare("casia3", tmp_path, tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        prepare("casia2", tmp_path / "nope", tmp_path / "x.csv")
