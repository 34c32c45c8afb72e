"""The one training step (`TrainStep`) the trainer and the benchmarks share."""

import pytest
import torch
from torch import nn

from sdfl_lib import runtime
from sdfl_lib.models import ModelOutput
from sdfl_lib.train.loss import PaperLoss
from sdfl_lib.train.step import TrainStep


class Tiny(nn.Module):
    """A 1x1 conv whose map is the mask logit and whose mean is the image logit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mask = self.conv(x)
        return ModelOutput(mask.mean((2, 3)), mask)


def _batch(n: int = 2, size: int = 8) -> tuple[torch.Tensor, dict]:
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(n, 1, size, size, generator=gen) > 0.5).float()
    return torch.rand(n, 3, size, size, generator=gen), {
        "label": torch.ones(n), "mask": mask, "edge": mask, "has_mask": torch.ones(n, dtype=torch.bool)}


def test_a_step_is_forward_loss_backward_update_and_clears_the_gradients():
    torch.manual_seed(0)
    model = Tiny()
    before = model.conv.weight.detach().clone()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.1))
    images, batch = _batch()
    with torch.no_grad():
        expected = PaperLoss()(model(images), batch).total
    terms = step.step(model, images, batch)
    torch.testing.assert_close(terms.total.detach(), expected)
    assert not torch.equal(model.conv.weight, before)
    assert all(p.grad is None for p in model.parameters())
    assert not step.scaler.is_enabled()  # fp32


def test_backward_accumulates_weighted_gradients_until_update():
    torch.manual_seed(0)
    model = Tiny()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.1))
    images, batch = _batch()
    step.backward(model, images, batch)
    once = model.conv.weight.grad.clone()
    step.backward(model, images, batch, weight=2.0)
    torch.testing.assert_close(model.conv.weight.grad, 3 * once)
    step.update()
    assert model.conv.weight.grad is None


def test_grad_clip_bounds_the_update():
    torch.manual_seed(0)
    model = Tiny()
    before = model.conv.weight.detach().clone()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1e-3)
    step.step(model, *_batch())
    moved = (model.conv.weight - before).norm()
    assert 0 < moved <= 1e-3 + 1e-6


def test_fp16_on_a_cpu_without_it_trains_in_float32_unless_emulated(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    opt = torch.optim.SGD(Tiny().parameters(), lr=0.1)
    plain = TrainStep(opt, precision="fp16")
    assert not plain.scaler.is_enabled()
    emulated = TrainStep(opt, precision="fp16", emulated=True)
    assert emulated.scaler.is_enabled()
    with emulated.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float16
    assert not TrainStep(opt, precision="fp16", emulated=True, scaler=False).scaler.is_enabled()
    with pytest.raises(ValueError, match="precision 'half'"):
        TrainStep(opt, precision="half")
