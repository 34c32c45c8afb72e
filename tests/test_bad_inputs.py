"""Bad input through the real CLI and the API: one clear line, a documented exit code, nothing
silently skipped (the error contract of `sdfl_lib.errors`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sdfl_lib.cli import main as sdfl
from sdfl_lib.errors import EXIT_FAILED, EXIT_UNSCORED, EXIT_USAGE

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate import RedChannel, _toy_set, _write  # noqa: E402


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"sdfl {command}: error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# ---- 7: the error contract ------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, code, needle",
    [
        (["--batch-size", "0"], EXIT_USAGE, "--batch-size: must be >= 1"),
        (["--workers", "-1"], EXIT_USAGE, "--workers: must be >= 0"),
        (["--image-size", "-5"], EXIT_USAGE, "--image-size: must be >= 1"),
        (["--threshold", "1.5"], EXIT_USAGE, "--threshold: must be in [0, 1]"),
        (["--ci", "-1"], EXIT_USAGE, "--ci: must be >= 0"),
    ],
)
def test_evaluate_refuses_bad_numbers_in_one_line(tmp_path, capsys, extra, code, needle):
    manifest = _toy_set(tmp_path / "data", n=2)
    argv = ["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        sdfl(argv + extra)
    assert exc.value.code == code
    assert needle in capsys.readouterr().err


def test_user_errors_are_one_line_with_exit_1_or_2_and_debug_shows_the_traceback(
    tmp_path, capsys
):
    manifest = _toy_set(tmp_path / "data", n=2)
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("image,mask,edge,label,source\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x01garbage")
    (tmp_path / "bad.yaml").write_text("lr: [\n")
    out = str(tmp_path / "ev")
    cases = [
        (["evaluate", "--method", "ela", "--manifest", str(tmp_path / "nope.csv"), "--out", out],
         "evaluate", EXIT_FAILED, "nope.csv"),
        (["evaluate", "--method", "nosuch", "--manifest", str(manifest), "--out", out],
         "evaluate", EXIT_USAGE, "nosuch"),
        (["evaluate", "--checkpoint", str(text), "--manifest", str(manifest), "--out", out],
         "evaluate", EXIT_FAILED, "notes.pt"),
        (["evaluate", "--method", "ela", "--manifest", str(header_only), "--out", out],
         "evaluate", EXIT_FAILED, "has no rows"),
        (["predict", str(tmp_path / "data" / "img"), "--checkpoint", str(text), "--out", out],
         "predict", EXIT_FAILED, "notes.pt"),
        (["evaluate", "--method", "ela", "--manifest", str(tmp_path / "empty.csv"), "--out", out],
         "evaluate", EXIT_FAILED, "empty.csv: empty file"),
        (["evaluate", "--method", "ela", "--manifest", str(tmp_path / "binary.csv"), "--out", out],
         "evaluate", EXIT_FAILED, "binary.csv: not a CSV manifest"),
        (["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", out,
          "--subsets", "nosuch"], "evaluate", EXIT_USAGE, "unknown subset(s) ['nosuch']"),
        (["predict", str(text), "--method", "ela", "--out", out],
         "predict", EXIT_FAILED, "notes.pt"),
        (["train", "--config", str(tmp_path / "bad.yaml")], "train", EXIT_USAGE,
         "bad.yaml: not valid YAML (line 2"),
        (["train", "image_size=-5"], "train", EXIT_USAGE, "image_size"),
        (["train", "workers=-1"], "train", EXIT_USAGE, "workers"),
        (["train", "lr=nan"], "train", EXIT_USAGE, "lr must be a finite number"),
        (["train", "plateau_factor=2"], "train", EXIT_USAGE, "plateau_factor must be in (0, 1]"),
        (["train", "train_manifest=" + str(tmp_path / "none.csv"), f"out_dir={tmp_path / 'r'}"],
         "train", EXIT_FAILED, "none.csv"),
    ]  # fmt: skip
    for argv, command, code, needle in cases:
        assert sdfl(argv) == code, argv
        assert needle in _one_line_error(capsys, command), argv
    with pytest.raises(Exception, match="notes.pt"):
        sdfl(["--debug", *cases[2][0]])


def test_mask_policy_fail_and_every_row_unreadable_end_in_one_line(tmp_path, capsys):
    manifest = _toy_set(tmp_path / "data", n=2)
    df = pd.read_csv(manifest, keep_default_na=False)
    df.loc[1, "mask"] = _write(tmp_path / "small.png", np.full((8, 8), 255, np.uint8))
    df.to_csv(tmp_path / "m.csv", index=False)
    argv = ["evaluate", "--method", "ela", "--manifest", str(tmp_path / "m.csv"),
            "--image-size", "32", "--no-figures", "--mask-policy", "fail"]  # fmt: skip
    for workers in ("0", "1"):
        code = sdfl([*argv, "--out", str(tmp_path / f"f{workers}"), "--workers", workers])
        assert code == EXIT_FAILED
        assert "small.png" in _one_line_error(capsys, "evaluate")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    pd.DataFrame([{"image": str(bad), "label": 0}] * 2).to_csv(tmp_path / "b.csv", index=False)
    code = sdfl(["evaluate", "--method", "ela", "--manifest", str(tmp_path / "b.csv"),
                 "--out", str(tmp_path / "b"), "--workers", "0"])  # fmt: skip
    assert code == EXIT_FAILED
    line = _one_line_error(capsys, "evaluate")
    assert "none of the 2 rows" in line and "bad.png" in line


# ---- 1: missing or unreadable masks are counted, listed, and change the exit code -------------
def test_missing_and_unreadable_masks_are_unscored_rows_not_label_only(tmp_path, capsys):
    manifest = _toy_set(tmp_path / "data", n=6)
    df = pd.read_csv(manifest, keep_default_na=False)
    df.loc[1, "mask"] = str(tmp_path / "data" / "mask" / "gone.png")
    (tmp_path / "data" / "mask" / "broken.png").write_text("not a png")
    df.loc[3, "mask"] = str(tmp_path / "data" / "mask" / "broken.png")
    df.to_csv(tmp_path / "m.csv", index=False)
    from sdfl_lib.evaluate import evaluate

    m = evaluate(RedChannel(), tmp_path / "m.csv", tmp_path / "api", workers=0, figures=False,
                 progress=False)  # fmt: skip
    assert m["errors"]["count"] == 2
    listed = {e["row"]: e["error"] for e in m["errors"]["images"]}
    assert "gone.png" in listed[2] and "file not found" in listed[2]
    assert "broken.png" in listed[4]
    assert m["subsets"]["both"]["count/images"] == 4  # neither is scored as label-only
    assert m["label_only"]["count"] == 0
    report = (tmp_path / "api" / "report.md").read_text()
    assert "gone.png" in report and "broken.png" in report

    argv = ["evaluate", "--checkpoint", "", "--manifest", str(tmp_path / "m.csv"),
            "--workers", "0", "--no-figures", "--image-size", "32"]  # fmt: skip
    argv[1:3] = ["--method", "ela"]
    assert sdfl([*argv, "--out", str(tmp_path / "cli")]) == EXIT_UNSCORED
    err = capsys.readouterr().err
    assert "2 row(s) could not be scored" in err and "metrics.json" in err and "gone.png" in err
    assert sdfl([*argv, "--out", str(tmp_path / "cli"), "--allow-unscored"]) == 0


def test_explore_lists_decompression_bombs_and_exits_3(tmp_path, capsys, monkeypatch):
    manifest = _toy_set(tmp_path / "data", n=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 32x32 files are "bombs" now (2 images, 1 mask)
    code = sdfl(["data", "explore", str(manifest), "--out-dir", str(tmp_path / "fig")])
    assert code == EXIT_UNSCORED
    err = capsys.readouterr().err
    assert "3 file(s) left out" in err and "decompression bomb" in err and "Traceback" not in err
    listed = pd.read_csv(tmp_path / "fig" / "unreadable.csv")
    assert len(listed) == 3 and listed["error"].str.contains("decompression bomb").all()


# ---- 5: training checks its data first; a file going bad later stops in one line --------------
def _train_config(manifest: Path, out_dir: Path, **kw):
    from test_train_engine import train_test_tiny  # noqa: F401  (registers the tiny model)

    from sdfl_lib.train import TrainConfig

    base = dict(model="train_test_tiny", image_size=16, batch_size=2, epochs=1, workers=0,
                progress=False, train_manifest=str(manifest), out_dir=str(out_dir))
    return TrainConfig(**{**base, **kw})


def test_training_preflight_reports_every_problem_before_building(tmp_path, monkeypatch):
    from sdfl_lib.errors import DataError
    from sdfl_lib.train import build, fit

    manifest = _toy_set(tmp_path / "data", n=6)
    df = pd.read_csv(manifest, keep_default_na=False)
    df.loc[0, "image"] = str(tmp_path / "gone.png")
    (tmp_path / "data" / "img" / "2.png").write_bytes(b"\x89PNG broken")
    df.loc[4, "mask"] = df.loc[1, "mask"]  # an authentic row with a mask
    df.to_csv(tmp_path / "m.csv", index=False)
    monkeypatch.setattr(build, "build_train_model", lambda cfg: pytest.fail("model was built"))
    with pytest.raises(DataError) as exc:
        fit(_train_config(tmp_path / "m.csv", tmp_path / "run"))
    text = str(exc.value)
    assert "3 problem(s)" in text and "\n" not in text
    for needle in ("missing_image x1 (row 1", "unreadable_image x1 (row 3",
                   "authentic_with_mask x1 (row 5"):
        assert needle in text


def test_a_file_that_goes_bad_mid_run_stops_in_one_line(tmp_path, monkeypatch, capsys):
    from sdfl_lib.train import build

    manifest = _toy_set(tmp_path / "data", n=4)
    real = build.preflight

    def then_break(path, *args, **kw):
        report = real(path, *args, **kw)
        (tmp_path / "data" / "img" / "3.png").write_bytes(b"gone bad")
        return report

    monkeypatch.setattr(build, "preflight", then_break)  # where training calls it
    cfg = _train_config(manifest, tmp_path / "run", workers=1, balance_classes=False)
    argv = ["train", *[f"{k}={v}" for k, v in cfg.to_dict().items() if k != "model_kwargs"]]
    assert sdfl(argv) == EXIT_FAILED
    line = _one_line_error(capsys, "train")
    assert "3.png" in line and "sdfl train --resume" in line and "Traceback" not in line


# ---- 8: one mask rule (every non-zero pixel is tampered), reported the same way everywhere -----
def test_one_mask_rule_in_validation_training_and_evaluation(tmp_path):
    from sdfl_lib.data import ManipulationDataset
    from sdfl_lib.data.validate import validate_manifest
    from sdfl_lib.evaluate import evaluate

    image = np.zeros((16, 16, 3), np.uint8)
    grey = np.zeros((16, 16), np.uint8)
    grey[2:6, 2:6], grey[8:12, 8:12] = 100, 200  # two grey levels: both regions are tampered
    image[..., 0] = (grey > 0) * 255
    rows = [
        {"image": _write(tmp_path / "grey.png", image), "mask": _write(tmp_path / "gm.png", grey),
         "label": 1},
        {"image": _write(tmp_path / "empty.png", image * 0),
         "mask": _write(tmp_path / "em.png", grey * 0), "label": 1},
        {"image": _write(tmp_path / "auth.png", image * 0),
         "mask": _write(tmp_path / "am.png", grey), "label": 0},
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)

    report = validate_manifest(tmp_path / "m.csv", progress=False)
    by_kind = {(w["kind"], w["row"]): w for w in report["warnings"] + report["errors"]}
    assert "every non-zero pixel" in by_kind[("mask_non_binary", 1)]["detail"]
    assert ("tampered_empty_mask", 2) in by_kind and ("authentic_with_mask", 3) in by_kind

    with pytest.warns(UserWarning, match=r"1 authentic row\(s\) have a mask: it is ignored"):
        item = ManipulationDataset(tmp_path / "m.csv", image_size=None, augment=False)[0]
    assert int(item["mask"].sum()) == 32  # both the 100 and the 200 region

    m = evaluate(RedChannel(), tmp_path / "m.csv", tmp_path / "ev", workers=0, figures=False,
                 progress=False)  # fmt: skip
    table = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    first = table[table["row"] == 0].iloc[0]
    assert (first["tp"], first["fn"]) == (32, 0)  # the 100 region is ground truth too
    assert m["tampered_empty_mask"] == {"count": 1, "images": [rows[1]["image"]]}
    assert [e["row"] for e in m["errors"]["images"]] == [3]
    assert "authentic row (label 0) with a mask" in m["errors"]["images"][0]["error"]


# ---- 3: data split keeps every image in one part and refuses contradictory labels --------------
def test_split_keeps_duplicates_together_and_refuses_conflicting_labels(tmp_path, capsys):
    from sdfl_lib.data.validate import validate_manifest

    rows = [{"image": f"img/{i}.png", "label": i % 2, "source": "s"} for i in range(30)]
    rows += [{"image": "img/1.png", "label": 1, "source": "s"}] * 4  # one image, five rows
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    argv = ["data", "split", str(tmp_path / "m.csv"), "--out-dir", str(tmp_path / "parts"),
            "--ratios", "1:1:1"]  # fmt: skip
    assert sdfl(argv) == 0
    found = {p: (pd.read_csv(tmp_path / "parts" / f"m_{p}.csv")["image"].str.endswith("img/1.png")
                 .sum()) for p in ("train", "val", "test")}  # fmt: skip
    assert sorted(found.values()) == [0, 0, 5]

    rows.append({"image": "img/2.png", "label": 1, "source": "s"})  # also listed as authentic
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    assert sdfl(argv) == EXIT_FAILED
    line = _one_line_error(capsys, "data split")
    assert "img/2.png is listed as both authentic and tampered (rows [3, 35])" in line
    kinds = {e["kind"] for e in validate_manifest(tmp_path / "m.csv", progress=False)["errors"]}
    assert "conflicting_labels" in kinds
    code = sdfl(["evaluate", "--method", "ela", "--manifest", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "ev")])  # fmt: skip
    assert code == EXIT_FAILED and "both authentic and tampered" in _one_line_error(
        capsys, "evaluate"
    )
    (tmp_path / "h.csv").write_text("image,mask,edge,label,source\n")
    assert sdfl(["data", "split", str(tmp_path / "h.csv"), "--out-dir", str(tmp_path / "h")]) == 1
    assert "no rows to split" in _one_line_error(capsys, "data split")


# ---- 4: predict DIR neither overwrites, nor skips unseen, nor predicts its own outputs ----------
def test_predict_folder_collisions_unlisted_files_and_out_inside_input(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x.png", "x.jpg", "x.png.jpg"):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(src / name)
    (src / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (src / "noext").write_bytes(b"plain bytes")
    (src / "link.png").symlink_to(src / "gone.png")
    argv = ["predict", str(src), "--method", "noise", "--image-size", "16",
            "--out", str(src / "out")]  # fmt: skip
    assert sdfl(argv) == EXIT_UNSCORED
    err = capsys.readouterr().err
    assert "3 of 6 file(s) could not be read" in err
    listed = pd.read_csv(src / "out" / "unreadable.csv").set_index("file")["error"]
    assert set(listed.index) == {str(src / n) for n in ("photo.heic", "noext", "link.png")}
    assert listed[str(src / "link.png")] == "dangling symbolic link"
    assert "no file extension" in listed[str(src / "noext")]
    sources = {json.loads(p.read_text())["image"] for p in (src / "out").glob("*.json")}
    assert sources == {str(src / n) for n in ("x.png", "x.jpg", "x.png.jpg")}  # three outputs
    # A second run into the same folder inside the input predicts the same six inputs.
    assert sdfl(argv) == EXIT_UNSCORED
    err = capsys.readouterr().err
    assert "3 of 6 file(s)" in err and "10 file(s) in" in err and "earlier run" in err
    assert sdfl([*argv, "--allow-unscored"]) == 0
    # --out the input folder itself: its images are still inputs, its outputs are not.
    argv[-1] = str(src)
    assert sdfl(argv) == EXIT_UNSCORED
    assert "3 of 6 file(s)" in capsys.readouterr().err


# ---- 9: data convert: prefixes end at a folder, a BOM is no path, an empty list is an error -----
def test_convert_prefix_boundary_bom_and_empty_list(tmp_path, capsys):
    listed = tmp_path / "paths_train.txt"
    lines = ["/home/them/data/a.jpg None None 0", "/home/them/database/b.jpg /home/them/data/b.png None 1"]
    listed.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    out = tmp_path / "m.csv"
    argv = ["data", "convert", str(listed), str(out), "--absolute",
            "--replace-prefix", "/home/them/data", "/new/root"]  # fmt: skip
    assert sdfl(argv) == 0
    df = pd.read_csv(out, keep_default_na=False)
    assert df["image"].tolist() == ["/new/root/a.jpg", "/home/them/database/b.jpg"]
    assert df["mask"].tolist() == ["", "/new/root/b.png"]
    assert "in 2 path(s)" in capsys.readouterr().out
    empty = tmp_path / "paths_empty.txt"
    empty.write_text("\n")
    assert sdfl(["data", "convert", str(empty), str(tmp_path / "e.csv")]) == EXIT_FAILED
    assert "holds no rows" in _one_line_error(capsys, "data convert")
    assert not (tmp_path / "e.csv").exists()


# ---- 10: a header-only manifest fails validation ------------------------------------------------
def test_header_only_manifest_fails_validation(tmp_path, capsys):
    (tmp_path / "h.csv").write_text("image,mask,edge,label,source\n")
    assert sdfl(["data", "validate", str(tmp_path / "h.csv")]) == EXIT_FAILED
    assert "empty_manifest" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "synth", "--out", "x", "--n", "0"],
        ["data", "split", "m.csv", "--out-dir", "x", "--seed", "-1"],
        ["data", "explore", "m.csv", "--out-dir", "x", "--examples", "-1"],
        ["data", "validate", "m.csv", "--max-pixels", "0"],
        ["train", "--nproc", "0"],
    ],
)
def test_out_of_range_numbers_are_usage_errors_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        sdfl(argv)
    assert exc.value.code == EXIT_USAGE
    assert "must be >=" in capsys.readouterr().err


# ---- issue 22 · 1: a failed prepare writes nothing; an existing manifest is replaced only when asked
def test_prepare_never_destroys_an_existing_manifest(shared_data, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    argv = ["data", "prepare", "coverage", "--out", str(manifest), "--root"]
    assert sdfl([*argv, str(shared_data / "coverage-sample")]) == 0
    before = manifest.read_bytes()
    assert before.count(b"\n") == 23
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", shared_data / "casia1-sample"):  # empty, another layout
        capsys.readouterr()
        assert sdfl([*argv, str(root), "--overwrite"]) == EXIT_FAILED
        line = _one_line_error(capsys, "data prepare")
        assert "nothing to prepare" in line and f"{manifest} was not written" in line
        assert manifest.read_bytes() == before
    assert sdfl([*argv, str(shared_data / "coverage-sample")]) == EXIT_FAILED
    assert "m.csv exists: pass --overwrite" in _one_line_error(capsys, "data prepare")
    assert manifest.read_bytes() == before
    assert sdfl([*argv, str(shared_data / "coverage-sample"), "--overwrite"]) == 0
    assert f"replaced the existing {manifest} (22 rows before, 22 now)" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


# ---- issue 22 · 9, 11, 5: checkpoints with NaN weights, of a newer format, with bad model keywords
def test_checkpoints_that_cannot_give_scores_are_refused_naming_the_file(tmp_path, capsys):
    import torch

    from sdfl_lib.models import build_model, make_checkpoint

    manifest = _toy_set(tmp_path / "data", n=2)
    image = pd.read_csv(manifest)["image"][0]
    good = make_checkpoint(build_model("ela", image_size=32))
    nan = {**good, "state_dict": {"settings": torch.tensor([90.0, float("nan"), 3.0])}}
    newer = {**good, "version": 99}
    odd_spec = {**good, "spec": {**good["spec"], "colour": "blue"}}
    for ckpt, needle in ((nan, "NaN or infinite values (settings)"),
                         (newer, "format version 99"),
                         (odd_spec, "unexpected keyword argument 'colour'")):  # fmt: skip
        path = tmp_path / "c.pt"
        torch.save(ckpt, path)
        for argv, command in (
            (["predict", image, "--out", str(tmp_path / "p")], "predict"),
            (["evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "e")], "evaluate"),
        ):
            assert sdfl([*argv, "--checkpoint", str(path)]) == EXIT_FAILED, (needle, command)
            line = _one_line_error(capsys, command)
            assert f"{path}: " in line and needle in line
    assert not list(tmp_path.rglob("*.json"))  # no prediction, no metrics written


def test_unknown_model_keywords_are_usage_errors_naming_model_and_key():
    from sdfl_lib.errors import UsageError
    from sdfl_lib.models import build_model
    from sdfl_lib.train.build import build_train_model
    from sdfl_lib.train.config import TrainConfig

    with pytest.raises(UsageError, match="model 'mvssnet' takes no 'input_mean'; it takes image_s"):
        TrainConfig(model="mvssnet", model_kwargs={"input_mean": [0, 0, 0]})  # before any data
    with pytest.raises(UsageError, match="model 'ours': .*'depth'"):
        build_model("ours", depth=3)
    config = TrainConfig(model="mvssnet")
    config.model_kwargs = {"input_mean": [0, 0, 0]}  # set after the check: the build still says
    with pytest.raises(UsageError, match="model 'mvssnet': .*'input_mean'; it takes image_size"):
        build_train_model(config)


# ---- issue 22 · 8: manifests with extra fields, a column twice, an image listed thousands of times
def test_manifest_rows_with_extra_fields_and_doubled_columns_are_named(tmp_path, capsys):
    manifest = _toy_set(tmp_path / "data", n=3)
    lines = manifest.read_text().splitlines()
    cases = {
        "extra.csv": ([lines[0], lines[1], lines[2] + ",x", lines[3]],
                      "row 2 (line 3) has 6 fields, the header 5 (a trailing comma?); 1 row(s)"),
        "trailing.csv": ([lines[0]] + [line + "," for line in lines[1:]],
                         "row 1 (line 2) has 6 fields, the header 5 (a trailing comma?); 3 row(s)"),
        "twice.csv": ([lines[0] + ",label"] + [line + ",1" for line in lines[1:]],
                      "column 'label' appears 2 times in the header (columns [4, 6])"),
    }  # fmt: skip
    for name, (text, needle) in cases.items():
        path = manifest.with_name(name)
        path.write_text("\n".join(text) + "\n")
        for argv, command in ((["data", "validate", str(path)], "data validate"),
                              (["evaluate", "--method", "ela", "--manifest", str(path), "--out",
                                str(tmp_path / "ev")], "evaluate")):  # fmt: skip
            assert sdfl(argv) == EXIT_FAILED, (name, command)
            line = _one_line_error(capsys, command)
            assert str(path) in line and needle in line, line


def test_a_duplicate_listed_thousands_of_times_is_summarised(tmp_path, capsys):
    from sdfl_lib.data.validate import validate_manifest

    manifest = _toy_set(tmp_path / "data", n=2)
    first = manifest.read_text().splitlines()[1]
    manifest.write_text("image,mask,edge,label,source\n" + (first + "\n") * 2000)
    report = validate_manifest(manifest, progress=False, decode=False)
    (item,) = [w for w in report["warnings"] if w["kind"] == "duplicate_image"]
    assert item["detail"] == "rows [1, 2, 3, 4, 5, ...] (2000 in all)"
    assert report["counts"]["duplicate_image"] == 1 and report["counts"]["duplicate_basename"] == 0


# ---- issue 22 · 11: EXIF orientation said, float TIFFs scaled, the other CASIA refused, the bomb hint
def test_exif_orientation_is_not_applied_and_said_so(tmp_path, capsys):
    from sdfl_lib.data.io import load_image
    from sdfl_lib.data.validate import validate_manifest

    stored = np.zeros((20, 40, 3), np.uint8)  # landscape pixels, displayed as portrait (tag 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif)
    drawn = np.zeros((40, 20), np.uint8)  # a mask drawn on the photo as displayed
    drawn[5:10, 5:10] = 255
    Image.fromarray(drawn).save(tmp_path / "mask.png")
    pd.DataFrame([{"image": "photo.jpg", "mask": "mask.png", "label": 1}]).to_csv(
        tmp_path / "m.csv", index=False)
    assert load_image(tmp_path / "photo.jpg").shape == (20, 40, 3)  # the stored grid
    report = validate_manifest(tmp_path / "m.csv", progress=False)
    details = {w["kind"]: w["detail"] for w in report["warnings"]}
    assert "EXIF orientation 6 not applied" in details["exif_orientation"]
    assert "rotate the mask to the stored pixels" in details["mask_size_mismatch"]


def test_float_tiffs_are_scaled_from_0_1_or_refused(tmp_path):
    from sdfl_lib.data.io import ImageReadError, load_image

    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")
    stats: dict = {}
    image = load_image(tmp_path / "unit.tif", stats=stats)
    assert image[..., 0].min() == 0 and image[..., 0].max() == 255 and len(np.unique(image)) == 16
    assert stats == {"float": 1, "grey": 1}
    Image.fromarray(ramp * 4 - 1, mode="F").save(tmp_path / "signed.tif")
    with pytest.raises(ImageReadError, match=r"signed.tif: float image with values in \[-1, 3\]"):
        load_image(tmp_path / "signed.tif")


def test_prepare_refuses_the_other_casia_version(shared_data, tmp_path, capsys):
    for name, root, other in (("casia1", "casia2-sample", "casia2"),
                              ("casia2", "casia1-sample", "casia1")):  # fmt: skip
        out = tmp_path / f"{name}.csv"
        argv = ["data", "prepare", name, "--root", str(shared_data / root), "--out", str(out)]
        assert sdfl(argv) == EXIT_FAILED
        line = _one_line_error(capsys, "data prepare")
        assert f"`sdfl data prepare {other}`" in line and not out.exists()


def test_the_decompression_bomb_hint_names_a_limit_every_command_takes(tmp_path, capsys,
                                                                       monkeypatch):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.png")
    argv = ["predict", str(tmp_path / "a.png"), "--method", "noise", "--image-size", "16"]
    monkeypatch.setenv("SDFL_MAX_PIXELS", "100")
    assert sdfl([*argv, "--out", str(tmp_path / "p")]) == EXIT_FAILED
    line = _one_line_error(capsys, "predict")
    assert "decompression bomb" in line and "SDFL_MAX_PIXELS=N" in line
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own limit is raised by the variable
    monkeypatch.setenv("SDFL_MAX_PIXELS", "1000")
    assert sdfl([*argv, "--out", str(tmp_path / "q")]) == 0
    monkeypatch.setenv("SDFL_MAX_PIXELS", "lots")
    assert sdfl([*argv, "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "SDFL_MAX_PIXELS must be a whole number" in _one_line_error(capsys, "predict")


# ---- issue 22 · 2: one evaluation at a time in a folder; a table written twice is not scored
def test_a_second_evaluation_into_a_busy_folder_fails_and_the_folder_stays_usable(tmp_path,
                                                                                   capsys):
    from sdfl_lib.paths import folder_lock

    manifest = _toy_set(tmp_path / "data", n=4)
    out = tmp_path / "ev"
    argv = ["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(out),
            "--image-size", "32", "--workers", "0", "--no-figures"]  # fmt: skip
    with folder_lock(out, "sdfl evaluate"):  # as a first run holds it
        assert sdfl(argv) == EXIT_FAILED
        line = _one_line_error(capsys, "evaluate")
        assert f"{out} is in use by sdfl evaluate (pid " in line and "choose another" in line
    assert not (out / "predictions.csv").exists()
    assert sdfl(argv) == 0
    table = out / "predictions.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines + lines) + "\n")  # what two runs at once used to leave
    assert sdfl(argv) == EXIT_FAILED
    line = _one_line_error(capsys, "evaluate")
    assert f"{table} is damaged: line 6 is not a row of predictions" in line and "--no-resume" in line
    assert sdfl([*argv, "--no-resume"]) == 0
    assert len(table.read_text().splitlines()) == 5


# ---- issue 22 · 4: a full disk or a read-only folder ends in one line naming the file, exit 1
def _refuse_writes(monkeypatch, folder: Path, code: int, only: str = "") -> None:
    """Every write under `folder` (to a name containing `only`) fails as the system would on a
    full disk (ENOSPC: at the write, without a file name) or a read-only folder (EROFS: at the
    open, naming the file)."""
    import builtins
    import errno
    import io
    import os

    def refused(path: object) -> bool:
        text = os.path.abspath(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else ""
        return text.startswith(str(folder)) and only in os.path.basename(text)

    def error(path: object) -> OSError:
        return OSError(code, os.strerror(code), *([os.fspath(path)] if code == errno.EROFS else []))

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if refused(file) and any(c in mode for c in "wax+"):
            raise error(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if refused(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise error(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


@pytest.mark.parametrize("code", [28, 30], ids=["ENOSPC", "EROFS"])
def test_a_full_disk_or_read_only_folder_ends_in_one_line(tmp_path, capsys, monkeypatch, code,
                                                          shared_data):
    import os

    manifest = _toy_set(tmp_path / "data", n=4)
    out = tmp_path / "out"
    out.mkdir()
    why = os.strerror(code)
    cases = [
        (["data", "validate", str(manifest), "--json", str(out / "v.json")], "data validate",
         out / "v.json", ""),
        (["data", "prepare", "coverage", "--root", str(shared_data / "coverage-sample"), "--out",
          str(out / "c.csv")], "data prepare", out, ""),
        (["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(out / "ev"),
          "--image-size", "32", "--workers", "0", "--no-figures"], "evaluate", out / "ev", ""),
        (["evaluate", "--method", "ela", "--manifest", str(manifest), "--out", str(out / "ev2"),
          "--image-size", "32", "--workers", "0"], "evaluate", out / "ev2", ".png"),
        ([*_train_argv(manifest, out / "run")], "train", out / "run" / "state.pt", "state.pt"),
        (["predict", str(tmp_path / "data" / "img"), "--method", "noise", "--image-size", "16",
          "--out", str(out / "p")], "predict", out / "p", ""),
        (["predict", str(tmp_path / "data" / "img" / "0.png"), "--method", "noise", "--out",
          str(out / "p")], "predict", out / "p" / "0.json", ".json"),
    ]  # fmt: skip
    for argv, command, named, only in cases:
        (out / "ev").mkdir(exist_ok=True)
        (out / "run").mkdir(exist_ok=True)
        with monkeypatch.context() as patch:
            _refuse_writes(patch, out, code, only)
            assert sdfl(argv) == EXIT_FAILED, argv
        line = _one_line_error(capsys, command)
        assert f"cannot write {named}" in line and why in line, line


def _train_argv(manifest: Path, out_dir: Path) -> list[str]:
    cfg = _train_config(manifest, out_dir, workers=0, balance_classes=False)
    return ["train", *[f"{k}={v}" for k, v in cfg.to_dict().items() if k != "model_kwargs"]]


# ---- issue 22 · 10, 9, 11: predict never overwrites, never writes NaN, says what EXIF means
def test_predict_never_overwrites_another_images_prediction(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8)).save(tmp_path / folder / "same.jpg")
    out = tmp_path / "o"
    argv = ["--method", "noise", "--image-size", "16", "--out", str(out)]
    assert sdfl(["predict", str(tmp_path / "a" / "same.jpg"), *argv]) == 0
    capsys.readouterr()
    assert sdfl(["predict", str(tmp_path / "b" / "same.jpg"), *argv]) == 0
    assert "same.json holds another image's prediction: written as same.2.*" in capsys.readouterr().out
    recorded = {p.name: json.loads(p.read_text())["image"] for p in out.glob("*.json")}
    assert recorded == {"same.json": str(tmp_path / "a" / "same.jpg"),
                        "same.2.json": str(tmp_path / "b" / "same.jpg")}
    assert (out / "same.2_map.png").is_file() and (out / "same_map.png").is_file()
    assert sdfl(["predict", str(tmp_path / "b" / "same.jpg"), *argv]) == 0  # a rerun
    assert "same.2.json; replaces the earlier prediction of this file" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.json")) == ["same.2.json", "same.json"]


def test_predict_refuses_non_finite_outputs_and_notes_exif_orientation(tmp_path, capsys):
    import torch

    from sdfl_lib.errors import DataError
    from sdfl_lib.models.base import ModelOutput
    from sdfl_lib.predict import predict

    class Broken(torch.nn.Module):
        def forward(self, x):
            nan = torch.full((x.shape[0], 1), float("nan"))
            return ModelOutput(nan, torch.zeros(x.shape[0], 1, *x.shape[2:]))

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="a.png: the model gave non-finite outputs"):
        predict(tmp_path / "a.png", Broken().eval(), image_size=16)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    argv = ["predict", str(tmp_path / "turned.jpg"), "--method", "noise", "--image-size", "16",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert sdfl(argv) == 0
    assert "EXIF orientation 8 not applied" in capsys.readouterr().out
    written = json.loads((tmp_path / "o" / "turned.json").read_text())
    assert written["width"] == 20 and "stored pixel grid" in written["notes"][0]


# ---- issue 22 · 5: every command ends a mistake in one line on stderr, with the table's exit code
def _command_cases(tmp: Path, port: int) -> list[tuple[str, list[str], int]]:
    """(command, argv, exit code): one bad usage (2) and one bad data (1) per command of
    `sdfl --help` (`weights list` takes no data)."""
    manifest = _toy_set(tmp / "data", n=2)
    (tmp / "header.csv").write_text("image,mask,edge,label,source\n")
    (tmp / "twice.csv").write_text("image,label,label\na.png,1,1\n")
    (tmp / "empty.txt").write_text("\n")
    (tmp / "file").write_text("a file, not a folder")
    m, missing, out = str(manifest), str(tmp / "missing.csv"), str(tmp / "out")
    demo = str(Path(__file__).parents[1] / "params" / "demo.yaml")
    return [
        ("data prepare", ["data", "prepare", "casia3", "--root", str(tmp), "--out", out], 2),
        ("data prepare", ["data", "prepare", "casia2", "--root", missing, "--out", out], 1),
        ("data split", ["data", "split", m, "--out-dir", out, "--ratios", "1:1"], 2),
        ("data split", ["data", "split", str(tmp / "header.csv"), "--out-dir", out], 1),
        ("data validate", ["data", "validate", m, "--mask-policy", "guess"], 2),
        ("data validate", ["data", "validate", str(tmp / "twice.csv")], 1),
        ("data convert", ["data", "convert", m], 2),
        ("data convert", ["data", "convert", str(tmp / "empty.txt"), str(tmp / "e.csv")], 1),
        ("data explore", ["data", "explore", m, "--out-dir", out, "--examples", "-1"], 2),
        ("data explore", ["data", "explore", missing, "--out-dir", out], 1),
        ("data download", ["data", "download", "cifake"], 2),
        ("data download", ["data", "download", "cifake", "--to", out, "--url",
                           f"http://127.0.0.1:{port}/cifake.zip"], 1),
        ("data synth", ["data", "synth", "--out", out, "--n", "0"], 2),
        ("data synth", ["data", "synth", "--out", str(tmp / "file" / "s"), "--n", "2"], 1),
        ("train", ["train", "lr=nan"], 2),
        ("train", ["train", f"train_manifest={missing}", f"out_dir={out}"], 1),
        ("evaluate", ["evaluate", "--method", "ela", "--manifest", m, "--out", out,
                      "--threshold", "1.5"], 2),
        ("evaluate", ["evaluate", "--method", "ela", "--manifest", missing, "--out", out], 1),
        ("compare", ["compare", out, out, "--ci", "0"], 2),
        ("compare", ["compare", str(tmp / "no-run"), str(tmp / "no-run")], 1),
        ("predict", [ "predict", m, "--method", "ela", "--out", out, "--threshold", "2"], 2),
        ("predict", ["predict", str(tmp / "missing.png"), "--method", "ela", "--out", out], 1),
        ("weights list", ["weights", "list", "extra"], 2),
        ("weights download", ["weights", "download", "table3-1", "--timeout", "0"], 2),
        ("weights download", ["weights", "download", "table3-10"], 1),
        ("study", ["study", "--params", demo, "--set", "seed=abc"], 2),
        ("study", ["study", "--params", str(tmp / "missing.yaml")], 1),
        ("doctor", ["doctor", "--params", demo, "--set", "seed=abc"], 2),
        ("doctor", ["doctor", "--params", str(tmp / "missing.yaml")], 1),
    ]  # fmt: skip


def test_every_command_ends_a_mistake_in_one_line_with_its_exit_code(tmp_path, capsys,
                                                                      closed_port, monkeypatch):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    cases = _command_cases(tmp_path, closed_port)
    from sdfl_lib.cli import build_parser

    def commands(parser, prefix=""):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix}
        return {c for name, p in subs[0].choices.items() for c in commands(p, f"{prefix} {name}")}

    listed = {c.strip() for c in commands(build_parser())}
    assert {c for c, _, _ in cases} == listed  # every command and sub-command of `sdfl --help`
    for command, argv, code in cases:
        try:
            got = sdfl(argv)
        except SystemExit as exc:  # argparse's usage errors
            got = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert got == code, (argv, got, err)
        assert len(err) == 1 and err[0].startswith(f"sdfl {command}: error: "), (argv, err)
    # --debug shows the traceback instead, for data's commands too
    with pytest.raises(Exception, match="data set folder not found"):
        sdfl(["--debug", *cases[1][1]])
