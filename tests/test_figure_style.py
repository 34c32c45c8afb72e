"""Every figure the study draws follows the project's style (sdfl_lib.figstyle): at most the
reports' width, no text under 10 pt, legends outside the data, labelled axes; saved at 110 dpi."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from sdfl_lib import figstyle, viz  # noqa: E402
from sdfl_lib.data import explore  # noqa: E402
from sdfl_lib.evaluate import figures  # noqa: E402


def _numeric(labels) -> bool:
    texts = [t.get_text().replace("\u2212", "-").rstrip("%") for t in labels if t.get_text()]
    try:
        return bool(texts) and all(isinstance(float(x), float) for x in texts)
    except ValueError:  # category names
        return False


def style_problems(fig: Figure) -> list[str]:
    """What in `fig` breaks the style (empty: nothing)."""
    fig.canvas.draw()
    problems = []
    width = fig.get_size_inches()[0]
    if width > figstyle.MAX_WIDTH_IN + 0.01:
        problems.append(f"{width:.1f} in wide")
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() < figstyle.MIN_FONT_PT:
            problems.append(f"{text.get_fontsize():.0f} pt: {text.get_text()[:30]!r}")
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible() and ax.has_data():
            if legend.get_window_extent().overlaps(ax.get_window_extent()):
                problems.append(f"legend inside the data of {ax.get_title()!r}")
        if not ax.axison or ax.get_images():
            continue
        for name, label, ticks in (("x", ax.get_xlabel(), ax.get_xticklabels()),
                                   ("y", ax.get_ylabel(), ax.get_yticklabels())):
            if _numeric(ticks) and not label.strip():
                problems.append(f"{name} axis of {ax.get_title()!r} has numbers but no label")
    return problems


def _metrics() -> dict:
    sub = {"count/images": 20, "count/tampered": 10, "count/authentic": 10}
    keys = {"standard/pixel_f1@0.5": 0.6, "standard/pixel_f1@best": 0.7, "paper/pixel_f1": 0.5,
            "standard/image_auc": 0.9, "paper/auc": 0.9}
    robust = {f"jpeg@{q}": {"kind": "jpeg", "level": q, "subsets": {"both": {**sub, **keys}}}
              for q in (90, 70)}
    return {"threshold": 0.5, "subsets": {"both": {**sub, **keys},
                                          "source/synth-splice": {**sub, **keys, "count/authentic": 0}},
            "robustness": robust}


def _checked(fig) -> None:
    problems = style_problems(getattr(fig, "figure", fig))
    plt.close("all")
    assert not problems, problems


@pytest.fixture(autouse=True)
def _style():
    with figstyle.style():
        yield


def test_result_figures(tmp_path) -> None:
    metrics = _metrics()
    out = tmp_path / "eval"
    (out / "figures").mkdir(parents=True)
    for path in (figures.per_type_figure(metrics, out / "figures" / "per_type.png"),
                 figures.robustness_figure(metrics, out)):
        assert Image.open(path).info["dpi"][0] == pytest.approx(figstyle.DPI, abs=1)
    runs = pd.DataFrame({"standard/pixel_f1@0.5": [0.5, 0.3], "standard/image_auc": [0.9, 0.7],
                         "paper/combined_f1": [0.6, None]}, index=["baseline", "other"])
    _checked(viz.compare_runs(runs, reference="baseline"))
    table = pd.DataFrame({"params_M": [20.0, 5.0], "GFLOPs": [1.0, 0.3], "images_per_s": [3.0, 9.0]},
                         index=["resnet18", "mobilenet"])
    _checked(viz.backbone_chart(table))
    metrics_csv = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.3, 0.2], "val_loss": [0.35, 0.25],
                                "train_clf": [0.6, 0.5], "val_clf": [0.7, 0.6], "train_seg": [0.9, 0.8],
                                "val_seg": [0.9, 0.85]})
    _checked(viz.loss_curves(metrics_csv))


def test_backbone_labels_do_not_overlap_when_backbones_cost_and_run_alike() -> None:
    # The demo's measured backbones: three within 4 GFLOPs and 11 images/s of each other.
    table = pd.DataFrame(
        {"params_M": [17.1, 38.6, 164.6, 18.4, 34.7], "GFLOPs": [3.25, 5.69, 19.88, 3.26, 3.62],
         "images_per_s": [66.9, 49.8, 11.9, 57.8, 56.2]},
        index=["tf_efficientnet_lite0", "resnet18", "resnet50", "efficientnet_b0",
               "mobilenetv3_large_100"],
    )  # fmt: skip
    fig = viz.backbone_chart(table)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def test_each_saved_evaluation_figure_keeps_the_style(tmp_path, monkeypatch) -> None:
    saved = []
    real = figstyle.save

    def check_then_save(fig, path):
        saved.append(path.name)
        problems = style_problems(fig)
        assert not problems, (path.name, problems)
        return real(fig, path)

    monkeypatch.setattr(figstyle, "save", check_then_save)
    (tmp_path / "figures").mkdir()
    metrics = _metrics()
    figures.per_type_figure(metrics, tmp_path / "per_type.png")
    figures.robustness_figure(metrics, tmp_path)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"label": [0, 1] * 10, "score": rng.random(20), "pixel": True,
                          "hist_neg": [np.ones(10)] * 20, "hist_pos": [np.arange(10.0)] * 20})
    sel = {"both": np.ones(20, bool), "source/synth-splice": table["label"].eq(1).to_numpy()}
    figures.roc_figure(table, sel, tmp_path / "roc.png")
    figures.histogram_figure(table, sel, 0.5, tmp_path / "h.png")
    figures.confusion_figure(table, sel, 0.5, tmp_path / "c.png")
    assert figures.confusion_figure(table, {"x": sel["source/synth-splice"]}, 0.5, tmp_path / "c2.png") is None
    assert saved == ["per_type.png", "robustness.png", "roc.png", "h.png", "c.png"]


# The style check lists every tick, and for the filter figure matplotlib then compares minor and
# major tick positions with an infinite tolerance (a RuntimeWarning); drawing and saving do not.
@pytest.mark.filterwarnings("ignore:One of rtol or atol is not valid")
def test_data_and_network_figures(tmp_path, shared_data) -> None:
    from sdfl_lib.data.prepare import prepare
    from sdfl_lib.models import build_model, extract_intermediates

    manifest = tmp_path / "casia1.csv"
    prepare("casia1", shared_data / "casia1-sample", manifest, edges=False, verbose=False)
    for fig in (explore.plot_counts(manifest), explore.plot_image_sizes(manifest),
                explore.plot_mask_areas(manifest), explore.plot_examples(manifest, n=4)):
        _checked(fig)
    model = build_model("ours", image_size=64, backbone="resnet18").eval()
    x = torch.rand(1, 3, 64, 64)
    parts = extract_intermediates(model, x)
    _checked(viz.architecture_diagram())
    _checked(viz.show_filters({"untrained": model.bayar.constrained_weight(), "trained": None}))
    _checked(viz.show_maps({k: parts[k] for k in ("noise_residual", "P2", "P3")}, mask=np.eye(64) > 0))
    from sdfl_lib.models import summarize

    _checked(viz.cost_chart(summarize(model, 64).set_index("part")))


def test_typical_and_gallery_figures_outline_the_untouched_image(tmp_path, monkeypatch) -> None:
    import cv2

    out = tmp_path / "eval"
    (out / "maps").mkdir(parents=True)
    (out / "figures").mkdir()
    rows = []
    for i, source in enumerate(["synth-splice", "synth-face"] * 3):
        image = np.full((48, 48, 3), 40 * i, np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        mask[10:30, 10:30] = 255
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
        cv2.imwrite(str(tmp_path / f"{i}m.png"), mask)
        cv2.imwrite(str(out / "maps" / f"{i}.png"), np.roll(mask, i * 3, axis=1))
        rows.append({"image": str(tmp_path / f"{i}.png"), "mask": str(tmp_path / f"{i}m.png"), "label": 1,
                     "pixel": True, "map": f"{i}.png", "source": source, "tp": 400 - 60 * i, "fp": 60 * i,
                     "fn": 60 * i})
    table = pd.DataFrame(rows)
    checked = []
    real = figstyle.save

    def check_then_save(fig, path):
        checked.append(path.name)
        assert not style_problems(fig), style_problems(fig)
        # The first column shows the image as it is: nothing drawn over it.
        first = fig.axes[0]
        assert first.get_images() and not first.collections
        return real(fig, path)

    monkeypatch.setattr(figstyle, "save", check_then_save)
    assert figures.typical_figure(table, out, 0.5).name == "typical.png"
    assert figures.gallery_figure(table, out, 0.5).name == "gallery.png"
    assert checked == ["typical.png", "gallery.png"]
