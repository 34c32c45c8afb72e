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
import json
import os
import re
import shutil
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdfl_lib.data.download_archive import (
    ArchiveError,
    RarToolMissing,
    extract_archive,
    is_archive,
)
from sdfl_lib.data.registry import DATASETS, DatasetInfo, RemoteFile
from sdfl_lib.errors import DataError
from sdfl_lib.progress import tqdm
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


def _is_web_page(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))


def _wrong_type(path: Path) -> str:
    """Why `path` is not the archive its name says ("" when it looks right). Zip and xz files end
    in a known structure, so a body cut short (no Content-Length to tell) is found here too."""
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(512)
        fh.seek(max(path.stat().st_size - 2, 0))
        tail = fh.read(2)
    if _is_web_page(head):
        return "a web page (HTML) was served instead of the file"
    if suffix == ".tar":
        return "" if head[257:262] == b"ustar" or not head else "not a tar archive"
    magic = _MAGIC.get(suffix)
    if magic and not head.startswith(magic):
        return f"not a {suffix} file (it starts with {head[:16]!r})"
    if suffix == ".zip" and not zipfile.is_zipfile(path):
        return "a truncated or damaged zip file (its central directory is missing)"
    if suffix in (".xz", ".txz") and tail != b"YZ":
        return "a truncated xz file (its stream footer is missing)"
    return ""


def verify_download(
    path: Path,
    expected: str | None = None,
    check: Callable[[Path], str] | None = None,
    tag: str = "unusable",
) -> str:
    """The checks every downloaded file passes before its SHA-256 is recorded: it is not a web
    page, an archive is of its type and complete, and `check(path)` (e.g. "loads as a
    checkpoint"; it returns why not, or "") finds nothing; then the digest is compared with the
    pinned or recorded one, or recorded. A file that fails is moved aside (`<file>.<tag>`, or
    `.not-an-archive`) so that the next run fetches it afresh; returns the digest."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if is_archive(path):
        why, tag = _wrong_type(path), "not-an-archive"
    else:
        why = "a web page (HTML) was served instead of the file" if _is_web_page(head) else ""
    record = _digest_file(path)
    if not why and check is not None and not expected and not record.is_file():
        why = check(path)  # once, before the digest is first recorded; the digest guards it after
    if why:
        bad = _quarantine(path, why, tag)
        raise DownloadError(f"{path.name}: {why}; it was moved to {bad}, and the next run "
                            "downloads it afresh")
    return _verify(path, expected)


def _drive_id(url: str) -> str | None:
    match = re.search(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:.*&)?id=)([\w-]+)", url)
    return match.group(1) if match else None


def _dropbox_direct(url: str) -> str:
    """Dropbox share links serve a web page unless asked for the file with dl=1."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "dl"] + [("dl", "1")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _part_record(dest: Path) -> Path:
    """What a partial download belongs to: its URL, total size and validators (JSON)."""
    return dest.with_name(dest.name + ".part.json")


def _resumable(dest: Path, url: str) -> tuple[int, dict]:
    """(bytes to resume from, the partial file's record); a partial file left by another URL or
    without a record is deleted: its bytes may belong to another file."""
    part, record_path = dest.with_name(dest.name + ".part"), _part_record(dest)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if part.exists() and record.get("url") == url:
        return part.stat().st_size, record
    if part.exists():
        print(f"{part.name}: left by another download ({record.get('url') or 'no record'}); "
              "starting afresh")
    part.unlink(missing_ok=True)
    record_path.unlink(missing_ok=True)
    return 0, {}


def _range_headers(have: int, record: dict) -> dict[str, str]:
    if not have:
        return {}
    headers = {"Range": f"bytes={have}-"}
    validator = record.get("etag") or record.get("last_modified")
    if validator:
        headers["If-Range"] = validator  # the server sends the whole file if it changed
    return headers


def _http_get(url: str, dest: Path, timeout: float) -> None:
    """Fetches `url` into `dest`, resuming `dest.part` (of the same URL and file) with an HTTP
    Range request."""
    import requests  # why: heavy, only when downloading

    part = dest.with_name(dest.name + ".part")
    have, record = _resumable(dest, url)
    with requests.get(url, stream=True, timeout=timeout,
                      headers=_range_headers(have, record)) as response:  # fmt: skip
        if response.status_code == 416 and have:
            # The partial file may already hold everything: the server says how big it is.
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have == record.get("size", have):
                replace_file(part, dest)
                _part_record(dest).unlink(missing_ok=True)
                return
            part.unlink()
            return _http_get(url, dest, timeout)
        response.raise_for_status()
        total = _total_size(response, record)
        if response.status_code == 206 and total is None:
            # The rest of another file (it changed on the server): fetch the whole file again.
            part.unlink()
            _part_record(dest).unlink(missing_ok=True)
            return _http_get(url, dest, timeout)
        if response.status_code != 206:
            have = 0  # a new download, or the server ignored the Range request: start again
            _part_record(dest).write_text(json.dumps({
                "url": url, "size": total, "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }))  # fmt: skip
        with (
            open(part, "ab" if have else "wb") as handle,
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
    _part_record(dest).unlink(missing_ok=True)


def _total_size(response: Any, record: dict) -> int | None:
    """The whole file's size, from Content-Range (a resumed transfer) or Content-Length; None
    when the server does not say, or when a resumed transfer reports another file's size."""
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit() and int(total) == record.get("size"):
            return int(total)
        return None  # another file now: `_http_get` starts again
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


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
        digest = verify_download(dest, item.sha256)
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
