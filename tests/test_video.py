"""Videos: reading at a sampling rate, files that cannot be read or end early, the annotated
video's codec, and frame-by-frame prediction with its outputs, through the library and the CLI
on the FaceForensics++ sample clips."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sdfl_lib.cli import main as sdfl
from sdfl_lib.data import prepare, read_manifest, write_manifest
from sdfl_lib.data import video as vid
from sdfl_lib.data.video import Sampling, VideoFrames, VideoReadError, VideoSink, probe_video
from sdfl_lib.models import build_model, make_checkpoint
from sdfl_lib.predict import predict
from sdfl_lib.predict.engine import predict_batch
from sdfl_lib.predict.video import (
    VideoPrediction,
    manifest_videos,
    predict_video,
    top_frames,
    video_example,
)
from sdfl_lib.viz.video import show_video

FAKE = "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4"  # 338 frames, 25 fps
REAL = "original_sequences/youtube/c23/videos/004.mp4"  # 309 frames, 25 fps
CLIP_FRAMES = 40


@pytest.fixture(scope="module")
def ffpp(shared_data):
    return shared_data / "faceforensics-sample"


@pytest.fixture(scope="module")
def clip(ffpp, tmp_path_factory):
    """The first CLIP_FRAMES frames of a sample clip at 320x180 as Motion JPEG in AVI: a container
    that stays readable when cut, so a truncated stream can be made by cutting its bytes."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    capture = cv2.VideoCapture(str(ffpp / FAKE))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 180))
    for _ in range(CLIP_FRAMES):
        ok, frame = capture.read()
        assert ok
        writer.write(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA))
    writer.release()
    capture.release()
    return path


def _cut(src, dst, fraction: float):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def ela_checkpoint(tmp_path_factory):
    """A classical ELA model saved as a checkpoint: fast, deterministic, real maps."""
    path = tmp_path_factory.mktemp("ckpt") / "ela.pt"
    torch.save(make_checkpoint(build_model("ela", image_size=32)), path)
    return path


# ---- reading --------------------------------------------------------------------------------
def test_sampling_picks_and_counts_agree():
    for sampling, fps in [(Sampling(every=1), 25), (Sampling(every=7), 25), (Sampling(fps=5), 25),
                          (Sampling(fps=2), 25), (Sampling(fps=3), 29.97), (Sampling(fps=60), 25)]:  # fmt: skip
        for n in (1, 2, 13, 309):
            picked = [i for i in range(n) if sampling.picks(i, fps)]
            assert picked[0] == 0 and len(picked) == sampling.count(n, fps), (sampling, fps, n)
    assert [i for i in range(30) if Sampling(fps=2).picks(i, 25)] == [0, 13, 25]
    assert Sampling(fps=5).count(309, 25) == 62 and Sampling(fps=5).rate(25) == 5
    assert Sampling(fps=60).rate(25) == 25 and "every frame" in Sampling(fps=60).describe(25)
    assert Sampling(every=4).describe(25) == "one frame in 4"
    for bad in (dict(every=0), dict(fps=-1), dict(fps=0), {}, dict(every=2, fps=2)):
        with pytest.raises(ValueError):
            Sampling(**bad)
    with pytest.raises(ValueError, match="--every"):
        Sampling(fps=5).count(10, 0.0)  # a video that does not say its rate


def test_probe_and_the_videos_that_cannot_be_opened(ffpp, tmp_path):
    info = probe_video(ffpp / REAL)
    assert (info.width, info.height, info.fps, info.frame_count) == (1280, 720, 25.0, 309)
    assert info.describe() == "1280x720, 25 fps, 309 frames (12.4 s)"
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    cut = _cut(ffpp / REAL, tmp_path / "cut.mp4", 0.5)  # FF++ keeps its index (moov) last
    cases = [("notes.mp4", "not a video"), ("empty.mp4", "empty file"), ("missing.mp4", "not found"),
             ("cut.mp4", "without its index (the file is cut off)")]  # fmt: skip
    for name, why in cases:
        with pytest.raises(VideoReadError, match=re.escape(why)) as err:
            probe_video(tmp_path / name)
        assert str(err.value).startswith(f"cannot read {tmp_path / name}: ")
    assert cut.stat().st_size > 0


def test_a_stream_cut_short_keeps_its_frames_and_says_so(clip, tmp_path):
    whole = VideoFrames(clip, Sampling(every=1))
    assert [i for i, _, _ in whole] == list(range(CLIP_FRAMES))
    assert whole.frames_read == CLIP_FRAMES and not whole.truncated
    cut = VideoFrames(_cut(clip, tmp_path / "cut.avi", 0.5), Sampling(every=3))
    got = [(i, t, f.shape) for i, t, f in cut]
    assert cut.info.frame_count == CLIP_FRAMES and 5 < cut.frames_read < CLIP_FRAMES - 5
    assert cut.truncated and cut.expected == 14
    assert [i for i, _, _ in got] == list(range(0, cut.frames_read, 3))
    assert got[1][1] == pytest.approx(3 / 25) and got[0][2] == (180, 320, 3)
    # Cut right after the header: the container opens, no frame decodes.
    data = clip.read_bytes()
    (tmp_path / "head.avi").write_bytes(data[: data.find(b"movi") + 4])
    with pytest.raises(VideoReadError, match="no frame could be decoded"):
        list(VideoFrames(tmp_path / "head.avi", Sampling(every=1)))
    # Stopping early (a consumer's limit) is not a truncation.
    assert len(vid.read_video_frames(clip, Sampling(every=2), limit=3)) == 3


def test_the_writer_uses_the_best_codec_it_can_read_back(tmp_path, monkeypatch):
    fourcc, suffix, description = vid.writer_codec()
    assert (fourcc, suffix, description) in vid.WRITER_CODECS
    with VideoSink(tmp_path / "a", 5.0) as sink:
        for value in range(0, 250, 25):
            sink.write(np.full((30 + value % 2, 40, 3), value, np.uint8))  # odd sizes resized
    assert sink.path == tmp_path / f"a{suffix}" and sink.frames == 10
    assert probe_video(sink.path).frame_count == 10
    # A codec that cannot be written (or read back) is passed over; none at all is an error.
    vid.writer_codec.cache_clear()
    monkeypatch.setattr(vid, "WRITER_CODECS", (("zzzz", ".mp4", "none"), ("MJPG", ".avi", "mjpeg")))
    assert vid.writer_codec() == ("MJPG", ".avi", "mjpeg")
    vid.writer_codec.cache_clear()
    monkeypatch.setattr(vid, "WRITER_CODECS", (("zzzz", ".mp4", "none"),))
    with pytest.raises(OSError, match="can write no video"):
        vid.writer_codec()
    vid.writer_codec.cache_clear()


# ---- prediction -----------------------------------------------------------------------------
def test_predict_video_writes_every_output_and_batches_like_single_frames(clip, tmp_path):
    model = build_model("ela", image_size=32).eval()
    logged: list[str] = []
    result = predict_video(clip, model, tmp_path / "v", Sampling(every=2), threshold=0.6,
                           batch_size=3, progress=False, log=logged.append)  # fmt: skip
    table = pd.read_csv(tmp_path / "v" / "frames.csv", keep_default_na=False)
    assert table["frame"].tolist() == list(range(0, CLIP_FRAMES, 2))
    assert table["time_s"].tolist() == pytest.approx([i / 25 for i in range(0, CLIP_FRAMES, 2)])
    tampered = table["score"] >= 0.6
    assert (table["decision"] == np.where(tampered, "tampered", "authentic")).all()
    assert (table["map"] != "").tolist() == tampered.tolist()  # maps above the threshold only
    assert sorted(p.name for p in (tmp_path / "v" / "maps").glob("*.png")) == sorted(
        p.split("/")[1] for p in table.loc[tampered, "map"])
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    k = math.ceil(0.1 * len(table))
    assert len(summary["aggregate_frames"]) == k == 2
    assert summary["score"] == pytest.approx(table["score"].nlargest(k).mean())
    assert summary["score"] == pytest.approx(top_frames(table.set_index("frame")["score"]).mean())
    assert summary["read"] == {"width": 320, "height": 180, "fps": 25.0, "frames_announced": 40,
                               "frames_read": 40, "truncated": False, "sampled_frames_missing": 0}  # fmt: skip
    overlay = tmp_path / "v" / summary["outputs"]["overlay_video"]
    assert probe_video(overlay).frame_count == len(table) and probe_video(overlay).fps == 12.5
    assert (tmp_path / "v" / "score_over_time.png").is_file() and not result.truncated
    assert "sampling one frame in 2: 20 frame(s)" in logged[0] and "s per frame on cpu" in logged[1]
    # Frames batched score as they do one by one; the maps too.
    frame10 = vid.read_video_frames(clip, Sampling(every=10))[1]
    single = predict(frame10, model, threshold=0.6)
    assert table.set_index("frame").at[10, "score"] == pytest.approx(single.score, abs=1e-6)
    # --save-maps: every frame's map
    predict_video(clip, model, tmp_path / "all", Sampling(every=10), save_maps=True, progress=False,
                  log=lambda m: None)  # fmt: skip
    assert len(list((tmp_path / "all" / "maps").glob("frame_*.png"))) == 4
    # A rerun into the same folder leaves no map of the earlier run behind, and says so.
    predict_video(clip, model, tmp_path / "all", Sampling(every=20), save_maps=True, progress=False,
                  log=logged.append)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "all" / "maps").glob("*.png")) == [
        "frame_000000.png", "frame_000020.png"]  # fmt: skip
    assert any("removed 4 frame map(s) of the earlier prediction" in m for m in logged)
    before = len(plt.get_fignums())
    curve, strip = show_video(tmp_path / "v", n=4)
    assert len(plt.get_fignums()) == before + 2 and len(strip.axes) == 4
    assert curve.axes[0].get_xlabel() == "time in the video (s)"
    plt.close("all")


def test_video_example_finds_the_test_lists_video(ffpp, ela_checkpoint, tmp_path, capsys):
    manifest = tmp_path / "ffpp.csv"
    prepare("ffpp", ffpp, manifest, real_frames=1, fake_frames=1, verbose=False, edges=False)
    assert [v.name for v in manifest_videos(manifest)] == ["634_660.mp4", "004_982.mp4"]
    result = video_example(ela_checkpoint, manifest, tmp_path / "out", device="cpu",
                           sampling=Sampling(every=50))  # fmt: skip
    assert result.out_dir == tmp_path / "out" / "634_660.mp4"
    assert len(result.frames) == 7 and len(plt.get_fignums()) >= 2
    plt.close("all")
    plain = tmp_path / "plain.csv"
    write_manifest(read_manifest(manifest).drop(columns=["video_file"]), plain)
    assert video_example(ela_checkpoint, plain, tmp_path / "none") is None
    assert "no deepfake frames of a video set" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_predict_batch_refuses_what_is_not_an_rgb_frame():
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        predict_batch([np.zeros((8, 8), np.uint8)], build_model("ela", image_size=16))


# ---- the command line -----------------------------------------------------------------------
def _one_line_error(capsys, command: str = "predict") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"sdfl {command}: error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_cli_predicts_the_ffpp_real_and_manipulated_clips(ffpp, ela_checkpoint, tmp_path, capsys):
    for clip_path, frames, sampled in ((REAL, 309, 62), (FAKE, 338, 68)):
        out = tmp_path / Path(clip_path).stem
        argv = ["predict", str(ffpp / clip_path), "--checkpoint", str(ela_checkpoint), "--out", str(out)]
        assert sdfl(argv) == 0
        std = capsys.readouterr()
        # The plan before the work, the time per frame after the first batch, the result after.
        assert f"1280x720, 25 fps, {frames} frames" in std.err and f"5 frames/s: {sampled} frame" in std.err
        assert "s per frame on cpu (first batch" in std.err and "min for the" in std.err
        summary = json.loads((out / "summary.json").read_text())
        assert f"video score {summary['score']:.4f} -> {summary['decision']}" in std.out
        assert summary["outputs"]["overlay_codec"] in std.out
        table = pd.read_csv(out / "frames.csv", keep_default_na=False)
        assert table["frame"].tolist() == list(range(0, frames, 5)) and len(table) == sampled
        assert summary["read"]["frames_read"] == frames and not summary["read"]["truncated"]
        assert summary["frames_scored"] == sampled and summary["sampling"] == "5 frames/s"
        assert probe_video(out / summary["outputs"]["overlay_video"]).frame_count == sampled
        maps = sorted(p.relative_to(out).as_posix() for p in (out / "maps").glob("*.png"))
        assert maps == sorted(table.loc[table["decision"] == "tampered", "map"])
        assert Image.open(out / "score_over_time.png").size == (800, 320)
        assert not (out / "unreadable.csv").exists()


def test_cli_a_truncated_clip_keeps_its_frames_and_exits_3(ffpp, clip, ela_checkpoint, tmp_path, capsys):
    base = ["--checkpoint", str(ela_checkpoint), "--every", "3"]
    # FF++'s own files keep their index last: cut, they cannot be opened at all.
    cut_mp4 = _cut(ffpp / REAL, tmp_path / "cut.mp4", 0.6)
    assert sdfl(["predict", str(cut_mp4), *base, "--out", str(tmp_path / "a")]) == 1
    assert "cut.mp4: an MP4/MOV without its index (the file is cut off)" in _one_line_error(capsys)
    # A stream that stays readable when cut: the frames read are scored, the rest reported.
    cut = _cut(clip, tmp_path / "cut.avi", 0.5)
    out = tmp_path / "b"
    assert sdfl(["predict", str(cut), *base, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    read = summary["read"]
    assert read["truncated"] and 5 < read["frames_read"] < CLIP_FRAMES - 5
    scored = len(range(0, read["frames_read"], 3))
    assert summary["frames_scored"] == scored == len(pd.read_csv(out / "frames.csv"))
    assert read["sampled_frames_missing"] == 14 - scored
    assert f"the stream ends after {read['frames_read']} of the 40 frames" in err
    assert "1 of 1 file(s) could not be read, or only in part" in err
    listed = pd.read_csv(out / "unreadable.csv")
    assert listed["file"].tolist() == [str(cut)]
    assert listed["error"][0].startswith(f"cut off: {read['frames_read']} of the 40 frames announced")
    assert sdfl(["predict", str(cut), *base, "--out", str(out), "--allow-unscored"]) == 0


@pytest.mark.parametrize(
    "name, content, extra, code, needle",
    [
        ("notes.mp4", b"not a video\n", [], 1, "notes.mp4: not a video that OpenCV's FFmpeg"),
        ("empty.mp4", b"", [], 1, "empty.mp4: empty file"),
        ("a.png", None, ["--fps", "2"], 2, "--fps: options for videos, and"),
        ("a.png", None, ["--save-maps", "--batch-size", "2"], 2, "--save-maps, --batch-size: options"),
    ],
)
def test_cli_bad_video_inputs_end_in_one_line(tmp_path, capsys, name, content, extra, code, needle):
    path = tmp_path / name
    if content is None:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    else:
        path.write_bytes(content)
    argv = ["predict", str(path), "--method", "ela", "--image-size", "16", "--out", str(tmp_path / "o")]
    assert sdfl([*argv, *extra]) == code
    assert needle in _one_line_error(capsys)


@pytest.mark.parametrize(
    "extra, needle",
    [(["--every", "0"], "--every: must be >= 1"), (["--fps", "-1"], "--fps: must be > 0, got -1"),
     (["--fps", "x"], "--fps: expected a number"),
     (["--every", "2", "--fps", "2"], "--fps: not allowed with argument --every")],  # fmt: skip
)
def test_cli_bad_sampling_options_exit_2(clip, tmp_path, capsys, extra, needle):
    with pytest.raises(SystemExit) as exc:
        sdfl(["predict", str(clip), "--method", "ela", "--out", str(tmp_path), *extra])
    assert exc.value.code == 2 and needle in capsys.readouterr().err


def test_cli_folder_of_videos_and_images_without_name_collisions(ffpp, clip, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(ffpp / REAL, src / "a.mp4")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (36, 48, 3), np.uint8)).save(src / "a.png")
    shutil.copy(clip, src / "sub" / "a.avi")
    _cut(clip, src / "sub" / "cut.avi", 0.5)
    (src / "sub" / "b.mp4").write_text("not a video")
    argv = ["predict", str(src), "--method", "ela", "--image-size", "16", "--every", "8",
            "--batch-size", "5", "--save-maps", "--out", str(src / "out")]  # fmt: skip
    assert sdfl(argv) == 3
    err = capsys.readouterr().err
    assert "2 of 5 file(s) could not be read, or only in part" in err
    out = src / "out"
    assert len(pd.read_csv(out / "a.mp4" / "frames.csv")) == 39  # 309 frames, one in 8
    assert len(pd.read_csv(out / "sub" / "a.avi" / "frames.csv")) == 5
    assert len(list((out / "a.mp4" / "maps").glob("frame_*.png"))) == 39  # --save-maps
    assert json.loads((out / "a.json").read_text())["image"] == str(src / "a.png")
    assert (out / "a_map.png").is_file() and (out / "a_overlay.png").is_file()
    listed = pd.read_csv(out / "unreadable.csv").set_index("file")["error"]
    assert listed[str(src / "sub" / "b.mp4")].startswith("not a video")
    assert listed[str(src / "sub" / "cut.avi")].startswith("cut off:")
    # A second run into the folder inside the input takes none of the first run's outputs.
    assert sdfl([*argv, "--allow-unscored"]) == 0
    err = capsys.readouterr().err
    assert "2 of 5 file(s)" in err and "earlier run and are not read as inputs" in err


def test_the_librarys_predict_takes_a_video_path(clip, tmp_path):
    model = build_model("ela", image_size=16).eval()
    result = predict(clip, model, out_dir=tmp_path / "v", sampling=Sampling(every=20), progress=False)
    assert isinstance(result, VideoPrediction) and result.frames["frame"].tolist() == [0, 20]
    assert (tmp_path / "v" / "summary.json").is_file()
    with pytest.raises(ValueError, match="a video needs out_dir="):
        predict(clip, model)
    with pytest.raises(ValueError, match="are for videos"):
        predict(np.zeros((8, 8, 3), np.uint8), model, out_dir=tmp_path / "i")


def test_cli_never_writes_over_another_videos_outputs(clip, ela_checkpoint, tmp_path, capsys):
    other = tmp_path / "other.avi"
    other.write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    base = ["--checkpoint", str(ela_checkpoint), "--every", "10", "--out", str(out)]
    assert sdfl(["predict", str(clip), *base]) == 0
    assert sdfl(["predict", str(other), *base]) == 0
    assert f"{out} holds another video's prediction: written to {out / 'other.avi.2'}" in (
        capsys.readouterr().out
    )
    assert json.loads((out / "summary.json").read_text())["video"] == str(clip)
    assert json.loads((out / "other.avi.2" / "summary.json").read_text())["video"] == str(other)
    assert sdfl(["predict", str(other), *base]) == 0  # a rerun replaces its own, and says so
    assert "replaces the earlier prediction of this video" in capsys.readouterr().out
    assert not (out / "other.avi.3").exists()
