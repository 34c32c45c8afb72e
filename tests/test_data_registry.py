"""The data set registry: one entry per data set, read by prepare, download, the subset rule,
the command line and the smoke-scale study."""

import pytest

from sdfl_lib.data.prepare import PREPARERS
from sdfl_lib.data.registry import (
    DATASETS,
    DEEP_SOURCES,
    load_preparer,
    prepare_names,
    sample_roots,
)
from sdfl_lib.evaluate.subsets import source_kind
from sdfl_lib.study.smoke import SAMPLE_ROOTS, sample_sets


def test_every_entry_is_complete_and_its_preparer_loads():
    for info in DATASETS.values():
        assert info.kind in ("shallow", "deep"), info.name
        assert info.files and info.homepage and info.citation, info.name
        if info.preparer:
            assert callable(load_preparer(info.name))
    assert list(PREPARERS) == prepare_names()
    assert PREPARERS["ffpp"] is load_preparer("ffpp")
    assert {d.name for d in DATASETS.values() if d.label_only} == {"columbia-imsplice", "cifake"}


@pytest.mark.parametrize(
    "source, kind",
    [
        # Sources the preparers and `sdfl data synth` write, and names in the authors' lists.
        ("casia2", "shallow"), ("casia1", "shallow"), ("columbia", "shallow"),
        ("coverage", "shallow"), ("nist16", "shallow"), ("synth-splice", "shallow"),
        ("ffpp-youtube", "deep"), ("ffpp-faceswap", "deep"), ("cifake", "deep"),
        ("synth-face", "deep"), ("Deepfakes", "deep"), ("actors", "deep"),
        ("FaceForensics++", "deep"), ("Face2Face", "deep"), ("NeuralTextures", "deep"),
        ("Celeb-DF", "deep"), ("celebdf", "deep"), ("dfdc", "deep"),
    ],
)
def test_the_subset_rule_is_made_from_the_deep_entries(source, kind):
    assert source_kind(source, DEEP_SOURCES) == kind


def test_the_sample_roots_are_the_entries_samples_and_exist(shared_data):
    assert SAMPLE_ROOTS == sample_roots() == {
        "casia2": "casia2-sample", "casia1": "casia1-sample", "coverage": "coverage-sample",
        "ffpp": "faceforensics-sample"}
    assert all((shared_data / folder).is_dir() for folder in SAMPLE_ROOTS.values())
    assert "name: ffpp" in sample_sets(shared_data)[0]


def test_the_command_line_lists_the_registry(capsys):
    from sdfl_lib.cli import main

    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    # argparse wraps the help (at hyphens too): compare without white space
    assert ",".join(prepare_names()) in "".join(capsys.readouterr().out.split())
