"""`EvalConfig`: every setting of `evaluate`, stated once with its default and help.

`evaluate(model, manifest, out, **settings)` and `evaluate(..., config=EvalConfig(...))` build one
of these; `sdfl evaluate`'s options are made from its fields (`add_setting_args`) and
`config.json` is written from it (`record`).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

from sdfl_lib.data.registry import DEEP_SOURCES
from sdfl_lib.errors import UsageError, non_negative_int, positive_int
from sdfl_lib.evaluate.robustness import Perturbation, parse_robustness
from sdfl_lib.metrics.counts import band_label
from sdfl_lib.metrics.protocols import PROTOCOL_CHOICES, chosen_protocols
from sdfl_lib.metrics.uncertainty import RESAMPLES

# A setting whose option `sdfl_lib.inference.options.add_model_args` adds (shared with predict).
MODEL_ARG = "add_model_args"


def _comma_list(text: str) -> list[str] | None:
    """argparse type: "a,b" -> ["a", "b"]; "" -> None (the default)."""
    return text.split(",") if text else None


def _band_arg(text: str) -> str:
    """argparse type: a boundary band, B or IN:OUT pixels."""
    try:
        band_label(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _setting(
    default: Any,
    help: str,
    flag: str | None = None,
    *,
    resume: bool = False,
    record: bool = True,
    **cli: Any,
) -> Any:
    """A field of EvalConfig. flag: its `sdfl evaluate` option (MODEL_ARG: added with the model's
    options; None: the library's only), `cli` the option's other argparse keywords. resume: must
    match for an earlier run's rows to be reused. record: written to config.json."""
    meta = {"help": help, "flag": flag, "cli": cli, "resume": resume, "record": record}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EvalConfig:
    """The settings of one evaluation. Checked when made: a bad protocol, boundary band or
    robustness spec fails before any model is loaded."""

    protocol: str = _setting(
        "both", "metric protocols: paper (the authors' procedure), standard (the field's) or both",
        "--protocol", choices=PROTOCOL_CHOICES,
    )
    subsets: list[str] | None = _setting(
        None, "subsets to report (both, shallowfakes, deepfakes, source/NAME; default every "
        "non-empty one)", "--subsets", type=_comma_list, metavar="A,B",
    )
    robustness: str | list | dict | None = _setting(
        None, "e.g. jpeg,blur,noise_sigma,noise_var,resize or jpeg:90/70/50,resize:0.5/1.5 "
        "(noise_sigma: levels are standard deviations; noise_var: variances, as IMDL-BenCo)",
        "--robustness",
    )
    batch_size: int = _setting(8, "images per forward pass", "--batch-size", type=positive_int)
    workers: int = _setting(2, "DataLoader workers", "--workers", type=non_negative_int)
    image_size: int | None = _setting(
        None, "model input size (default: the model's own, else 512)", MODEL_ARG, resume=True
    )
    threshold: float = _setting(0.5, "decision threshold in [0, 1]", MODEL_ARG, resume=True)
    mask_policy: str = _setting(
        "resize", "standard protocol: masks of another size than their image (resize: nearest, "
        "skip: no pixel metrics for that image, fail); the paper protocol always leaves them out "
        "of paper/pixel_f1", "--mask-policy", resume=True, choices=("resize", "skip", "fail"),
    )
    boundary_band: int | str = _setting(
        0, "also report standard pixel F1 leaving out pixels within PX of the mask's boundary, "
        "or IN:OUT pixels inside/outside it (TruFor: 7:5); keys standard/pixel_f1_band{PX}px@t; "
        "0: off", "--boundary-band", resume=True, type=_band_arg, metavar="PX",
    )
    method: str | None = _setting(
        None, "a classical baseline (ela, noise) or a registered model name, instead of a model",
        MODEL_ARG,
    )
    device: str | None = _setting(
        "auto", "auto (this process's GPU if any, else cpu), cpu, cuda or cuda:N", MODEL_ARG
    )
    save_maps: bool = _setting(
        True, "save the predicted maps under maps/", "--no-maps", record=False,
        action="store_false", flag_help="do not save predicted maps",
    )
    figures: bool = _setting(
        True, "draw the report's figures", "--no-figures", record=False, action="store_false",
        flag_help="do not draw figures",
    )
    resume: bool = _setting(
        True, "reuse the rows an earlier run with the same settings wrote in the output folder",
        "--no-resume", record=False, action="store_false", flag_help="start over in --out",
    )
    deep_sources: str = _setting(
        DEEP_SOURCES, "regular expression: sources whose rows are deepfakes when the manifest "
        "has no kind column (made from the data set registry)",
    )
    progress: bool = _setting(True, "show a progress bar", record=False)
    backend: str = _setting(
        "auto", "inference route (see sdfl_lib.inference.inference_model); config.json records "
        "the one chosen", MODEL_ARG,
    )
    int8: bool = _setting(
        False, "int8 static quantization (onnx backend)", MODEL_ARG, resume=True
    )
    calibration: int | list = _setting(
        32, "int8 calibration: the first N images of the manifest, or a list of images",
        MODEL_ARG, record=False,
    )
    ci: int = _setting(
        RESAMPLES, "bootstrap resamples of each headline metric's 95 % interval, per subset, "
        "forgery type and perturbation (0: no intervals)",
        "--ci", type=non_negative_int, metavar="N",
    )
    # Resolved from the settings above when the object is made.
    perturbations: tuple[Perturbation, ...] = field(init=False, repr=False, compare=False)
    band: str = field(init=False, repr=False, compare=False)  # band_label's form; "" when off

    def __post_init__(self) -> None:
        chosen_protocols(self.protocol)  # checks it
        if not isinstance(self.ci, int) or self.ci < 0:
            raise UsageError(f"ci: the number of bootstrap resamples, an integer >= 0 (0: off), "
                             f"got {self.ci!r}")
        object.__setattr__(self, "band", band_label(self.boundary_band))  # checks it too
        object.__setattr__(self, "perturbations", tuple(parse_robustness(self.robustness)))

    @classmethod
    def of(cls, config: EvalConfig | None = None, **settings: Any) -> EvalConfig:
        """`config` (default: the defaults) with `settings` given by keyword over it; a TypeError
        names a keyword that is no setting."""
        unknown = sorted(set(settings) - {f.name for f in settings_fields()})
        if unknown:
            raise TypeError(f"evaluate() has no setting {', '.join(map(repr, unknown))}; the "
                            "settings are EvalConfig's fields")
        return replace(config, **settings) if config is not None else cls(**settings)

    def record(self) -> dict[str, Any]:
        """The settings config.json holds: the recorded fields, robustness as perturbation names
        and the boundary band as its label."""
        out = {f.name: getattr(self, f.name) for f in settings_fields() if f.metadata["record"]}
        out.update(robustness=[p.name for p in self.perturbations], boundary_band=self.band)
        return out


def settings_fields() -> tuple[Field, ...]:
    """EvalConfig's settings (the fields given when it is made), in order."""
    return tuple(f for f in fields(EvalConfig) if f.init)


def resume_keys() -> tuple[str, ...]:
    """The settings that must match for rows of an earlier run to be reused."""
    return tuple(f.name for f in settings_fields() if f.metadata["resume"])


def add_setting_args(p: argparse.ArgumentParser) -> None:
    """`sdfl evaluate`'s options for the settings with a flag of their own: the field's name as
    `dest`, its default, and its help (its `flag_help` for an option that turns it off)."""
    for f in settings_fields():
        flag = f.metadata["flag"]
        if flag is None or flag == MODEL_ARG:
            continue
        cli = dict(f.metadata["cli"])
        help = cli.pop("flag_help", f.metadata["help"])
        if f.default is not MISSING and f.default is not None and "action" not in cli:
            help += f" (default {f.default})"
        p.add_argument(flag, dest=f.name, default=f.default, help=help.replace("%", "%%"), **cli)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig of a parsed `sdfl evaluate` command line (a setting without an option keeps
    its default)."""
    return EvalConfig(**{f.name: getattr(args, f.name) for f in settings_fields()
                         if hasattr(args, f.name)})
