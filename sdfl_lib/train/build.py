"""The pieces `fit` assembles from a `TrainConfig`: model, optimizer, scheduler, data sets."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sdfl_lib.data import ManipulationDataset
from sdfl_lib.data.validate import preflight
from sdfl_lib.models import build_model, load_checkpoint
from sdfl_lib.models.weights import resolve_checkpoint
from sdfl_lib.models.winograd import use_winograd
from sdfl_lib.progress import tqdm
from sdfl_lib.train.config import TrainConfig
from sdfl_lib.train.distributed import DistEnv


def build_train_model(config: TrainConfig) -> nn.Module:
    """The model named in the config, with the init checkpoint (ours or the authors') loaded."""

    model = build_model(
        config.model,
        image_size=config.image_size,
        backbone=config.backbone,
        pretrained=config.pretrained,
        **config.model_kwargs,
    )
    if config.init_checkpoint:
        load_checkpoint(model, resolve_checkpoint(config.init_checkpoint))  # a path or table3-N
    return model


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam, AdamW, RMSprop or SGD at the global-batch learning rate.

    The fused kernels (one pass over all parameters; 5x faster than the per-tensor loop for the
    paper's 167 M parameters on a CPU) where PyTorch has them: Adam, AdamW, SGD.
    """
    kind, lr, wd = config.optimizer, config.lr, config.weight_decay
    params = list(params)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=config.momentum,
                                   foreach=True)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=config.momentum, fused=True)


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

    if not config.train_manifest:
        raise ValueError("train_manifest is empty: give the manifest CSV of the training set")
    # Pre-flight: a missing or broken file is found now, not hours into an epoch.
    preflight(config.train_manifest, "train_manifest")
    if config.val_manifest:
        preflight(config.val_manifest, "val_manifest")
    train = ManipulationDataset(
        config.train_manifest, image_size=config.image_size, augment=config.augment
    )
    classes = sorted({int(v) for v in train.labels})
    if len(classes) == 1:
        kind = "tampered" if classes[0] else "authentic"
        tqdm.write(f"warning: {config.train_manifest} holds only {kind} images (label {classes[0]}): "
                   "the detection head can only learn that constant; add the other class for a "
                   "meaningful image-level score (training goes on)")
    val = None
    if config.val_manifest:
        val = ManipulationDataset(config.val_manifest, image_size=config.image_size, augment=False)
    return train, val


def unused_parameters(model: nn.Module, image_size: int, device: torch.device) -> list[str]:
    """Names of parameters that get no gradient from the outputs (one probe forward/backward,
    eval mode so no running statistics change)."""
    was_training = model.training
    model.eval()
    out = model(torch.zeros(2, 3, image_size, image_size, device=device))
    probe = out.image_logit.float().sum() + out.mask_logit.float().sum()
    if out.edge_logit is not None:
        probe = probe + out.edge_logit.float().sum()
    probe.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


def wrap_model(raw: nn.Module, config: TrainConfig, env: DistEnv):
    """(raw module, module to call, DDP wrapper or None): device, memory format, Winograd
    convolutions, SyncBatchNorm, torch.compile and DDP as the config and the process group ask."""
    raw = raw.to(env.device)
    if config.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    # Only where it can act (its convolutions check device, dtype and shape at each call).
    winograd = config.winograd and env.device.type == "cpu"
    switched = use_winograd(raw, winograd)
    if winograd and switched and env.is_main:
        tqdm.write(f"note: {switched} 3x3 convolutions train by Winograd F(4x4, 3x3) where their"
                   " shape pays on this CPU (winograd=false: PyTorch's direct convolution)")
    if env.distributed:
        # The paper's UPerNet builds FPN outputs (P3, P4) that no head reads; leaving them out of
        # gradient synchronisation spares DDP a per-step search for unused parameters.
        unused = unused_parameters(raw, config.image_size, env.device)
        for name, param in raw.named_parameters():
            if name in unused:
                param.requires_grad_(False)
        if unused and env.is_main:
            tqdm.write(f"note: {len(unused)} parameter tensors take no part in the loss (e.g."
                       f" {unused[0]}); they are left out of gradient synchronisation")
        if config.sync_bn and not config.freeze_bn:
            if env.device.type == "cuda":
                raw = torch.nn.SyncBatchNorm.convert_sync_batchnorm(raw)
            elif env.is_main:
                tqdm.write("note: SyncBatchNorm needs GPUs; on CPU each process normalises its own"
                           " images in batch norm")
    net = torch.compile(raw) if config.compile else raw
    ddp = None
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        ddp = DistributedDataParallel(net, device_ids=ids)
    return raw, net, ddp
