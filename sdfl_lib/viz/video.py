"""Figures of a predicted video, drawn from the files `sdfl predict clip.mp4` writes: the frame
scores over time (`score_over_time`) and a strip of annotated frames (`overlay_strip`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sdfl_lib import figstyle

# Text sizes in points at the figure's own size (Rougier et al.: at least 10 pt as shown).
_FONT = {"title": 12, "label": 11, "tick": 10}


def _frames(frames: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """frames.csv as a table: given as one, as its path, or as the folder that holds it."""
    if isinstance(frames, pd.DataFrame):
        return frames
    path = Path(frames)
    return pd.read_csv(path / "frames.csv" if path.is_dir() else path)


def score_over_time(
    frames: pd.DataFrame | str | os.PathLike,
    threshold: float = 0.5,
    marked: list[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Image score of each sampled frame against its time, the threshold as a dashed line and
    the `marked` frames (e.g. those the video's score is the mean of) as dots."""
    table = _frames(frames)
    if table.empty:
        raise ValueError("score_over_time: no scored frames")
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    ax.plot(table["time_s"], table["score"], color="#0072B2", lw=1.6, label="frame score")
    ax.axhline(threshold, color="#D55E00", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    if marked:
        top = table[table["frame"].isin(marked)]
        ax.scatter(top["time_s"], top["score"], s=28, color="#CC79A7", zorder=3,
                   label="top frames (their mean:\nthe video's score)")  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time in the video (s)", fontsize=_FONT["label"])
    ax.set_ylabel("image score", fontsize=_FONT["label"])
    ax.tick_params(labelsize=_FONT["tick"])
    ax.legend(fontsize=_FONT["tick"], loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    if title:
        ax.set_title(title, fontsize=_FONT["title"])
    return fig


def _overlay_frames(video: Path, positions: list[int]) -> dict[int, np.ndarray]:
    """Frames at `positions` (0-based) of the annotated video, RGB."""
    wanted, found = set(positions), {}
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        for i in range(max(positions, default=-1) + 1):
            if not capture.grab():
                break
            if i in wanted:
                ok, frame = capture.retrieve()
                if ok:
                    found[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    return found


def overlay_strip(out_dir: str | os.PathLike, n: int = 6) -> Figure:
    """`n` frames of the annotated video, evenly spaced in time, side by side, each titled with
    its time and score: where in the video the model sees manipulation."""
    out_dir = Path(out_dir)
    table = _frames(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text())
    video = out_dir / summary["outputs"]["overlay_video"]
    if table.empty:
        raise ValueError(f"overlay_strip: no scored frames in {out_dir}")
    positions = sorted({int(round(x)) for x in np.linspace(0, len(table) - 1, min(n, len(table)))})
    frames = _overlay_frames(video, positions)
    if not frames:
        raise ValueError(f"overlay_strip: cannot read the frames of {video}")
    h, w = next(iter(frames.values())).shape[:2]
    width = min(2.6, figstyle.MAX_WIDTH_IN / len(frames))  # inches per frame; a title line above it
    fig, axes = plt.subplots(1, len(frames), figsize=(width * len(frames), width * h / w + 0.45),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax, (pos, image) in zip(axes.flat, sorted(frames.items()), strict=True):
        row = table.iloc[pos]
        ax.imshow(image)
        ax.set_title(f"{row['time_s']:.1f} s: {row['score']:.2f}", fontsize=_FONT["label"])
        ax.axis("off")
    return fig


def score_figure(out_dir: str | os.PathLike) -> Figure:
    """`score_over_time` of a predicted video from its output folder, the frames its score is
    the mean of marked, titled with that score."""
    out_dir = Path(out_dir)
    summary = json.loads((out_dir / "summary.json").read_text())
    marked = [f["frame"] for f in summary["aggregate_frames"]]
    title = (f"{Path(summary['video']).name}: video score {summary['score']:.2f} "
             f"({summary['decision']})")  # fmt: skip
    return score_over_time(out_dir, summary["threshold"], marked, title)


def show_video(out_dir: str | os.PathLike, n: int = 6) -> tuple[Figure, Figure]:
    """A predicted video's two figures from its output folder: `score_figure` and `n` annotated
    frames (`overlay_strip`); Jupyter's inline backend shows both."""
    return score_figure(out_dir), overlay_strip(out_dir, n)
