"""Precise RoI Pooling: reference arrays, gradients, the kernels' math on the CPU, CUDA build and run."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sdfl_lib.cuda import PrRoIPool2D, prroi_pool2d, prroi_pool_whole
from sdfl_lib.cuda import extension as ext_mod
from sdfl_lib.cuda import prroi_pool as dispatch_mod

CUDA_DIR = Path(ext_mod.__file__).resolve().parent


@pytest.fixture(scope="module")
def ref(shared: Path) -> dict[str, np.ndarray]:
    with np.load(shared / "reference" / "prroi_reference.npz") as data:
        return {k: data[k] for k in data.files}


def _random_rois(n_img: int, h: int, w: int, k: int, gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """ROIs in input coordinates, some reaching past the map and one of zero width."""
    b = torch.randint(0, n_img, (k, 1), generator=gen).double()
    xy0 = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) * 1.2 - 1.0
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([w, h]) * 0.9 + 0.3
    rois = torch.cat([b, xy0, xy0 + wh], 1) / torch.tensor([1.0, scale, scale, scale, scale])
    rois[0, 3] = rois[0, 1]  # zero-width ROI: all bins give 0
    return rois


# --- the exact PyTorch path --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 6])
def test_reference_arrays(ref, size):
    feats, rois = torch.from_numpy(ref["features"]), torch.from_numpy(ref["rois"])
    out = prroi_pool2d(feats, rois, size, size, 1.0)
    assert out.dtype == torch.float64 and out.shape == ref[f"pooled_{size}"].shape
    np.testing.assert_allclose(out.numpy(), ref[f"pooled_{size}"], rtol=0, atol=1e-9)
    # The whole-map ROIs (rows 0 and 1) through the PPM's fast path.
    assert np.allclose(ref["rois"][:2, 1:], [[0, 0, 9, 7]] * 2)
    np.testing.assert_allclose(prroi_pool_whole(feats, size).numpy(), ref[f"pooled_{size}"][:2], rtol=0, atol=1e-9)


def test_reference_scale_half(ref):
    feats, rois = torch.from_numpy(ref["features"]), torch.from_numpy(ref["rois"]).clone()
    rois[:, 1:] *= 2
    out = PrRoIPool2D(2, 3, spatial_scale=0.5)(feats, rois)
    np.testing.assert_allclose(out.numpy(), ref["pooled_2x3_scale_half"], rtol=0, atol=1e-9)


def test_definition_by_quadrature():
    """Independent check: fine midpoint quadrature of the bilinear interpolant over a bin."""
    gen = torch.Generator().manual_seed(1)
    f = torch.rand(1, 1, 4, 5, generator=gen, dtype=torch.float64)
    x0, y0, x1, y1 = -0.7, 0.4, 4.6, 3.9  # reaches past the map on three sides
    m = 2000
    xs = x0 + (torch.arange(m, dtype=torch.float64) + 0.5) * (x1 - x0) / m
    ys = y0 + (torch.arange(m, dtype=torch.float64) + 0.5) * (y1 - y0) / m
    hat_x = (1 - (xs[:, None] - torch.arange(5)).abs()).clamp(min=0)  # (m, W)
    hat_y = (1 - (ys[:, None] - torch.arange(4)).abs()).clamp(min=0)  # (m, H)
    expected = (hat_y @ f[0, 0] @ hat_x.t()).mean()
    got = prroi_pool2d(f, torch.tensor([[0.0, x0, y0, x1, y1]], dtype=torch.float64), 1, 1)
    assert abs(got.item() - expected.item()) < 1e-6
    # Sampling the interpolant instead (RoIAlign-like) is measurably different.
    assert abs(got.item() - float(torch.nn.functional.adaptive_avg_pool2d(f, 1))) > 1e-3


def test_whole_map_equals_general_path():
    gen = torch.Generator().manual_seed(0)
    for h, w in ((5, 7), (40, 33)):  # a small map (one GEMM) and a large one (separable matmuls)
        f = torch.randn(3, 4, h, w, generator=gen, dtype=torch.float64)
        rois = torch.tensor([[b, 0.0, 0.0, w, h] for b in range(3)], dtype=torch.float64)
        for bins in (1, 2, 3, 6):
            expected = prroi_pool2d(f, rois, bins, bins, 1.0).numpy()
            np.testing.assert_allclose(prroi_pool_whole(f, bins).numpy(), expected, atol=1e-12)
            f_cl = f.contiguous(memory_format=torch.channels_last)
            np.testing.assert_allclose(prroi_pool_whole(f_cl, bins).numpy(), expected, atol=1e-12)


def test_whole_map_dtypes_and_channels_last():
    gen = torch.Generator().manual_seed(0)
    f64 = torch.randn(2, 8, 16, 16, generator=gen, dtype=torch.float64)
    exact = prroi_pool_whole(f64, 6)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
        f = f64.to(dtype).contiguous(memory_format=torch.channels_last)
        out = prroi_pool_whole(f, 6)
        assert out.dtype == dtype and out.shape == (2, 8, 6, 6)
        assert (out.double() - exact).abs().max() < tol
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert prroi_pool_whole(f64.float(), 3).shape == (2, 8, 3, 3)


def test_whole_map_cache_survives_inference_mode():
    """Weights first cached under inference_mode (evaluation) still serve a later training step."""
    f = torch.randn(1, 2, 5, 13, requires_grad=True)
    with torch.inference_mode():
        prroi_pool_whole(f.detach(), 5)
    prroi_pool_whole(f, 5).sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_whole_map_conventions():
    """Pixel centres at 0..L-1, ROI [0, L]: the interpolant is 1 on [0, L-1], decays to 0 at L."""
    from sdfl_lib.cuda.exact import whole_map_matrix

    for length in (1, 4, 16):
        w = whole_map_matrix(length, 1, torch.float64, "cpu")
        assert abs(w.sum().item() - (length - 0.5) / length) < 1e-12
    # A constant map in 3x3 bins of 2 pixels: the last bin [4, 6] holds 1.5 of 2 units of mass.
    out = prroi_pool_whole(torch.ones(1, 1, 6, 6, dtype=torch.float64), 3)[0, 0]
    assert torch.allclose(out[:2, :2], torch.ones(2, 2, dtype=torch.float64))
    assert out[0, 2].item() == pytest.approx(0.75) and out[2, 2].item() == pytest.approx(0.75**2)


def test_float32_general_path_matches_float64():
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    rois = _random_rois(2, 18, 22, 7, gen, scale=0.5)
    exact = prroi_pool2d(f, rois, 3, 2, 0.5)
    out = prroi_pool2d(f.float(), rois.float(), 3, 2, 0.5)
    assert out.dtype == torch.float32
    assert (out.double() - exact).abs().max() < 1e-5
    assert (exact[0] == 0).all()  # the zero-width ROI


def test_gradcheck_features():
    gen = torch.Generator().manual_seed(2)
    f = torch.randn(2, 1, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = _random_rois(2, 4, 5, 4, gen)
    assert torch.autograd.gradcheck(lambda x: prroi_pool2d(x, rois, 2, 3, 1.0), (f,))
    assert torch.autograd.gradcheck(lambda x: prroi_pool_whole(x, 3), (f,))
    assert torch.autograd.gradgradcheck(lambda x: prroi_pool_whole(x, 2), (f,))


def test_gradcheck_roi_coordinates():
    """The PyTorch path also differentiates w.r.t. the ROI coordinates (as the original op does)."""
    gen = torch.Generator().manual_seed(4)
    f = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    coords = torch.tensor([[0.3, 0.45, 4.1, 3.7], [-0.6, 1.2, 2.2, 4.9]], dtype=torch.float64, requires_grad=True)

    def pool(c: torch.Tensor) -> torch.Tensor:
        return prroi_pool2d(f, torch.cat([torch.zeros(2, 1, dtype=torch.float64), c], 1), 2, 2, 1.0)

    assert torch.autograd.gradcheck(pool, (coords,))


def test_bad_inputs_fail_clearly():
    f = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="batch index"):
        prroi_pool2d(f, torch.tensor([[2.0, 0, 0, 1, 1]]), 2, 2)
    with pytest.raises(ValueError, match="batch index"):
        prroi_pool2d(f, torch.tensor([[0.5, 0, 0, 1, 1]]), 2, 2)
    with pytest.raises(ValueError, match="non-finite"):
        prroi_pool2d(f, torch.tensor([[0.0, 0, 0, float("nan"), 1]]), 2, 2)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        prroi_pool2d(f, torch.zeros(3, 4), 2, 2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        prroi_pool2d(f[0], torch.zeros(1, 5), 2, 2)
    with pytest.raises(TypeError, match="floating"):
        prroi_pool2d(f.long(), torch.zeros(1, 5), 2, 2)
    with pytest.raises(ValueError, match="pooled sizes"):
        prroi_pool2d(f, torch.zeros(1, 5), 0, 2)
    with pytest.raises(ValueError, match="spatial_scale"):
        prroi_pool2d(f, torch.zeros(1, 5), 2, 2, 0.0)
    with pytest.raises(ValueError, match="backend"):
        prroi_pool2d(f, torch.zeros(1, 5), 2, 2, backend="gpu")
    with pytest.raises(ValueError, match="bins"):
        prroi_pool_whole(f, 0)
    assert prroi_pool2d(f, torch.zeros(0, 5), 2, 2).shape == (0, 3, 2, 2)


def test_unavailable_kernel_warns_once(monkeypatch):
    def refuse(*args, **kwargs):
        raise ext_mod.ExtensionUnavailable("no toolkit here")

    monkeypatch.setattr(dispatch_mod, "load_extension", refuse)  # where the dispatch calls it
    monkeypatch.setattr(dispatch_mod, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dispatch_mod._cuda_extension() is None
        assert dispatch_mod._cuda_extension() is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "no toolkit here" in messages[0] and "exact PyTorch path" in messages[0]


# --- the kernels' per-element math, compiled as plain C++ ------------------------------------

_DRIVER = r"""
#include <cstdio>
#include <cstring>
#include <vector>
#include "prroi_pool_math.h"

template <typename T> int run() {
  long long N, C, H, W, K, PH, PW; double scale;
  if (std::scanf("%lld %lld %lld %lld %lld %lld %lld %lf", &N, &C, &H, &W, &K, &PH, &PW, &scale) != 8) return 2;
  std::vector<T> f(N * C * H * W), rois(K * 5), g(K * C * PH * PW), grad(N * C * H * W, T(0));
  double v;
  for (auto* vec : {&f, &rois, &g}) for (auto& x : *vec) { if (std::scanf("%lf", &v) != 1) return 3; x = T(v); }
  for (long long i = 0; i < K * C * PH * PW; ++i)
    std::printf("%.17g\n", (double)sdfl_prroi::forward_element<T, T>(i, f.data(), rois.data(), C, H, W, PH, PW, T(scale)));
  for (long long i = 0; i < K * C * PH * PW; ++i)
    sdfl_prroi::backward_element<T>(i, g[i], rois.data(), grad.data(), C, H, W, PH, PW, T(scale),
                                     [](T* p, T x) { *p += x; });
  for (auto x : grad) std::printf("%.17g\n", (double)x);
  return 0;
}
int main(int argc, char** argv) { return argc > 1 && !std::strcmp(argv[1], "float") ? run<float>() : run<double>(); }
"""


@pytest.fixture(scope="module")
def math_driver(tmp_path_factory) -> Path:
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH to build the kernels' math")
    d = tmp_path_factory.mktemp("prroi_math")
    (d / "driver.cpp").write_text(_DRIVER)
    subprocess.run([cxx, "-O1", "-std=c++17", "-I", str(CUDA_DIR), "driver.cpp", "-o", "driver"], cwd=d, check=True)
    return d / "driver"


def _run_driver(driver: Path, precision: str, f, rois, g, ph, pw, scale):
    n, c, h, w = f.shape
    head = f"{n} {c} {h} {w} {rois.shape[0]} {ph} {pw} {scale!r}\n"
    body = "\n".join(repr(float(x)) for t in (f, rois, g) for x in t.flatten().tolist())
    res = subprocess.run([str(driver), precision], input=head + body, capture_output=True, text=True, check=True)
    vals = np.array(res.stdout.split(), dtype=np.float64)
    return vals[: g.numel()].reshape(g.shape), vals[g.numel() :].reshape(f.shape)


def test_kernel_math_reproduces_reference(ref, math_driver):
    feats, rois = torch.from_numpy(ref["features"]), torch.from_numpy(ref["rois"])
    for size in (1, 2, 3, 6):
        g = torch.zeros(5, 3, size, size, dtype=torch.float64)
        out, _ = _run_driver(math_driver, "double", feats, rois, g, size, size, 1.0)
        np.testing.assert_allclose(out, ref[f"pooled_{size}"], rtol=0, atol=1e-9)
        out32, _ = _run_driver(math_driver, "float", feats, rois, g, size, size, 1.0)
        np.testing.assert_allclose(out32, ref[f"pooled_{size}"], rtol=0, atol=1e-5)
    g = torch.zeros(5, 3, 2, 3, dtype=torch.float64)
    out, _ = _run_driver(math_driver, "double", feats, rois * torch.tensor([1.0, 2, 2, 2, 2]), g, 2, 3, 0.5)
    np.testing.assert_allclose(out, ref["pooled_2x3_scale_half"], rtol=0, atol=1e-9)


def test_kernel_math_backward_matches_autograd(math_driver):
    gen = torch.Generator().manual_seed(5)
    f = torch.randn(2, 3, 6, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = _random_rois(2, 12, 16, 6, gen, scale=0.5)
    out = prroi_pool2d(f, rois, 3, 4, 0.5)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, f, g)
    k_out, k_grad = _run_driver(math_driver, "double", f.detach(), rois, g, 3, 4, 0.5)
    np.testing.assert_allclose(k_out, out.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(k_grad, grad.numpy(), rtol=0, atol=1e-9)


# --- the CUDA extension -------------------------------------------------------------------------


@pytest.mark.slow
def test_cuda_extension_compiles():
    """Builds the extension with nvcc and ninja (cached on disk: slow only the first time)."""
    if torch.version.cuda is None:
        pytest.skip(f"this PyTorch ({torch.__version__}) has no CUDA support")
    if ext_mod.find_cuda_home() is None:
        pytest.skip("nvcc / CUDA toolkit not installed")
    arch = None if torch.cuda.is_available() else "9.0"
    ops = ext_mod.load_extension(arch_list=arch)
    assert Path(ops.library).is_file()
    # The registered schemas are what the autograd wrapper calls.
    assert str(ops.forward.default._schema).startswith("sdfl_prroi::forward(Tensor features, Tensor rois")
    assert str(ops.backward.default._schema).startswith("sdfl_prroi::backward(Tensor grad_out, Tensor rois")


def test_missing_toolkit_is_reported(monkeypatch):
    monkeypatch.setattr(ext_mod, "_loaded", {})
    monkeypatch.setattr(ext_mod, "find_cuda_home", lambda: None)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(ext_mod.ToolMissing, match="no CUDA toolkit"):
        ext_mod.load_extension(arch_list="9.0")
    with pytest.raises(ext_mod.ToolMissing, match="no CUDA toolkit"):  # remembered, not retried
        ext_mod.load_extension(arch_list="9.0")
    if not torch.cuda.is_available():
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
        with pytest.raises(ext_mod.ToolMissing, match="no CUDA device to build for"):
            ext_mod.load_extension()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_cuda_kernel_matches_exact_path(dtype, tol):
    gen = torch.Generator().manual_seed(6)
    f64 = torch.randn(3, 5, 13, 17, generator=gen, dtype=torch.float64)
    rois = _random_rois(3, 26, 34, 40, gen, scale=0.5)
    g = torch.randn(40, 5, 3, 4, generator=gen, dtype=torch.float64)
    f_ref = f64.clone().requires_grad_(True)
    out_ref = prroi_pool2d(f_ref, rois, 3, 4, 0.5, backend="torch")
    (grad_ref,) = torch.autograd.grad(out_ref, f_ref, g)
    f = f64.to("cuda", dtype).requires_grad_(True)
    out = prroi_pool2d(f, rois.cuda(), 3, 4, 0.5, backend="cuda")
    (grad,) = torch.autograd.grad(out, f, g.to("cuda", dtype))
    assert out.dtype == dtype and grad.dtype == dtype
    assert (out.double().cpu() - out_ref.detach()).abs().max() < tol
    assert (grad.double().cpu() - grad_ref).abs().max() < tol
    if dtype == torch.float64:
        fd = f64.cuda().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: prroi_pool2d(x, rois[:6].cuda(), 2, 2, 0.5, backend="cuda"), (fd,))


@pytest.mark.slow
def test_gpu_check_model_sections_run_on_cpu(capsys):
    """The GPU check's model sections, run tiny on the CPU so that they cannot rot unseen."""
    pytest.importorskip("sdfl_lib.train.loss")
    from sdfl_lib.bench import gpu_check

    checks = gpu_check.Checks()
    small = {"size": 64, "device": "cpu", "backbone": "resnet18"}
    gpu_check.amp_training(checks, steps=2, batch=2, dtypes=("bf16",), **small)
    gpu_check.eval_throughput(checks, batch=1, iters=1, dtypes=("fp32",), **small)
    gpu_check.paper_speed(checks, batches=(2,), steps=1, **small)
    out = capsys.readouterr().out
    assert "AMP bf16 training, batch 2 at 64" in out and "loss " in out
    assert out.count("eval ours 64") == 1
    assert "an epoch of the paper's 18,678 training images" in out
