"""One training step as the trainer (`fit`) and the benchmarks run it: forward under the
library's autocast policy, the paper's loss, backward (through a GradScaler in fp16), then the
optimizer step (gradients clipped where asked) and the gradients cleared."""

from __future__ import annotations

import torch
from torch import nn

from sdfl_lib.runtime import autocast, autocast_dtype, resolve_device
from sdfl_lib.train.loss import LossTerms, PaperLoss


class TrainStep:
    """Forward, loss, backward and optimizer step of one batch (`step(model, images, batch)`),
    or the two halves apart (`backward` per micro-batch, then `update`) for gradient
    accumulation and DDP.

    precision: "fp32", "bf16", "fp16" or "auto" (`sdfl_lib.runtime.autocast`); `emulated` also
    autocasts on a CPU that only emulates the type. The GradScaler is on for fp16 (`scaler`
    False keeps it off). `grad_clip` > 0 clips the gradients' global norm before the step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        loss: PaperLoss | None = None,
        *,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        grad_clip: float = 0.0,
        scaler: bool = True,
        emulated: bool = False,
    ) -> None:
        self.optimizer = optimizer
        self.loss = PaperLoss() if loss is None else loss
        self.device = resolve_device(device)
        self.precision, self.emulated, self.grad_clip = precision, emulated, grad_clip
        fp16 = autocast_dtype(self.device, precision, emulated) is torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaler and fp16)

    def autocast(self):
        """The step's mixed-precision context (also what validation computes under)."""
        return autocast(self.device, self.precision, self.emulated)

    def backward(
        self,
        model: nn.Module,
        images: torch.Tensor,
        batch: dict,
        *,
        n_images: float | None = None,
        n_masks: float | None = None,
        weight: float = 1.0,
    ) -> LossTerms:
        """Forward under autocast, the loss (normalised by `n_images`/`n_masks` where given) and
        the backward pass of `weight` x its total; gradients add up until `update`."""
        with self.autocast():
            out = model(images)
        terms = self.loss(out, batch, n_images=n_images, n_masks=n_masks)
        total = terms.total if weight == 1.0 else terms.total * weight
        self.scaler.scale(total).backward()
        return terms

    def update(self) -> None:
        """Clip (if asked), step the optimizer (the scaler skips a step with inf/NaN gradients)
        and clear the gradients."""
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, model: nn.Module, images: torch.Tensor, batch: dict) -> LossTerms:
        """One whole step on one batch; its loss terms."""
        terms = self.backward(model, images, batch)
        self.update()
        return terms
