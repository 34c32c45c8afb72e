"""Model parts: registry, BayarConv constraint, timm backbones, ImageNet weights, summary table."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
import torch

from sdfl_lib.models import (
    PretrainedWeightsUnavailable,
    build_encoder,
    build_model,
    list_models,
    summarize,
)
from sdfl_lib.models import encoder as encoder_mod
from sdfl_lib.models.bayar import BayarConv2d


def test_registry_lists_and_rejects_unknown_names():
    assert {"ours", "upernet", "mvssnet"} <= set(list_models())
    with pytest.raises(ValueError, match=r"Unknown model 'uppernet'.*ours.*upernet.*'upernet'"):
        build_model("uppernet")


def test_bayar_constraint_is_applied_before_each_use():
    conv = BayarConv2d()
    with torch.no_grad():
        conv.kernel.mul_(3.0)  # as after an optimiser step: taps no longer sum to 1
    x = torch.rand(2, 1, 9, 9)
    y = conv(x)
    assert y.shape == (2, 3, 9, 9)
    weight = conv.constrained_weight()
    assert weight.shape == (3, 1, 5, 5)
    assert torch.all(weight[:, 0, 2, 2] == -1)
    off_centre = weight.flatten(1).sum(1) + 1  # all taps but the centre
    torch.testing.assert_close(off_centre, torch.ones(3))
    torch.testing.assert_close(conv.kernel.sum(-1), torch.ones(1, 3))  # projected in place
    # A constant image has no residual: the filter predicts it exactly.
    const = conv(torch.full((1, 1, 9, 9), 0.7))[..., 2:-2, 2:-2]
    torch.testing.assert_close(const, torch.zeros_like(const), atol=1e-6, rtol=0)
    y.sum().backward()
    assert conv.kernel.grad is not None and torch.isfinite(conv.kernel.grad).all()


@pytest.fixture(scope="module")
def small_ours():
    torch.manual_seed(0)
    return build_model("ours", image_size=64, backbone="resnet18")


def test_timm_backbone_adapts_channels_and_trains(small_ours):
    model = small_ours.train()
    assert model.out_channels == [64, 128, 256, 512]
    assert [c.weight.shape[:2] for c in model.fusion] == [
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
    ]
    assert model.ppm.branches[0][0].in_channels == 512
    x = torch.rand(2, 3, 70, 40)
    out = model(x)
    assert out.image_logit.shape == (2, 1) and out.mask_logit.shape == (2, 1, 70, 40)
    (out.image_logit.sum() + out.mask_logit.mean()).backward()
    with pytest.raises(TypeError, match="float batch in"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 1, 32, 32))
    assert model.bayar.kernel.grad is not None
    assert model.noise_encoder.body.conv1.weight.grad is not None
    assert model.fpn.output[0][0].weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_summary_counts_every_part(small_ours):
    table = summarize(small_ours, image_size=64)
    parts = table.set_index("part")
    assert list(table["part"]) == [
        "rgb_encoder",
        "bayar",
        "noise_encoder",
        "fusion",
        "ppm",
        "fpn",
        "detection_head",
        "localization_head",
        "total",
    ]
    assert parts.loc["total", "params"] == sum(p.numel() for p in small_ours.parameters())
    assert parts.drop("total")["params"].sum() == parts.loc["total", "params"]
    assert parts.drop("total")["flops"].sum() == parts.loc["total", "flops"]
    # Fusion: a 3x3 conv 2C -> C per level, 2 FLOPs per multiply-add, at 64 / stride squared.
    fusion = sum(
        2 * (2 * c) * c * 9 * (64 // s) ** 2
        for c, s in zip([64, 128, 256, 512], [4, 8, 16, 32], strict=True)
    )
    assert parts.loc["fusion", "flops"] == fusion
    assert (
        parts.loc["bayar", "params"] == 72 and parts.loc["bayar", "flops"] == 2 * 3 * 25 * 64 * 64
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SDFL_OFFLINE", raising=False)
    return tmp_path / "cache" / "pretrained"


def test_pretrained_offline_names_file_and_folder(cache, monkeypatch, closed_port):
    url = f"http://127.0.0.1:{closed_port}/resnet50-imagenet.pth"
    monkeypatch.setitem(encoder_mod.CSAIL_RESNET50, "url", url)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        build_encoder("resnet50", pretrained=True)
    msg = str(err.value)
    assert "'resnet50-imagenet.pth'" in msg and str(cache / "resnet50-imagenet.pth") in msg
    assert url in msg and "pretrained=False" in msg
    assert not (cache / "resnet50-imagenet.pth").exists()  # no half-written file is left
    monkeypatch.setenv("SDFL_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsUnavailable, match="SDFL_OFFLINE"):
        build_encoder("resnet18", pretrained=True)


def test_pretrained_download_from_local_server_then_cache(cache, tmp_path, monkeypatch):
    """The CSAIL file (with its classifier) is fetched over HTTP once, then read from the cache."""
    torch.manual_seed(3)
    source = build_encoder("resnet50")
    state = dict(
        source.state_dict(), **{"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    )
    served = tmp_path / "served"
    served.mkdir()
    torch.save(state, served / "resnet50-imagenet.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/resnet50-imagenet.pth"
        monkeypatch.setitem(encoder_mod.CSAIL_RESNET50, "url", url)
        net = build_encoder("resnet50", pretrained=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (cache / "resnet50-imagenet.pth").is_file()
    torch.testing.assert_close(net.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    torch.testing.assert_close(net.bn3.running_var, source.bn3.running_var)
    monkeypatch.setenv("SDFL_OFFLINE", "1")  # now served from the cache alone
    again = build_encoder("resnet50", pretrained=True)
    torch.testing.assert_close(again.conv1.weight, source.conv1.weight)


def test_timm_pretrained_from_local_file(cache, monkeypatch):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(4)
    reference = timm.create_model("resnet18")
    file, url = encoder_mod.timm_weight_source("resnet18")
    assert url.startswith("https://huggingface.co/timm/")
    cache.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(cache / file))
    monkeypatch.setenv("SDFL_OFFLINE", "1")
    enc = build_encoder("resnet18", pretrained=True)
    assert enc.out_channels == [64, 128, 256, 512]
    torch.testing.assert_close(enc.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet51'"):
        build_encoder("resnet51")


def test_bench_model_prints_figures(capsys):
    from sdfl_lib.bench.model import main

    assert (
        main("--model upernet --backbone resnet18 --size 32 --batch 2 --iters 1 --warmup 0".split())
        == 0
    )
    out = capsys.readouterr().out
    assert "model upernet (resnet18), 32x32, batch 2, fp32" in out
    assert "CPU native bf16:" in out
    assert "inference:" in out and "training:" in out and "img/s" in out and "MiB" in out


def test_bench_skips_low_precision_the_cpu_lacks(monkeypatch):
    from sdfl_lib.bench import model as bench

    monkeypatch.setattr(bench, "cpu_native", lambda dtype="bf16": False)
    r = bench.bench_model("ours", size=64, batch=1, dtype="bf16", device="cpu")
    assert r["skipped"] and r["fp32_gflops"] > 0 and r["bf16_gflops"] > 0
    assert "not native on this CPU" in bench.format_result(r)


def test_registry_records_the_spec_of_every_constructor():
    from torch import nn

    from sdfl_lib.models.base import register_model

    @register_model
    def spec_probe(image_size=64, width=3, **kw):
        return nn.Identity()

    model = spec_probe(32, depth=2)
    assert model.sdfl_spec == {"name": "spec_probe", "image_size": 32, "width": 3, "depth": 2}
    assert build_model("spec_probe", backbone="x").sdfl_spec["backbone"] == "x"
