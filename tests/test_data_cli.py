"""`sdfl data ...` round trips through the real command line entry point."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from sdfl_lib.cli import main  # noqa: E402
from sdfl_lib.data.manifest import read_authors_list, read_manifest  # noqa: E402


def test_prepare_validate_split_convert_explore(shared_data, tmp_path, capsys):
    manifest = tmp_path / "cov" / "coverage.csv"
    assert main(["data", "prepare", "coverage", "--root", str(shared_data / "coverage-sample"),
                 "--out", str(manifest)]) == 0
    assert "size mismatches (1)" in capsys.readouterr().out
    assert main(["data", "validate", str(manifest), "--json", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["counts"]["mask_size_mismatch"] == 1
    assert main(["data", "validate", str(manifest), "--mask-policy", "fail"]) == 1
    assert main(["data", "split", str(manifest), "--out-dir", str(tmp_path / "s"),
                 "--preset", "shallowfakes", "--seed", "2"]) == 0
    sizes = [len(read_manifest(tmp_path / "s" / f"coverage_{p}.csv")) for p in ("train", "val", "test")]
    assert sizes == [18, 2, 2]
    txt = tmp_path / "paths_test.txt"
    assert main(["data", "convert", str(manifest), str(txt),
                 "--replace-prefix", str(shared_data), "/mnt/my data"]) == 0
    listed = read_authors_list(txt)
    assert listed["image"].str.startswith("/mnt/my data/coverage-sample/image/").all()
    assert main(["data", "convert", str(txt), str(tmp_path / "back.csv")]) == 0
    assert main(["data", "convert", str(tmp_path / "back.csv"), str(tmp_path / "again.txt")]) == 0
    assert (tmp_path / "again.txt").read_text() == txt.read_text()
    assert main(["data", "explore", str(manifest), "--out-dir", str(tmp_path / "fig"),
                 "--examples", "2"]) == 0
    assert (tmp_path / "fig" / "counts.png").is_file()


def test_bad_input_gives_a_message_and_exit_code(tmp_path, capsys):
    assert main(["data", "prepare", "casia1", "--root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "m.csv")]) == 1
    assert "data set folder not found" in capsys.readouterr().err
    assert main(["data", "validate", str(tmp_path / "none.csv")]) == 1
    assert "manifest not found" in capsys.readouterr().err
    assert main(["data", "download", "no-such-set", "--to", str(tmp_path / "dl")]) == 1
    assert "no-such-set" in capsys.readouterr().err


def test_synth_then_validate(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "syn"), "--n", "4", "--seed", "0",
                 "--size", "64"]) == 0
    manifest = tmp_path / "syn" / "manifest.csv"
    assert len(read_manifest(manifest)) == 4
    assert main(["data", "validate", str(manifest)]) == 0
