"""Safe extraction of the data sets' archives: `extract_archive(archive, dest)` (.zip, .tar.*, .rar).

Every member is checked before anything is written: absolute paths, `..` components, members
written through a symbolic link, links (symbolic or hard) whose target leaves the destination,
and device files are refused with `UnsafeArchiveError`, and so is an archive that would expand
past `MAX_EXTRACT_BYTES` or `MAX_EXTRACT_RATIO` times its size (a zip bomb). The archive is unpacked into a staging
folder inside `dest` and moved into place only when all of it succeeded, so a refused or broken
archive leaves nothing behind. RAR archives need an external tool (see `RAR_TOOL_HELP`).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sdfl_lib.progress import tqdm

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz")
ARCHIVE_SUFFIXES = (".zip", ".rar", *TAR_SUFFIXES)

RAR_TOOL_HELP = (
    "Extracting .rar archives needs one of the tools unar, unrar or bsdtar on PATH (the rarfile "
    "package calls it; 7z/7zz work only when built with RAR support). Install one: "
    "Debian/Ubuntu `sudo apt-get install unar` (or `libarchive-tools` for bsdtar; Debian's "
    "`7zip` package has no RAR codec); Colab `!apt-get install -y unar`; conda "
    "`conda install -c conda-forge unar`; macOS `brew install unar`; Windows: install 7-Zip and "
    "add it to PATH. Or extract the archive yourself into {dest}."
)


class ArchiveError(RuntimeError):
    """An archive that cannot be extracted: unknown format, corrupt, or a missing tool."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written, or would point, outside the destination."""


class RarToolMissing(ArchiveError):
    """No external tool that rarfile can use to decompress RAR members was found."""


# Extraction limits (environment variables override them): an archive that would expand past
# MAX_EXTRACT_BYTES, or past MAX_EXTRACT_RATIO times its own size once it expands past
# RATIO_FLOOR_BYTES, is refused before anything is written (image data sets barely compress;
# a zip bomb does, by orders of magnitude).
MAX_EXTRACT_BYTES = int(os.environ.get("SDFL_MAX_EXTRACT_BYTES", 1 << 40))  # 1 TiB
MAX_EXTRACT_RATIO = float(os.environ.get("SDFL_MAX_EXTRACT_RATIO", 100))
RATIO_FLOOR_BYTES = 64 << 20


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", "special"
    target: str = ""
    size: int = 0  # uncompressed bytes, as the archive declares them


def is_archive(path: str | os.PathLike) -> bool:
    """True when the file name ends with a suffix `extract_archive` understands."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _problem(member: _Member, links: set[str]) -> str | None:
    """Why `member` is unsafe (None when it is fine); `links` holds the symlink members' names."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "'..' in the path"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            return f"written through the symbolic link {'/'.join(parts[:i])!r}"
    if member.kind == "special":
        return "device file, FIFO or other special file"
    if member.kind in ("symlink", "hardlink"):
        target = member.target.replace("\\", "/")
        if not target or target.startswith("/") or re.match(r"^[A-Za-z]:", target):
            return f"link to an absolute path {member.target!r}"
        # Symbolic links are relative to their folder, hard links to the archive's root.
        base = parts[:-1] if member.kind == "symlink" else []
        resolved = os.path.normpath(os.path.join("root", *base, target))
        if resolved != "root" and not resolved.startswith("root" + os.sep):
            return f"link target {member.target!r} leaves the destination"
    return None


def _check_size(members: list[_Member], archive: Path) -> None:
    total = sum(m.size for m in members)
    packed = max(archive.stat().st_size, 1)
    if total > MAX_EXTRACT_BYTES or (
        total > RATIO_FLOOR_BYTES and total / packed > MAX_EXTRACT_RATIO
    ):
        raise UnsafeArchiveError(
            f"refusing to extract {archive.name}: it would expand to {total:,} bytes from "
            f"{packed:,} ({total / packed:.0f}x); the limits are {MAX_EXTRACT_BYTES:,} bytes and "
            f"{MAX_EXTRACT_RATIO:g}x above {RATIO_FLOOR_BYTES:,} bytes (SDFL_MAX_EXTRACT_BYTES, "
            "SDFL_MAX_EXTRACT_RATIO raise them for an archive you trust)"
        )


def _check(members: list[_Member], archive: Path) -> None:
    _check_size(members, archive)
    links = {m.name.replace("\\", "/").strip("/") for m in members if m.kind == "symlink"}
    bad = [(m.name, why) for m in members if (why := _problem(m, links))]
    if bad:
        shown = "; ".join(f"{name!r}: {why}" for name, why in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UnsafeArchiveError(
            f"refusing to extract {archive.name}: {len(bad)} unsafe member(s): {shown}{more}"
        )


def _zip_members(zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if (mode & 0o170000) == 0o120000:
            members.append(_Member(info.filename, "symlink", zf.read(info).decode("utf-8")))
        elif mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):
            members.append(_Member(info.filename, "special"))
        else:
            members.append(
                _Member(info.filename, "dir" if info.is_dir() else "file", size=info.file_size)
            )
    return members


def _tar_members(tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.issym():
            members.append(_Member(info.name, "symlink", info.linkname))
        elif info.islnk():
            members.append(_Member(info.name, "hardlink", info.linkname))
        elif info.isdir() or info.isfile():
            members.append(_Member(info.name, "dir" if info.isdir() else "file", size=info.size))
        else:
            members.append(_Member(info.name, "special"))
    return members


def _rar_members(rf) -> list[_Member]:
    members = []
    for info in rf.infolist():
        if info.is_symlink():
            target = info.file_redir[2] if info.file_redir else rf.read(info).decode("utf-8")
            members.append(_Member(info.filename, "symlink", target))
        elif info.file_redir:  # RAR5 hard links and file copies
            members.append(_Member(info.filename, "hardlink", info.file_redir[2]))
        else:
            members.append(_Member(info.filename, "dir" if info.is_dir() else "file",
                                   size=int(info.file_size or 0)))
    return members


def _extract_zip(archive: Path, staging: Path, bar) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = _zip_members(zf)
        _check(members, archive)
        bar.reset(total=len(members))
        # Links last, so no file is ever written through a link made from the archive.
        for info, member in zip(zf.infolist(), members, strict=True):
            if member.kind != "symlink":
                zf.extract(info, staging)
            bar.update()
        for member in members:
            if member.kind == "symlink":
                link = staging / member.name.rstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.target, link)


def _extract_tar(archive: Path, staging: Path, bar) -> None:
    with tarfile.open(archive) as tf:
        members = _tar_members(tf)
        _check(members, archive)
        bar.reset(total=len(members))
        for info in tf.getmembers():
            # The "data" filter re-checks every member against the real file system.
            tf.extract(info, staging, filter="data")
            bar.update()


def _extract_rar(archive: Path, staging: Path, bar) -> None:
    import rarfile  # why: optional, only for .rar archives

    try:
        rf = rarfile.RarFile(archive)
    except rarfile.Error as err:
        raise ArchiveError(f"cannot read {archive.name} as a RAR archive: {err}") from err
    with rf:
        infos = rf.infolist()
        needs_tool = rarfile.FORCE_TOOL or any(
            i.compress_type != rarfile.RAR_M0 or i.needs_password() for i in infos
        )
        if needs_tool:
            try:
                rarfile.tool_setup()
            except rarfile.RarCannotExec as err:
                raise RarToolMissing(RAR_TOOL_HELP.format(dest=staging.parent)) from err
        members = _rar_members(rf)
        _check(members, archive)
        bar.reset(total=len(infos))
        try:
            for info in infos:
                rf.extract(info, staging)
                bar.update()
        except rarfile.RarCannotExec as err:
            raise RarToolMissing(RAR_TOOL_HELP.format(dest=staging.parent)) from err
        except rarfile.Error as err:
            try:
                tool = rarfile.tool_setup().get_cmdline("open_cmd", "")[0]
            except rarfile.Error:
                tool = "none"
            raise ArchiveError(
                f"{archive.name}: {type(err).__name__}: {err} (RAR tool used: {tool}). "
                + RAR_TOOL_HELP.format(dest=staging.parent)
            ) from err


def _links_stay_inside(staging: Path, archive: Path) -> None:
    """Resolves every extracted link on disk: a chain of links must not lead outside either."""
    root = os.path.realpath(staging)
    for folder, dirs, files in os.walk(staging):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != root and not real.startswith(root + os.sep):
                    rel = os.path.relpath(path, staging)
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive.name}: the link {rel!r} resolves outside "
                        "the destination"
                    )


def _merge(src: Path, dest: Path) -> None:
    """Moves the content of `src` into `dest`, merging folders and replacing files."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge(Path(entry.path), target)
        else:
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
            os.replace(entry.path, target)


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extracts a .zip, .tar(.gz/.xz/.bz2) or .rar archive into `dest` safely; returns `dest`.

    Raises `UnsafeArchiveError` (nothing is written), `RarToolMissing` or `ArchiveError`.
    """

    archive, dest = Path(archive), Path(dest)
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        extract = _extract_zip
    elif lower.endswith(TAR_SUFFIXES):
        extract = _extract_tar
    elif lower.endswith(".rar"):
        extract = _extract_rar
    else:
        raise ArchiveError(f"unknown archive type {archive.name!r}: expected {ARCHIVE_SUFFIXES}")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".sdfl-extracting-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with tqdm(desc=f"extract {archive.name}", unit="file") as bar:
            try:
                extract(archive, staging, bar)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
                if isinstance(err, tarfile.FilterError):
                    raise UnsafeArchiveError(f"refusing to extract {archive.name}: {err}") from err
                raise ArchiveError(f"cannot extract {archive.name}: {err}") from err
        _links_stay_inside(staging, archive)
        _merge(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
