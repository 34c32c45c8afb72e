"""Downloads against a local HTTP server on 127.0.0.1 (with Range support), and safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import io
import json
import os
import shutil
import struct
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path

import pytest

from sdfl_lib.data.download_archive import (
    RarToolMissing,
    UnsafeArchiveError,
    extract_archive,
)

# The module, not the function of the same name that `sdfl_lib.data` exports.
dl = importlib.import_module("sdfl_lib.data.download")

PAYLOAD = {"image/FaceSwap/FaceSwap_000_003_0.png": os.urandom(3000), "edge/readme.txt": b"hi\n"}


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `root`, honouring `Range: bytes=N-`; records every Range asked for."""

    root: Path
    ranges: list[str]
    ignore_range = False

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        path = self.root / self.path.lstrip("/").split("?")[0]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        asked = self.headers.get("Range")
        self.ranges.append(asked or "")
        if asked and not self.ignore_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_RangeHandler,), {"root": root, "ranges": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def _tar_xz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def _rar4(path: Path, entries: list[tuple[str, bytes, int]], host_os: int = 3) -> Path:
    """A RAR 4 archive with stored members, written by hand from the RAR 2.9 format note."""

    def block(head_type: int, flags: int, body: bytes) -> bytes:
        header = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header

    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, bytes(6))
    for name, data, mode in entries:
        raw = (name.replace("/", "\\") if host_os == 2 else name).encode()
        body = struct.pack(
            "<IIBIIBBHI", len(data), len(data), host_os, zlib.crc32(data), 0x5A210000, 29, 0x30,
            len(raw), mode,
        )
        out += block(0x74, 0x8000, body + raw) + data
    path.write_bytes(out + block(0x7B, 0x4000, b""))
    return path


def test_download_verifies_and_extracts_tar_xz(server, tmp_path):
    root, base, _ = server
    archive = _tar_xz(root / "ICNC2023-Deepfakes.tar.xz", PAYLOAD)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = dl.download("icnc-deepfakes", tmp_path / "df", url=f"{base}/{archive.name}",
                      sha256=digest)
    for name, data in PAYLOAD.items():
        assert (out / name).read_bytes() == data
    assert (out / f"{archive.name}.sha256").read_text().startswith(digest)
    # A second call finds the extracted marker and fetches nothing.
    (root / archive.name).unlink()
    assert dl.download("icnc-deepfakes", out, url=f"{base}/{archive.name}") == out


def test_checksum_mismatch_is_refused(server, tmp_path):
    root, base, _ = server
    _tar_xz(root / "ICNC2023-Deepfakes.tar.xz", PAYLOAD)
    with pytest.raises(dl.ChecksumError, match="SHA-256 mismatch") as err:
        dl.download("icnc-deepfakes", tmp_path / "df", url=f"{base}/ICNC2023-Deepfakes.tar.xz",
                    sha256="0" * 64)
    assert "0" * 64 in str(err.value)
    assert not (tmp_path / "df" / "image").exists()
    assert (tmp_path / "df" / "ICNC2023-Deepfakes.tar.xz.sha256-mismatch").exists()


def _partial(dest: Path, url: str, data: bytes, have: int) -> None:
    """What an interrupted download of `url` leaves: `dest.part` and its record."""
    dest.with_name(dest.name + ".part").write_bytes(data[:have])
    dl._part_record(dest).write_text(json.dumps({"url": url, "size": len(data)}))


def test_resume_of_a_partial_download(server, tmp_path):
    root, base, handler = server
    data = os.urandom(200_000)
    (root / "big.bin").write_bytes(data)
    dest = tmp_path / "big.bin"
    _partial(dest, f"{base}/big.bin", data, 70_000)
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert handler.ranges == ["bytes=70000-"]
    assert dest.read_bytes() == data and not dest.with_name("big.bin.part").exists()
    assert not dl._part_record(dest).exists()


def test_resume_restarts_when_server_ignores_range(server, tmp_path):
    root, base, handler = server
    handler.ignore_range = True
    data = os.urandom(50_000)
    (root / "big.bin").write_bytes(data)
    dest = tmp_path / "big.bin"
    _partial(dest, f"{base}/big.bin", b"garbage" * 100, 700)
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert dest.read_bytes() == data


def test_complete_part_file_is_kept(server, tmp_path):
    root, base, handler = server
    data = os.urandom(10_000)
    (root / "big.bin").write_bytes(data)
    dest = tmp_path / "big.bin"
    _partial(dest, f"{base}/big.bin", data, len(data))
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert dest.read_bytes() == data and handler.ranges == ["bytes=10000-"]


def test_a_partial_file_of_another_download_is_not_resumed(server, tmp_path, capsys):
    root, base, handler = server
    data, other = os.urandom(20_000), os.urandom(30_000)
    (root / "big.bin").write_bytes(data)
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(other[:5000])  # no record: whose bytes?
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert dest.read_bytes() == data and handler.ranges == [""]
    assert "left by another download (no record); starting afresh" in capsys.readouterr().out
    dest.unlink()
    _partial(dest, f"{base}/old.bin", other, 5000)  # another URL
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert dest.read_bytes() == data and handler.ranges == ["", ""]
    dest.unlink()
    _partial(dest, f"{base}/big.bin", other, 5000)  # this URL, but the file there changed size
    dl._http_get(f"{base}/big.bin", dest, timeout=10)
    assert dest.read_bytes() == data and handler.ranges == ["", "", "bytes=5000-", ""]


def test_zip_extraction_through_download(server, tmp_path):
    root, base, _ = server
    _zip(root / "mirror.zip", {"cifake/train/REAL/0.jpg": b"1", "cifake/test/FAKE/1.jpg": b"2"})
    out = dl.download("cifake", tmp_path / "cifake", url=f"{base}/mirror.zip")
    assert (out / "cifake.zip").is_file()
    assert (out / "cifake" / "test" / "FAKE" / "1.jpg").read_bytes() == b"2"


def test_offline_error_says_what_to_do(tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}/ICNC2023-Deepfakes.tar.xz"
    with pytest.raises(dl.DownloadError) as err:
        dl.download("icnc-deepfakes", tmp_path / "df", url=url, timeout=5)
    message = str(err.value)
    assert "offline" in message and "by hand" in message
    assert "ICNC2023-Deepfakes.tar.xz" in message and str(tmp_path / "df") in message


def test_manual_data_set_says_where_from_and_where_to(tmp_path):
    with pytest.raises(dl.ManualDownloadRequired) as err:
        dl.download("ffpp", tmp_path / "ffpp")
    message = str(err.value)
    assert "request form" in message and str(tmp_path / "ffpp") in message
    assert "sdfl data prepare ffpp" in message


def test_manual_data_set_unpacked_by_hand_is_accepted(tmp_path):
    (tmp_path / "ffpp" / "original_sequences" / "youtube").mkdir(parents=True)
    assert dl.download("ffpp", tmp_path / "ffpp") == tmp_path / "ffpp"


def test_manual_file_put_by_hand_is_verified_and_extracted(tmp_path):
    to = tmp_path / "coverage"
    to.mkdir()
    _zip(to / "COVERAGE.zip", {"coverage/image/1.tif": b"t", "coverage/mask/1forged.tif": b"m"})
    dl.download("coverage", to)
    assert (to / "coverage" / "mask" / "1forged.tif").read_bytes() == b"m"


def test_unknown_name_suggests_close_ones(tmp_path):
    with pytest.raises(dl.DownloadError, match="Did you mean casia2"):
        dl.download("casia3", tmp_path)


def test_registry_covers_the_study():
    assert {"casia2", "casia1", "columbia", "coverage", "nist16", "icnc-deepfakes", "ffpp",
            "cifake"} <= set(dl.DATASETS)
    for info in dl.DATASETS.values():
        assert info.citation and info.files
        for item in info.files:
            assert item.url or item.manual, f"{info.name}/{item.filename}: no url, no manual step"


def test_url_kinds():
    assert dl._drive_id("https://drive.google.com/uc?id=1IDUgcoUeonBxx2rASX") == "1IDUgcoUeonBxx2rASX"
    assert dl._drive_id("https://drive.google.com/file/d/abc_D-1/view?usp=sharing") == "abc_D-1"
    assert dl._drive_id("https://example.org/file.zip") is None
    assert dl._dropbox_direct("https://www.dropbox.com/s/x/a.rar?dl=0").endswith("a.rar?dl=1")
    assert dl._dropbox_direct("https://www.dropbox.com/s/x/a.rar").endswith("a.rar?dl=1")


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt", "C:/evil.txt"]
)
def test_zip_path_traversal_is_refused(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="unsafe member"):
        extract_archive(archive, dest)
    assert not list(dest.iterdir()) and not (tmp_path / "evil.txt").exists()


def test_tar_traversal_and_escaping_links_are_refused(tmp_path):
    cases = {
        "dotdot": [("../evil.txt", tarfile.REGTYPE, "")],
        "absolute": [("/tmp/evil.txt", tarfile.REGTYPE, "")],
        "symlink": [("link", tarfile.SYMTYPE, "../../etc")],
        "abs-symlink": [("link", tarfile.SYMTYPE, "/etc/passwd")],
        "hardlink": [("hard", tarfile.LNKTYPE, "../outside")],
        "through-link": [("d", tarfile.SYMTYPE, "sub"), ("d/x.txt", tarfile.REGTYPE, "")],
        "fifo": [("pipe", tarfile.FIFOTYPE, "")],
        # Each link alone stays inside; together they lead out (caught on the real file system).
        "chain": [("l2", tarfile.SYMTYPE, "."), ("l1", tarfile.SYMTYPE, "l2/..")],
    }
    for case, members in cases.items():
        path = tmp_path / f"{case}.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            tf.addfile(tarfile.TarInfo("fine.txt"), io.BytesIO())
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tf.addfile(info, io.BytesIO())
        dest = tmp_path / f"out-{case}"
        with pytest.raises(UnsafeArchiveError):
            extract_archive(path, dest)
        assert not list(dest.iterdir()), case


def test_links_that_stay_inside_are_kept(tmp_path):
    path = tmp_path / "ok.tar"
    with tarfile.open(path, "w") as tf:
        data = tarfile.TarInfo("a/file.txt")
        data.size = 2
        tf.addfile(data, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("b/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "../a/file.txt"
        tf.addfile(link, io.BytesIO())
    extract_archive(path, tmp_path / "out")
    assert (tmp_path / "out" / "b" / "link.txt").read_text() == "hi"


def test_zip_symlink_escaping_is_refused(tmp_path):
    archive = _zip(tmp_path / "link.zip", {"a.txt": b"a"}, symlinks={"up": "../../.."})
    with pytest.raises(UnsafeArchiveError, match="leaves the destination"):
        extract_archive(archive, tmp_path / "out")


def test_rar_extraction_and_refusal(tmp_path):
    good = _rar4(tmp_path / "good.rar", [("top/a.txt", b"hello", 0o100644),
                                        ("top/sub/b.txt", b"world" * 50, 0o100644)])
    extract_archive(good, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "sub" / "b.txt").read_bytes() == b"world" * 50
    for members in ([("../evil.txt", b"x", 0o100644)], [("ln", b"../../etc", 0o120777)]):
        bad = _rar4(tmp_path / "bad.rar", [("ok.txt", b"k", 0o100644), *members])
        with pytest.raises(UnsafeArchiveError):
            extract_archive(bad, tmp_path / "out-bad")
        assert not list((tmp_path / "out-bad").iterdir())


def test_rar_missing_tool_says_what_to_install(tmp_path, monkeypatch):
    rarfile = pytest.importorskip("rarfile")
    good = _rar4(tmp_path / "good.rar", [("a.txt", b"hello", 0o100644)])
    monkeypatch.setattr(rarfile, "FORCE_TOOL", True)
    monkeypatch.setattr(rarfile, "CURRENT_SETUP", None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RarToolMissing, match="apt-get install unar"):
        extract_archive(good, tmp_path / "out")


@pytest.mark.skipif(
    not any(shutil.which(t) for t in ("unar", "unrar", "bsdtar")),
    reason="no RAR tool (unar, unrar or bsdtar) on PATH: `apt-get install unar`",
)
def test_rar_through_the_external_tool(tmp_path, monkeypatch):
    rarfile = pytest.importorskip("rarfile")
    # The tool path is what real (compressed) archives take; force it for this stored one.
    monkeypatch.setattr(rarfile, "FORCE_TOOL", True)
    archive = _rar4(tmp_path / "win.rar", [("top/a.txt", b"hello", 0x20),
                                          ("top/sub/b.txt", b"world", 0x20)], host_os=2)
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "sub" / "b.txt").read_bytes() == b"world"


# ---- downloads that are not what they should be are moved aside; the next run starts afresh ----
def test_html_page_served_as_archive_is_moved_aside_and_refetched(server, tmp_path):
    root, base, _ = server
    (root / "page.zip").write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    url = f"{base}/page.zip"
    with pytest.raises(dl.DownloadError, match="web page .*next run downloads it afresh"):
        dl.download("cifake", tmp_path / "c", url=url)
    assert (tmp_path / "c" / "cifake.zip.not-an-archive").is_file()
    assert not (tmp_path / "c" / "cifake.zip").exists()
    _zip(root / "page.zip", {"cifake/a.jpg": b"1"})  # the server now serves the real file
    out = dl.download("cifake", tmp_path / "c", url=url)
    assert (out / "cifake" / "a.jpg").read_bytes() == b"1"


def test_cut_download_is_found_before_its_digest_is_recorded(server, tmp_path):
    root, base, _ = server
    good = _zip(tmp_path / "good.zip", {"cifake/a.jpg": os.urandom(5000)}).read_bytes()
    (root / "m.zip").write_bytes(good[: len(good) // 2])  # cut, as without Content-Length
    url = f"{base}/m.zip"
    with pytest.raises(dl.DownloadError, match="truncated .*moved to .*not-an-archive"):
        dl.download("cifake", tmp_path / "c", url=url, extract=False)
    assert not (tmp_path / "c" / "cifake.zip").exists()
    assert not (tmp_path / "c" / "cifake.zip.sha256").exists()  # nothing recorded
    (root / "m.zip").write_bytes(good)
    assert (dl.download("cifake", tmp_path / "c", url=url) / "cifake" / "a.jpg").is_file()
    cut_xz = _tar_xz(tmp_path / "d.tar.xz", PAYLOAD).read_bytes()[:-100]
    (root / "ICNC2023-Deepfakes.tar.xz").write_bytes(cut_xz)
    with pytest.raises(dl.DownloadError, match="truncated xz file"):
        dl.download("icnc-deepfakes", tmp_path / "d", url=f"{base}/ICNC2023-Deepfakes.tar.xz")


def test_recorded_sha256_is_checked_on_later_runs(server, tmp_path):
    root, base, _ = server
    _zip(root / "m.zip", {"cifake/a.jpg": b"1"})
    out = dl.download("cifake", tmp_path / "c", url=f"{base}/m.zip", extract=False)
    recorded = (out / "cifake.zip.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256((root / "m.zip").read_bytes()).hexdigest()
    _zip(out / "cifake.zip", {"cifake/a.jpg": b"2"})  # the file changed on disk since
    with pytest.raises(dl.ChecksumError, match="recorded in cifake.zip.sha256"):
        dl.download("cifake", out, url=f"{base}/m.zip")
    assert (out / "cifake.zip.sha256-mismatch").is_file()


def test_zip_bomb_is_refused_before_writing(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(200 << 20))  # 200 MB of zeros, ~200 KB packed
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match="would expand to 209,715,200 bytes"):
        extract_archive(bomb, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.bin"))
