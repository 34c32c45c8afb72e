"""Short training runs of the optimization study: train a variant of a config, score it on a test
split, and say whether it differs from the baseline beyond noise. `short_run(...)` trains and
scores one run; `variant_study(...)` trains a baseline and each variant with the same seeds
(same initial weights, same data order), compares each with its baseline's seed on the same test
images (paired bootstrap, `sdfl_lib.evaluate.comparison`) and sums up over the seeds (notebook 05)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sdfl_lib import viz
from sdfl_lib.evaluate import evaluate
from sdfl_lib.evaluate.comparison import COLUMNS, compare
from sdfl_lib.metrics.uncertainty import RESAMPLES, headline_frame
from sdfl_lib.train import fit

if TYPE_CHECKING:
    from sdfl_lib.train import TrainConfig

# The metrics the study's tables show: one per protocol and level.
STUDY_KEYS = ("standard/pixel_f1@0.5", "standard/image_auc", "paper/combined_f1")


def _train_and_score(base: TrainConfig, folder: Path, test_manifest: str | os.PathLike,
                     checkpoint: str | os.PathLike | None, changes: Mapping[str, Any]) -> dict:
    """Train `base` with `changes` into `folder` (unless `checkpoint` is given), evaluate it on the
    test list into `folder/eval`; the evaluation's metrics."""
    if checkpoint is None:
        fit(base.replace(out_dir=str(folder), overwrite=True, **changes))
    return evaluate(str(checkpoint or folder / "best.pt"), str(test_manifest), folder / "eval",
                    workers=0, figures=False, progress=False, device=base.device, resume=False)


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
    metrics = _train_and_score(base, Path(out, name), test_manifest, checkpoint, changes)
    return {"run": name, **viz.headline_row(metrics)}


def describe(base: TrainConfig, seeds: Sequence[int] = (0,)) -> str:
    """One line saying what every short run trains: the model, its start, size, batch, optimizer,
    length and seeds."""
    start = "ImageNet weights" if base.pretrained else "random weights"
    length = f"{base.epochs} epoch(s)" + (f" of at most {base.limit_train_batches} batches"
                                          if base.limit_train_batches else "")
    return (f"short runs: {base.model} on {base.backbone} ({start}), {base.image_size} px, batch "
            f"{base.batch_size}, {base.optimizer} lr {base.lr:g}, {length}, seed(s) {list(seeds)}")


def _verdict(per_seed: set[str]) -> str:
    """One verdict over seeds: better or worse only when every seed says so."""
    if per_seed in ({"better"}, {"worse"}):
        return per_seed.pop()
    return "no interval" if "no interval" in per_seed else "within noise"


@dataclass
class VariantStudy:
    """What `variant_study` found. `runs`: one row per (run, seed) with each study metric's value
    and interval text; `comparisons`: one row per (run, seed, headline metric) against the
    baseline of the same seed (the columns of `sdfl_lib.evaluate.comparison.COLUMNS` and `seed`)."""

    runs: pd.DataFrame
    comparisons: pd.DataFrame
    baseline: str = "baseline"

    def summary(self, keys: Sequence[str] = STUDY_KEYS) -> pd.DataFrame:
        """Runs as rows, metrics as columns: `mean ± sd` over the seeds, or with one seed the
        value and its 95 % interval."""
        out = {}
        for run, g in self.runs.groupby("run", sort=False):
            cells = {}
            for key in keys:
                values = g[key].astype(float)
                cells[key] = (g[f"{key} text"].iloc[0] if len(g) == 1
                              else f"{values.mean():.3f} ± {values.std(ddof=1):.3f}")
            out[run] = cells
        return pd.DataFrame(out).T.rename_axis("run")

    def verdicts(self, keys: Sequence[str] = STUDY_KEYS) -> pd.DataFrame:
        """Runs as rows, metrics as columns: the difference from the baseline (mean over seeds)
        and the verdict: "better" or "worse" when every seed's paired 95 % interval lies above
        or below 0, else "within noise"."""
        rows = self.comparisons[self.comparisons["metric"].isin(keys)]
        out: dict[str, dict[str, str]] = {}
        for (run, key), g in rows.groupby(["run", "metric"], sort=False):
            word = _verdict(set(g["verdict"]))
            delta = g["delta"].astype(float)
            if len(g) > 1:
                spread = f" ± {delta.std(ddof=1):.3f} over {len(g)} seeds"
            else:
                low, high = g["low"].iloc[0], g["high"].iloc[0]
                spread = "" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]"
            out.setdefault(run, {})[key] = f"{delta.mean():+.3f}{spread} {word}"
        return pd.DataFrame(out).T.reindex(columns=list(keys)).rename_axis(f"vs {self.baseline}")

    def means(self, keys: Sequence[str] = STUDY_KEYS) -> pd.DataFrame:
        """Runs as rows, the mean over seeds of each metric (numbers, for `viz.compare_runs`)."""
        return self.runs.groupby("run", sort=False)[list(keys)].mean()


def variant_study(
    base: TrainConfig,
    variants: Mapping[str, Mapping[str, Any]],
    *,
    out: str | os.PathLike,
    test_manifest: str | os.PathLike,
    seeds: Sequence[int] = (0,),
    baseline: str = "baseline",
    resamples: int = RESAMPLES,
) -> VariantStudy:
    """For each seed: train `base` (the baseline) and `base` with each variant's TrainConfig
    changes, all with that seed (the same initial weights where the architecture is the same, the
    same data order), into `<out>/<run>/seed<S>/`, score them on `test_manifest`, and compare each
    variant with the baseline of its seed on the same test images (paired bootstrap)."""
    if not seeds:
        raise ValueError("seeds: at least one seed")
    if baseline in variants:
        raise ValueError(f"a variant may not be named {baseline!r}, the baseline's name")
    runs, comparisons = [], []
    for seed in seeds:
        cfg = base.replace(seed=int(seed))
        folders = {}
        for name, changes in {baseline: {}, **variants}.items():
            folders[name] = Path(out, name, f"seed{seed}")
            metrics = _train_and_score(cfg, folders[name], test_manifest, None, changes)
            frame = headline_frame(metrics, ["both"]).set_index("metric")
            runs.append({"run": name, "seed": seed, **frame["value"].to_dict(),
                         **{f"{k} text": t for k, t in frame["text"].items()}})
        for name in variants:
            result = compare(folders[baseline] / "eval", folders[name] / "eval",
                             names=[baseline, name], resamples=resamples)
            comparisons.append(result.table.assign(seed=seed))
    # No variants (the baseline over seeds alone): no comparison, an empty table.
    pairs = (pd.concat(comparisons, ignore_index=True) if comparisons
             else pd.DataFrame(columns=[*COLUMNS, "seed"]))
    return VariantStudy(pd.DataFrame(runs), pairs, baseline)


__all__ = ["STUDY_KEYS", "VariantStudy", "describe", "short_run", "variant_study"]
