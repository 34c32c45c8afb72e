"""Named weights against a local HTTP server (127.0.0.1) serving an authors'-format checkpoint
built from the reference layout: list, resumable download, SHA-256 record, use by name."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from sdfl_lib.cli import main as sdfl
from sdfl_lib.models.weights import WEIGHTS, WeightsError, resolve_checkpoint


class _Server(ThreadingHTTPServer):
    """Serves `files` (path -> bytes) with HTTP Range; the first response of a `cut` path stops
    half way (a dropped connection); every Range header asked for is kept in `ranges`."""

    def __init__(self, files: dict[str, bytes], cut: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.cut, self.ranges = files, set(cut), []
        self.no_length: set[str] = set()  # paths sent without a Content-Length


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)
        start = int(asked.split("=")[1].split("-")[0]) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if self.path not in self.server.no_length:
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.path in self.server.cut:
            self.server.cut.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def authors_file(synth_weights, tmp_path_factory) -> bytes:
    """Row 5's file as the authors' code saves it: the raw state_dict of their upernet model."""
    path = tmp_path_factory.mktemp("authors") / "5.pth"
    torch.save(synth_weights.synth_state_dict(synth_weights.load_manifest("upernet")), path)
    return path.read_bytes()


@pytest.fixture()
def server(authors_file, monkeypatch, tmp_path):
    srv = _Server({"/5.pth": authors_file}, cut={"/5.pth"})
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SDFL_WEIGHTS_URL", f"http://127.0.0.1:{srv.server_port}/{{row}}.pth")
    yield srv
    srv.shutdown()
    srv.server_close()


def test_list_shows_the_nine_rows_with_published_numbers(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    assert sdfl(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"table3-{n} " in out for n in range(1, 10))
    row9 = next(line for line in out.splitlines() if line.startswith("table3-9"))
    assert row9.split()[:3] == ["table3-9", "ours", "S+D"]
    assert ".60/.66/.63/.84" in row9 and ".75/.82/.78/.92" in row9 and row9.split()[-1] == "no"
    assert WEIGHTS["table3-1"].model == "mvssnet" and WEIGHTS["table3-4"].trained_on == "S"
    # The published links of the authors' README, one file per row.
    assert WEIGHTS["table3-9"].url == "https://www.dropbox.com/s/zzk4eump5xfbqmz/9.pth?dl=0"
    assert sdfl(["weights", "download", "table3-10"]) == 1
    assert "unknown weights 'table3-10'" in capsys.readouterr().err
    assert sdfl(["weights"]) == 2 and "download" in capsys.readouterr().out  # help
    monkeypatch.setenv("SDFL_WEIGHTS_URL", "https://mirror.example/weights.pth")
    assert sdfl(["weights", "download", "table3-1"]) == 1
    assert "must contain {row}" in capsys.readouterr().err


def test_a_name_not_downloaded_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    argv = ["evaluate", "--checkpoint", "table3-9", "--manifest", str(tmp_path / "m.csv"),
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert sdfl(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sdfl weights download table3-9" in err
    assert WEIGHTS["table3-9"].url in err and str(tmp_path / "weights" / "table3-9.pth") in err
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    argv = ["predict", str(tmp_path / "a.png"), "--checkpoint", "table3-9", "--out", str(tmp_path)]
    assert sdfl(argv) == 1
    assert "not downloaded" in capsys.readouterr().err


def test_offline_download_names_url_and_cache_path(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path))
    monkeypatch.setenv("SDFL_WEIGHTS_URL", "http://127.0.0.1:9/{row}.pth")  # nothing listens
    assert sdfl(["weights", "download", "table3-2", "--timeout", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "http://127.0.0.1:9/2.pth" in err
    assert f"put it at {tmp_path / 'weights' / 'table3-2.pth'}" in err


@pytest.mark.slow
def test_download_resumes_records_sha256_and_works_by_name(server, authors_file, tmp_path, capsys):
    # The first transfer drops half way: one line, the partial file kept; the rerun resumes it.
    assert sdfl(["weights", "download", "table3-5"]) == 1
    assert "cannot fetch" in capsys.readouterr().err
    cached = WEIGHTS["table3-5"].path
    part = cached.with_name(cached.name + ".part")
    have = part.stat().st_size
    assert 0 < have < len(authors_file)
    assert sdfl(["weights", "download", "table3-5"]) == 0
    assert server.ranges == [None, f"bytes={have}-"]
    assert cached.read_bytes() == authors_file and not part.exists()
    digest = cached.with_name(cached.name + ".sha256").read_text().split()[0]
    import hashlib

    assert digest == hashlib.sha256(authors_file).hexdigest()
    assert sdfl(["weights", "list"]) == 0
    assert capsys.readouterr().out.count(" yes") == 1
    assert sdfl(["weights", "download", "table3-5"]) == 0  # there already: checked, not fetched
    assert len(server.ranges) == 2

    # By name wherever a checkpoint path goes: evaluate, predict, a training start.
    from PIL import Image

    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text(f"image,mask,edge,label,source\n{tmp_path / 'a.png'},,,0,toy\n")
    argv = ["--checkpoint", "table3-5", "--image-size", "64", "--device", "cpu"]
    assert sdfl(["predict", str(tmp_path / "a.png"), *argv, "--out", str(tmp_path / "p")]) == 0
    # The name is resolved once: the ONNX export is cached beside the downloaded file.
    onnx_argv = [*argv, "--backend", "onnx", "--out", str(tmp_path / "o")]
    assert sdfl(["predict", str(tmp_path / "a.png"), *onnx_argv]) == 0
    assert list(cached.parent.glob(f"{cached.stem}.onnx-fp32-*.onnx"))
    assert sdfl(["evaluate", *argv, "--manifest", str(tmp_path / "m.csv"), "--out",
                 str(tmp_path / "ev"), "--workers", "0", "--no-figures"]) == 0  # fmt: skip
    from sdfl_lib.models import load_model
    from sdfl_lib.train.build import build_train_model
    from sdfl_lib.train.config import TrainConfig

    started = build_train_model(TrainConfig(model="upernet", image_size=64,
                                            init_checkpoint="table3-5")).state_dict()  # fmt: skip
    loaded = load_model(cached, image_size=64).state_dict()
    assert started.keys() == loaded.keys()
    assert all(torch.equal(started[k], loaded[k]) for k in started)

    # A file changed after its download is refused and set aside.
    with open(cached, "r+b") as f:
        f.seek(len(authors_file) // 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(WeightsError, match="changed since it was downloaded"):
        resolve_checkpoint("table3-5")
    assert not cached.exists() and cached.with_name(cached.name + ".sha256-mismatch").exists()


@pytest.fixture()
def tiny_server(monkeypatch, tmp_path):
    """Serves a small real checkpoint (`/1.pth`), a web page (`/2.pth`) and `/3.pth`, the same
    checkpoint cut in half and sent without a Content-Length."""
    import io

    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.ones(4, 3, 3, 3)}, buffer)
    good = buffer.getvalue()
    srv = _Server({"/1.pth": good, "/2.pth": b"<!DOCTYPE html><html>Sign in</html>",
                   "/3.pth": good[: len(good) // 2]}, cut=set())  # fmt: skip
    srv.no_length = {"/3.pth"}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SDFL_WEIGHTS_URL", f"http://127.0.0.1:{srv.server_port}/{{row}}.pth")
    yield srv, good
    srv.shutdown()
    srv.server_close()


def test_a_download_that_is_no_checkpoint_is_moved_aside_never_recorded(tiny_server, capsys):
    srv, good = tiny_server
    for name, why in (("table3-2", "web page"), ("table3-3", "not a checkpoint that loads")):
        cached = WEIGHTS[name].path
        assert sdfl(["weights", "download", name]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
        assert err.startswith("sdfl weights download: error: ") and why in err
        assert "next run downloads it afresh" in err
        assert not cached.exists() and not cached.with_name(cached.name + ".sha256").exists()
        assert cached.with_name(cached.name + ".not-a-checkpoint").is_file()
        with pytest.raises(WeightsError, match="not downloaded"):
            resolve_checkpoint(name)
    # A partial file of another download is not resumed into this one.
    cached = WEIGHTS["table3-1"].path
    cached.with_name(cached.name + ".part").write_bytes(b"<html>" * 50)
    assert sdfl(["weights", "download", "table3-1"]) == 0
    assert cached.read_bytes() == good and srv.ranges[-1] is None
    assert cached.with_name(cached.name + ".sha256").is_file()


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "soon"])
def test_weights_timeout_must_be_positive(timeout, capsys):
    with pytest.raises(SystemExit) as exc:
        sdfl(["weights", "download", "table3-1", "--timeout", timeout])
    assert exc.value.code == 2 and "--timeout" in capsys.readouterr().err
