"""`sdfl predict`: probability map, overlay and score of an image, of a video frame by frame, or of
a folder of both; argument parsing and the files written. The work is
`sdfl_lib.predict.engine.predict` and `sdfl_lib.predict.video.predict_video`."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from pathlib import Path

from torch import nn

from sdfl_lib.data import ImageReadError
from sdfl_lib.data.video import (
    DEFAULT_FPS,
    Sampling,
    VideoFrames,
    VideoReadError,
    is_video,
    read_video_frames,
)
from sdfl_lib.errors import (
    EXIT_UNSCORED,
    DataError,
    UsageError,
    positive_int,
    positive_number,
)
from sdfl_lib.inference import calibration_batch, inference_model, model_image_size, resolve_model
from sdfl_lib.inference.options import add_model_args
from sdfl_lib.runtime import atomic_write


def register(subparsers) -> None:
    """Adds `predict` to the `sdfl` command."""
    pr = subparsers.add_parser(
        "predict", help="probability map, overlay and score of images, and of videos frame by frame"
    )
    pr.add_argument("input", help="an image, a video (.mp4, .avi, .mkv, .mov ...), or a folder of both")
    add_model_args(pr)
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument(
        "--allow-unscored",
        action="store_true",
        help="exit 0 even when some files could not be read, or a video only in part (default: "
        "exit 3; they are listed)",
    )
    _video_args(pr)
    pr.set_defaults(func=_predict)


def _video_args(p: argparse.ArgumentParser) -> None:
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--every", type=positive_int, metavar="N", help="videos: score one frame in N")
    rate.add_argument(
        "--fps", type=positive_number, metavar="F",
        help=f"videos: score F frames per second of video (default {DEFAULT_FPS:g}; every frame at most)",
    )  # fmt: skip
    p.add_argument(
        "--save-maps", action="store_true",
        help="videos: save the map of every scored frame (default: of frames at or above the threshold)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="videos: frames per forward pass (4)"
    )


def _output_names(files: list[Path], root: Path | None) -> dict[Path, Path]:
    """Output name (relative, without suffix) of every input: the stem, or the whole file name
    where two inputs of one folder would share it (a.jpg, a.png, a.jpg.png), numbered if still
    equal, so that no prediction overwrites another."""
    rel = {f: (f.relative_to(root) if root else Path(f.name)) for f in files}
    stems = Counter(r.with_name(r.stem) for r in rel.values())
    names = {f: r.with_name(r.stem) if stems[r.with_name(r.stem)] == 1 else r for f, r in rel.items()}
    # A stem can still equal another file's whole name (a.png.jpg -> a.png, beside a.png).
    taken = Counter(names.values())
    for f in files:
        if taken[names[f]] > 1:
            names[f] = rel[f]
    seen: Counter = Counter()
    for f in files:
        seen[names[f]] += 1
        if seen[names[f]] > 1:
            names[f] = names[f].with_name(f"{names[f].name}.{seen[names[f]]}")
    return names


# What predict writes: per image, per video (in a folder named after it) and per run.
_OUTPUTS = ("*_map.png", "*_overlay.png", "*.json", "unreadable.csv", "frames.csv",
            "overlay.mp4", "overlay.avi", "score_over_time.png", "maps/frame_*.png")  # fmt: skip


def _free_name(folder: Path, name: str, source: Path) -> tuple[str, str]:
    """(output name, what it does to the folder): `name` when its outputs are not there or are
    an earlier prediction of this same file (replaced, and said); else the first `name.N` free
    for this file, so that a run never overwrites another image's prediction."""
    candidate, n = name, 1
    while (folder / f"{candidate}.json").is_file():
        try:
            earlier = json.loads((folder / f"{candidate}.json").read_text()).get("image", "")
        except (OSError, ValueError, AttributeError):
            earlier = ""  # unreadable: treated as another image's, never overwritten
        if earlier and os.path.abspath(earlier) == os.path.abspath(source):
            return candidate, "replaces the earlier prediction of this file"
        n += 1
        candidate = f"{name}.{n}"
    if candidate == name:
        return name, ""
    return candidate, f"{name}.json holds another image's prediction: written as {candidate}.*"


def _free_video_folder(where: Path, video: Path, single: bool) -> tuple[Path, str]:
    """(folder, what it does) for a video's outputs: `where` unless it holds another video's
    (its summary.json names the video), then a numbered one beside it (inside `--out` for a
    single video); an earlier run of this same video is replaced, and said."""
    candidate, n = where, 1
    while (candidate / "summary.json").is_file():
        try:
            earlier = json.loads((candidate / "summary.json").read_text()).get("video", "")
        except (OSError, ValueError, AttributeError):
            earlier = ""  # unreadable: treated as another video's, never overwritten
        if earlier and os.path.abspath(earlier) == os.path.abspath(video):
            return candidate, "; replaces the earlier prediction of this video"
        n += 1
        candidate = where / f"{video.name}.{n}" if single else where.with_name(f"{where.name}.{n}")
    note = f"; {where} holds another video's prediction: written to {candidate}"
    return candidate, note if candidate != where else ""


def _inputs(src: Path, out: Path) -> tuple[list[Path], int]:
    """Every file under `src` (symlinks included, dangling ones too) but the outputs of a run
    into `out` (when `out` lies inside `src`), and how many outputs were left out: nothing is
    skipped unseen; what cannot be read is reported by the caller."""
    out = out.absolute()
    files, outputs = [], 0
    for p in sorted(src.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        inside = p.absolute() == out or out in p.absolute().parents
        if inside and any(p.match(pattern) for pattern in _OUTPUTS):
            outputs += 1  # a second run must not predict the first one's outputs
            continue
        files.append(p)
    return files, outputs


def inference_model_for(
    model: nn.Module, args: argparse.Namespace, files: list[Path], sampling: Sampling
) -> nn.Module:
    """The model predict runs (`--backend`, `--int8`), int8 calibrated on the first
    `--calibration` readable images or sampled video frames of `files`; exports are cached
    beside the model's checkpoint file."""
    size = model_image_size(model, args.image_size)
    sources = _calibration_sources(files, args.calibration, sampling) if args.int8 else []
    calibration = calibration_batch(sources, size) if args.int8 else None
    return inference_model(
        model, args.backend, args.int8, size, calibration=calibration,
        images=_forward_passes(files, sampling),
    )  # fmt: skip


def _forward_passes(files: list[Path], sampling: Sampling) -> int:
    """Images, plus the sampled frames of videos: the run's work, for the auto backend."""
    passes = 0
    for f in files:
        try:
            passes += VideoFrames(f, sampling).expected if is_video(f) else 1
        except (VideoReadError, ValueError):
            continue  # predicting it says why
    return passes


def _calibration_sources(files: list[Path], n: int, sampling: Sampling) -> list:
    """The first `n` inputs for int8 calibration: image paths, and a video's sampled frames."""
    sources: list = []
    for f in files:
        if len(sources) >= n:
            break
        if not is_video(f):
            sources.append(f)
            continue
        try:
            sources += read_video_frames(f, sampling, limit=n - len(sources))
        except (VideoReadError, ValueError):
            continue  # predicting it says why
    return sources


def _video_sampling(args: argparse.Namespace, videos: list[Path]) -> Sampling:
    """The frames to score in each video; the video options refused when no input is one."""
    given = [name for name, value in (("--every", args.every), ("--fps", args.fps),
             ("--save-maps", args.save_maps), ("--batch-size", args.batch_size)) if value]  # fmt: skip
    if given and not videos:
        raise UsageError(f"{', '.join(given)}: options for videos, and {args.input} holds none")
    if args.every:
        return Sampling(every=args.every)
    return Sampling(fps=args.fps or DEFAULT_FPS)


def _predict_one_video(f: Path, model: nn.Module, out_dir: Path, args: argparse.Namespace,
                       sampling: Sampling, single: bool) -> dict | None:  # fmt: skip
    """Predicts a video into `out_dir`; what to list when it cannot be read or only in part."""
    from sdfl_lib.predict.video import predict_video  # why: matplotlib only when predicting

    out_dir, note = _free_video_folder(out_dir, f, single)
    try:
        result = predict_video(
            f, model, out_dir, sampling, threshold=args.threshold, image_size=args.image_size,
            batch_size=args.batch_size or 4, save_maps=args.save_maps,
        )  # fmt: skip
    except VideoReadError as err:
        if single:
            raise DataError(str(err)) from None  # one file asked for: a plain error
        return {"file": str(f), "error": err.cause}
    s, read = result.summary, result.summary["read"]
    print(f"{f}: video score {result.score:.4f} -> {result.decision} ({s['frames_scored']} "
          f"frame(s), {s['frames_tampered']} tampered; {out_dir / 'summary.json'}); annotated "
          f"video {out_dir / s['outputs']['overlay_video']}: {s['outputs']['overlay_codec']}{note}")
    if not result.truncated:
        return None
    return {"file": str(f), "partial": True, "error": (
        f"cut off: {read['frames_read']} of the {read['frames_announced']} frames announced; "
        f"{s['frames_scored']} sampled frame(s) scored, {read['sampled_frames_missing']} missing")}  # fmt: skip


def _input_files(src: Path, out: Path) -> list[Path]:
    """The files to predict: `src` itself, or the files of the folder `src` (not the outputs of
    an earlier run into `out`, which it says)."""
    if src.is_dir():
        files, outputs = _inputs(src, out)
        if outputs:
            print(f"sdfl predict: {outputs} file(s) in {out} are outputs of an earlier run and "
                  "are not read as inputs", file=sys.stderr)
        if not files:
            raise DataError(f"no files in {src}")
        return files
    if src.is_file():
        return [src]
    raise DataError(f"no such file or folder: {src}")


def _predict(args: argparse.Namespace) -> int:
    from sdfl_lib.predict.engine import predict  # why: matplotlib (viz) only when predicting

    src, out = Path(args.input), Path(args.out)
    files = _input_files(src, out)
    root = src if src.is_dir() else None
    videos = [f for f in files if is_video(f)]
    sampling = _video_sampling(args, videos)
    # A weights name (table3-N) is resolved once, inside; the model keeps its file for the export.
    model = resolve_model(args.checkpoint, args.method, args.device)
    model = inference_model_for(model, args, files, sampling)
    names = _output_names([f for f in files if f not in videos], root)
    failed = []
    for f in files:
        if f in videos:  # into a folder named after the whole file name: a.mp4/ beside a.png's
            where = out / f.relative_to(root) if root else out
            failed.append(_predict_one_video(f, model, where, args, sampling, root is None))
            continue
        try:
            result = predict(f, model, image_size=args.image_size, threshold=args.threshold)
        except ImageReadError as err:
            if root is None:
                raise DataError(str(err)) from None  # one file asked for: a plain error
            failed.append({"file": str(f), "error": _unreadable_cause(f, err)})
            continue
        folder = out / names[f].parent
        name, note = _free_name(folder, names[f].name, f)
        paths = result.save(folder, name)
        notes = "".join(f"; {n}" for n in [note, *result.notes] if n)
        print(f"{f}: score {result.score:.4f} -> {result.decision} ({paths['json']}{notes})")
    return _report_unscored([item for item in failed if item], files, out, args)


def _unreadable_cause(f: Path, err: ImageReadError) -> str:
    if f.is_symlink() and not f.exists():
        return "dangling symbolic link"
    if not f.suffix:
        return f"no file extension, and not an image PIL can read ({err.cause})"
    return err.cause


def _report_unscored(failed: list[dict], files: list[Path], out: Path, args: argparse.Namespace) -> int:
    """Lists the files that could not be read, or only in part, in unreadable.csv: exit 3."""
    if not failed:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    listed = out / "unreadable.csv"
    with atomic_write(listed) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "error"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(failed)
    partly = any(item.get("partial") for item in failed)
    print(f"sdfl predict: {len(failed)} of {len(files)} file(s) could not be read"
          f"{', or only in part' if partly else ''}, listed in {listed}:", file=sys.stderr)  # fmt: skip
    for item in failed[:10]:
        print(f"  {item['file']}: {item['error']}", file=sys.stderr)
    return 0 if args.allow_unscored else EXIT_UNSCORED
