"""The pieces `fit` assembles from a `TrainConfig`: model, optimizer, scheduler, data sets."""

from __future__ import annotations

import torch
from torch import nn

from sdfl_lib.train.config import TrainConfig


def build_train_model(config: TrainConfig) -> nn.Module:
    """The model named in the config, with the init checkpoint (ours or the authors') loaded."""
    from sdfl_lib.models import build_model

    model = build_model(
        config.model,
        image_size=config.image_size,
        backbone=config.backbone,
        pretrained=config.pretrained,
        **config.model_kwargs,
    )
    if config.init_checkpoint:
        from sdfl_lib.models import load_checkpoint

        load_checkpoint(model, config.init_checkpoint)
    return model


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam, AdamW, RMSprop or SGD at the global-batch learning rate."""
    kind, lr, wd = config.optimizer, config.lr, config.weight_decay
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=config.momentum)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=config.momentum)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Per-epoch learning-rate schedule; `plateau` is stepped with the monitored loss."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.step_gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.epochs, eta_min=config.min_lr
        )
    return None


def build_datasets(config: TrainConfig):
    """(train, val or None) `ManipulationDataset`s from the manifests; images in [0, 1] as the paper."""
    from sdfl_lib.data import ManipulationDataset

    if not config.train_manifest:
        raise ValueError("train_manifest is empty: give the manifest CSV of the training set")
    train = ManipulationDataset(
        config.train_manifest, image_size=config.image_size, augment=config.augment
    )
    val = None
    if config.val_manifest:
        val = ManipulationDataset(config.val_manifest, image_size=config.image_size, augment=False)
    return train, val
