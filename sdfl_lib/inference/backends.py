"""The inference path of predict and evaluate: an optimized PyTorch copy (batch norm folded,
channels-last), optionally compiled, or an ONNX export run by ONNX Runtime (fp32 or int8).
`inference_model(model, backend, int8=...)` chooses and builds it."""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import importlib.util
import io
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sdfl_lib.cuda import exact
from sdfl_lib.errors import DataError
from sdfl_lib.inference.calibration import minmax_ranges, pre_process
from sdfl_lib.inference.inputs import model_image_size
from sdfl_lib.inference.loading import checkpoint_of
from sdfl_lib.models.base import ModelOutput
from sdfl_lib.models.resnet import Bottleneck, ResNet
from sdfl_lib.paths import cache_dir
from sdfl_lib.runtime import (
    cpu_family,
    cpu_flags,
    instruction_sets,
    model_device,
    release_memory,
    replace_file,
)

# Attribute pairs (conv, bn) applied back to back in these modules' forward passes.
_NAMED_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ResNet: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}


def _fold(conv: nn.Module, bn: nn.Module) -> nn.Conv2d | None:
    if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
        return fuse_conv_bn_eval(conv, bn)
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode batch norms into the convolutions right before them, in place; returns how
    many were folded. Only pairs known to run back to back are touched: consecutive entries of an
    `nn.Sequential` and the conv/bn attributes of this package's ResNet and Bottleneck."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (it bakes in running stats)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:], strict=False):
                fused = _fold(module._modules[a], module._modules[b])
                if fused is not None:
                    module._modules[a], module._modules[b] = fused, nn.Identity()
                    folded += 1
        for conv_name, bn_name in _NAMED_PAIRS.get(type(module), ()):
            fused = _fold(getattr(module, conv_name), getattr(module, bn_name))
            if fused is not None:
                setattr(module, conv_name, fused)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A frozen eval-mode copy for prediction: batch norm folded into convolutions, weights in
    channels-last layout (faster convolutions on CPUs and tensor cores). Its outputs equal the
    model's up to float rounding; it cannot be trained or saved as a checkpoint of the model."""
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.sdfl_inference_copy = True
    return fast


# ---------------------------------------------------------------------------------------------
# One inference path for predict and evaluate: `inference_model(model, backend, int8=...)`.

BACKENDS = ("auto", "eager", "optimized", "compile", "onnx")
# Networks the ONNX route is built and tested for (dynamo export of the whole forward pass).
_ONNX_MODELS = ("ours", "upernet")
# Bumped when the exported graph changes for the same weights (forces a re-export).
_EXPORT_FORMAT = 2  # 2: weights in an external data file
# int8 is refused when its masks agree with fp32's on fewer calibration pixels than this,
# counting the pixels fp32 is decided on (probability at least INT8_MARGIN from 0.5): any change
# of arithmetic flips pixels that sit on the threshold, a broken quantization flips the rest.
INT8_MIN_AGREEMENT = 0.99
INT8_MARGIN = 0.1


class InferenceUnavailable(DataError, RuntimeError):
    """A requested inference route cannot run here (missing package, failed export, int8 refused)."""


@contextlib.contextmanager
def _fresh_prroi_caches():
    """Empty the cached PrRoI pooling matrices before and after tracing: tensors made while a
    graph is traced are placeholders that must never be served to a later eager call."""
    caches = (exact._whole_map_weights, exact._whole_map_kron)
    for c in caches:
        c.cache_clear()
    try:
        yield
    finally:
        for c in caches:
            c.cache_clear()


def onnx_available() -> bool:
    """Whether the ONNX export and ONNX Runtime packages (`pip install sdfl[onnx]`) import."""
    return all(
        importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime")
    )


def _spec_name(model: nn.Module) -> str | None:
    return (getattr(model, "sdfl_spec", None) or {}).get("name")


# `auto` takes ONNX Runtime only for runs with enough work to repay the export (~20 s for the
# paper's network, more under load): this many images at 512x512, an image at S x S counting
# (S / 512)^2. ONNX Runtime fp32 is the fastest route per image on both CPU families measured
# (README, "Speed on a CPU"); it saves ~0.29 s per image over the optimized copy on an AVX-512
# CPU and ~0.55 s on an AVX2-only one (two cores, batch 2), so it pays sooner there. CPUs of
# neither family (other x86, ARM) are unmeasured and get the AVX-512 threshold.
ONNX_MIN_IMAGES = {"AVX-512": 64, "AVX2": 32, "other": 64}


def onnx_min_images() -> float:
    """Images at 512x512 from which the ONNX export pays for itself on this CPU."""
    return ONNX_MIN_IMAGES[cpu_family(cpu_flags())]


def export_pays(images: float | None, image_size: int | None) -> bool:
    """Whether `images` forward passes at `image_size` are enough work for the ONNX export to
    pay for itself on this CPU (None: unknown, taken as enough)."""
    if images is None:
        return True
    return images * (int(image_size or 512) / 512) ** 2 >= onnx_min_images()


def _auto_choice(
    model: nn.Module, int8: bool, images: float | None, image_size: int | None
) -> tuple[str, str]:
    """The backend `auto` stands for, and why, in a few words."""
    if int8:  # int8 only exists there; `inference_model` says why when it cannot run
        return "onnx", "int8 runs only with ONNX Runtime"
    flags, size, device = cpu_flags(), int(image_size or 512), model_device(model)
    cpu = f"this {cpu_family(flags)} CPU ({', '.join(instruction_sets(flags)) or 'no AVX2'})"
    why = f"ONNX Runtime runs {', '.join(_ONNX_MODELS)} only"
    if _spec_name(model) in _ONNX_MODELS:
        if device.type != "cpu":
            why = f"the model is on {device} (ONNX Runtime runs here on the CPU)"
        elif not onnx_available():
            why = "ONNX Runtime, faster on the CPU, is not installed (pip install 'sdfl[onnx]')"
        elif not export_pays(images, image_size):
            why = (
                f"not onnx: exporting would take longer than it saves on {images:g} image(s) "
                f"at {size}x{size} (it pays from ~{onnx_min_images():g} at 512x512 on {cpu})"
            )
        else:
            work = "a run of unknown length" if images is None else f"{images:g} image(s)"
            return "onnx", (
                f"ONNX Runtime fp32, the fastest route per image on {cpu}; {work} at "
                f"{size}x{size} repay the one-time export"
            )
    if _spec_name(model) is None or not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return "eager", "no batch norm of a registered network to fold: the model as given"
    return "optimized", why


def resolve_backend(
    model: nn.Module,
    backend: str = "auto",
    int8: bool = False,
    images: float | None = None,
    image_size: int | None = None,
) -> str:
    """The concrete backend `auto` stands for: ONNX Runtime on the CPU for the paper's networks
    when its packages are installed and the run's `images` (forward passes at `image_size`)
    repay the export on this CPU (`export_pays`), and always with int8; the optimized PyTorch
    copy otherwise; models that are not registered networks (classical baselines, plain
    modules) run as given."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return _auto_choice(model, int8, images, image_size)[0]


def _weights_digest(model: nn.Module) -> str:
    """sha256 of every state-dict tensor's name, shape and bytes. BayarConv kernels are hashed
    projected and rounded: each forward pass re-normalises them in place, moving the last bits."""
    bayar = {f"{n}.kernel" for n, m in model.named_modules() if type(m).__name__ == "BayarConv2d"}
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        if name in bayar:
            t = (t / t.sum(-1, keepdim=True)).half()
        t = t.contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def export_key(
    model: nn.Module, image_size: int, checkpoint: str | os.PathLike | None = None
) -> str:
    """What an exported graph depends on: the checkpoint file's bytes (else the model's
    weights), the model spec, the input size, the torch version and the export format."""
    h = hashlib.sha256()
    spec = json.dumps(getattr(model, "sdfl_spec", {}), sort_keys=True, default=str)
    h.update(f"{_EXPORT_FORMAT}|{torch.__version__}|{spec}|{image_size}|".encode())
    ck = Path(checkpoint) if checkpoint is not None else None
    h.update(_file_digest(ck).encode() if ck and ck.is_file() else _weights_digest(model).encode())
    return h.hexdigest()[:16]


def export_path(
    model: nn.Module,
    image_size: int,
    checkpoint: str | os.PathLike | None = None,
    kind: str = "fp32",
) -> Path:
    """The cached export's file: next to the checkpoint file (`best.pt` ->
    `best.onnx-fp32-KEY.onnx`) when there is one and its folder is writable, else under
    `cache_dir()/onnx` (`sdfl_lib.paths`; also for a checkpoint given by name, such as `table3-5`)."""
    key = export_key(model, image_size, checkpoint)
    ck = Path(checkpoint) if checkpoint is not None else None
    if ck is not None and ck.is_file():
        if os.access(ck.parent, os.W_OK):
            return ck.parent / f"{ck.stem}.onnx-{kind}-{key}.onnx"
        stem = f"{ck.stem}-{hashlib.sha256(str(ck.absolute()).encode()).hexdigest()[:8]}"
    elif ck is not None:  # a name, not a file: never write beside the working directory
        stem = ck.name
    else:
        stem = _spec_name(model) or type(model).__name__
    return cache_dir() / "onnx" / f"{stem}.onnx-{kind}-{key}.onnx"


class _Outputs(nn.Module):
    """Model -> (image_logit, mask_logit): the exporter needs plain tensors out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out.image_logit, out.mask_logit


@contextlib.contextmanager
def _atomic_with_data(path: Path) -> Iterator[Path]:
    """Yields a path in a fresh hidden folder beside `path` to save a model and its external
    data files to; when the block ends without error the data files are moved beside `path`
    first and the model file last (its presence means the export is whole), else all is removed.
    The data files keep their names, which the model file records."""
    folder = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    folder.mkdir()
    try:
        yield folder / path.name
        for part in sorted(folder.iterdir()):
            if part.name != path.name:
                replace_file(part, path.with_name(part.name))
        replace_file(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_onnx(model: nn.Module, path: str | os.PathLike, image_size: int) -> Path:
    """Export `model` to ONNX at `image_size`, any batch size, with PyTorch's dynamo exporter
    (whose optimizer folds batch norm into the convolutions); the weights go to an external
    data file beside it (`path` + ".data"), both written atomically. The model's own weights
    are exported, not a copy: the exporter streams them to the file."""
    _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    on_cpu = model if model_device(model).type == "cpu" else copy.deepcopy(model).cpu()
    x = torch.rand(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    # The exporter narrates every stage on stdout; keep the caller's output its own.
    with (
        _atomic_with_data(path) as tmp,
        _fresh_prroi_caches(),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Outputs(on_cpu.eval()),
            (x,),
            dynamo=True,
            input_names=["image"],
            output_names=["image_logit", "mask_logit"],
            dynamic_shapes=({0: batch},),
        )
        program.save(str(tmp), external_data=True)
        _drop_exported_weights(program.model.graph, on_cpu)
        del program
    release_memory()
    return path


def _drop_exported_weights(graph: Any, model: nn.Module) -> None:
    """Make the exporter's graph let go of the weights. onnxscript's rewrite rules (module
    globals) keep the last graph they matched, and with it every value that graph ever had,
    each holding the model's tensor or a folded copy: ~0.7 GiB for `ours`, alive until the
    next export (and keeping the model's weights alive after the model is dropped)."""
    import onnx_ir as ir  # why: optional (sdfl[onnx]; onnxscript's IR)

    for value in graph.initializers.values():
        value.const_value = None
    ours = {id(t) for t in model.state_dict(keep_vars=True).values()}
    for obj in gc.get_objects():
        if isinstance(obj, ir.Value) and id(getattr(obj.const_value, "raw", None)) in ours:
            obj.const_value = None


def _require_onnx() -> None:
    if not onnx_available():
        raise InferenceUnavailable(
            "the onnx backend needs the packages onnx, onnxscript and onnxruntime: "
            "pip install 'sdfl[onnx]'"
        )


class OnnxModel(nn.Module):
    """An exported network run by ONNX Runtime on the CPU; called like the model it came from
    ((B, 3, S, S) float in [0, 1] -> `ModelOutput`), at the size it was exported for. The
    session is built on the first call (or `session` access), so that a caller that replaces
    the PyTorch model with this one (`model = inference_model(model, ...)`) has freed its
    weights by then: building the session briefly needs twice the weights' memory."""

    def __init__(
        self, path: str | os.PathLike, spec: dict | None = None, threads: int | None = None
    ) -> None:
        super().__init__()
        import onnx  # why: optional (sdfl[onnx])

        self.path = Path(path)
        self.threads = threads
        self.sdfl_spec = dict(spec or {})
        graph = onnx.load(str(self.path), load_external_data=False).graph  # no weights read
        self.image_size = int(graph.input[0].type.tensor_type.shape.dim[-1].dim_value)
        self._session = None

    @property
    def session(self) -> Any:
        """The ONNX Runtime inference session (built on first use)."""
        if self._session is None:
            import onnxruntime as ort  # why: optional (sdfl[onnx])

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # Without the arena, activations are freed between runs: ~0.35 GiB less resident
            # for `ours` at 512x512, batch 2 (the convolutions' weights are packed once anyway).
            options.enable_cpu_mem_arena = False
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        return self._session

    def load(self) -> OnnxModel:
        """Build the session now (it is otherwise built on the first call); returns self."""
        _ = self.session
        return self

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"{self.path.name} was exported for {self.image_size}x{self.image_size} inputs, "
                f"got {tuple(x.shape[-2:])}"
            )
        feed = {"image": x.detach().float().cpu().contiguous().numpy()}
        image_logit, mask_logit = self.session.run(None, feed)
        return ModelOutput(torch.from_numpy(image_logit), torch.from_numpy(mask_logit))


# CPU flags with int8 dot-product instructions (u8 x s8 sums without int16 saturation).
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Bumped when the int8 recipe changes for the same export and calibration (re-quantizes).
_INT8_RECIPE = 3


def int8_reduce_range() -> bool:
    """Whether int8 weights must use 7 bits here: on CPUs without VNNI, ONNX Runtime's u8 x s8
    products sum in int16 and can saturate with full-range weights."""
    return not (cpu_flags() & _VNNI_FLAGS)


def fp32_convolutions(onnx_path: str | os.PathLike, image_size: int) -> list[str]:
    """Names of the Conv nodes int8 leaves in fp32: those whose output is at half the input
    resolution or finer (the streams' stems and the BayarConv filter, whose raw-pixel inputs and
    small high-pass responses lose most to 8 bits) and those with one output channel (the
    heads' classifiers, right before the outputs); together a tenth of the arithmetic."""
    import onnx  # why: optional (sdfl[onnx])

    # Shapes need the graph and the weights' dims, not their bytes.
    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = onnx.shape_inference.infer_shapes(model).graph
    height = {}
    for v in itertools.chain(graph.value_info, graph.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].HasField("dim_value"):
            height[v.name] = dims[2].dim_value
    out_channels = {t.name: t.dims[0] for t in graph.initializer if len(t.dims) == 4}
    return [
        n.name
        for n in graph.node
        if n.op_type == "Conv"
        and (
            height.get(n.output[0], 0) >= image_size // 2
            or (len(n.input) > 1 and out_channels.get(n.input[1]) == 1)
        )
    ]


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: torch.Tensor,
    keep_fp32: list[str] | None = None,
) -> dict:
    """Static int8 quantization of an exported model with ONNX Runtime: QDQ, per-channel int8
    weights (7-bit without VNNI), uint8 activations with min/max ranges from `calibration`
    ((N, 3, S, S) in [0, 1]); `fp32_convolutions` (or the nodes `keep_fp32`) stay fp32.
    Returns the recipe: excluded nodes, reduce_range, calibration images. The model is
    pre-processed by `pre_process` and its ranges, ONNX Runtime's MinMax calibration, computed
    by `minmax_ranges` (image by image, keeping only running ranges) are handed to
    `quantize_static` as its calibration cache; every intermediate model keeps its weights in
    an external data file, never held twice."""
    # why: optional (sdfl[onnx])
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    reduce, out_path = int8_reduce_range(), Path(out_path)
    with (
        _atomic_with_data(out_path) as tmp,
        tempfile.TemporaryDirectory(prefix=".quantizing-", dir=out_path.parent) as work,
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        pre, ranges = Path(work) / "pre.onnx", Path(work) / "ranges.json"
        pre_process(fp32_path, pre)
        save_tensors_data(minmax_ranges(pre, calibration, "image"), ranges)
        release_memory()  # the calibration session's buffers, before the quantizer loads
        keep = fp32_convolutions(pre, calibration.shape[-1]) if keep_fp32 is None else keep_fp32
        quantize_static(
            str(pre), str(tmp), None, quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            reduce_range=reduce, nodes_to_exclude=keep, use_external_data_format=True,
            calibration_cache_path=ranges,
        )  # fmt: skip
    release_memory()
    return {"fp32_nodes": keep, "reduce_range": reduce, "calibration_images": len(calibration)}


def mask_agreement(
    a: ModelOutput, b: ModelOutput, threshold: float = 0.5, margin: float = 0.0
) -> float:
    """Fraction of pixels on which two outputs take the same decision at `threshold`, counting
    only the pixels where `a` is at least `margin` away from it (1.0 when there are none)."""
    pa, pb = a.mask_prob, b.mask_prob
    decided = (pa - threshold).abs() >= margin
    if not decided.any():
        return 1.0
    return float(((pa >= threshold) == (pb >= threshold))[decided].float().mean())


def inference_model(
    model: nn.Module,
    backend: str = "auto",
    int8: bool = False,
    image_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    calibration: torch.Tensor | None = None,
    log: Callable[[str], None] | None = None,
    min_agreement: float | None = None,
    images: float | None = None,
) -> nn.Module:
    """The model predict and evaluate run: called on (B, 3, S, S) batches like `model`.

    backend: "eager" (the model as given), "optimized" (`optimize_for_inference`: batch norm
    folded, channels-last), "compile" (that copy through `torch.compile` with weight freezing),
    "onnx" (exported once, cached next to `checkpoint`, by default the file `model` was
    loaded from by `resolve_model`, or under `cache_dir()/onnx`, run by ONNX
    Runtime on the CPU) or "auto" (see `resolve_backend`; `images`, the forward passes the
    run will make, lets it skip an export that would not pay). int8 (onnx only): static
    quantization calibrated on `calibration` (N, 3, S, S); refused (`InferenceUnavailable`)
    when its masks agree with fp32's on fewer than `min_agreement` (default
    `INT8_MIN_AGREEMENT`) of the pixels of those images that fp32 is decided on (see
    `INT8_MARGIN`); that agreement is kept as `int8_agreement`.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    checkpoint = checkpoint if checkpoint is not None else checkpoint_of(model)
    size = model_image_size(model, image_size)
    chosen = resolve_backend(model, backend, int8, images, size)
    if backend == "auto":
        log(f"backend auto: {chosen} ({_auto_choice(model, int8, images, size)[1]})")
    if int8 and chosen != "onnx":
        raise InferenceUnavailable(f"int8 runs only with the onnx backend, not {chosen!r}")
    if chosen == "eager":
        return model.eval()
    if chosen in ("optimized", "compile"):
        return _pytorch_copy(model, chosen)
    fp32 = _cached_export(model, size, checkpoint, log)
    spec = getattr(model, "sdfl_spec", {})
    if not int8:
        return OnnxModel(fp32, spec)
    if calibration is None or not len(calibration):
        raise InferenceUnavailable("int8 needs calibration images")
    bound = INT8_MIN_AGREEMENT if min_agreement is None else min_agreement
    return _int8_model(model, fp32, calibration, bound, log)


def _pytorch_copy(model: nn.Module, backend: str) -> nn.Module:
    """The optimized copy (batch norm folded, channels-last), compiled for "compile"."""
    fast = optimize_for_inference(model.eval(), channels_last=True)
    if backend == "optimized":
        return fast
    compiled = torch.compile(fast, options={"freezing": True})
    compiled.sdfl_spec = getattr(model, "sdfl_spec", {})
    return compiled


def _cached_export(
    model: nn.Module, size: int, checkpoint: str | os.PathLike | None, log: Callable[[str], None]
) -> Path:
    """The model's fp32 ONNX export at `size` (`export_path`), exported now if not cached."""
    _require_onnx()
    if _spec_name(model) not in _ONNX_MODELS:
        raise InferenceUnavailable(
            f"the onnx backend runs {', '.join(_ONNX_MODELS)}, not "
            f"{_spec_name(model) or type(model).__name__}; use --backend optimized or eager"
        )
    if model_device(model).type != "cpu":
        log(f"note: the onnx backend runs on the CPU (the model is on {model_device(model)})")
    model = model.eval()
    fp32 = export_path(model, size, checkpoint, "fp32")
    if fp32.is_file():
        return fp32
    log(f"exporting the model to ONNX ({size}x{size}; once, cached as {fp32})")
    try:
        return export_onnx(model, fp32, size)
    except InferenceUnavailable:
        raise
    except Exception as err:  # the exporter's failures come in many types
        raise InferenceUnavailable(
            f"ONNX export of {_spec_name(model) or type(model).__name__} failed: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


def _int8_path(fp32: Path, calibration: torch.Tensor) -> Path:
    """The int8 file of an fp32 export: keyed by the calibration images and the recipe."""
    h = hashlib.sha256(calibration.float().contiguous().numpy().tobytes())
    h.update(f"{_INT8_RECIPE}|{int8_reduce_range()}".encode())
    return fp32.with_name(fp32.name.replace("-fp32-", f"-int8{h.hexdigest()[:8]}-"))


def _run_in_pairs(model: nn.Module, x: torch.Tensor) -> ModelOutput:
    """`model` on `x` two images at a time (what a batch of 32 at 512x512 would hold at once
    is several GiB of activations), on the model's device; outputs on the CPU."""
    device = model_device(model)
    with torch.no_grad():
        parts = [model(chunk.to(device)) for chunk in x.split(2)]
        parts = [ModelOutput(p.image_logit.cpu(), p.mask_logit.cpu()) for p in parts]
    return ModelOutput(
        torch.cat([p.image_logit for p in parts]), torch.cat([p.mask_logit for p in parts])
    )


def _int8_model(
    model: nn.Module,
    fp32: Path,
    calibration: torch.Tensor,
    bound: float,
    log: Callable[[str], None],
) -> OnnxModel:
    """The int8 model of `model`'s fp32 export, quantized now if not cached, and checked
    against the fp32 model on the calibration images (the agreement is kept beside it, so the
    check runs once). The fp32 reference is the PyTorch model the export came from (equal to
    its export to ~1e-7): no second ONNX Runtime session is built beside it."""
    spec = getattr(model, "sdfl_spec", {})
    q = _int8_path(fp32, calibration)
    record = q.with_suffix(".json")  # the recipe, and the agreement found when it was made
    recipe: dict = {}
    if not q.is_file():
        log(f"quantizing to int8 on {len(calibration)} calibration image(s) (cached as {q})")
        recipe = quantize_int8(fp32, q, calibration)
        record.unlink(missing_ok=True)
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(record.read_text())
        recipe = loaded if isinstance(loaded, dict) else recipe
    quant = None
    if not isinstance(recipe.get("decided_agreement"), float):
        ref = _run_in_pairs(model.eval(), calibration)
        release_memory()
        quant = OnnxModel(q, spec)
        out = _run_in_pairs(quant, calibration)
        recipe["decided_agreement"] = mask_agreement(ref, out, 0.5, INT8_MARGIN)
        recipe["mask_agreement"] = mask_agreement(ref, out)
        with contextlib.suppress(OSError):
            record.write_text(json.dumps(recipe, indent=1))
    agree, every = recipe["decided_agreement"], recipe.get("mask_agreement", float("nan"))
    said = (
        f"its masks agree with fp32 on {agree:.2%} of the calibration pixels fp32 is decided on "
        f"(probability at least {INT8_MARGIN} from 0.5), {every:.2%} of all"
    )
    if agree < bound:
        raise InferenceUnavailable(f"int8 refused: {said} (needs {bound:.0%}); run without --int8")
    quant = quant or OnnxModel(q, spec)
    quant.int8_agreement = agree
    kept = len(recipe.get("fp32_nodes", []))
    log(f"int8: {said}; {kept} convolution(s) kept in fp32 (stems, classifiers)")
    return quant
