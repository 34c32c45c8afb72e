"""The inference path of predict and evaluate: backends, the cached ONNX export, int8's guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sdfl_lib.cli import main as sdfl
from sdfl_lib.inference import (
    InferenceUnavailable,
    OnnxModel,
    export_path,
    inference_model,
    resolve_backend,
)
from sdfl_lib.inference import backends as inf
from sdfl_lib.models import build_model, make_checkpoint
from sdfl_lib.paths import cache_dir

SIZE = 64

pytestmark = pytest.mark.skipif(not inf.onnx_available(), reason="pip install 'sdfl[onnx]'")


def _small(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("ours", image_size=SIZE, backbone="resnet18").eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is tested
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small `ours` checkpoint and its ONNX export (made once for the module)."""
    folder = tmp_path_factory.mktemp("ckpt")
    path = folder / "best.pt"
    model = _small()
    torch.save(make_checkpoint(model), path)
    onnx_model = inference_model(model, "onnx", checkpoint=path)
    return path, model, onnx_model


def test_onnx_export_matches_pytorch_at_any_batch_size(checkpoint):
    path, model, onnx_model = checkpoint
    assert isinstance(onnx_model, OnnxModel)
    assert (
        onnx_model.path == export_path(model, SIZE, path) and onnx_model.path.parent == path.parent
    )
    for batch in (1, 3):
        x = torch.rand(batch, 3, SIZE, SIZE)
        with torch.no_grad():
            ref = model(x)
        out = onnx_model(x)
        assert out.mask_logit.shape == (batch, 1, SIZE, SIZE)
        assert torch.allclose(out.mask_logit, ref.mask_logit, atol=1e-4)
        assert torch.allclose(out.image_logit, ref.image_logit, atol=1e-4)
    with pytest.raises(ValueError, match="exported for 64x64"):
        onnx_model(torch.rand(1, 3, 32, 32))
    # The eager model still works after the export traced it (no traced placeholders cached).
    with torch.no_grad():
        model(torch.rand(1, 3, SIZE, SIZE))


def test_export_keeps_its_weights_beside_it_and_not_in_memory(checkpoint):
    import gc
    import weakref

    path, _, onnx_model = checkpoint
    data = onnx_model.path.with_name(onnx_model.path.name + ".data")
    assert data.is_file() and data.stat().st_size > onnx_model.path.stat().st_size
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    # The exporter keeps no reference to the model's weights once the export is written.
    model = _small(3)
    weight = weakref.ref(next(model.parameters()))
    fast = inference_model(model, "onnx", checkpoint=path.with_name("other.pt"))
    del model
    gc.collect()
    assert weight() is None and fast._session is None  # the session comes on first use
    assert fast(torch.rand(1, 3, SIZE, SIZE)).mask_logit.shape == (1, 1, SIZE, SIZE)


def test_auto_says_which_route_and_why_for_this_cpu_family(checkpoint, monkeypatch):
    _, model, _ = checkpoint
    said = []
    monkeypatch.setattr(inf, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert inf.export_pays(32, 512) and not inf.export_pays(31, 512)  # pays sooner on AVX2
    monkeypatch.setattr(inf, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert not inf.export_pays(32, 512)
    assert inference_model(model, "auto", images=10, image_size=SIZE, log=said.append)
    assert said == [
        "backend auto: optimized (not onnx: exporting would take longer than it saves on 10 "
        "image(s) at 64x64 (it pays from ~64 at 512x512 on this AVX-512 CPU (AVX2, AVX-512, "
        "VNNI)))"
    ]
    resolved = inf._auto_choice(model, False, 10**4, SIZE)
    assert resolved[0] == "onnx" and "fastest route per image on this AVX-512 CPU" in resolved[1]


def test_export_is_cached_and_keyed_on_the_weights(checkpoint, capsys):
    path, model, onnx_model = checkpoint
    stamp = onnx_model.path.stat().st_mtime_ns
    again = inference_model(model, "onnx", checkpoint=path)
    assert again.path == onnx_model.path and again.path.stat().st_mtime_ns == stamp
    assert "exporting" not in capsys.readouterr().err
    assert export_path(model, 2 * SIZE, path) != onnx_model.path
    # A changed checkpoint re-exports; in-memory models are keyed on their weights.
    changed = path.with_name("changed.pt")
    torch.save(make_checkpoint(_small(seed=1)), changed)
    assert (
        export_path(model, SIZE, changed).name.split("-")[-1] != onnx_model.path.name.split("-")[-1]
    )
    assert export_path(model, SIZE) != export_path(_small(seed=1), SIZE)
    assert export_path(model, SIZE) == export_path(model, SIZE)
    # A checkpoint named from the weights registry is no file: its export goes to the cache.
    named = export_path(model, SIZE, "table3-5")
    assert named.parent == cache_dir() / "onnx" and named.name.startswith("table3-5.onnx-fp32-")


def test_backend_choice_and_refusals(checkpoint, monkeypatch):
    _, model, _ = checkpoint
    assert resolve_backend(model) == "onnx"  # CPU, the paper's network, packages installed
    assert resolve_backend(build_model("ela", image_size=32)) == "eager"
    optimized = inference_model(model, "optimized")
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(optimized(x).mask_logit, model(x).mask_logit, atol=1e-4)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(model, "tensorrt")
    with pytest.raises(InferenceUnavailable, match="int8 runs only with the onnx backend"):
        inference_model(model, "optimized", int8=True)
    with pytest.raises(InferenceUnavailable, match="runs ours, upernet, not ela"):
        inference_model(build_model("ela", image_size=32), "onnx")
    monkeypatch.setattr(inf, "onnx_available", lambda: False)
    assert resolve_backend(model) == "optimized"
    with pytest.raises(InferenceUnavailable, match=r"pip install 'sdfl\[onnx\]'"):
        inference_model(model, "onnx")


def test_int8_is_checked_against_fp32_and_refused_when_it_strays(checkpoint, monkeypatch, capsys):
    path, model, onnx_model = checkpoint
    calibration = torch.rand(4, 3, SIZE, SIZE)
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 0.0)
    quant = inference_model(model, "onnx", int8=True, checkpoint=path, calibration=calibration)
    assert "-int8" in quant.path.name and quant.path.parent == path.parent
    assert "masks agree with fp32" in capsys.readouterr().err
    assert 0 <= quant.int8_agreement <= 1
    x = torch.rand(2, 3, SIZE, SIZE)
    # int8 is not fp32: close on the logits' scale, not equal
    assert (quant(x).mask_logit - onnx_model(x).mask_logit).abs().mean() < 0.5
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 1.01)  # no quantized model can pass this
    with pytest.raises(InferenceUnavailable, match="int8 refused"):
        inference_model(model, "onnx", int8=True, checkpoint=path, calibration=calibration)
    with pytest.raises(InferenceUnavailable, match="needs calibration images"):
        inference_model(model, "onnx", int8=True, checkpoint=path)


def test_int8_keeps_stems_and_classifiers_in_fp32_and_records_its_recipe(
    checkpoint, monkeypatch, capsys
):
    import onnx

    path, model, onnx_model = checkpoint
    # What should stay fp32, counted on the PyTorch side: convolutions with outputs at half the
    # input size or more (the BayarConv filter, the stems), and the one-channel classifiers.
    expected = []

    def hook(module, args, out):
        if out.shape[-2] >= SIZE // 2 or out.shape[1] == 1:
            expected.append(module)

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    convs += [m for m in model.modules() if type(m).__name__ == "BayarConv2d"]
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.no_grad():
        model(torch.rand(1, 3, SIZE, SIZE))
    for h in handles:
        h.remove()
    assert len(inf.fp32_convolutions(onnx_model.path, SIZE)) == len(expected) >= 4
    calibration = torch.rand(3, 3, SIZE, SIZE)
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 0.0)
    quant = inference_model(model, "onnx", int8=True, checkpoint=path, calibration=calibration)
    graph = onnx.load(str(quant.path)).graph
    record = json.loads(quant.path.with_suffix(".json").read_text())
    # Named as in the graph quantization starts from (ONNX Runtime's pre-processing renames).
    kept = record["fp32_nodes"]
    assert len(kept) == len(expected)
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    by_name = {n.name: n for n in graph.node if n.op_type == "Conv"}
    for name in kept:  # kept nodes read fp32 weights; every other Conv reads dequantized ones
        assert made_by.get(by_name[name].input[1]) != "DequantizeLinear"
    others = [n for n in by_name.values() if n.name not in kept]
    assert others and all(made_by.get(n.input[1]) == "DequantizeLinear" for n in others)
    assert record["calibration_images"] == 3
    assert record["reduce_range"] == inf.int8_reduce_range()
    assert 0 <= record["decided_agreement"] <= 1 and 0 <= record["mask_agreement"] <= 1
    assert f"{len(kept)} convolution(s) kept in fp32" in capsys.readouterr().err
    # A second load reads the agreement from the record instead of running both models again.
    monkeypatch.setattr(inf, "mask_agreement", lambda *a, **k: pytest.fail("recomputed"))
    again = inference_model(model, "onnx", int8=True, checkpoint=path, calibration=calibration)
    assert again.path == quant.path and again.int8_agreement == record["decided_agreement"]


def test_int8_weights_use_7_bits_only_without_vnni(checkpoint, monkeypatch):
    monkeypatch.setattr(inf, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert inf.int8_reduce_range()
    monkeypatch.setattr(inf, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert not inf.int8_reduce_range()
    monkeypatch.setattr(inf, "cpu_flags", lambda: frozenset({"avx_vnni"}))
    assert not inf.int8_reduce_range()


def test_mask_agreement_can_count_only_decided_pixels():
    from sdfl_lib.models import ModelOutput

    logit = torch.tensor([0.0, 4.0, -4.0, 0.1]).view(1, 1, 2, 2)
    flipped = torch.tensor([0.0, 4.0, -4.0, -0.1]).view(1, 1, 2, 2)  # only the 0.525 pixel
    a, b = ModelOutput(torch.zeros(1), logit), ModelOutput(torch.zeros(1), flipped)
    assert inf.mask_agreement(a, b) == 0.75
    assert inf.mask_agreement(a, b, margin=0.1) == 1.0
    assert inf.mask_agreement(a, a, margin=0.6) == 1.0  # no decided pixel: nothing disagrees


def test_cli_predict_and_evaluate_with_the_onnx_backend(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    rng = np.random.default_rng(0)
    image = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), np.uint8)).save(image)
    base = ["--checkpoint", str(path)]
    assert (
        sdfl(["predict", str(image), *base, "--backend", "eager", "--out", str(tmp_path / "e")])
        == 0
    )
    assert (
        sdfl(["predict", str(image), *base, "--backend", "onnx", "--out", str(tmp_path / "o")]) == 0
    )
    eager = np.asarray(Image.open(tmp_path / "e" / "a_map.png"), np.int16)
    onnx = np.asarray(Image.open(tmp_path / "o" / "a_map.png"), np.int16)
    assert eager.shape == (50, 70) and np.abs(eager - onnx).max() <= 1
    assert json.loads((tmp_path / "o" / "a.json").read_text())["score"] == pytest.approx(
        json.loads((tmp_path / "e" / "a.json").read_text())["score"], abs=1e-5
    )
    code = sdfl(
        ["predict", str(image), *base, "--backend", "eager", "--int8", "--out", str(tmp_path / "x")]
    )
    assert code == 1 and "int8 runs only with the onnx backend" in capsys.readouterr().err

    mask = tmp_path / "a_mask.png"
    Image.fromarray((rng.random((50, 70)) > 0.7).astype(np.uint8) * 255).save(mask)
    manifest = tmp_path / "m.csv"
    authentic = tmp_path / "b.png"  # one image may not be listed as both authentic and tampered
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), np.uint8)).save(authentic)
    manifest.write_text(f"image,mask,edge,label,source\n{image},{mask},,1,t\n{authentic},,,0,t\n")
    out = tmp_path / "ev"
    argv = ["evaluate", *base, "--manifest", str(manifest), "--out", str(out), "--no-figures"]
    assert sdfl([*argv, "--backend", "onnx", "--workers", "0"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "onnx" and config["int8"] is False
    # int8 rows are never mixed into an fp32 run's predictions on resume
    from sdfl_lib.evaluate import evaluate

    with pytest.raises(ValueError, match="int8"):
        evaluate(str(path), manifest, out, workers=0, figures=False, int8=True, progress=False)


def test_auto_skips_an_export_that_would_not_pay(checkpoint, tmp_path, capsys, monkeypatch):
    from sdfl_lib.evaluate import evaluate

    path, model, _ = checkpoint
    assert inf.export_pays(None, SIZE)  # unknown work: the fastest route per image
    assert inf.export_pays(64, 512) and not inf.export_pays(63, 512)
    assert not inf.export_pays(60, SIZE) and inf.export_pays(64 * 64, SIZE)
    assert resolve_backend(model, images=10, image_size=SIZE) == "optimized"
    assert resolve_backend(model, int8=True, images=1, image_size=SIZE) == "onnx"
    rng = np.random.default_rng(1)
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), np.uint8)).save(image)
    Image.fromarray((rng.random((50, 70)) > 0.7).astype(np.uint8) * 255).save(mask)
    assert sdfl(["predict", str(image), "--checkpoint", str(path), "--out", str(tmp_path / "p")]) == 0
    assert "backend auto: optimized (not onnx: exporting would take longer" in capsys.readouterr().err
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,mask,label,source\n{image},{mask},1,t\n")
    kw = {"workers": 0, "figures": False, "progress": False}
    evaluate(str(path), manifest, tmp_path / "few", **kw)
    assert json.loads((tmp_path / "few" / "config.json").read_text())["backend"] == "optimized"
    # As if the run were long:
    monkeypatch.setattr(inf, "ONNX_MIN_IMAGES", dict.fromkeys(inf.ONNX_MIN_IMAGES, 0.01))
    evaluate(str(path), manifest, tmp_path / "many", **kw)
    assert json.loads((tmp_path / "many" / "config.json").read_text())["backend"] == "onnx"


def test_cli_predict_and_evaluate_with_int8(checkpoint, tmp_path, capsys, monkeypatch):
    path, _, _ = checkpoint
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 0.0)  # random weights: speed, not accuracy
    rng = np.random.default_rng(2)
    images = []
    for i in range(3):
        images.append(tmp_path / f"in/{i}.png")
        images[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 52, 3), np.uint8)).save(images[-1])
    base = ["--checkpoint", str(path), "--int8", "--calibration", "2"]
    assert sdfl(["predict", str(tmp_path / "in"), *base, "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "quantizing to int8 on 2 calibration image(s)" in err and "kept in fp32" in err
    assert sorted(p.name for p in (tmp_path / "p").glob("*_map.png")) == [
        "0_map.png", "1_map.png", "2_map.png"
    ]
    mask = tmp_path / "m.png"
    Image.fromarray((rng.random((40, 52)) > 0.7).astype(np.uint8) * 255).save(mask)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,mask,label,source\n"
        f"{images[0]},{mask},1,t\n{images[1]},,0,t\n{images[2]},,0,t\n"
    )
    out = tmp_path / "ev"
    argv = ["evaluate", *base, "--manifest", str(manifest), "--out", str(out), "--no-figures"]
    assert sdfl([*argv, "--workers", "0"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "onnx" and config["int8"] is True
    assert len(list(path.parent.glob("best.onnx-int8*.json"))) >= 1  # the recipe, beside it


@pytest.mark.slow
def test_compile_backend_matches_the_model():
    torch.manual_seed(0)
    model = build_model("upernet", image_size=32, backbone="resnet18").eval()
    compiled = inference_model(model, "compile")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = compiled(x)
    assert torch.allclose(out.mask_logit, ref.mask_logit, atol=1e-4)
    assert torch.allclose(out.image_logit, ref.image_logit, atol=1e-4)
    with torch.no_grad():  # the eager model is untouched by the compiled copy's tracing
        assert torch.equal(model(x).mask_logit, ref.mask_logit)


def test_cli_predict_video_with_int8_calibrates_on_its_frames(checkpoint, tmp_path, capsys, monkeypatch):
    import cv2
    import pandas as pd

    path, _, _ = checkpoint
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 0.0)  # random weights: speed, not accuracy
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (52, 40))
    for frame in np.random.default_rng(3).integers(0, 255, (10, 40, 52, 3), np.uint8):
        writer.write(frame)
    writer.release()
    argv = ["predict", str(clip), "--checkpoint", str(path), "--int8", "--calibration", "3",
            "--every", "2", "--out", str(tmp_path / "v")]  # fmt: skip
    assert sdfl(argv) == 0
    assert "quantizing to int8 on 3 calibration image(s)" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "v" / "frames.csv")["frame"].tolist() == [0, 2, 4, 6, 8]


def test_int8_ranges_and_model_are_onnx_runtimes_own(checkpoint, tmp_path):
    """The ranges computed image by image equal ONNX Runtime's MinMax calibrator's on the same
    images, and the int8 model made from them equals `quantize_static` calibrating itself."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sdfl_lib.inference.calibration import minmax_ranges

    _, _, onnx_model = checkpoint
    images = torch.rand(3, 3, SIZE, SIZE)
    images[1] *= 4  # ranges that grow from one image to the next

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(images.split(1))

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {"image": x.numpy()}

    pre = tmp_path / "pre.onnx"
    quant_pre_process(
        str(onnx_model.path), str(pre), skip_symbolic_shape=True, save_as_external_data=True,
        all_tensors_to_one_file=True, external_data_location="pre.onnx.data",
    )  # fmt: skip
    ours = minmax_ranges(pre, images, "image")
    assert not list(tmp_path.glob("*calibrate*"))  # the augmented model is removed
    calibrator = create_calibrator(
        pre, list(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(tmp_path / "augmented.onnx"),
    )  # fmt: skip
    calibrator.collect_data(Reader())
    theirs = calibrator.compute_data()
    assert sorted(ours.keys()) == sorted(theirs.keys()) and len(ours.keys()) > 50
    for name in theirs.keys():
        for a, b in zip(ours[name].range_value, theirs[name].range_value, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name

    keep = inf.fp32_convolutions(pre, SIZE)
    inf.quantize_int8(onnx_model.path, tmp_path / "ours.onnx", images, keep_fp32=keep)
    quantize_static(
        str(pre), str(tmp_path / "theirs.onnx"), Reader(), quant_format=QuantFormat.QDQ,
        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        reduce_range=inf.int8_reduce_range(), nodes_to_exclude=keep,
    )  # fmt: skip
    a, b = (onnx.load(str(tmp_path / f"{n}.onnx")).graph for n in ("ours", "theirs"))
    assert [n.SerializeToString() for n in a.node] == [n.SerializeToString() for n in b.node]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in b.initializer}
    assert len(a.initializer) == len(weights)
    for t in a.initializer:
        assert np.array_equal(onnx.numpy_helper.to_array(t), weights[t.name]), t.name
