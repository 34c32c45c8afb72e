"""Videos in and out with OpenCV's FFmpeg: what a file holds (`probe_video`), its frames at a
sampling rate (`VideoFrames`, which notices a stream that ends before its announced length), and
an annotated video written with the best codec this OpenCV can write (`VideoSink`).

OpenCV's wheels bundle FFmpeg, so any container and codec FFmpeg decodes is read here (MP4, MOV,
MKV, WebM, AVI, MPEG-TS ...). Writing H.264 needs an FFmpeg built with an H.264 encoder, which
the pip wheels lack; the writer then falls back to MPEG-4 Part 2 in MP4 and last to Motion JPEG
in AVI, and says which it used.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sdfl_lib.data.io import ImageReadError

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .mxf".split()
)
# Default sampling: 5 frames per second of video, 300 frames for a minute of it: within a few
# minutes on a GPU for the paper's network, decoding and drawing 720p included; on a CPU the
# time is stated after the first batch.
DEFAULT_FPS = 5.0
# Frames a stream may fall short of the count its container announces and still count as whole:
# containers without a frame index (MKV, WebM, MPEG-TS) announce duration x rate, a rounded guess.
COUNT_SLACK_FRAMES = 2
COUNT_SLACK_FRACTION = 0.01
# Codecs tried for the annotated video, best first: (fourcc, file suffix, what to call it).
WRITER_CODECS = (
    ("avc1", ".mp4", "H.264 in MP4"),
    ("mp4v", ".mp4", "MPEG-4 Part 2 in MP4 (this OpenCV cannot write H.264)"),
    ("MJPG", ".avi", "Motion JPEG in AVI (this OpenCV writes neither H.264 nor MPEG-4)"),
)


class VideoReadError(ImageReadError):
    """A video that cannot be opened or holds no frame; says which file and why."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether a file name has a video container's suffix (.mp4, .avi, .mkv, .mov, .webm ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Our own messages instead of FFmpeg's and OpenCV's log lines (`moov atom not found`, a
    failed hardware encoder): each failure here ends in one line that names the file."""
    # FFmpeg reads its level when OpenCV first opens a file; a user's own setting wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _mp4_boxes(path: Path) -> tuple[list[bytes], bool]:
    """The top-level box types of an ISO-BMFF (MP4/MOV) file and whether the last one runs past
    the end of the file (cut off)."""
    size, types, pos = path.stat().st_size, [], 0
    with open(path, "rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")  # a 64-bit size follows
            types.append(kind)
            if length == 0:  # the box runs to the end of the file
                return types, False
            if length < 8:
                break
            pos += length
    return types, pos > size


def _why_unopenable(path: Path) -> str:
    """Why OpenCV could not open an existing file, as precisely as its bytes tell."""
    if path.stat().st_size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        boxes, cut = _mp4_boxes(path)
        if b"moov" not in boxes:
            where = "the file is cut off" if cut else "it has no moov box"
            return (f"an MP4/MOV without its index ({where}); a file whose index comes last, as "
                    "FaceForensics++'s do, cannot be read when it is truncated")
    return "not a video that OpenCV's FFmpeg can decode (no readable video stream)"


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it (a count of 0 or a rate of 0: not said)."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration(self) -> float | None:
        """Seconds, from the announced count and rate (None when either is unknown)."""
        return self.frame_count / self.fps if self.frame_count > 0 and self.fps > 0 else None

    def describe(self) -> str:
        length = f"{self.frame_count} frames" if self.frame_count > 0 else "length unknown"
        seconds = f" ({self.duration:.1f} s)" if self.duration else ""
        rate = f"{self.fps:g} fps" if self.fps > 0 else "frame rate unknown"
        return f"{self.width}x{self.height}, {rate}, {length}{seconds}"


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoReadError(path, "not found" if not path.exists() else "not a file")
    with _quiet_opencv():
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(path, _why_unopenable(path))
    return capture


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and announced frame count of a video; `VideoReadError` naming the file
    when it cannot be opened (missing, empty, not a video, an MP4 cut off before its index)."""
    capture = _open(Path(path))
    try:
        return VideoInfo(
            path=str(path),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=max(float(capture.get(cv2.CAP_PROP_FPS) or 0.0), 0.0),
            frame_count=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
        )
    finally:
        capture.release()


@dataclass(frozen=True)
class Sampling:
    """Which frames to take: every `every`-th frame, or `fps` frames per second of video (the
    first frame of each 1/fps interval, by the container's nominal rate); frame 0 always."""

    every: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.fps is None):
            raise ValueError("give exactly one of every=N or fps=F")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps:g}")

    def _ratio(self, source_fps: float) -> float:
        """Sampled frames per source frame, at most 1."""
        if self.every is not None:
            return 1.0 / self.every
        if source_fps <= 0:
            raise ValueError("the video does not say its frame rate: sample with every=N (--every N)")
        return min(self.fps / source_fps, 1.0)

    def picks(self, index: int, source_fps: float) -> bool:
        """Whether frame `index` is sampled."""
        if self.every is not None:
            return index % self.every == 0
        r = self._ratio(source_fps)
        # The small offset keeps exact multiples (frame 5 at 1/5) from rounding down.
        return index == 0 or math.floor(index * r + 1e-9) != math.floor((index - 1) * r + 1e-9)

    def count(self, frames: int, source_fps: float) -> int:
        """How many of the first `frames` frames are sampled."""
        if frames <= 0:
            return 0
        if self.every is not None:
            return (frames - 1) // self.every + 1
        return math.floor((frames - 1) * self._ratio(source_fps) + 1e-9) + 1

    def rate(self, source_fps: float) -> float:
        """Sampled frames per second of video (the annotated video's rate)."""
        return source_fps * self._ratio(source_fps) if source_fps > 0 else 1.0

    def describe(self, source_fps: float) -> str:
        if self.every is not None:
            return "every frame" if self.every == 1 else f"one frame in {self.every}"
        if self._ratio(source_fps) >= 1:
            return f"every frame (the video has {source_fps:g} fps, at most the {self.fps:g} asked)"
        return f"{self.fps:g} frames/s"


class VideoFrames:
    """The sampled frames of a video, in order: iterate for (index, seconds, uint8 HxWx3 RGB).

    After the iteration, `frames_read` is how many frames the stream gave and `truncated` whether
    it ended short of the count its container announces (`COUNT_SLACK_*` aside).
    """

    def __init__(self, path: str | os.PathLike, sampling: Sampling) -> None:
        self.info = probe_video(path)
        self.sampling = sampling
        self.sampling.count(1, self.info.fps)  # refuses fps= on a video without a rate, now
        self.frames_read = 0
        self.finished = False

    @property
    def expected(self) -> int:
        """Sampled frames in the announced length (0 when the length is unknown)."""
        return self.sampling.count(self.info.frame_count, self.info.fps)

    @property
    def truncated(self) -> bool:
        announced = self.info.frame_count
        slack = max(COUNT_SLACK_FRAMES, COUNT_SLACK_FRACTION * announced)
        return self.finished and announced > 0 and self.frames_read < announced - slack

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        path, fps = Path(self.info.path), self.info.fps
        capture = _open(path)
        self.frames_read, self.finished = 0, False
        try:
            with _quiet_opencv():
                while capture.grab():  # grab decodes; only sampled frames are converted
                    index = self.frames_read
                    self.frames_read += 1
                    if not self.sampling.picks(index, fps):
                        continue
                    ok, frame = capture.retrieve()
                    if not ok:
                        break
                    seconds = index / fps if fps > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
                    yield index, seconds, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
        self.finished = True
        if self.frames_read == 0:
            raise VideoReadError(path, "no frame could be decoded")


def read_video_frames(
    path: str | os.PathLike, sampling: Sampling, limit: int | None = None
) -> list[np.ndarray]:
    """The first `limit` sampled frames (all without a limit) as uint8 HxWx3 RGB arrays."""
    frames = []
    for _, _, frame in VideoFrames(path, sampling):
        frames.append(frame)
        if limit is not None and len(frames) >= limit:
            break
    return frames


@functools.cache
def writer_codec() -> tuple[str, str, str]:
    """(fourcc, suffix, description) of the first of `WRITER_CODECS` whose file this OpenCV
    writes and reads back, tried once per process on a small clip."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_opencv():
        for fourcc, suffix, description in WRITER_CODECS:
            path = str(Path(tmp) / f"probe{suffix}")
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 5.0, (64, 48))
            if not writer.isOpened():
                continue
            for value in (0, 128, 255):
                writer.write(np.full((48, 64, 3), value, np.uint8))
            writer.release()
            capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
            frames = 0
            while capture.grab():
                frames += 1
            capture.release()
            if frames == 3:
                return fourcc, suffix, description
    raise OSError("this OpenCV can write no video (tried " +
                  ", ".join(f for f, _, _ in WRITER_CODECS) + ")")


class VideoSink:
    """Writes uint8 HxWx3 RGB frames to `stem` + the codec's suffix at `fps` (`writer_codec`);
    opened on the first frame, whose size every later frame is resized to."""

    def __init__(self, stem: str | os.PathLike, fps: float) -> None:
        self.fourcc, suffix, self.codec = writer_codec()
        self.path = Path(f"{stem}{suffix}")
        self.fps = fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (frame.shape[1], frame.shape[0])
            with _quiet_opencv():
                fourcc = cv2.VideoWriter_fourcc(*self.fourcc)
                self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cannot write {self.path} ({self.codec})")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
