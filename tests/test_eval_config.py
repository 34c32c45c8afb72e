"""evaluate's settings are stated once, in EvalConfig: `sdfl evaluate`'s options carry its fields'
defaults, keywords and a config object give the same run, and config.json is written from it."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from test_evaluate import RedChannel, _toy_set

from sdfl_lib.cli import build_parser
from sdfl_lib.errors import UsageError
from sdfl_lib.evaluate import evaluate
from sdfl_lib.evaluate.config import (
    MODEL_ARG,
    EvalConfig,
    config_from_args,
    resume_keys,
    settings_fields,
)

BASE = ["evaluate", "--checkpoint", "x.pt", "--manifest", "m.csv", "--out", "o"]
# Settings that only the library takes (the command line always uses their defaults).
LIBRARY_ONLY = {"deep_sources", "progress"}
# Options of `sdfl evaluate` that are no setting: the model, the files, the exit code.
CLI_ONLY = {"command", "debug", "func", "checkpoint", "manifest", "out", "allow_unscored"}


def test_every_setting_is_an_option_with_its_default_and_every_option_a_setting():
    args = build_parser().parse_args(BASE)
    names = {f.name for f in settings_fields()}
    for f in settings_fields():
        if f.metadata["flag"] is None:
            assert f.name in LIBRARY_ONLY and not hasattr(args, f.name), f.name
        else:
            assert getattr(args, f.name) == f.default, f.name  # add_model_args' too
    assert set(vars(args)) == (names - LIBRARY_ONLY) | CLI_ONLY
    assert config_from_args(args) == EvalConfig()
    # The derived fields are no settings: they are not given, not options, not recorded.
    assert {f.name for f in fields(EvalConfig) if not f.init} == {"perturbations", "band"}
    assert {f.metadata["flag"] for f in settings_fields()} >= {MODEL_ARG, "--no-maps"}


def test_each_option_lands_in_its_setting():
    argv = [*BASE, "--protocol", "paper", "--subsets", "both,deepfakes", "--robustness",
            "jpeg:90", "--batch-size", "3", "--workers", "0", "--image-size", "64",
            "--threshold", "0.3", "--mask-policy", "skip", "--boundary-band", "7:5",
            "--device", "cpu", "--no-maps", "--no-figures", "--no-resume", "--backend", "eager",
            "--int8", "--calibration", "4", "--ci", "0"]  # fmt: skip
    cfg = config_from_args(build_parser().parse_args(argv))
    assert cfg == EvalConfig(
        protocol="paper", subsets=["both", "deepfakes"], robustness="jpeg:90", batch_size=3,
        workers=0, image_size=64, threshold=0.3, mask_policy="skip", boundary_band="7:5",
        device="cpu", save_maps=False, figures=False, resume=False, backend="eager", int8=True,
        calibration=4, ci=0,
    )  # fmt: skip
    assert cfg.band == "7-5px" and [p.name for p in cfg.perturbations] == ["jpeg@90"]
    with pytest.raises(SystemExit):
        build_parser().parse_args([*BASE, "--boundary-band", "x"])


def test_bad_settings_fail_before_the_model_is_loaded(tmp_path):
    missing = tmp_path / "nothing.pt"  # never read: the settings are checked first
    with pytest.raises(TypeError, match="'treshold'"):
        evaluate(str(missing), tmp_path / "m.csv", tmp_path / "ev", treshold=0.3)
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate(str(missing), tmp_path / "m.csv", tmp_path / "ev", protocol="papers")
    with pytest.raises(ValueError, match="unknown perturbation"):
        EvalConfig(robustness="fog")
    with pytest.raises(ValueError):
        EvalConfig(boundary_band="x")
    with pytest.raises(UsageError, match="ci: the number of bootstrap resamples"):
        EvalConfig(ci=-1)


def test_keywords_and_a_config_object_write_one_config_json(tmp_path):
    manifest = _toy_set(tmp_path / "data", n=4)
    quiet = {"workers": 0, "figures": False, "progress": False, "ci": 50}
    by_keywords = evaluate(RedChannel(), manifest, tmp_path / "kw", threshold=0.3,
                           boundary_band=1, **quiet)
    by_config = evaluate(RedChannel(), manifest, tmp_path / "cfg",
                         config=EvalConfig(threshold=0.9, boundary_band=1, **quiet),
                         threshold=0.3)  # a keyword goes over the config's value
    assert by_keywords["subsets"] == by_config["subsets"]
    kw, cfg = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("kw", "cfg"))
    assert kw == cfg
    recorded = {f.name for f in settings_fields() if f.metadata["record"]}
    assert set(kw) == recorded | {"model", "checkpoint", "manifest", "format"}
    assert kw["ci"] == 50 and kw["threshold"] == 0.3 and kw["boundary_band"] == "1px" and kw["image_size"] == 32
    assert kw["robustness"] == [] and kw["device"] == "cpu" and kw["backend"] in ("eager", "optimized")
    assert set(resume_keys()) == {"image_size", "threshold", "mask_policy", "boundary_band", "int8"}
    # A resumed run with another recorded setting that must match is refused, naming it.
    with pytest.raises(ValueError, match="threshold"):
        evaluate(RedChannel(), manifest, tmp_path / "kw", config=EvalConfig(**quiet))
