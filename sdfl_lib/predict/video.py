"""Video prediction: sampled frames of a clip through the same batched inference call as images
(`sdfl_lib.predict.engine.predict_batch`), a score per frame, an annotated video and a video-level score.

`predict_video(clip, model, out_dir)` (also `sdfl_lib.predict.predict` given a video) writes into
`out_dir`:

- `frames.csv`: frame index, time (s), image score, decision, tampered-area fraction, map file;
- `maps/frame_NNNNNN.png`: the probability map (grey, 255 = 1) of each frame scored at or above
  the threshold (of every frame with `save_maps=True`);
- `overlay.mp4` (or `.avi`): the sampled frames at the sampled rate with the heat map and the
  score drawn on each; the codec is the best this OpenCV writes (`sdfl_lib.data.video`);
- `score_over_time.png`: the frame scores against time;
- `summary.json`: the video's score, `AGGREGATE` of the frame scores, with the frames it is the
  mean of, and what was read (a stream cut off before its announced end says so).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import nn

from sdfl_lib.data import read_manifest
from sdfl_lib.data.io import write_image
from sdfl_lib.data.video import DEFAULT_FPS, Sampling, VideoFrames, VideoSink
from sdfl_lib.errors import OutputError
from sdfl_lib.inference import inference_model, resolve_model
from sdfl_lib.predict.engine import Prediction, map_to_png, predict_batch
from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import atomic_write, model_device
from sdfl_lib.viz.overlay import heat_overlay
from sdfl_lib.viz.video import score_figure, show_video

# The video's score: the mean of the top TOP_FRACTION of its frame scores (at least one frame),
# so that a manipulation in part of a clip is not averaged away, nor is one stray frame decisive.
TOP_FRACTION = 0.1
AGGREGATE = f"mean of the top {TOP_FRACTION:.0%} of the frame scores (at least 1 frame)"
# The annotated video is at most this wide, so that its text stays readable and the file small.
OVERLAY_MAX_WIDTH = 1280
FRAME_COLUMNS = ("frame", "time_s", "score", "decision", "tampered_fraction", "map")


def top_frames(scores: pd.Series) -> pd.Series:
    """The frame scores `AGGREGATE` averages: the ceil(TOP_FRACTION x n) highest."""
    k = max(1, math.ceil(TOP_FRACTION * len(scores)))
    return scores.sort_values(ascending=False, kind="stable").head(k)


def _annotate(overlay: np.ndarray, text: str, tampered: bool) -> np.ndarray:
    """The overlay at most OVERLAY_MAX_WIDTH wide with `text` on a dark band along its top."""
    h, w = overlay.shape[:2]
    if w > OVERLAY_MAX_WIDTH:
        h, w = round(h * OVERLAY_MAX_WIDTH / w), OVERLAY_MAX_WIDTH
        overlay = cv2.resize(overlay, (w, h), interpolation=cv2.INTER_AREA)
    else:
        overlay = overlay.copy()
    scale = max(w / 1280, 0.35)
    band = max(int(40 * scale), 14)
    overlay[:band] = (overlay[:band] * 0.3).astype(np.uint8)
    colour = (255, 80, 80) if tampered else (120, 230, 120)
    cv2.putText(overlay, text, (int(10 * scale) + 2, band - int(11 * scale) - 2),
                cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, colour, max(1, round(2 * scale)), cv2.LINE_AA)  # fmt: skip
    return overlay


@dataclass
class VideoPrediction:
    """What `predict_video` returns: the per-frame table and the summary written beside it."""

    out_dir: Path
    frames: pd.DataFrame = field(repr=False)
    summary: dict = field(repr=False)

    @property
    def score(self) -> float:
        return self.summary["score"]

    @property
    def decision(self) -> str:
        return self.summary["decision"]

    @property
    def truncated(self) -> bool:
        return self.summary["read"]["truncated"]


class _Writer:
    """The per-frame outputs of one video: maps, annotated video, table rows."""

    def __init__(self, out_dir: Path, rate: float, threshold: float, save_maps: bool) -> None:
        self.out_dir, self.threshold, self.save_maps = out_dir, threshold, save_maps
        self.sink = VideoSink(out_dir / "overlay", rate)
        self.rows: list[dict] = []

    def add(self, index: int, seconds: float, result: Prediction) -> None:
        tampered = result.decision == "tampered"
        map_name = ""
        if tampered or self.save_maps:
            map_name = f"maps/frame_{index:06d}.png"
            (self.out_dir / "maps").mkdir(parents=True, exist_ok=True)
            write_image(self.out_dir / map_name, map_to_png(result.prob_map))
        text = f"frame {index}  {seconds:.2f} s  score {result.score:.3f}  {result.decision}"
        self.sink.write(_annotate(heat_overlay(result.image, result.prob_map), text, tampered))
        fraction = float((result.prob_map >= self.threshold).mean())
        values = (index, round(seconds, 3), result.score, result.decision, fraction, map_name)
        self.rows.append(dict(zip(FRAME_COLUMNS, values, strict=True)))


def _estimate(seconds: float, done: int, expected: int, device: str) -> str:
    """Time per frame so far and what it makes of the frames left (`expected` 0: unknown)."""
    per, left = seconds / max(done, 1), max(expected - done, 0)
    total = f"about {per * left / 60:.1f} min for the {left} frame(s) left" if expected else \
        "the video's length is unknown"
    return f"  {per:.2f} s per frame on {device} (first batch, warm-up included): {total}"


def _score_frames(frames: VideoFrames, model: nn.Module, writer: _Writer, opts: dict,
                  log: Callable[[str], None]) -> None:  # fmt: skip
    """Every sampled frame through the model in batches of opts['batch_size'], with progress."""
    expected, device = frames.expected, model_device(model).type
    batch: list[tuple[int, float, np.ndarray]] = []
    start, first = time.perf_counter(), True
    with tqdm(total=expected or None, desc=Path(frames.info.path).name, unit="frame",
              disable=not opts["progress"], file=sys.stderr) as bar:  # fmt: skip
        for item in frames:
            batch.append(item)
            if len(batch) < opts["batch_size"]:
                continue
            _run(batch, model, writer, opts)
            bar.update(len(batch))
            if first:
                log(_estimate(time.perf_counter() - start, len(writer.rows), expected, device))
                first = False
            batch = []
        if batch:
            _run(batch, model, writer, opts)
            bar.update(len(batch))


def _run(batch: list, model: nn.Module, writer: _Writer, opts: dict) -> None:
    results = predict_batch([f for _, _, f in batch], model, opts["image_size"], opts["threshold"])
    for (index, seconds, _), result in zip(batch, results, strict=True):
        writer.add(index, seconds, result)


def _summary(frames: VideoFrames, table: pd.DataFrame, writer: _Writer, seconds: float) -> dict:
    top = top_frames(table.set_index("frame")["score"])
    score, info = float(top.mean()), frames.info
    return {
        "video": info.path,
        "score": score,
        "decision": "tampered" if score >= writer.threshold else "authentic",
        "threshold": writer.threshold,
        "aggregate": AGGREGATE,
        "aggregate_frames": [
            {"frame": int(f), "time_s": float(table.set_index("frame").at[f, "time_s"]),
             "score": float(s)} for f, s in top.items()
        ],  # fmt: skip
        "frames_scored": len(table),
        "frames_tampered": int((table["decision"] == "tampered").sum()),
        "sampling": frames.sampling.describe(info.fps),
        "read": {
            "width": info.width, "height": info.height, "fps": info.fps,
            "frames_announced": info.frame_count, "frames_read": frames.frames_read,
            "truncated": frames.truncated,
            "sampled_frames_missing": max(frames.expected - len(table), 0) if frames.truncated else 0,
        },  # fmt: skip
        "outputs": {
            "frames": "frames.csv", "maps": "maps/", "overlay_video": writer.sink.path.name,
            "overlay_codec": writer.sink.codec, "overlay_fps": writer.sink.fps,
            "plot": "score_over_time.png",
        },  # fmt: skip
        # Reading, inference and writing together, model loading not included.
        "seconds": round(seconds, 2),
        "frames_per_s": round(len(table) / seconds, 3) if seconds > 0 else None,
    }


def _clear_earlier_maps(out_dir: Path, log: Callable[[str], None]) -> None:
    """Removes the frame maps an earlier prediction left in `out_dir`, saying how many: the new
    frames.csv would not list them, and a map of another sampling must not pass for this run's."""
    earlier = sorted((out_dir / "maps").glob("frame_*.png"))
    for f in earlier:
        f.unlink()
    if earlier:
        log(f"{out_dir}: removed {len(earlier)} frame map(s) of the earlier prediction it held")


def predict_video(
    video: str | os.PathLike,
    model: nn.Module,
    out_dir: str | os.PathLike,
    sampling: Sampling | None = None,
    threshold: float = 0.5,
    image_size: int | None = None,
    batch_size: int = 4,
    save_maps: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> VideoPrediction:
    """Scores the sampled frames of `video` (default `DEFAULT_FPS` frames/s) with a model in eval
    mode and writes the outputs listed in the module's docstring into `out_dir`.

    Says the plan (frames to score) before it starts and the time per frame after the first
    batch. A file that cannot be opened or holds no frame raises `VideoReadError` naming it; a
    stream that ends early keeps the frames read and says so (`VideoPrediction.truncated`).
    """
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    frames = VideoFrames(video, sampling or Sampling(fps=DEFAULT_FPS))
    info, out_dir = frames.info, Path(out_dir)
    expected = f"{frames.expected} frame(s)" if frames.expected else "length unknown"
    log(f"{video}: {info.describe()}; sampling {frames.sampling.describe(info.fps)}: {expected}")
    _clear_earlier_maps(out_dir, log)
    writer = _Writer(out_dir, frames.sampling.rate(info.fps), threshold, save_maps)
    opts = dict(batch_size=batch_size, image_size=image_size, threshold=threshold, progress=progress)
    start = time.perf_counter()
    try:
        _score_frames(frames, model, writer, opts, log)
    finally:
        writer.sink.close()
    table = pd.DataFrame(writer.rows, columns=list(FRAME_COLUMNS))
    with atomic_write(out_dir / "frames.csv") as tmp:
        table.to_csv(tmp, index=False)
    summary = _summary(frames, table, writer, time.perf_counter() - start)
    with atomic_write(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    fig = score_figure(out_dir)
    try:
        fig.savefig(out_dir / summary["outputs"]["plot"], dpi=100)
    except OSError as err:
        raise OutputError(out_dir / summary["outputs"]["plot"], err) from err
    finally:
        plt.close(fig)
    if frames.truncated:
        log(f"{video}: the stream ends after {frames.frames_read} of the {info.frame_count} frames "
            f"its container announces; the {len(table)} sampled frame(s) read are scored, "
            f"{summary['read']['sampled_frames_missing']} are missing")
    return VideoPrediction(out_dir, table, summary)


def manifest_videos(manifest: str | os.PathLike) -> list[Path]:
    """The manipulated videos behind a manifest's tampered frames that exist here, sorted: its
    `video_file` column, as the FaceForensics++ preparer writes it (empty without one)."""
    table = read_manifest(manifest)
    if "video_file" not in table.columns:
        return []
    files = table.loc[table["label"] == 1, "video_file"].fillna("").astype(str)
    return sorted({Path(f) for f in files if f and Path(f).is_file()})


def video_example(
    model_or_checkpoint: nn.Module | str | os.PathLike,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str = "auto",
    sampling: Sampling | None = None,
    draw: bool = True,
) -> VideoPrediction | None:
    """The first manipulated video behind a test list's deepfake frames predicted frame by frame
    into `out_dir`/<video name>, with its score over time and a strip of annotated frames drawn
    (`sdfl_lib.viz.video.show_video`; `draw=False`: not drawn, the caller draws them); None,
    said in a line, when the list has no such frames."""
    videos = manifest_videos(manifest)
    if not videos:
        print(f"{Path(manifest).name} holds no deepfake frames of a video set at hand (a "
              "`video_file` column, as `sdfl data prepare ffpp` writes): no video to show.")
        return None
    model = resolve_model(model_or_checkpoint, device=device)
    sampling = sampling or Sampling(fps=DEFAULT_FPS)
    frames = VideoFrames(videos[0], sampling).expected
    model = inference_model(model, "auto", images=frames)
    result = predict_video(videos[0], model, Path(out_dir) / videos[0].name, sampling)
    if draw:
        show_video(result.out_dir)
    return result
