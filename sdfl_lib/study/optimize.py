"""Short training runs of the optimization study: train a variant of a config, score it on a test split.
`short_run(...)` is the entry point (notebook 05)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdfl_lib import viz
from sdfl_lib.evaluate import evaluate
from sdfl_lib.train import fit

if TYPE_CHECKING:
    from sdfl_lib.train import TrainConfig


def short_run(
    base: TrainConfig,
    name: str,
    /,
    *,
    out: str | os.PathLike,
    test_manifest: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Train `base` with the TrainConfig `changes` into `<out>/<name>/` (or take `checkpoint` as is),
    then evaluate it on `test_manifest` into `<out>/<name>/eval/`; returns {"run": name, headline metrics}."""

    folder = Path(out, name)
    if checkpoint is None:
        fit(base.replace(out_dir=str(folder), overwrite=True, **changes))
    metrics = evaluate(str(checkpoint or folder / "best.pt"), str(test_manifest), folder / "eval",
                       workers=0, figures=False, progress=False, device=base.device, resume=False)
    return {"run": name, **viz.headline_row(metrics)}
