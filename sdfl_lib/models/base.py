"""The result type every model returns, the model registry and `build_model`."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What every variant's `forward` returns.

    image_logit: (B, 1) image-level logit; `sigmoid(image_logit)` is the image score.
    mask_logit: (B, 1, H, W) pixel logits at the input's own size.
    edge_logit: (B, 1, h, w) edge logits (MVSS-Net only), else None.
    """

    image_logit: torch.Tensor
    mask_logit: torch.Tensor
    edge_logit: torch.Tensor | None = None

    @property
    def image_score(self) -> torch.Tensor:
        """Probability that the image is manipulated, (B,)."""
        return torch.sigmoid(self.image_logit.float()).flatten()

    @property
    def mask_prob(self) -> torch.Tensor:
        """Per-pixel manipulation probability, (B, 1, H, W)."""
        return torch.sigmoid(self.mask_logit.float())


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Modules whose import registers the built-in models; imported on first use of the registry so
# that importing one model module never drags in all the others.
_BUILTIN_MODULES = (
    "sdfl_lib.models.ours",
    "sdfl_lib.models.mvssnet",
    "sdfl_lib.models.classical",
)
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for mod in _BUILTIN_MODULES:
            importlib.import_module(mod)
        _builtins_loaded = True


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name. Every model it builds
    carries `sdfl_spec`: the name and the arguments (defaults included) that rebuild it; values a
    model resolves itself (its `sdfl_resolved` dict, e.g. a backbone's input normalisation) are
    recorded as they were resolved."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        try:
            model = fn(*args, **kwargs)
        except TypeError as err:
            raise _argument_error(fn, err) from err
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        spec: dict[str, Any] = {"name": fn.__name__}
        for key, value in bound.arguments.items():
            if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                spec.update(value)
            else:
                spec[key] = value
        spec.update(getattr(model, "sdfl_resolved", {}))
        model.sdfl_spec = spec
        return model

    _REGISTRY[fn.__name__] = build
    return build


def _named_parameters(fn: Callable) -> list[str]:
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [name for name, p in inspect.signature(fn).parameters.items()
            if p.kind not in variadic and name != "self"]  # fmt: skip


def _argument_error(fn: Callable[..., nn.Module], err: TypeError) -> Exception:
    """A `UsageError` naming the model and the keyword when `err` was raised by the call itself
    (an unknown or doubled keyword, reaching the constructor or the class it forwards to); any
    other TypeError, raised inside the model's code, stays what it is."""
    from sdfl_lib.errors import UsageError

    frames = traceback.extract_tb(err.__traceback__)
    if len(frames) > 2 or "argument" not in str(err):
        return err
    takes = _named_parameters(fn)
    target = typing.get_type_hints(fn).get("return")
    if isinstance(target, type):
        takes += [p for p in _named_parameters(target.__init__) if p not in takes]
    return UsageError(f"model {fn.__name__!r}: {err}; it takes {', '.join(takes)}")


# Checkpoint key signatures, one per model family: keys -> (layout, variant) or None.
_LAYOUTS: list[Callable[[set[str]], tuple[str, str] | None]] = []


def register_checkpoint_layout(
    fn: Callable[[set[str]], tuple[str, str] | None],
) -> Callable[[set[str]], tuple[str, str] | None]:
    """Register a model family's checkpoint recogniser: a state dict's key set ->
    (layout, variant) when the keys are that family's ("native" names or the "authors'"), else
    None. `detect_variant` asks them in registration order."""
    _LAYOUTS.append(fn)
    return fn


def has_prefix(keys: set[str], prefix: str) -> bool:
    """Whether any key starts with `prefix` (for checkpoint recognisers)."""
    return any(k.startswith(prefix) for k in keys)


def recognise_checkpoint(keys: set[str]) -> tuple[str | None, str | None]:
    """(layout, variant) from the first registered recogniser that knows `keys`; (None, None)."""
    _load_builtins()
    for fn in _LAYOUTS:
        found = fn(keys)
        if found is not None:
            return found
    return None, None


def list_models() -> list[str]:
    """Names accepted by `build_model`."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_constructor(name: str) -> Callable[..., nn.Module]:
    """The registered constructor for `name`; unknown names fail listing the valid ones."""
    _load_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}. Valid models: {', '.join(list_models())}.{hint}"
        )
    return _REGISTRY[name]


def check_model_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """A `UsageError` naming the model and the keywords it does not take, found from the
    signatures of its constructor and of the class that receives its `**kw` (nothing is built);
    a constructor whose keywords end in an open `**kw` accepts anything here."""
    from sdfl_lib.errors import UsageError

    fn = inspect.unwrap(get_constructor(name))
    takes = _named_parameters(fn)
    if _open_keywords(fn):
        target = typing.get_type_hints(fn).get("return")
        if not isinstance(target, type) or _open_keywords(target.__init__):
            return
        takes += [p for p in _named_parameters(target.__init__) if p not in takes]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise UsageError(f"model {name!r} takes no {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(takes)}")


def _open_keywords(fn: Callable) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(fn).parameters.values())


def build_model(
    name: str,
    image_size: int = 512,
    backbone: str = "resnet50",
    pretrained: bool = False,
    **kw: Any,
) -> nn.Module:
    """Build a registered model by name (see `list_models()`); unknown names fail listing the
    valid ones. The result carries `sdfl_spec`, the arguments that rebuild it."""
    return get_constructor(name)(
        image_size=image_size, backbone=backbone, pretrained=pretrained, **kw
    )
