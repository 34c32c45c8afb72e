"""Any study parameter file at smoke scale (`sdfl study --params FILE --smoke`).

`smoke_params(params)` shrinks what costs time — image sizes, steps, batches, the number of
synthetic images, robustness levels, the optimization study's runs — and keeps every choice the
file makes: model, backbone, precision, channels-last, data sets and their roots, the paper lists,
protocols, perturbation kinds, baselines and the number of training processes (at most 2, on the
CPU with gloo, where there is no GPU). What it changed is returned as notes, one line each.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from sdfl_lib.data.registry import sample_roots
from sdfl_lib.evaluate.robustness import parse_robustness
from sdfl_lib.models.encoder import weight_source

SMOKE_SIZE = 64  # input side of every model of a smoke run
_MAX_SYNTHETIC = 24
_MAX_VARIANTS = 1
_MAX_TEST = 12  # test images: at least one of each source and label of the paper lists
_MAX_BACKBONES = 2
_MAX_SEEDS = 2


def smoke_params(params: dict[str, Any], gpus: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(the parameters at smoke scale, notes on what was changed beyond sizes and steps).

    `gpus`: CUDA devices on this machine (default: counted); with none, `nproc` is capped at 2.
    """

    gpus = torch.cuda.device_count() if gpus is None else gpus
    p = copy.deepcopy(params)
    notes: list[str] = []
    p["name"] = f"{p.get('name', 'study')}-smoke"
    nproc = int(p.get("nproc", 1) or 1)
    cap = min(nproc, max(gpus, 2))
    if cap != nproc:
        notes.append(f"nproc {nproc} -> {cap} ({gpus} GPU(s) here"
                     + (", processes on the CPU with gloo)" if not gpus else ")"))
        p["nproc"] = cap
    world = int(p.get("nproc", 1) or 1)

    data = p.get("data")
    if isinstance(data, dict):
        if data.get("synthetic_n"):
            data["synthetic_n"] = min(int(data["synthetic_n"]), _MAX_SYNTHETIC)
            data["synthetic_size"] = min(int(data.get("synthetic_size", 96)), 96)
        if "examples" in data:
            data["examples"] = min(int(data["examples"]), 4)
        data["max_test"] = min(int(data.get("max_test") or _MAX_TEST), _MAX_TEST)

    modules = p.get("modules")
    if isinstance(modules, dict):
        modules["image_size"] = SMOKE_SIZE

    train = p.get("train")
    if isinstance(train, dict):
        _smoke_train(train, world, notes)

    evaluate = p.get("evaluate")
    if isinstance(evaluate, dict):
        evaluate["batch_size"] = min(int(evaluate.get("batch_size", 4)), 4)
        if "workers" in evaluate:
            evaluate["workers"] = min(int(evaluate["workers"]), 2)
        if evaluate.get("robustness"):
            evaluate["robustness"] = _one_level_each(evaluate["robustness"])

    optim = p.get("optimization")
    if isinstance(optim, dict):
        _smoke_optimization(optim)
    return p, notes


def _smoke_train(train: dict[str, Any], world: int, notes: list[str]) -> None:
    accum = min(int(train.get("grad_accum", 1) or 1), 2)
    train.update(
        image_size=SMOKE_SIZE, grad_accum=accum,
        # Two images per forward pass: batch norm needs more than one value per channel.
        batch_size=2 * world * accum,
        epochs=1, limit_train_batches=2, limit_val_batches=1,
    )
    if "workers" in train:
        train["workers"] = min(int(train["workers"]), 2)
    if train.get("checkpoint_every_steps"):
        train["checkpoint_every_steps"] = 1  # so that the mid-epoch checkpoint path runs too
    if train.get("pretrained") and not weights_present(str(train.get("backbone", "resnet50"))):
        train["pretrained"] = False
        notes.append(f"pretrained off: no ImageNet weights for {train.get('backbone', 'resnet50')!r}"
                     " on this machine (sdfl doctor says where they go)")


def _smoke_optimization(optim: dict[str, Any]) -> None:
    backbones = list(optim.get("backbones") or [])
    keep = backbones[:1] + [b for b in [optim.get("swap_backbone")] if b and b not in backbones[:1]]
    if backbones:
        optim["backbones"] = keep[:_MAX_BACKBONES]
    optim["speed_size"], optim["speed_batch"] = SMOKE_SIZE, 1
    if optim.get("seeds"):
        optim["seeds"] = list(optim["seeds"])[:_MAX_SEEDS]  # two: the mean ± sd path still runs
    short = dict(optim.get("short") or {})
    short.update(epochs=1, limit_train_batches=1, limit_val_batches=1, image_size=SMOKE_SIZE,
                 batch_size=2, grad_accum=1)
    optim["short"] = short
    variants = dict(list((optim.get("variants") or {}).items())[:_MAX_VARIANTS])
    for changes in variants.values():
        if "image_size" in changes:
            changes["image_size"] = min(int(changes["image_size"]), 96)
        if "batch_size" in changes:
            changes["batch_size"] = min(int(changes["batch_size"]), 4)
    if "variants" in optim:
        optim["variants"] = variants
    if "finetune" in optim:
        optim["finetune"] = {**dict(optim["finetune"] or {}), "epochs": 1, "limit_train_batches": 1,
                             "limit_val_batches": 1}


def _one_level_each(spec: Any) -> dict[str, list[float]]:
    """The first level of each perturbation kind of a robustness spec."""

    first: dict[str, list[float]] = {}
    for p in parse_robustness(spec):
        first.setdefault(p.kind, [p.level])
    return first


def weights_present(backbone: str) -> bool:
    """Whether ImageNet weights for `backbone` are on this machine (an installed weight package
    or a cached file; no download is tried)."""

    try:
        return weight_source(backbone) is not None
    except Exception:  # noqa: BLE001 - an unknown backbone has no weights either
        return False


# The shared sample data sets (`../shared/data`) in the roles of the paper's lists.
SAMPLE_ROOTS = sample_roots()  # from the data set registry


def sample_sets(samples_dir: str | Path) -> list[str]:
    """`--set` items pointing a paper-style parameter file at the sample data sets: CASIA v2 to
    train on, FaceForensics++ as the deepfakes, CASIA v1 and COVERAGE as the shallowfake tests."""
    root = Path(samples_dir).resolve()
    missing = [d for d in SAMPLE_ROOTS.values() if not (root / d).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: no sample data set(s) {', '.join(missing)}")
    datasets = ", ".join(f"{{name: {n}, root: '{root / d}', download: false}}" for n, d in SAMPLE_ROOTS.items())
    return [f"data.datasets=[{datasets}]", "data.paper_lists.shallow_train=casia2",
            "data.paper_lists.deep=ffpp", "data.paper_lists.shallow_tests=[casia1, coverage]"]
