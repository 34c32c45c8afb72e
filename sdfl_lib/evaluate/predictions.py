"""The streamed per-image table `predictions.csv`: one row per image, written as results come,
read back (tolerating a last line cut by an interruption) to resume and to compute metrics."""

from __future__ import annotations

import csv
import os
import queue
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from sdfl_lib.data.io import write_image
from sdfl_lib.errors import DataError, OutputError
from sdfl_lib.metrics import PixelCounts

COLUMNS = (
    "row", "image", "mask", "source", "label", "pixel", "score", "height", "width", "mask_event",
    "mask_size", "tp", "fp", "fn", "tn", "best_threshold", "best_tp", "best_fp", "best_fn",
    "hist_pos", "hist_neg", "map", "paper_pixel", "paper_tp", "paper_fp", "paper_fn",
    "band_tp", "band_fp", "band_fn", "band_tn",
)  # fmt: skip
# Bumped when the columns change: an evaluation folder of another format is not resumed.
FORMAT = 2


def make_row(
    meta: dict,
    score: float,
    size: tuple,
    counts: PixelCounts | None,
    event: str,
    mask_size: str,
    map_path: str,
    paper_counts: tuple[int, int, int] | None = None,
    band_counts: tuple[int, int, int, int] | None = None,
) -> dict:
    """One predictions row; `counts` None means no pixel ground truth (label-only, mask skipped);
    `paper_counts` None means the image is left out of the paper protocol's pixel F1."""
    row = {k: meta[k] for k in ("row", "image", "mask", "source", "label")}
    tp, fp, fn = paper_counts or (0, 0, 0)
    row.update(paper_pixel=int(paper_counts is not None), paper_tp=tp, paper_fp=fp, paper_fn=fn)
    row.update(
        zip(("band_tp", "band_fp", "band_fn", "band_tn"), band_counts or (0, 0, 0, 0), strict=True)
    )
    row.update(
        score=f"{score:.9g}",
        height=size[0],
        width=size[1],
        mask_event=event,
        mask_size=mask_size,
        map=map_path,
        pixel=int(counts is not None),
    )
    if counts is None:
        row.update(
            {k: 0 for k in ("tp", "fp", "fn", "tn", "best_tp", "best_fp", "best_fn")},
            best_threshold="",
            hist_pos="",
            hist_neg="",
        )
    else:
        c = counts.__dict__
        row.update({k: c[k] for k in ("tp", "fp", "fn", "tn", "best_tp", "best_fp", "best_fn")})
        row.update(
            best_threshold=f"{counts.best_threshold:g}",
            hist_pos=" ".join(map(str, counts.hist_pos.tolist())),
            hist_neg=" ".join(map(str, counts.hist_neg.tolist())),
        )
    return row


def repair(path: Path) -> None:
    """Cuts a last line left incomplete by an interrupted write."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _check_intact(df: pd.DataFrame, path: Path) -> None:
    """A table that two processes wrote into at once (a header inside it, a row twice) is not
    resumed or scored: it would count images twice."""
    rows = pd.to_numeric(df["row"], errors="coerce") if "row" in df else pd.Series(dtype=float)
    why = ""
    if "row" not in df or rows.isna().any():
        line = int(rows.isna().to_numpy().argmax()) + 2 if "row" in df else 1
        why = f"line {line} is not a row of predictions (a second header?)"
    elif df.duplicated(["row", "image"]).any():
        first = df[df.duplicated(["row", "image"])].iloc[0]
        why = f"manifest row {first['row']} ({first['image']}) is listed twice"
    if why:
        raise DataError(f"{path} is damaged: {why}; was it written by two runs at once? Run again "
                        "with --no-resume (resume=False) to start this folder over")


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """The table with histograms as int arrays (an all-zero array where there is no pixel row)."""
    path = Path(path)
    repair(path)
    df = pd.read_csv(
        path,
        dtype={
            "mask_event": str,
            "mask_size": str,
            "source": str,
            "mask": str,
            "map": str,
            "hist_pos": str,
            "hist_neg": str,
        },
        keep_default_na=False,
    )
    _check_intact(df, path)
    df["pixel"] = df["pixel"].astype(int).astype(bool)
    if "paper_pixel" in df:  # tables of an earlier format lack it (paper_metrics then falls back)
        df["paper_pixel"] = df["paper_pixel"].astype(int).astype(bool)
    df["score"] = df["score"].astype(float)
    for col in ("hist_pos", "hist_neg"):
        df[col] = [np.array(s.split(), dtype=np.int64) if s else None for s in df[col]]
    width = next((len(h) for h in df["hist_pos"] if h is not None), 0)
    for col in ("hist_pos", "hist_neg"):
        df[col] = [h if h is not None else np.zeros(width, np.int64) for h in df[col]]
    return df


class Writer:
    """A thread that appends rows to predictions.csv and writes map PNGs, so that file output
    overlaps the model's forward. `put` blocks when `depth` items wait (bounded memory)."""

    def __init__(self, csv_path: Path, maps_dir: Path | None, depth: int = 64) -> None:
        self.csv_path, self.maps_dir = csv_path, maps_dir
        new = not csv_path.is_file() or csv_path.stat().st_size == 0
        self._file = open(csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
        if new:
            self._csv.writeheader()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, row: dict, png: np.ndarray | None = None) -> None:
        self._raise()
        self._queue.put((row, png))

    def _raise(self) -> None:
        if isinstance(self._error, DataError):
            raise self._error
        if self._error:
            raise RuntimeError(f"writing predictions failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            row, png = job
            try:
                if png is not None and self.maps_dir is not None:
                    target = self.maps_dir / row["map"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_image(target, png)
                try:
                    self._csv.writerow(row)
                    if self._queue.empty():
                        self._file.flush()
                except OSError as err:
                    raise OutputError(self.csv_path, err) from err
            except BaseException as err:  # surfaced to the main thread by put/close
                self._error = err

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._file.close()
        except OSError as err:  # the last buffered rows could not be written
            self._error = self._error or OutputError(self.csv_path, err)
        self._raise()
