"""int8 calibration that keeps only running ranges: the per-tensor min/max ONNX Runtime's MinMax
calibrator computes for static quantization, accumulated image by image in a session without
the CPU arena, so its memory is one image's activations and the weights, mapped from their file.
(ONNX Runtime's own calibrator keeps every image's outputs, runs with its arena and loads a copy
of the model beside the quantizer's.)"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

_FLOAT_TYPES = (1, 10)  # onnx.TensorProto.FLOAT, FLOAT16: the types ONNX Runtime calibrates


def calibrated_tensors(model: Any) -> dict[str, int]:
    """The tensors ONNX Runtime's calibrator ranges for `quantize_static` (the float inputs and
    outputs, weights aside, of every node of a type it can quantize), with their element type."""
    # why: optional (sdfl[onnx])
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    graph = model.graph
    kinds = set(QLinearOpsRegistry) | set(QDQRegistry)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in itertools.chain(graph.value_info, graph.output, graph.input)
        if v.type.HasField("tensor_type")
    }
    weights = {t.name for t in graph.initializer}
    return {
        name: types[name]
        for node in graph.node
        if node.op_type in kinds
        for name in itertools.chain(node.input, node.output)
        if types.get(name) in _FLOAT_TYPES and name not in weights
    }


def minmax_ranges(onnx_path: str | os.PathLike, images: torch.Tensor, input_name: str) -> Any:
    """ONNX Runtime's MinMax calibration (per tensor, not symmetric, no moving average) of the
    model at `onnx_path` (shape-inferred, weights in external data) on `images` (N, 3, S, S),
    fed one at a time; returns its `TensorsData`, ready for `save_tensors_data`. The model is
    read without its weights and saved beside itself with a ReduceMin and a ReduceMax on every
    calibrated tensor, so the augmented copy reads the same weights file."""
    import onnx  # why: optional (sdfl[onnx])
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

    path = Path(onnx_path)
    model = onnx.load(str(path), load_external_data=False)
    tensors = calibrated_tensors(model)
    reduce = {  # over every axis, as the calibrator reduces
        name: [
            onnx.helper.make_node(op, [name], [f"{name}_{op}"], keepdims=1)
            for op in ("ReduceMin", "ReduceMax")
        ]
        for name in tensors
    }
    # Each tensor's reductions right after the node making it: ONNX Runtime runs nodes in this
    # order where it can, so a tensor is freed after its own consumers, not at the graph's end.
    nodes = [r for i in model.graph.input for r in reduce.pop(i.name, [])]
    for node in model.graph.node:
        nodes += [node, *(r for out in node.output for r in reduce.pop(out, []))]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for name, elem_type in tensors.items():
        for op in ("ReduceMin", "ReduceMax"):
            model.graph.output.append(
                onnx.helper.make_tensor_value_info(f"{name}_{op}", elem_type, None)
            )
    augmented = path.with_name(f"{path.stem}.calibrate.onnx")
    onnx.save(model, str(augmented))
    del model
    try:
        low, high = _accumulate(augmented, list(tensors), images, input_name)
    finally:
        augmented.unlink(missing_ok=True)
    pairs = {name: (low[name], high[name]) for name in tensors}
    return TensorsData(CalibrationMethod.MinMax, pairs)


def _accumulate(
    augmented: Path, names: list[str], images: torch.Tensor, input_name: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Running per-tensor minima and maxima over `images`, one image per run; NaNs are skipped
    as the calibrator's nanmin/nanmax skip them."""
    import onnxruntime as ort  # why: optional (sdfl[onnx])

    options = ort.SessionOptions()
    # As ONNX Runtime's calibrator runs it: no graph rewrites, so each tensor is the model's own.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False  # activations freed after each image
    # Run the nodes in the file's order (each reduction right after its tensor's node): in
    # the default order every tensor waits for its reductions at the end, ~2.4 GiB for `ours`
    # at 512x512 where this keeps ~0.9 GiB (weights included).
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    options.log_severity_level = 3
    session = ort.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
    wanted = [f"{n}_{op}" for n in names for op in ("ReduceMin", "ReduceMax")]
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    for x in images.split(1):
        outs = session.run(wanted, {input_name: x.float().contiguous().numpy()})
        for name, lo, hi in zip(names, outs[0::2], outs[1::2], strict=True):
            lo, hi = lo.reshape(-1), hi.reshape(-1)
            low[name] = lo if name not in low else np.fmin(low[name], lo)
            high[name] = hi if name not in high else np.fmax(high[name], hi)
    del session
    return low, high


def pre_process(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """ONNX Runtime's `quant_pre_process` with symbolic shape inference skipped, for a model
    (opset 11 or later) whose weights are in external data, without reading the weights into
    Python: ONNX Runtime's basic graph optimizations write the model with its weights (to
    `dst` + ".data"), ONNX shape inference and the pre-processing mark read the graph alone.
    (`quant_pre_process` holds the whole model in memory while ONNX Runtime optimizes it.)"""
    import onnx  # why: optional (sdfl[onnx])
    import onnxruntime as ort  # why: optional (sdfl[onnx])
    from onnxruntime.quantization.quant_utils import add_pre_process_metadata

    dst = Path(dst)
    optimized = dst.with_name(f"{dst.stem}.optimized.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", f"{dst.name}.data"
    )
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    try:
        onnx.shape_inference.infer_shapes_path(str(optimized), str(optimized))
        model = onnx.load(str(optimized), load_external_data=False)
        add_pre_process_metadata(model)
        onnx.save(model, str(dst))
    finally:
        optimized.unlink(missing_ok=True)
