"""The paper's nine published checkpoints by name: `table3-1` ... `table3-9`, one per Table III row.

`WEIGHTS` says which model and training set each row is, with the row's published numbers;
`download_weights(name)` fetches the authors' file into the cache (resumable, with a progress bar)
and `resolve_checkpoint(path_or_name)` turns a name into that file wherever a checkpoint path is
accepted. No checksums are published, so the file's SHA-256 is recorded on its first download
(`<file>.sha256`) and every later use checks the file against it.

The URLs are the links of the authors' README. `SDFL_WEIGHTS_URL` replaces them with a mirror:
a URL template with `{row}` (e.g. `https://mirror.example/icnc2023/{row}.pth`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sdfl_lib.data.download import ChecksumError, DownloadError, _fetch, verify_download
from sdfl_lib.errors import DataError, UsageError
from sdfl_lib.models.checkpoint import CheckpointError, read_checkpoint, state_of
from sdfl_lib.paths import cache_dir

# The authors' README: trained models for the experiments of Table III, row N at N.pth.
_DROPBOX_IDS = {
    1: "jov5nsj47pyfv16", 2: "w9eviamadmc0feh", 3: "4pq92dmjzepi0uk",
    4: "i9eakxvww8vsbh7", 5: "0jx8pxq1aksir18", 6: "adsvglkcwv6ttnj",
    7: "nr81w432k9llztc", 8: "g2n58undkom78tb", 9: "zzk4eump5xfbqmz",
}  # fmt: skip
_ROWS = {
    1: ("mvssnet", "S"), 2: ("mvssnet", "D"), 3: ("mvssnet", "S+D"),
    4: ("upernet", "S"), 5: ("upernet", "D"), 6: ("upernet", "S+D"),
    7: ("ours", "S"), 8: ("ours", "D"), 9: ("ours", "S+D"),
}  # fmt: skip
TRAINING_SETS = {"S": "shallowfakes", "D": "deepfakes", "S+D": "shallowfakes + deepfakes"}
MIRROR_ENV = "SDFL_WEIGHTS_URL"
_NAME = re.compile(r"table3-(\d+)")


# The paper's Table III: (model, trained on) -> test set -> (pixel F1, image F1, combined F1, AUC).
TABLE_III = {
    ("mvssnet", "S"): {"S": (.60, .68, .64, .79), "D": (.24, .51, .33, .53), "both": (.42, .62, .50, .68)},
    ("mvssnet", "D"): {"S": (.45, .00, .01, .50), "D": (.90, .93, .91, .98), "both": (.67, .62, .64, .71)},
    ("mvssnet", "S+D"): {"S": (.59, .64, .62, .78), "D": (.90, .94, .92, .97), "both": (.75, .81, .78, .87)},
    ("upernet", "S"): {"S": (.60, .62, .61, .83), "D": (.30, .29, .29, .55), "both": (.45, .47, .46, .72)},
    ("upernet", "D"): {"S": (.44, .27, .33, .43), "D": (.92, .95, .94, .99), "both": (.68, .69, .68, .78)},
    ("upernet", "S+D"): {"S": (.59, .65, .62, .85), "D": (.87, .93, .90, .98), "both": (.72, .81, .76, .91)},
    ("ours", "S"): {"S": (.60, .68, .64, .85), "D": (.27, .29, .28, .47), "both": (.44, .51, .47, .70)},
    ("ours", "D"): {"S": (.45, .12, .19, .45), "D": (.92, .95, .94, .99), "both": (.68, .66, .67, .81)},
    ("ours", "S+D"): {"S": (.60, .66, .63, .84), "D": (.91, .94, .93, .99), "both": (.75, .82, .78, .92)},
}  # fmt: skip


class WeightsError(DataError, RuntimeError):
    """Named weights that are unknown, not downloaded, unreachable or changed on disk."""


@dataclass(frozen=True)
class NamedWeights:
    """One published checkpoint: its Table III row, model, training set and published numbers."""

    name: str
    row: int
    model: str
    trained_on: str  # "S", "D" or "S+D"
    published_url: str

    @property
    def url(self) -> str:
        """The published link, or the mirror of `SDFL_WEIGHTS_URL` when set."""
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        if mirror and "{row}" not in mirror:
            raise WeightsError(
                f"{MIRROR_ENV}={mirror!r} must contain {{row}} (e.g. .../{{row}}.pth)"
            )
        return mirror.format(row=self.row) if mirror else self.published_url

    @property
    def path(self) -> Path:
        """Where the file lives in the cache ($SDFL_CACHE/weights/table3-N.pth)."""
        return cache_dir() / "weights" / f"{self.name}.pth"

    @property
    def published(self) -> dict[str, tuple[float, float, float, float]]:
        """Test set ("S", "D", "both") -> the paper's (pixel F1, image F1, combined F1, AUC)."""
        return TABLE_III[(self.model, self.trained_on)]


WEIGHTS: dict[str, NamedWeights] = {
    f"table3-{row}": NamedWeights(
        f"table3-{row}", row, model, trained,
        f"https://www.dropbox.com/s/{_DROPBOX_IDS[row]}/{row}.pth?dl=0",
    )
    for row, (model, trained) in _ROWS.items()
}  # fmt: skip


def is_weights_name(text: object) -> bool:
    """True for strings shaped like a named checkpoint (`table3-N`), known or not."""
    return isinstance(text, str) and _NAME.fullmatch(text.strip()) is not None


def get_weights(name: str) -> NamedWeights:
    """The entry of `name`; a clear error listing the known names otherwise."""
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}")
    return WEIGHTS[name]


def _checkpoint_problem(path: Path) -> str:
    """Why a downloaded file is no usable checkpoint ("" when it loads and holds weights)."""
    try:
        state_of(read_checkpoint(path))
    except CheckpointError as err:
        return f"not a checkpoint that loads ({err})"
    return ""


def _check(entry: NamedWeights) -> str:
    """The download checks of `verify_download` (a checkpoint that does not load is set aside,
    never recorded), then the file's SHA-256 recorded the first time, compared afterwards."""
    again = f"`sdfl weights download {entry.name}` fetches it again"
    try:
        return verify_download(entry.path, check=_checkpoint_problem, tag="not-a-checkpoint")
    except ChecksumError as err:
        raise WeightsError(
            f"{entry.name}: {entry.path} changed since it was downloaded ({err}); {again} "
            "(delete the .sha256 file if the new file is meant to replace it)"
        ) from err
    except DownloadError as err:
        raise WeightsError(f"{entry.name}: {err}") from err


def download_weights(name: str, timeout: float = 30.0) -> Path:
    """Fetches named weights into the cache unless there (then only checked); returns the path.

    Resumes a `.part` file left by an interrupted download of the same URL (HTTP Range).
    """

    if not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout}")
    entry = get_weights(name)
    dest = entry.path
    if not dest.is_file():
        url = entry.url
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            _fetch(url, dest, timeout)
        except Exception as err:  # refused connections, HTTP errors, cut transfers
            raise WeightsError(
                f"{name}: cannot fetch {url} ({type(err).__name__}: {err}); download it by hand "
                f"and put it at {dest}"
            ) from err
    _check(entry)
    return dest


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path from a path or a weights name; a name must be downloaded already (its
    file is checked against the SHA-256 recorded at download)."""
    text = os.fspath(path_or_name)
    if Path(text).is_file() or not is_weights_name(text):
        return Path(text)
    entry = get_weights(text.strip())
    if not entry.path.is_file():
        raise WeightsError(
            f"{entry.name} is not downloaded: run `sdfl weights download {entry.name}` (fetches "
            f"{entry.url}) or put the file at {entry.path}"
        )
    _check(entry)
    return entry.path


def weights_table() -> list[dict]:
    """One row per named checkpoint: name, model, training set, published numbers, cache state."""
    rows = []
    for entry in WEIGHTS.values():
        row = {
            "name": entry.name,
            "model": entry.model,
            "trained_on": entry.trained_on,
        }
        for test, values in entry.published.items():
            row[f"test {test}"] = "/".join(f"{v:.2f}".lstrip("0") for v in values)
        row["downloaded"] = "yes" if entry.path.is_file() else "no"
        rows.append(row)
    return rows
