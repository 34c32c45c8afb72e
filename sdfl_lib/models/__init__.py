"""The paper's models and the baseline: `build_model(name, ...)` and everything around it.

model = build_model("ours", image_size=512)          # or "upernet", "mvssnet", "ela", "noise"
out = model(x)                                      # x: (B, 3, H, W) float in [0, 1]
out.image_score, out.mask_prob                      # (B,), (B, 1, H, W)
load_checkpoint(model, "1.pth")                     # the authors' published weights
torch.save(make_checkpoint(model, epoch=3), "last.pt"); load_model("last.pt")
"""

from __future__ import annotations

from sdfl_lib.models.base import ModelOutput, build_model, list_models, register_model
from sdfl_lib.models.checkpoint import (
    CheckpointError,
    LoadReport,
    detect_variant,
    load_checkpoint,
    load_model,
    make_checkpoint,
    read_checkpoint,
)
from sdfl_lib.models.encoder import (
    WEIGHT_PACKAGES,
    PretrainedWeightsUnavailable,
    build_encoder,
    input_normalization,
    pretrained_dir,
    weight_source,
)
from sdfl_lib.models.summary import extract_intermediates, summarize

__all__ = [
    "WEIGHT_PACKAGES",
    "CheckpointError",
    "LoadReport",
    "ModelOutput",
    "PretrainedWeightsUnavailable",
    "build_encoder",
    "build_model",
    "detect_variant",
    "extract_intermediates",
    "input_normalization",
    "list_models",
    "load_checkpoint",
    "load_model",
    "make_checkpoint",
    "pretrained_dir",
    "read_checkpoint",
    "register_model",
    "summarize",
    "weight_source",
]

