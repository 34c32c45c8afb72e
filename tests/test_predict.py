"""Single-image prediction: any size and format, saved outputs, clear errors, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sdfl_lib.cli import main as sdfl
from sdfl_lib.data import ImageReadError
from sdfl_lib.inference import prepare_input, restore_map
from sdfl_lib.models import ModelOutput
from sdfl_lib.predict import predict


class Bright(nn.Module):
    """Probability = brightness; image score = mean brightness. Built for 16x16 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.sdfl_spec = {"name": "bright", "image_size": 16}
        self.sizes: list = []

    def forward(self, x: torch.Tensor) -> ModelOutput:
        self.sizes.append(tuple(x.shape[-2:]))
        p = x.mean(1, keepdim=True).clamp(1e-4, 1 - 1e-4)
        logit = torch.log(p / (1 - p))
        score = p.flatten(1).mean(1, keepdim=True)
        return ModelOutput(image_logit=torch.log(score / (1 - score)), mask_logit=logit)


def test_predict_any_size_and_format_map_back_at_image_size(tmp_path):
    image = np.zeros((37, 53), np.uint16)
    image[:, 30:] = 60000  # a 16-bit grey PNG, bright on the right
    Image.fromarray(image).save(tmp_path / "g16.png")
    model = Bright()
    result = predict(tmp_path / "g16.png", model, threshold=0.3)
    assert model.sizes == [(16, 16)]  # resized to the model's own input size
    assert result.prob_map.shape == (37, 53) and result.prob_map.dtype == np.float32
    assert result.prob_map[:, :25].max() < 0.05 and result.prob_map[:, 35:].min() > 0.9
    assert result.decision == "tampered" and result.score >= 0.3
    d = result.to_dict()
    assert d["height"] == 37 and d["width"] == 53 and d["image"].endswith("g16.png")
    paths = result.save(tmp_path / "out", "g16")
    assert Image.open(paths["map"]).size == (53, 37) and Image.open(paths["map"]).mode == "L"
    assert Image.open(paths["overlay"]).mode == "RGB"
    assert json.loads(paths["json"].read_text())["decision"] == "tampered"
    # An array works too, with the size given explicitly; a high threshold flips the decision.
    rgb = np.full((20, 10, 3), 40, np.uint8)
    r = predict(rgb, model, image_size=24, threshold=0.9)
    assert (
        model.sizes[-1] == (24, 24) and r.decision == "authentic" and r.prob_map.shape == (20, 10)
    )


def test_prepare_and_restore_round_trip():
    x = prepare_input(np.full((5, 7, 3), 255, np.uint8), 8)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and float(x.max()) == 1.0
    m = restore_map(torch.full((1, 8, 8), 0.25), (5, 7))
    assert m.shape == (5, 7) and torch.allclose(m, torch.tensor(0.25))


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        predict(bad, Bright())
    with pytest.raises(ImageReadError, match="not found"):
        predict(tmp_path / "missing.png", Bright())


def test_cli_predict_folder_keeps_structure_and_reports_bad_files(tmp_path, capsys):
    from sdfl_lib.models import build_model, make_checkpoint

    ckpt = tmp_path / "ela.pt"
    torch.save(make_checkpoint(build_model("ela", image_size=32)), ckpt)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).save(
        src / "a.jpg"
    )
    Image.fromarray(np.zeros((12, 9, 3), np.uint8)).save(src / "sub" / "b.tif")
    (src / "sub" / "c.png").write_text("nope")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "sub" / "b.png")  # same stem as b.tif
    code = sdfl(["predict", str(src), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 3 and "c.png" in err and "1 of 4" in err
    for name in ("a_map.png", "a_overlay.png", "a.json", "sub/b.tif_map.png", "sub/b.png.json"):
        assert (tmp_path / "o" / name).is_file()
    assert Image.open(tmp_path / "o" / "sub" / "b.tif_map.png").size == (9, 12)
    assert (
        sdfl(["predict", str(src / "a.jpg"), "--method", "noise", "--out", str(tmp_path / "p")])
        == 0
    )
    assert json.loads((tmp_path / "p" / "a.json").read_text())["decision"] in (
        "tampered",
        "authentic",
    )
