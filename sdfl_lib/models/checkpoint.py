"""Checkpoints: the authors' published state dicts and this project's own files, both ways."""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdfl_lib.errors import DataError, UsageError
from sdfl_lib.models.base import build_model, recognise_checkpoint

FORMAT = "sdfl"
FORMAT_VERSION = 1
# Bookkeeping buffers of the synchronized batch norm the original code trained with; the values
# that matter (running_mean/var) are saved beside them.
_SYNC_BN_EXTRAS = ("._tmp_running_mean", "._tmp_running_var", "._running_iter")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_NORMALISED = ("ours", "upernet")  # models whose spec records their input normalisation
_SHOW = 12  # keys named in an error message before "... and N more"


class CheckpointError(DataError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    """What `load_checkpoint` did with every key of the file.

    layout: "sdfl" (this project's file), "authors" (the original code's names) or "native"
    (a raw state_dict of this project's model). variant: the model the keys belong to.
    loaded: the file's keys that were placed in the model. ignored: file key -> why it was not.
    missing/unexpected: only non-empty with strict=False.
    """

    layout: str
    variant: str | None
    loaded: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def consumed(self) -> set[str]:
        """Every key of the file that was either placed or knowingly set aside."""
        return set(self.loaded) | set(self.ignored)


def _name_keys(keys: list[str]) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def read_checkpoint(src: str | Path | Mapping, map_location: Any = "cpu") -> Mapping:
    """The object in a checkpoint file (read with weights_only=True), or `src` if already loaded."""
    if isinstance(src, Mapping):
        return src
    path = Path(src)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise CheckpointError(
                f"{path} holds Python objects other than tensors and plain containers, so it is "
                f"not loaded (weights_only=True refuses arbitrary code). Re-save its state_dict."
            ) from err
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (cannot unpickle: {err})"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError) as err:
        # A text or other non-pickle file fails inside the unpickler with any of these.
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another kind of file; "
            f"{path.stat().st_size} bytes): {err}"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict or checkpoint"
        )
    return obj


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the `module.` (DataParallel/DDP) and `_orig_mod.` (torch.compile) prefixes."""
    out = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def detect_variant(keys: Any) -> tuple[str | None, str | None]:
    """(layout, variant) a set of state_dict keys looks like, from the key signatures each model
    registers beside itself (`base.register_checkpoint_layout`); (None, None) when it is none of
    the known ones."""
    return recognise_checkpoint(set(keys))


def _model_name(model: nn.Module) -> str | None:
    return getattr(model, "sdfl_spec", {}).get("name")


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(getattr(model, "module", None), nn.Module) or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def state_of(obj: Mapping) -> tuple[str | None, dict | None, dict[str, torch.Tensor]]:
    """(format, spec, state_dict) of a loaded checkpoint object, whose weights are finite."""
    fmt, spec, state = _find_state(obj)
    _refuse_non_finite(state)
    return fmt, spec, state


def _find_state(obj: Mapping) -> tuple[str | None, dict | None, dict[str, torch.Tensor]]:
    if obj.get("format") == FORMAT:
        version = obj.get("version", FORMAT_VERSION)
        if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {version!r}: this sdfl reads versions 1 to "
                f"{FORMAT_VERSION} (a file of a newer sdfl? update sdfl to read it)"
            )
        if not _is_state_dict(obj.get("state_dict")) or not isinstance(obj.get("spec"), Mapping):
            raise CheckpointError("an sdfl checkpoint without a valid 'spec' and 'state_dict'")
        return FORMAT, dict(obj["spec"]), dict(obj["state_dict"])
    if _is_state_dict(obj):
        return None, None, dict(obj)
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if _is_state_dict(obj.get(key)):
            return None, None, dict(obj[key])
    raise CheckpointError(
        f"no state_dict found in the checkpoint (top-level keys: {_name_keys([str(k) for k in obj])})"
    )


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping,
    strict: bool = True,
    map_location: Any = "cpu",
) -> LoadReport:
    """Load the authors' published checkpoint (raw state_dict, with or without `module.`) or this
    project's own file into `model`; every key is placed or the load fails naming the keys.

    Authors' keys are renamed by the model class's `convert_authors_state_dict(sd) -> sd` (a model
    without one is taken to use the authors' names); synchronized-BN bookkeeping buffers and keys
    the converter drops (layers the original never used) are listed in `LoadReport.ignored`. A
    checkpoint of another variant fails saying which one it looks like. With strict=False, missing
    and unexpected keys are reported instead of failing (e.g. fine-tuning another head).
    """
    target = _unwrap(model)
    fmt, spec, state = state_of(read_checkpoint(path_or_state_dict, map_location))
    name = _model_name(target)
    state = strip_prefixes(state)
    layout, variant = _layout_of(target, name, fmt, spec, state)
    report = LoadReport(layout=layout, variant=variant)
    for key in list(state):
        if key.endswith(_SYNC_BN_EXTRAS):
            report.ignored[key] = "synchronized batch-norm bookkeeping (running stats are kept)"
            del state[key]
    own = target.state_dict()
    state, origin = _renamed(target, layout, state, report)
    missing, unexpected = _check_fit(own, state, origin, strict, name or type(target).__name__)
    report.missing, report.unexpected = missing, unexpected
    placed = {k: v for k, v in state.items() if k in own}
    with torch.no_grad():
        target.load_state_dict(placed, strict=False)
    report.loaded = sorted(origin.get(k, k) for k in placed)
    return report


def _layout_of(
    target: nn.Module, name: str | None, fmt: str | None, spec: dict | None, state: dict
) -> tuple[str, str | None]:
    """(key layout, variant) of a checkpoint: this project's file names its own; the others are
    recognised by their key names. A CheckpointError when it is another variant or backbone."""
    if fmt != FORMAT:
        layout, variant = detect_variant(state)
        if variant is not None and name is not None and variant != name:
            raise CheckpointError(
                f"this checkpoint looks like a {variant!r} checkpoint ({layout} key names), but "
                f"the model is {name!r}; build it with build_model({variant!r})"
            )
        return layout or "native", variant
    if name is not None and spec.get("name") != name:
        raise CheckpointError(
            f"this checkpoint is a {spec.get('name')!r} model (spec {spec}), but the model is "
            f"{name!r}; rebuild it with load_model(...) or build_model({spec.get('name')!r})"
        )
    own_backbone = getattr(target, "sdfl_spec", {}).get("backbone")
    if own_backbone is not None and spec.get("backbone", own_backbone) != own_backbone:
        raise CheckpointError(
            f"this checkpoint has backbone {spec.get('backbone')!r}, the model "
            f"{own_backbone!r}; rebuild it with load_model(...)"
        )
    return "sdfl", spec.get("name")


def _renamed(
    target: nn.Module, layout: str, state: dict, report: LoadReport
) -> tuple[dict, dict[str, str]]:
    """The state with the authors' keys renamed by the model's converter (the keys it drops
    listed as ignored in `report`), and model key -> the file's key it came from."""
    origin = {k: k for k in state}
    convert = getattr(target, "convert_authors_state_dict", None)
    if layout != "authors" or convert is None:
        return state, origin
    origin = {}
    for key, value in state.items():
        renamed = list(convert({key: value}))
        if not renamed:
            report.ignored[key] = "not used by the forward pass of the original code"
        origin.update((r, key) for r in renamed)
    return convert(state), origin


def _check_fit(
    own: dict, state: dict, origin: dict[str, str], strict: bool, what: str
) -> tuple[list[str], list[str]]:
    """(missing, unexpected) keys; a CheckpointError naming the tensors of another shape, or
    (with `strict`) the keys that do not fit the model `what`."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(origin.get(k, k) for k in set(state) - set(own))
    shapes = [
        f"{origin.get(k, k)}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if shapes:
        raise CheckpointError(
            f"{len(shapes)} tensors have other shapes than the model's (another backbone or "
            f"configuration?): {'; '.join(shapes[:_SHOW])}"
        )
    if strict and (missing or unexpected):
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} keys could not be placed: {_name_keys(unexpected)}")
        if missing:
            parts.append(f"{len(missing)} model keys are not in the file: {_name_keys(missing)}")
        raise CheckpointError(f"checkpoint does not fit the {what!r} model: " + "; ".join(parts))
    return missing, unexpected


def _refuse_non_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Weights holding NaN or infinity (a diverged training) give NaN scores for every image."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(
            f"{len(bad)} tensor(s) hold NaN or infinite values ({_name_keys(bad)}): the training "
            "that wrote it diverged; use an earlier checkpoint"
        )


def make_checkpoint(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """This project's checkpoint: {"format": "sdfl", "spec": model.sdfl_spec, "state_dict", **extra}
    (tensors on the CPU); `load_model` rebuilds the model from it."""
    target = _unwrap(model)
    spec = getattr(target, "sdfl_spec", None)
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise CheckpointError("the model has no sdfl_spec; build it with build_model(...)")
    state = {k: v.detach().cpu() for k, v in target.state_dict().items()}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "spec": dict(spec),
        "state_dict": state,
        **extra,
    }


def load_model(
    path_or_dict: str | Path | Mapping,
    map_location: Any = "cpu",
    model: str | None = None,
    **build_kw: Any,
) -> nn.Module:
    """Rebuild a model from this project's checkpoint (its spec), or from an authors' checkpoint
    (variant from `model=` or recognised from the keys; `build_kw` go to `build_model`); loaded,
    on `map_location`, in eval mode."""
    try:
        return _rebuild(path_or_dict, map_location, model, build_kw)
    except (CheckpointError, UsageError) as err:
        if isinstance(path_or_dict, Mapping) or str(path_or_dict) in str(err):
            raise
        # Every refusal names the file, whatever step found the problem.
        raise CheckpointError(f"{path_or_dict}: {err}") from err


# torch.nn.init's in-place initialisers, which layers call from their constructors.
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "orthogonal_")


@contextlib.contextmanager
def _random_init_skipped() -> Iterator[None]:
    """Layers built inside keep their uninitialised storage instead of drawing random weights:
    a model rebuilt to load a checkpoint strictly (every parameter and buffer overwritten) need
    not spend seconds drawing weights it discards (a 165M-parameter `ours` spent ~1.5 s)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _rebuild(src: str | Path | Mapping, map_location: Any, model: str | None,
             build_kw: dict[str, Any]) -> nn.Module:
    obj = read_checkpoint(src, map_location)
    fmt, spec, state = state_of(obj)
    if fmt == FORMAT:
        spec = {**spec, "pretrained": False, **build_kw}  # the file holds the weights
        if spec["name"] in _NORMALISED and "input_mean" not in spec:
            # Files written before the model normalised its input were trained on [0, 1].
            spec.update(input_mean=[0.0, 0.0, 0.0], input_std=[1.0, 1.0, 1.0])
        if model is not None and model != spec["name"]:
            raise CheckpointError(f"this checkpoint is a {spec['name']!r} model, not {model!r}")
        with _random_init_skipped():
            net = build_model(**spec)
    else:
        name = model or detect_variant(strip_prefixes(state))[1]
        if name is None:
            raise CheckpointError(
                "cannot tell which model this state_dict belongs to; pass model=NAME"
            )
        with _random_init_skipped():
            net = build_model(name, **build_kw)
    load_checkpoint(net, obj, map_location=map_location)  # strict: every weight is overwritten
    if isinstance(map_location, (str, torch.device)):
        net = net.to(map_location)
    return net.eval()
