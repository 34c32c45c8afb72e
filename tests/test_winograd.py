"""Winograd F(4x4, 3x3) training convolutions: exact in float64, float32-close to PyTorch's,
used only where the rule says they pay, and invisible to checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdfl_lib.bench import winograd as winograd_bench
from sdfl_lib.models import build_model
from sdfl_lib.models import winograd as W
from sdfl_lib.train.loss import PaperLoss


def _grads(fn, x, w, b, grad):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    y = fn(x, w, b)
    inputs = (x, w) if b is None else (x, w, b)
    return (y, *torch.autograd.grad(y, inputs, grad))


@pytest.mark.parametrize(
    "shape, out, bias, layout",
    [((2, 8, 16, 16), 5, True, torch.contiguous_format), ((1, 3, 13, 9), 4, False, torch.contiguous_format),
     ((3, 6, 4, 7), 2, True, torch.contiguous_format), ((1, 2, 1, 1), 3, True, torch.contiguous_format),
     ((2, 8, 13, 10), 5, True, torch.channels_last)],
)  # fmt: skip
def test_it_is_the_same_convolution_exactly_in_float64(shape, out, bias, layout):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=layout)
    w = torch.randn(out, shape[1], 3, 3, dtype=torch.float64)
    b = torch.randn(out, dtype=torch.float64) if bias else None
    grad = torch.randn(shape[0], out, *shape[2:], dtype=torch.float64)
    grad = grad.contiguous(memory_format=layout)
    ours = _grads(W.winograd_conv2d, x, w, b, grad)
    ref = _grads(lambda *a: F.conv2d(*a, padding=1), x, w, b, grad)
    for a, r in zip(ours, ref, strict=True):  # output, then the gradients of x, w (and b)
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_float32_stays_within_rounding_of_the_direct_convolution():
    torch.manual_seed(0)
    x = torch.rand(2, 128, 30, 34)
    w = torch.randn(160, 128, 3, 3) / (9 * 128) ** 0.5
    b = torch.randn(160)
    grad = torch.randn(2, 160, 30, 34)
    ours = _grads(W.winograd_conv2d, x, w, b, grad)
    ref = _grads(lambda *a: F.conv2d(*a, padding=1), x, w, b, grad)
    for a, r in zip(ours, ref, strict=True):
        assert ((a - r).abs().max() / r.abs().max()).item() < 1e-4
    with pytest.raises(ValueError, match="3x3 kernel"):
        W.winograd_conv2d(x, torch.randn(4, 128, 5, 5))


def test_the_rule_follows_the_measured_costs():
    assert W.pays(2048, 512, 256, "AVX512") and W.pays(2048, 512, 256, "AVX2")  # fusion C2
    assert not W.pays(32, 4096, 2048, "AVX2")  # fusion C5: the weight transform dominates
    assert W.pays(128, 2048, 1024, "AVX2") and not W.pays(128, 2048, 1024, "AVX512")  # C4
    assert not W.pays(8192, 64, 128, "AVX2")  # the stem: too few channels
    assert not W.pays(32, 256, 256, "AVX2")  # too few tiles


def _conv_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = W.winograd_conv2d

    def counted(x, weight, bias=None):
        calls.append(x.shape[0])
        return real(x, weight, bias)

    monkeypatch.setattr(W, "winograd_conv2d", counted)
    return calls


def test_a_switched_convolution_uses_it_only_where_it_applies(monkeypatch):
    calls = _conv_calls(monkeypatch)
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3, padding=1)
    assert W.use_winograd(conv) == 1 and type(conv) is W.WinogradConv2d
    big, small = torch.rand(2, 128, 32, 32), torch.rand(1, 128, 8, 8)
    ref = F.conv2d(big, conv.weight, conv.bias, padding=1)
    out = conv.train()(big)  # 128 tiles, 128 channels: it pays
    assert calls == [2] and torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert not torch.equal(out, ref)  # computed another way, not passed through
    # Plain convolution: too few tiles, evaluation, no gradient, autocast, float64.
    assert torch.equal(conv(small), F.conv2d(small, conv.weight, conv.bias, padding=1))
    assert torch.equal(conv.eval()(big), ref)
    with torch.no_grad():
        assert torch.equal(conv.train()(big), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(big)
    conv.double()(big.double())
    assert calls == [2]
    assert W.use_winograd(conv, enabled=False) == 1 and type(conv) is nn.Conv2d


def test_a_model_trains_the_same_with_it_and_keeps_its_checkpoint_keys(monkeypatch):
    calls = _conv_calls(monkeypatch)

    def step(switch: bool):
        torch.manual_seed(0)
        model = build_model("ours", image_size=256, backbone="resnet18").train()
        keys = list(model.state_dict())
        switched = W.use_winograd(model, switch)
        torch.manual_seed(1)
        x = torch.rand(4, 3, 256, 256)
        batch = {"label": torch.tensor([0.0, 1.0, 1.0, 0.0]),
                 "mask": (torch.rand(4, 1, 256, 256) > 0.7).float(), "has_mask": [1, 1, 1, 1]}
        loss = PaperLoss()(model(x), batch).total
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return keys, switched, loss.item(), grads, list(model.state_dict())

    keys, switched, loss, grads, keys_after = step(True)
    assert switched > 0 and keys == keys_after
    assert len(calls) >= 4  # fusion and ResNet layer2 convs at 32x32, batch 4
    done = len(calls)
    keys0, _, loss0, grads0, _ = step(False)
    assert len(calls) == done  # switched back: the direct run adds none
    assert keys0 == keys and abs(loss - loss0) < 1e-5 * max(1.0, abs(loss0))
    # float32 rounding, carried through the batch norms: each tensor's gradient as a whole (the
    # float64 test shows the convolution itself is exact). The fusion biases feed batch norms
    # only, so their true gradient is zero and what is there is rounding (~1e-10).
    for name, g in grads0.items():
        assert (grads[name] - g).norm() <= 1e-2 * g.norm() + 1e-7, name


def test_the_benchmark_prints_every_convolution_and_the_rules_total(capsys):
    argv = ["--backbone", "resnet18", "--size", "64", "--batch", "1", "--iters", "1"]
    assert winograd_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "instruction sets:" in out and "PyTorch kernels:" in out
    assert "fusion.1" in out and "as trained (the rule's choice)" in out
    with pytest.raises(SystemExit) as stop:
        winograd_bench.main(["--size", "0"])
    assert stop.value.code == 2
