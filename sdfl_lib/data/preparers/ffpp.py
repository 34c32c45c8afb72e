"""FaceForensics++ frames: N evenly spaced frames per real video, M per fake, with masks.

Layout (FF++'s own): `original_sequences/<youtube|actors>/<c>/videos/<id>.mp4`,
`manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4` and, where the user has them,
`manipulated_sequences/<Method>/masks/videos/<target>_<source>.mp4`.

A fake video is frame-aligned with its target's original video (same frame count), so fake frame
i is compared with original frame i; each fake row records it in `source_frame`, and every row
its video file in `video_file` (for predicting the whole clip). The mask of a
fake frame comes from its mask video (binarised at half range) when present, else from the
real/fake difference (`difference_mask`). A fake frame whose mask comes out empty is kept as a
label-only fake and reported, never written as an all-zero mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdfl_lib.data.io import write_image
from sdfl_lib.data.preparers.common import Report, row, write_binary_png
from sdfl_lib.progress import tqdm

PAPER_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def frame_indices(n_frames: int, k: int) -> list[int]:
    """k evenly spaced interior frame indices of a video of n_frames."""
    if n_frames <= 0 or k <= 0:
        return []
    k = min(k, n_frames)
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, k + 2)[1:-1]})


def read_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """BGR frames at `indices`, read in order (grab() skips without converting; exact, unlike
    seeking, which H.264 streams do not always honour frame-accurately)."""
    wanted, frames = set(indices), {}
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return frames
        for i in range(max(indices, default=-1) + 1):
            if i in wanted:
                ok, frame = capture.read()
                if ok:
                    frames[i] = frame
            else:
                ok = capture.grab()
            if not ok:
                break
    finally:
        capture.release()
    return frames


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def difference_mask(real: np.ndarray, fake: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """{0, 1} manipulated region from aligned real and fake frames.

    Per-pixel max channel difference, Gaussian-blurred (sigma = 1 % of the shorter side) to
    smooth out compression noise. Hysteresis on the blurred map: regions above the low threshold
    (median + 3 MAD, at least 4 grey levels; or `threshold`) are kept when they hold the map's
    peak or a pixel above the high threshold (median + 6 MAD); then opening and closing with a
    disc of 2 sigma and filled holes. Independently encoded videos differ everywhere a little,
    so the thresholds follow each frame pair's own noise level.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake frames differ in size: {real.shape} vs {fake.shape}")
    sigma = 0.01 * min(real.shape[:2])
    diff = np.abs(real.astype(np.int16) - fake.astype(np.int16)).max(axis=2).astype(np.float32)
    smooth = cv2.GaussianBlur(diff, (0, 0), sigma)
    median = float(np.median(smooth))
    mad = float(np.median(np.abs(smooth - median))) * 1.4826
    low = max(median + 3 * mad, 4.0) if threshold is None else threshold
    high = max(median + 6 * mad, low)
    mask = (smooth > low).astype(np.uint8)
    if not mask.any():
        return mask
    _, labels = cv2.connectedComponents(mask)
    keep = set(np.unique(labels[smooth > high]).tolist())
    keep.add(int(labels.flat[int(np.argmax(smooth))]))
    keep.discard(0)
    mask = np.isin(labels, sorted(keep)).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(2 * sigma) | 1,) * 2)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def _videos(folder: Path, limit: int | None) -> list[Path]:
    videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    return videos[:limit] if limit else videos


def _source_name(fake: str) -> tuple[str, str]:
    """(kind, original video name) of a fake: `004_982` -> youtube/004; DeepFakeDetection's
    `01_02__meeting_serious__YVGY8LOK` -> actors/01__meeting_serious."""
    if "__" in fake:
        parts = fake.split("__")
        return "actors", f"{parts[0].split('_')[0]}__{parts[1]}"
    return "youtube", fake.split("_")[0]


def _save(frame: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, frame)


def prepare_ffpp(
    root: Path,
    out_dir: Path,
    report: Report,
    real_frames: int = 7,
    fake_frames: int = 2,
    methods: list[str] | None = None,
    compression: str = "c23",
    limit: int | None = None,
    diff_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Extracts frames, masks and a manifest from a FaceForensics++ folder (see module doc)."""
    originals = root / "original_sequences"
    manipulated = root / "manipulated_sequences"
    if not originals.is_dir() and not manipulated.is_dir():
        report.errors.append(f"no original_sequences/ or manipulated_sequences/ under {root}")
        return []
    real = {kind.name: _videos(kind / compression / "videos", limit)
            for kind in sorted(originals.iterdir()) if kind.is_dir()} if originals.is_dir() else {}
    fakes = {m: _videos(manipulated / m / compression / "videos", limit)
             for m in _chosen_methods(manipulated, methods, report)}
    jobs = [("real", k, v) for k, vs in real.items() for v in vs]
    jobs += [("fake", m, v) for m, vs in fakes.items() for v in vs]
    rows: list[dict[str, Any]] = []
    folders = _Folders(originals, manipulated, out_dir / "images" / "ffpp", out_dir / "masks" / "ffpp",
                       compression)
    for kind, group, video in tqdm(jobs, desc="ffpp: videos", unit="video"):
        if kind == "real":
            rows += _real_rows(video, group, real_frames, folders, report)
        else:
            rows += _fake_rows(video, group, fake_frames, diff_threshold, folders, report)
    return rows


def _chosen_methods(manipulated: Path, methods: list[str] | None, report: Report) -> list[str]:
    """The manipulation folders found that `methods` asks for (all without); the asked ones not
    found are warned about."""
    found = sorted(m.name for m in manipulated.iterdir() if m.is_dir()) if manipulated.is_dir() else []
    chosen = [m for m in found if methods is None or m.lower() in {x.lower() for x in methods}]
    if methods:
        report.warnings += [f"method {m} not found" for m in methods if m.lower() not in
                            {f.lower() for f in found}]
    return chosen


@dataclass(frozen=True)
class _Folders:
    """Where the videos are read from and the frames and masks written to."""

    originals: Path
    manipulated: Path
    images: Path
    masks: Path
    compression: str


def _tag(video: Path) -> dict[str, str]:
    """The columns every row of a video carries: its name and its file."""
    return dict(video=video.stem, video_file=str(video))


def _real_rows(video: Path, group: str, real_frames: int, folders: _Folders,
               report: Report) -> list[dict[str, Any]]:
    """Rows of a real video's `real_frames` frames, spread over the video (written as PNGs)."""
    rows = []
    frames = read_frames(video, frame_indices(frame_count(video), real_frames))
    if not frames:
        report.errors.append(f"cannot read frames of {video}")
    for i, frame in sorted(frames.items()):
        path = _save(frame, folders.images / group / f"{group}_{video.stem}_{i:04d}.png")
        rows.append(row(path, 0, f"ffpp-{group}", **_tag(video), frame=i, source_frame=i))
        report.add(f"frames_real_{group}")
    return rows


def _fake_rows(video: Path, group: str, fake_frames: int, diff_threshold: float | None,
               folders: _Folders, report: Report) -> list[dict[str, Any]]:
    """Rows of a fake video's `fake_frames` frames, each with its mask: from the mask video where
    there is one, else the difference to the same frame of the original."""
    n = frame_count(video)
    src_kind, src_name = _source_name(video.stem)
    source = folders.originals / src_kind / folders.compression / "videos" / f"{src_name}.mp4"
    mask_video = folders.manipulated / group / "masks" / "videos" / video.name
    if not source.is_file() and not mask_video.is_file():
        report.unmatched_images.append(str(video))
        report.errors.append(f"{video.name}: neither its original {source} nor a mask video")
        return []
    if source.is_file() and frame_count(source) != n:
        report.warnings.append(f"{video.name}: {n} frames but its original has "
                               f"{frame_count(source)}; frames are matched by index")
    fake_f = read_frames(video, frame_indices(n, fake_frames))
    ref = read_frames(mask_video if mask_video.is_file() else source, list(fake_f))
    rows = []
    for i, frame in sorted(fake_f.items()):
        stem = f"{group}_{video.stem}_{i:04d}"
        path = _save(frame, folders.images / group / f"{stem}.png")
        extra = dict(**_tag(video), frame=i, source_frame=i, source_video=src_name)
        if i not in ref:
            report.warnings.append(f"{video.name}: frame {i} missing in {source.name}")
            mask = None
        elif mask_video.is_file():
            mask = (ref[i].max(axis=2) > 127).astype(np.uint8)
            report.add("masks_from_mask_video")
        else:
            mask = difference_mask(ref[i], frame, diff_threshold)
            report.add("masks_from_difference")
        if mask is not None and not mask.any():
            report.warnings.append(f"{stem}: empty mask, kept as a label-only fake")
            mask = None
        mask_path = write_binary_png(mask, folders.masks / group / f"{stem}.png") if mask is not None else ""
        rows.append(row(path, 1, f"ffpp-{group.lower()}", mask_path, **extra))
        report.add(f"frames_fake_{group}")
    return rows
