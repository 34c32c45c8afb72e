"""`python -m sdfl_lib.bench winograd`: each 3x3 convolution of a model's training step, direct
(PyTorch) against Winograd F(4x4, 3x3) (`sdfl_lib.models.winograd`), forward plus backward, on
this CPU; whether the library's rule (`pays`) picks the faster one, and the step's total."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.bench.model import device_description
from sdfl_lib.models import build_model
from sdfl_lib.models.winograd import computes, pays, tiles_of, winograd_conv2d
from sdfl_lib.progress import tqdm


def conv_calls(model: nn.Module, size: int, batch: int) -> dict[tuple, list[str]]:
    """The 3x3 stride-1 padding-1 convolutions a training forward at `size` calls: input shape
    and output channels -> the layers that call it."""
    calls: dict[tuple, list[str]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and computes(m):
            def record(mod: nn.Module, args: tuple, _out: Any, name: str = name) -> None:
                key = (tuple(args[0].shape), mod.out_channels)
                calls.setdefault(key, []).append(name)

            hooks.append(m.register_forward_hook(record))
    try:
        with torch.no_grad():
            model.train()(torch.rand(batch, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return calls


def _fwd_bwd_ms(fn: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, iters: int) -> float:
    y = fn(x, w, b)
    grad = torch.randn_like(y)
    best = float("inf")
    for _ in range(iters + 1):  # the first call warms up
        t0 = time.perf_counter()
        fn(x, w, b).backward(grad)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def measure(shape: tuple[int, ...], out_channels: int, iters: int = 3) -> dict[str, Any]:
    """Forward + backward ms of one convolution call, direct and Winograd, and the largest
    difference of their outputs relative to the output's largest magnitude."""
    torch.manual_seed(0)
    x = torch.rand(shape, requires_grad=True)
    c = shape[1]
    w = (torch.randn(out_channels, c, 3, 3) / (9 * c) ** 0.5).requires_grad_()
    b = torch.zeros(out_channels, requires_grad=True)
    with torch.no_grad():
        ref = F.conv2d(x, w, b, padding=1)
        err = ((winograd_conv2d(x, w, b) - ref).abs().max() / ref.abs().max()).item()
    direct = _fwd_bwd_ms(lambda *a: F.conv2d(*a, padding=1), x, w, b, iters)
    wino = _fwd_bwd_ms(winograd_conv2d, x, w, b, iters)
    return {"direct_ms": direct, "winograd_ms": wino, "rel_error": err}


def run(
    model_name: str = "ours",
    backbone: str = "resnet50",
    size: int = 512,
    batch: int = 2,
    iters: int = 3,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per distinct convolution call of the model's training step."""
    model = build_model(model_name, image_size=size, backbone=backbone)
    rows = []
    calls = conv_calls(model, size, batch)
    for (shape, k), layers in tqdm(calls.items(), desc="convolutions", disable=not progress):
        tiles = tiles_of(shape)
        row = {"layers": layers, "shape": shape, "out": k, "tiles": tiles,
               "chosen": "winograd" if pays(tiles, shape[1], k) else "direct"}
        row.update(measure(shape, k, iters))
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The table, slowest first, and the totals: all direct, the rule's choice, the best."""
    lines = [f"{'calls':>5} {'input':>22} {'out':>5} {'tiles':>6} {'direct':>9} {'winograd':>9}"
             f" {'x':>5} {'chosen':>8} {'rel.err':>8}  first layer"]
    n = lambda r: len(r["layers"])  # noqa: E731
    total = {"direct": 0.0, "rule": 0.0, "best": 0.0}
    for r in sorted(rows, key=lambda r: -r["direct_ms"] * n(r)):
        speedup = r["direct_ms"] / r["winograd_ms"]
        chosen = r["winograd_ms"] if r["chosen"] == "winograd" else r["direct_ms"]
        total["direct"] += n(r) * r["direct_ms"]
        total["rule"] += n(r) * chosen
        total["best"] += n(r) * min(r["direct_ms"], r["winograd_ms"])
        wrong = " *" if (speedup > 1) != (r["chosen"] == "winograd") else ""
        lines.append(
            f"{n(r):>5} {'x'.join(map(str, r['shape'])):>22} {r['out']:>5} {r['tiles']:>6}"
            f" {r['direct_ms']:>7.1f}ms {r['winograd_ms']:>7.1f}ms {speedup:>5.2f}"
            f" {r['chosen']:>8}{wrong} {r['rel_error']:>8.1e}  {r['layers'][0]}"
        )
    lines.append(
        f"3x3 convolutions of one training step, forward + backward: direct {total['direct']:.0f}"
        f" ms; as trained (the rule's choice) {total['rule']:.0f} ms"
        f" ({total['direct'] / max(total['rule'], 1e-9):.2f}x); best choice per call"
        f" {total['best']:.0f} ms. `*`: the rule picked the slower one on this CPU."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table for one model."""
    parser = argparse.ArgumentParser(prog="python -m sdfl_lib.bench winograd", description=__doc__)
    parser.add_argument("--model", default="ours")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3, help="timed calls per convolution (best)")
    args = parser.parse_args(argv)
    if min(args.size, args.batch, args.iters) < 1:
        parser.error("--size, --batch and --iters must be at least 1")
    print(f"device: {device_description(torch.device('cpu'))}; PyTorch kernels:"
          f" {torch.backends.cpu.get_cpu_capability()}")
    print(f"{args.model} ({args.backbone}), {args.size}x{args.size}, batch {args.batch}, float32")
    print(format_rows(run(args.model, args.backbone, args.size, args.batch, args.iters)))
    return 0
