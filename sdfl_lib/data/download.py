"""Downloads the study's data sets: `download(name, to)` fetches, verifies and extracts one.

`DATASETS` (from `sdfl_lib.data.registry`) describes every data set of the study: where
each file comes from (Google Drive via gdown, Dropbox, plain HTTP(S)) or, for sets behind a
registration or request form, what to fetch by hand and where to put it. A download resumes
from `<file>.part` (HTTP Range), is checked against a SHA-256 when one is known or given (else
against the one its first download recorded in `<file>.sha256`), and archives (.zip, .tar.*,
.rar) are extracted safely (see `sdfl_lib.data.download_archive`). A file that is not what it
should be (a web page, another type, a failed checksum or extraction) is moved aside as
`<file>.<why>` with a message, so the next run downloads it afresh.
Files already in the target folder (put there by hand) are used as they are: verified and
extracted, never fetched again.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from sdfl_lib.data.download_archive import (
    ArchiveError,
    RarToolMissing,
    extract_archive,
    is_archive,
)
from sdfl_lib.data.registry import DATASETS, DatasetInfo, RemoteFile
from sdfl_lib.errors import DataError
from sdfl_lib.runtime import replace_file

CHUNK = 1 << 20


class DownloadError(DataError, RuntimeError):
    """A file could not be fetched or verified; the message says what to do by hand."""


class ManualDownloadRequired(DownloadError):
    """The data set (or one of its files) can only be fetched by hand."""


class ChecksumError(DownloadError):
    """The file's SHA-256 differs from the expected one."""


def _unknown(name: str) -> DownloadError:
    close = difflib.get_close_matches(name, DATASETS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return DownloadError(f"unknown data set {name!r}.{hint} Known: {', '.join(DATASETS)}.")


def sha256sum(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex (with a progress bar for big files)."""

    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with (
        open(path, "rb") as handle,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {Path(path).name}",
             disable=size < (256 << 20)) as bar,
    ):
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _digest_file(path: Path) -> Path:
    return Path(f"{path}.sha256")


def _quarantine(path: Path, why: str, tag: str) -> Path:
    """Moves a file that is not what it should be aside (and forgets its recorded digest), so
    that the next run fetches it afresh instead of failing on it again."""
    bad = path.with_name(f"{path.name}.{tag}")
    os.replace(path, bad)
    _digest_file(path).unlink(missing_ok=True)
    return bad


def _verify(path: Path, expected: str | None) -> str:
    """Checks the SHA-256 against the pinned one, else the one recorded by the first download
    (kept beside the file as `<file>.sha256`); a mismatch moves the file aside."""
    actual = sha256sum(path)
    record = _digest_file(path)
    recorded = record.read_text().split()[0] if record.is_file() and record.read_text().strip() else ""
    wanted = (expected or recorded).lower()
    if wanted and actual.lower() != wanted:
        bad = _quarantine(path, "SHA-256 mismatch", "sha256-mismatch")
        source = "expected" if expected else f"recorded in {record.name} by its first download"
        raise ChecksumError(
            f"SHA-256 mismatch for {path.name}: {source} {wanted}, got {actual}. The file was "
            f"moved to {bad}; the next run downloads it afresh."
        )
    if not recorded:
        # Kept beside the file so later runs check it, and a user can pin it with --sha256.
        record.write_text(f"{actual}  {path.name}\n")
    return actual


# Leading bytes of each archive type; a file that starts otherwise is not that archive.
_MAGIC = {
    ".zip": (b"PK\x03\x04", b"PK\x05\x06"),
    ".rar": (b"Rar!\x1a\x07",),
    ".gz": (b"\x1f\x8b",), ".tgz": (b"\x1f\x8b",),
    ".xz": (b"\xfd7zXZ\x00",), ".txz": (b"\xfd7zXZ\x00",),
    ".bz2": (b"BZh",), ".tbz2": (b"BZh",), ".tbz": (b"BZh",),
}  # fmt: skip


def _wrong_type(path: Path) -> str:
    """Why `path` is not the archive its name says ("" when it looks right)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(512)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "a web page (HTML) was served instead of the file"
    if suffix == ".tar":
        return "" if head[257:262] == b"ustar" or not head else "not a tar archive"
    magic = _MAGIC.get(suffix)
    if magic and not head.startswith(magic):
        return f"not a {suffix} file (it starts with {head[:16]!r})"
    return ""


def _drive_id(url: str) -> str | None:
    match = re.search(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:.*&)?id=)([\w-]+)", url)
    return match.group(1) if match else None


def _dropbox_direct(url: str) -> str:
    """Dropbox share links serve a web page unless asked for the file with dl=1."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "dl"] + [("dl", "1")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _http_get(url: str, dest: Path, timeout: float) -> None:
    """Fetches `url` into `dest`, resuming `dest.part` with an HTTP Range request."""
    import requests  # why: heavy, only when downloading

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as response:
        if response.status_code == 416 and have:
            # The partial file may already hold everything: the server says how big it is.
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                replace_file(part, dest)
                return
            part.unlink()
            return _http_get(url, dest, timeout)
        response.raise_for_status()
        resumed = have and response.status_code == 206
        if have and not resumed:
            have = 0  # the server ignored the Range request: start again
        length = response.headers.get("Content-Length")
        total = int(length) + have if length and length.isdigit() else None
        with (
            open(part, "ab" if resumed else "wb") as handle,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name) as bar,
        ):
            for chunk in response.iter_content(CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume from {part}"
        )
    replace_file(part, dest)


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Fetches one URL (Google Drive, Dropbox, HTTP(S) or file://) into `dest`."""
    drive = _drive_id(url)
    if drive:
        import gdown  # why: only for Google Drive downloads

        # gdown keeps its own resumable partial file beside `dest`.
        result = gdown.download(id=drive, output=str(dest), quiet=False, resume=True,
                               timeout=timeout)
        if not result or not dest.is_file():
            raise DownloadError(f"Google Drive refused {url} (quota or permission)")
        return
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), dest)
        return
    if scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL {url!r}: use http(s)://, file:// or a Drive link")
    if "dropbox.com" in urllib.parse.urlsplit(url).netloc:
        url = _dropbox_direct(url)
    _http_get(url, dest, timeout)


def _manual_message(info: DatasetInfo, item: RemoteFile, to: Path, why: str = "") -> str:
    if why:
        get = f"download {item.url} by hand" + (f" (home page {info.homepage})" if info.homepage else "")
    else:
        get = f"it must be downloaded by hand: get {item.manual}"
    return (
        f"{why}{info.name} ({info.title}): {get}. Put {item.filename!r} in {to}: an archive is "
        f"verified and extracted by `sdfl data download {info.name} --to {to}`, a folder you "
        f"unpacked yourself is used as it is; then run `sdfl data prepare {info.name} --root "
        f"{to}`. Cite: {info.citation}"
    )


def _select_override(info: DatasetInfo, url: str | None, sha256: str | None) -> list[RemoteFile]:
    """Applies a user's --url/--sha256 to the data set's only file, or its only manual file."""
    files = list(info.files)
    if url is None and sha256 is None:
        return files
    targets = [i for i, f in enumerate(files) if f.url is None] if url else []
    if len(files) == 1:
        targets = [0]
    if len(targets) != 1:
        raise DownloadError(
            f"{info.name} has {len(files)} files ({', '.join(f.filename for f in files)}): "
            "--url/--sha256 can only replace a single file; download the others by hand"
        )
    i = targets[0]
    files[i] = RemoteFile(
        files[i].filename, url or files[i].url, sha256 or files[i].sha256, files[i].subdir,
        files[i].manual, files[i].unpacked,
    )
    return files


def _done_marker(to: Path, item: RemoteFile) -> Path:
    return to / f".sdfl-extracted-{item.filename}"


def download(
    name: str,
    to: str | os.PathLike,
    url: str | None = None,
    sha256: str | None = None,
    extract: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetches, verifies and extracts data set `name` into folder `to`; returns `to`.

    `url`/`sha256` replace those of the data set's only file (or its only hand-fetched file).
    Raises `ManualDownloadRequired` for sets behind a form, `DownloadError` when offline.
    """
    if name not in DATASETS:
        raise _unknown(name)
    info = DATASETS[name]
    to = Path(to).expanduser().absolute()
    to.mkdir(parents=True, exist_ok=True)
    for item in _select_override(info, url, sha256):
        dest = to / item.filename
        if _done_marker(to, item).exists():
            print(f"{item.filename}: already extracted in {to}")
            continue
        if not dest.exists() and item.unpacked and next(iter(to.glob(item.unpacked)), None):
            print(f"{item.filename}: found its content in {to} (unpacked by hand)")
            continue
        if not dest.exists():
            if item.url is None:
                raise ManualDownloadRequired(_manual_message(info, item, to))
            try:
                _fetch(item.url, dest, timeout)
            except DownloadError as err:
                raise DownloadError(_manual_message(info, item, to, f"{err}. ")) from err
            except Exception as err:  # network errors of requests/gdown, refused connections
                why = f"could not fetch {item.url} ({type(err).__name__}: {err}); offline? "
                raise DownloadError(_manual_message(info, item, to, why)) from err
        if dest.is_dir():
            continue  # a folder the user unpacked by hand
        why = _wrong_type(dest) if is_archive(dest) else ""
        if why:
            bad = _quarantine(dest, why, "not-an-archive")
            raise DownloadError(f"{dest.name}: {why}; it was moved to {bad}, and the next run "
                                "downloads it afresh")
        digest = _verify(dest, item.sha256)
        if extract and is_archive(dest):
            try:
                extract_archive(dest, to / item.subdir)
            except RarToolMissing as err:
                raise DownloadError(f"{dest}: {err}") from err  # the tool, not the file
            except ArchiveError as err:
                bad = _quarantine(dest, str(err), "extraction-failed")
                raise DownloadError(f"{dest.name}: {err}; it was moved to {bad}, and the next "
                                    "run downloads it afresh") from err
            _done_marker(to, item).write_text(digest + "\n")
    return to
