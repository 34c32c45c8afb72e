"""Backbones of one model side by side (notebook 05): size, arithmetic and measured speed."""

from __future__ import annotations

import pandas as pd

from sdfl_lib.bench.model import bench_model
from sdfl_lib.models import build_model
from sdfl_lib.models.encoder import weight_source
from sdfl_lib.models.summary import summarize


def compare_backbones(
    model_name: str, backbones: list[str], size: int, batch: int = 2, device: str = "cpu"
) -> pd.DataFrame:
    """Per backbone of `model_name`: parameters (M), GFLOPs and measured inference images/s at
    `size`, and where its ImageNet weights come from offline (`weight_source`; none: it would
    train from scratch). Architectures only: no weights are loaded or downloaded."""
    rows = []
    for bb in backbones:
        cost = summarize(build_model(model_name, image_size=size, backbone=bb), size)
        total = cost.set_index("part").loc["total"]
        speed = bench_model(model_name, size, batch, device=device, backbone=bb, iters=2,
                            train=False, progress=False)
        rows.append({
            "backbone": bb, "params_M": total.params_M, "GFLOPs": total.GFLOPs,
            "images_per_s": speed["inference_img_s"],
            "ImageNet weights offline": weight_source(bb) or "none: trains from scratch",
        })
    return pd.DataFrame(rows).set_index("backbone")
