"""The command-line options every command that runs a model shares (`sdfl evaluate`, `sdfl
predict`): which model, its input size and threshold, the device and the inference route."""

from __future__ import annotations

import argparse

from sdfl_lib.errors import positive_int, probability
from sdfl_lib.inference.backends import BACKENDS


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint/--method, --image-size, --threshold, --device, --backend, --int8, --calibration."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        help="a checkpoint (.pt) written by sdfl train, an authors' .pth, or the name of the "
        "paper's published weights (table3-1 ... table3-9, see `sdfl weights list`)",
    )
    src.add_argument(
        "--method", help="a classical baseline (ela, noise) or a registered model name"
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="model input size (default: the model's own, else 512)",
    )
    p.add_argument(
        "--threshold", type=probability, default=0.5, help="decision threshold in [0, 1] (0.5)"
    )
    p.add_argument("--device", default="auto", help="auto (this process's GPU if any, else cpu), cpu, cuda or cuda:N")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="inference route (default auto: ONNX Runtime on the CPU for ours/upernet when "
        "installed, exported once and cached next to the checkpoint; else batch norm folded, "
        "channels-last PyTorch)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 static quantization (onnx backend), calibrated on the first "
        "--calibration images of the run; refused when its masks stray from fp32's",
    )
    p.add_argument("--calibration", type=positive_int, default=32, help="int8 calibration images (32)")
