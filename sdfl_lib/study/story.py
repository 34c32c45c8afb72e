"""What each notebook's run came to: the key-results tables at the top of the reports and the
sentences of their closing "What came out" cells, generated from the run's files and numbers
(never written by hand). Intervals are shown as `0.65 [0.58, 0.71]` where the evaluation
computed them (`metrics.json` "intervals").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sdfl_lib.data import explore
from sdfl_lib.evaluate.predictions import read_predictions
from sdfl_lib.viz.report import (
    closing,
    file_link,
    interval,
    key_results,
    number,
    sentence_list,
    show,
    table_html,
    with_interval,
)
from sdfl_lib.viz.results import per_type_table, readable

KIND_NAMES = {0: "authentic", 1: "tampered"}
# How a method of 04 reads: the trained model, or a classical baseline.
METHOD_NAMES = {"model": "the model", "ela": "ELA", "noise": "noise residual"}


def method_label(name: str) -> str:
    return METHOD_NAMES.get(name, name)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _source(name: str) -> str:
    """A source or subset as a reader says it: "source/synth-copymove" -> "copymove"."""
    return str(name).removeprefix("source/").removeprefix("synth-") or "(none)"


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {s} s" if minutes else f"{s} s"


# ---------------------------------------------------------------- 01 data


def validation_sentence(report: dict) -> str:
    """"600 rows checked, 0 problems." or the problems counted by kind."""
    rows = report.get("rows", 0)
    kinds = {k: v for k, v in report.get("counts", {}).items() if v}
    if not kinds:
        return f"{rows} rows checked, 0 problems."
    errors, warnings = len(report.get("errors", [])), len(report.get("warnings", []))
    listed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(kinds.items()))
    return f"{rows} rows checked: {errors} error(s), {warnings} warning(s) ({listed})."


def size_sentence(sizes: pd.DataFrame) -> str | None:
    """One sentence when every image has the same size (no histogram is worth drawing); else None."""
    if not len(sizes):
        return "No image could be read for its size."
    distinct = sizes[["height", "width"]].drop_duplicates()
    if len(distinct) > 1:
        return None
    h, w = distinct.iloc[0]
    return f"All {len(sizes)} images are {w} × {h} px (width × height)."


def data_summary(pool: pd.DataFrame, parts: dict[str, pd.DataFrame], report: dict,
                 sizes: pd.DataFrame) -> Any:
    """01's summary: images per source and label, and per split; validation and sizes below."""
    table = pd.crosstab(pool["source"].map(_source), pool["label"].map(KIND_NAMES))
    table = table.reindex(columns=list(KIND_NAMES.values()), fill_value=0)
    for part, rows in parts.items():
        table[part] = rows.groupby(rows["source"].map(_source)).size().reindex(table.index).fillna(0)
    table.loc["all sources"] = table.sum()
    table = table.astype(int).rename_axis(index="source", columns=None)
    notes = [f"Validation: {validation_sentence(report)}", size_sentence(sizes) or ""]
    return key_results(table, notes)


def data_closing(pool: pd.DataFrame, parts: dict[str, pd.DataFrame], areas: pd.DataFrame) -> Any:
    """01's closing sentences: what the data is, how much of an image is tampered, the split."""
    n, tampered = len(pool), int((pool["label"] == 1).sum())
    sources = sorted(pool["source"].map(_source).unique())
    out = [f"The study works on {n} images from {len(sources)} source(s) ({sentence_list(sources)}): "
           f"{n - tampered} authentic and {tampered} tampered ({_pct(tampered / max(n, 1))})."]
    if len(areas):
        q = areas["area"].quantile([0.1, 0.5, 0.9])
        out.append(f"A tampered region covers a median {_pct(q[0.5])} of its image (10th to 90th "
                   f"percentile: {_pct(q[0.1])} to {_pct(q[0.9])}), so a detector must find small "
                   "regions, and a map marking everything scores poorly on pixel F1.")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    out.append(f"The split ({sizes} images) keeps each source's share of authentic and tampered "
               "images; the later notebooks read only these lists.")
    return closing(out)


def data_figures(pool: pd.DataFrame, sizes: pd.DataFrame, areas: pd.DataFrame, examples: int = 8,
                 seed: int = 0) -> None:
    """01's figures in order, each with its caption; a distribution of one value as a sentence."""
    show(explore.plot_counts(pool), "Images per source, authentic and tampered; the title gives "
         "each label's share of all images.")
    if not size_sentence(sizes):  # one size for all: the data summary says it in a sentence
        show(explore.plot_image_sizes(pool), f"Image heights, widths and sizes ({len(sizes)} images): "
             "every model resizes its input to one square side, so these say how much detail is lost.")
    if len(areas):
        show(explore.plot_mask_areas(pool), f"How much of each tampered image its mask covers "
             f"({len(areas)} masks, stacked by source): small regions are the hard ones.")
    show(explore.plot_examples(pool, n=examples, seed=seed), f"{min(examples, len(pool))} random "
         "images as they are; a tampered image's mask is outlined on it.")


# ---------------------------------------------------------------- 03 train


def _train_files(train_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    train_dir = Path(train_dir)
    metrics = pd.read_csv(train_dir / "metrics.csv")
    config = yaml.safe_load((train_dir / "config.yaml").read_text()) or {}
    return metrics, config


def _best_row(metrics: pd.DataFrame) -> pd.Series:
    key = "val_loss" if "val_loss" in metrics and metrics["val_loss"].notna().any() else "train_loss"
    return metrics.loc[metrics[key].idxmin()]


def train_key_results(train_dir: str | os.PathLike) -> Any:
    """03's key results from `metrics.csv` and `config.yaml`: epochs, the best epoch and its
    losses, time and throughput."""
    metrics, config = _train_files(train_dir)
    best, last = _best_row(metrics), metrics.iloc[-1]
    rows = {
        "epochs trained": f"{int(last['epoch'])} of {config.get('epochs', '?')}",
        "best epoch (lowest validation loss)": int(best["epoch"]),
        "validation loss at the best epoch": number(best.get("val_loss"), 4),
        "training loss at the best epoch": number(best["train_loss"], 4),
        "image BCE / mask Dice at the best epoch (validation)":
            f"{number(best.get('val_clf'), 3)} / {number(best.get('val_seg'), 3)}",
        "training time": _duration(float(metrics["time_s"].sum())),
        "throughput": f"{metrics['images_per_s'].mean():.1f} images/s",
    }
    table = pd.Series(rows, name="").to_frame()
    return key_results(table, [f"Model {config.get('model')} on {config.get('backbone')}, "
                               f"{config.get('image_size')} px; best.pt holds the best epoch."])


def config_summary(train_dir: str | os.PathLike) -> Any:
    """The training settings that matter, and a link to the full `config.yaml`."""
    from IPython.display import HTML  # why: exists only in a notebook

    _, c = _train_files(train_dir)
    start = (f"the checkpoint {Path(c['init_checkpoint']).name}" if c.get("init_checkpoint")
             else "ImageNet weights" if c.get("pretrained") else "random weights")
    rows = {
        "network": f"{c.get('model')} on {c.get('backbone')}, starting from {start}",
        "input": f"{c.get('image_size')} × {c.get('image_size')} px, augmentation {c.get('augment')}",
        "batch": f"{c.get('batch_size')} images per step (accumulated {c.get('grad_accum', 1)}×)",
        "optimizer": f"{c.get('optimizer')}, lr {c.get('lr')}, weight decay {c.get('weight_decay')}, "
                     f"scheduler {c.get('scheduler')}",
        "loss": f"{c.get('lambda_clf')} · image BCE + {c.get('lambda_seg')} · mask Dice",
        "epochs": f"at most {c.get('epochs')}, early stop after {c.get('early_stop_patience')} "
                  "without improvement" if c.get("early_stop_patience") else f"{c.get('epochs')}",
        "precision": f"{c.get('precision')}, seed {c.get('seed')}",
    }
    link = file_link(Path(train_dir, "config.yaml"), "config.yaml")
    return HTML(table_html(pd.Series(rows, name="").to_frame())
                + f'<p class="sdfl-note">Every setting: {link}.</p>')


def train_closing(train_dir: str | os.PathLike) -> Any:
    """03's closing sentences: how the losses moved, where the best epoch lies, what it means."""
    metrics, config = _train_files(train_dir)
    best, first, last = _best_row(metrics), metrics.iloc[0], metrics.iloc[-1]
    key = "val_loss" if "val_loss" in metrics and metrics["val_loss"].notna().any() else "train_loss"
    which = "validation" if key == "val_loss" else "training"
    n, planned = int(last["epoch"]), int(config.get("epochs") or last["epoch"])
    out = [f"Training ran {n} of {planned} epoch(s) in {_duration(float(metrics['time_s'].sum()))}; "
           f"the {which} loss went from {first[key]:.4f} after epoch 1 to its lowest, "
           f"{best[key]:.4f}, at epoch {int(best['epoch'])}."]
    if int(best["epoch"]) == n and n < planned:
        out.append("It stopped before the planned epochs while still improving (a step limit or "
                   "an interruption).")
    elif int(best["epoch"]) == n:
        out.append("The best epoch is the last one: more epochs may lower it further.")
    else:
        out.append(f"The {n - int(best['epoch'])} epoch(s) after it did not improve it; best.pt "
                   f"keeps epoch {int(best['epoch'])}.")
    if "val_seg" in metrics and pd.notna(best.get("val_seg")):
        out.append(f"On validation images the mask Dice loss went from {first['val_seg']:.3f} to "
                   f"{best['val_seg']:.3f} and the image BCE from {first['val_clf']:.3f} to "
                   f"{best['val_clf']:.3f} (lower is better; a Dice loss of 1 means no overlap).")
    out.append("04 evaluates best.pt on the held-out test images.")
    return closing(out)


# ---------------------------------------------------------------- 04 evaluate

KEY_METRICS = ("standard/pixel_f1@0.5", "standard/image_auc", "standard/image_f1@0.5",
               "paper/pixel_f1", "paper/combined_f1")
KEY_LABELS = {
    "standard/pixel_f1@0.5": "pixel F1@0.5, tampered images (standard)",
    "standard/image_auc": "image AUC",
    "standard/image_f1@0.5": "image F1@0.5 (standard)",
    "paper/pixel_f1": "pixel F1, all images (paper)",
    "paper/combined_f1": "combined F1 (paper)",
}


def forgery_types(metrics: dict) -> list[str]:
    """The subsets "source/<name>" holding tampered images (the types of forgery), in order."""
    return [s for s, m in metrics.get("subsets", {}).items()
            if s.startswith("source/") and m.get("count/tampered")]


def evaluation_key_results(runs: dict[str, dict]) -> Any:
    """04's key results: the headline metrics and pixel F1@0.5 per forgery type, one column per
    method (the model first, then the baselines), with intervals where computed."""
    first = next(iter(runs.values()))
    both = first["subsets"]["both"]
    rows: dict[str, dict[str, str]] = {}
    for key in KEY_METRICS:
        rows[KEY_LABELS[key]] = {method_label(name): with_interval(m["subsets"]["both"], key)
                                 for name, m in runs.items()}
    for subset in forgery_types(first):
        rows[f"pixel F1@0.5: {_source(subset)}"] = {
            method_label(name): with_interval(m["subsets"].get(subset, {}), "standard/pixel_f1@0.5")
            for name, m in runs.items()}
    table = pd.DataFrame(rows).T
    note = (f"{both.get('count/images')} test images ({both.get('count/authentic')} authentic, "
            f"{both.get('count/tampered')} tampered); higher is better; "
            + _interval_note(both))
    return key_results(table, [note])


def _interval_note(m: dict, key: str = "standard/pixel_f1@0.5") -> str:
    """Whether the numbers carry 95 % intervals, or why not."""
    if interval(m, key):
        return "95 % bootstrap intervals over the test images in brackets."
    reason = ((m.get("intervals") or {}).get(key) or {}).get("reason")
    return f"no 95 % intervals: {reason}." if reason else "no intervals were computed (ci 0)."


def evaluation_captions(metrics: dict) -> dict[str, str]:
    """A one-line caption for each of the evaluation's figures (by file stem)."""
    both, t = metrics["subsets"]["both"], metrics.get("threshold", 0.5)
    outlines = (f"outlines: the ground truth (green; dashed on the prediction) and the region the "
                f"model marks with probability ≥ {t:g} (orange)")
    return {
        "per_type": "Pixel F1 per type of forgery under both protocols: over its tampered images at "
                    "0.5 and at each image's best threshold (standard), and over all images (paper).",
        "typical": f"A typical result per type of forgery (its test image of median pixel F1): the "
                   f"image as it is, then {outlines}.",
        "gallery": f"The best and the worst localized of the {both.get('count/tampered')} tampered "
                   f"test images by pixel F1 at {t:g}; {outlines}.",
        "roc": "ROC curves: image level for the subsets holding both classes (left), pixel level "
               "within the tampered images (right); dotted: chance.",
        "score_histograms": f"Image scores of the authentic and the tampered images, per subset "
                            f"holding both; dotted: the decision threshold {t:g}.",
        "confusion": f"Image-level decisions at a score ≥ {t:g}, for the subsets holding authentic "
                     "and tampered images.",
        "robustness": "The headline metrics (all test images) when the test images are compressed, "
                      "blurred, noised or resized; dashed: each metric unperturbed.",
    }


def _beyond_noise(m: dict, b: dict, key: str) -> str:
    """Whether two evaluations' values of `key` differ beyond their 95 % intervals."""
    a, c = interval(m, key), interval(b, key)
    if a is None or c is None:
        return ""  # said once for all, in the closing's last sentences
    if a[0] > c[1] or c[0] > a[1]:
        return ", beyond the noise (the 95 % intervals do not overlap)"
    return ", within the noise (the 95 % intervals overlap)"


def _paired(pairs: pd.DataFrame | None, baseline: str, key: str) -> str | None:
    """The paired comparison's words for model minus `baseline` on `key` (all test images), from
    a table with columns reference, run, subset, metric, delta, low, high, verdict; None without."""
    if pairs is None or not len(pairs):
        return None
    row = pairs[(pairs["reference"] == baseline) & (pairs["subset"] == "both") & (pairs["metric"] == key)]
    if not len(row) or pd.isna(row.iloc[0].get("low")):
        return None
    r = row.iloc[0]
    return (f", {r['verdict']} by a paired bootstrap on the same images (difference "
            f"{r['delta']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}])")


def _baseline_sentences(name: str, model: dict, base: dict, base_name: str,
                        authentic_empty: float | None, pairs: pd.DataFrame | None = None,
                        key_name: str = "") -> list[str]:
    out = []
    for key in ("standard/pixel_f1@0.5", "standard/image_auc"):
        x, y = model.get(key), base.get(key)
        if x is None or y is None:
            continue
        verb = "above" if x > y else "below" if x < y else "level with"
        noise = _paired(pairs, key_name, key) or _beyond_noise(model, base, key)
        out.append(f"On {KEY_LABELS[key]} the {name} ({x:.2f}) is {verb} {base_name} ({y:.2f}){noise}.")
    px, py = model.get("paper/pixel_f1"), base.get("paper/pixel_f1")
    if None not in (px, py) and py > px and (base.get("standard/pixel_f1@0.5") or 0) < (
            model.get("standard/pixel_f1@0.5") or 0):
        empty = f" ({base_name} predicts no pixel on {_pct(authentic_empty)} of them)" \
            if authentic_empty is not None else ""
        out.append(f"{base_name} scores higher on the paper's pixel F1 ({py:.2f} against {px:.2f}) "
                   "because that protocol averages over all images and scores an empty prediction "
                   f"on an authentic image as 1{empty}: it rewards predicting nothing, not finding "
                   "forgeries.")
    return out


def evaluation_closing(runs: dict[str, dict], authentic_empty: dict[str, float] | None = None,
                       pairs: pd.DataFrame | None = None) -> Any:
    """04's closing sentences: overall, per type, against each baseline, and what the numbers
    can be compared with. `authentic_empty`: per method, the share of authentic images on which
    it predicts no tampered pixel (`empty_prediction_share`). `pairs`: paired comparisons of the
    model against each baseline (reference = the baseline's name), whose verdict then says
    whether a difference exceeds the noise; without them, whether the 95 % intervals overlap."""
    (name, metrics), *baselines = runs.items()
    both = metrics["subsets"]["both"]
    out = [f"On {both.get('count/images')} test images the model localizes tampered regions with "
           f"pixel F1@0.5 {with_interval(both, 'standard/pixel_f1@0.5')} (tampered images) and tells "
           f"tampered from authentic images with an AUC of {with_interval(both, 'standard/image_auc')}."]
    types = {_source(s): metrics["subsets"][s] for s in forgery_types(metrics)}
    scored = {k: m["standard/pixel_f1@0.5"] for k, m in types.items() if m.get("standard/pixel_f1@0.5") is not None}
    if len(scored) > 1:
        hi, lo = max(scored, key=scored.get), min(scored, key=scored.get)
        key = "standard/pixel_f1@0.5"
        listed = sentence_list([f"{k} {with_interval(types[k], key)}" for k in scored])
        spread = (f"best on {hi}, worst on {lo}" + _beyond_noise(types[hi], types[lo], key)
                  if scored[hi] > scored[lo] else "the same on every type")
        out.append(f"By type of forgery: {listed}; {spread}.")
    for base_name, base in baselines:
        out += _baseline_sentences("model", both, base["subsets"]["both"], method_label(base_name),
                                   (authentic_empty or {}).get(base_name), pairs, base_name)
    if interval(both, "standard/pixel_f1@0.5") is None:
        out.append("No number here has an interval, so whether a difference exceeds the sampling "
                   "noise of these test images is not established.")
    out.append(comparability(metrics))
    return closing(out)


def empty_prediction_share(eval_dir: str | os.PathLike) -> float | None:
    """The share of authentic images on which an evaluation predicted no tampered pixel."""
    table = read_predictions(Path(eval_dir) / "predictions.csv")
    authentic = table[(table["label"] == 0) & table["pixel"]]
    return None if not len(authentic) else float(((authentic["tp"] + authentic["fp"]) == 0).mean())


def synthetic_data(metrics: dict) -> bool:
    """Whether every test image comes from sdfl's synthetic forgeries (sources "synth-*")."""
    sources = [s for s in metrics.get("subsets", {}) if s.startswith("source/")]
    return bool(sources) and all(s.startswith("source/synth-") for s in sources)


def comparability(metrics: dict) -> str:
    """One sentence: what this evaluation's numbers can and cannot be compared with."""
    if synthetic_data(metrics):
        return ("These test images are sdfl's synthetic forgeries, not the paper's test lists "
                "(CASIA v1 and COVERAGE for shallowfakes, the authors' deepfake frames), and the "
                "model is trained for minutes on a CPU: its numbers compare with other runs on this "
                "synthetic split, not with the paper's Table III, which is a reference here.")
    return ("Where these test images are the paper's test lists, the Table III comparison below "
            "says whether each published value lies inside this run's 95 % interval; on other "
            "data it is a reference, not a comparison.")


def per_type(runs: dict[str, dict]) -> pd.DataFrame:
    """The pixel metrics per type of forgery, the methods of `runs` side by side (rows: type and
    method)."""
    table = per_type_table(runs).stack(0, future_stack=True)
    table.index = pd.MultiIndex.from_tuples([(_source(t), method_label(m)) for t, m in table.index],
                                            names=["type of forgery", "method"])
    return readable(table)


def table3_reference(metrics: dict) -> pd.DataFrame:
    """The paper's Table III rows for this model (paper protocol), as a reference table; on real
    test data, whether each published value lies inside this run's 95 % interval (the
    evaluation's `inside_interval`), marked ✓ inside or ✗ outside."""
    keys = ("paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc")
    names = {"pixel_f1": "pixel F1", "image_f1": "image F1", "combined_f1": "combined F1", "auc": "AUC"}
    out = []
    for r in metrics.get("table3") or []:
        if r["who"].startswith("this run"):
            continue
        row = {"test set": {"shallowfakes": "shallowfakes (S)", "deepfakes": "deepfakes (D)",
                            "both": "both (S+D)"}.get(r["subset"], r["subset"]),
               "model (trained on)": f"{r['who'].removeprefix('paper (').rstrip(')')} ({r['trained_on']})"}
        inside = {} if synthetic_data(metrics) else (r.get("inside_interval") or {})
        for k in keys:
            mark = {True: " ✓ inside", False: " ✗ outside"}.get(inside.get(k), "")
            row[names[k.split("/")[1]]] = f"{r[k]:.2f}{mark}"
        out.append(row)
    return pd.DataFrame(out).set_index(["test set", "model (trained on)"]) if out else pd.DataFrame()


# ---------------------------------------------------------------- 05 optimization

COMPARED = ("standard/pixel_f1@0.5", "standard/image_auc", "paper/combined_f1")


def _pair_text(row: pd.Series) -> str:
    """A paired comparison's row as `+0.05 [+0.01, +0.09] better` (the difference alone, and
    why, without an interval)."""
    if row.get("delta") is None or pd.isna(row.get("delta")):
        return "undefined"
    if pd.isna(row.get("low")):
        return f"{row['delta']:+.2f} (no interval)"
    return f"{row['delta']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}] {row['verdict']}"


def _verdict_word(cell: str) -> str:
    """The verdict at the end of a `VariantStudy.verdicts()` cell."""
    return next((w for w in ("better", "worse", "within noise") if str(cell).endswith(w)), "no verdict")


def optimization_key_results(study: Any, finetune: pd.DataFrame | None = None,
                             finetune_pairs: pd.DataFrame | None = None) -> Any:
    """05's key results: each short run's numbers (the value and its interval with one seed, mean
    ± sd over several), each variant's difference from the baseline with the paired verdict; the
    fine-tuning against 03's model (`finetune`: headline rows by run, `finetune_pairs`: their
    paired comparison)."""
    summary, verdicts = study.summary(), study.verdicts()
    keys = list(summary.columns)
    table = pd.DataFrame(index=list(summary.index), columns=[KEY_LABELS.get(k, k) for k in keys])
    for run in summary.index:
        table.loc[run] = [summary.loc[run, k] + (f" · {verdicts.loc[run, k]}" if run in verdicts.index else "")
                          for k in keys]
    if finetune is not None:
        both = finetune_pairs[finetune_pairs["subset"] == "both"].set_index("metric") \
            if finetune_pairs is not None else pd.DataFrame()
        for i, (run, row) in enumerate(finetune.iterrows()):
            table.loc[run] = [number(row.get(k)) + (f" · {_pair_text(both.loc[k])}" if i and k in both.index else "")
                              for k in keys]
    table.index.name = "run"
    note = (f"After ·, the difference from {study.baseline!r} (the fine-tuning: from the model it "
            "starts from) with its paired 95 % interval and verdict: better or worse when the "
            "interval excludes 0, else within noise.")
    return key_results(table, [note])


def optimization_closing(study: Any, backbones: pd.DataFrame | None = None,
                         finetune_pairs: pd.DataFrame | None = None) -> Any:
    """05's closing sentences: the fastest and the smallest backbone, what each variant changed
    beyond the noise (the paired verdicts), what the fine-tuning changed."""
    out = []
    if backbones is not None and len(backbones) and "images_per_s" in backbones:
        fast, small = backbones["images_per_s"].idxmax(), backbones["params_M"].idxmin()
        out.append(f"Of the {len(backbones)} backbones compared, {fast} is the fastest on this "
                   f"device ({backbones.loc[fast, 'images_per_s']:.1f} images/s) and {small} the "
                   f"smallest ({backbones.loc[small, 'params_M']:.1f} M parameters in the model).")
    verdicts = study.verdicts()
    for run, row in verdicts.iterrows():
        words = {KEY_LABELS.get(k, k): _verdict_word(v) for k, v in row.items()}
        moved = [f"{w} on {k}" for k, w in words.items() if w in ("better", "worse")]
        out.append(f"{run}: " + (sentence_list(moved) + ", within noise on the rest" if moved
                                 else "within noise on every metric") + f" against {study.baseline}.")
    if finetune_pairs is not None and len(finetune_pairs):
        both = finetune_pairs[finetune_pairs["subset"] == "both"].set_index("metric")
        parts = [f"{KEY_LABELS.get(k, k)} {_pair_text(both.loc[k])}" for k in COMPARED if k in both.index]
        out.append("Fine-tuning on the label-only set, against the model it starts from: "
                   + sentence_list(parts) + ".")
    seeds = study.runs["seed"].nunique() if "seed" in study.runs else 1
    out.append("With one seed a verdict covers the test images' sampling noise only; more seeds "
               "add the training's." if seeds == 1 else
               f"Over {seeds} seeds a variant is better or worse only when every seed agrees.")
    return closing(out)


def fusion_sentence(costs: pd.DataFrame, image_size: int) -> str:
    """Where the fusion convs stand in the model's size and computation (`summarize` table)."""
    if "fusion" not in costs.index:
        return "This model has no fusion: it has one stream."
    f, total = costs.loc["fusion"], costs.loc["total"]
    return (f"The four fusion convolutions hold {f['params_M']:.0f} M of the model's "
            f"{total['params_M']:.0f} M parameters ({_pct(f['params_M'] / total['params_M'])}) and "
            f"do {_pct(f['flops_share'])} of its computation at {image_size} px: each is a 3×3 "
            "convolution over twice the level's channels.")


def modules_closing(costs: pd.DataFrame, image_size: int, trained: dict | None = None) -> Any:
    """02's closing sentences: where the parameters and the computation sit, and what training
    changed on the forged image (`trained`: {"backbone", "image_size", "untrained_f1", "trained_f1"})."""
    total = costs.loc["total"]
    parts = costs.drop(index="total")
    top = parts["params_M"].idxmax()
    out = [f"At {image_size} × {image_size} px the network has {total['params_M']:.0f} M parameters "
           f"and needs {total['GFLOPs']:.0f} GFLOPs per image; the largest part is {top} with "
           f"{parts.loc[top, 'params_M']:.0f} M parameters ({_pct(parts.loc[top, 'params_M'] / total['params_M'])}) "
           f"and {_pct(parts.loc[top, 'flops_share'])} of the FLOPs."]
    if trained:
        out.append(f"Trained in 03 ({trained['backbone']}, {trained['image_size']} px), the model "
                   f"marks the forged region of the example with pixel F1 {trained['trained_f1']:.2f}; "
                   f"the same network with random weights scores {trained['untrained_f1']:.2f}.")
    else:
        out.append("No trained model in this run folder yet: 03 trains one, and this notebook then "
                   "shows its maps beside the untrained ones.")
    return closing(out)
