"""Running a trained model: loading it (`resolve_model`: a module, a checkpoint file, named
weights or a method; the model keeps its checkpoint file), preparing inputs and restoring maps,
and the inference route (`inference_model`: batch norm folded, compiled, or ONNX Runtime fp32 or
int8). Used by `sdfl_lib.predict`, `sdfl_lib.evaluate` and the benchmarks.

model = resolve_model("table3-9")                    # or a path, a module, method="ela"
fast = inference_model(model, "auto", images=100)    # exports beside table3-9.pth when it pays
"""

from __future__ import annotations

from sdfl_lib.inference.backends import (
    BACKENDS,
    InferenceUnavailable,
    OnnxModel,
    export_onnx,
    export_path,
    fold_batchnorm,
    inference_model,
    mask_agreement,
    onnx_available,
    optimize_for_inference,
    quantize_int8,
    resolve_backend,
)
from sdfl_lib.inference.inputs import (
    DEFAULT_IMAGE_SIZE,
    calibration_batch,
    model_image_size,
    prepare_input,
    restore_map,
)
from sdfl_lib.inference.loading import checkpoint_of, resolve_model

__all__ = [
    "BACKENDS",
    "DEFAULT_IMAGE_SIZE",
    "InferenceUnavailable",
    "OnnxModel",
    "calibration_batch",
    "checkpoint_of",
    "export_onnx",
    "export_path",
    "fold_batchnorm",
    "inference_model",
    "mask_agreement",
    "model_image_size",
    "onnx_available",
    "optimize_for_inference",
    "prepare_input",
    "quantize_int8",
    "resolve_backend",
    "resolve_model",
    "restore_map",
]
