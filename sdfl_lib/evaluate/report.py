"""The evaluation report: metrics.json, a metrics table per subset (CSV and report.md), the mask
size mismatches and unreadable files, and the paper's Table III side by side where subsets match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from sdfl_lib.evaluate.figures import write_figures
from sdfl_lib.metrics.uncertainty import describe, format_ci, headline_frame
from sdfl_lib.models.weights import TABLE_III
from sdfl_lib.runtime import atomic_write

TABLE_III_KEYS = ("paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc")
SUBSET_TO_TEST = {"shallowfakes": "S", "deepfakes": "D", "both": "both"}


def _inside(value: float, interval: dict | None) -> bool | None:
    """Whether a published value lies inside our interval (None without an interval)."""
    if not interval or interval.get("low") is None:
        return None
    return bool(interval["low"] <= value <= interval["high"])


def table3_comparison(subsets: dict, model_name: str) -> list[dict]:
    """Rows (subset, who, trained on, the four numbers) for subsets matching a Table III column:
    ours with its intervals, then the paper's rows for the same model (all rows for another
    model), each saying per number whether the published value lies inside our interval
    (`inside_interval`; None where we have none)."""
    rows = []
    paper = {k: v for k, v in TABLE_III.items() if k[0] == model_name} or TABLE_III
    for subset, test in SUBSET_TO_TEST.items():
        if subset not in subsets or "paper/pixel_f1" not in subsets[subset]:
            continue
        m = subsets[subset]
        intervals = {k: (m.get("intervals") or {}).get(k) for k in TABLE_III_KEYS}
        rows.append(
            {
                "subset": subset,
                "who": f"this run ({model_name})",
                "trained_on": "",
                **{k: m.get(k) for k in TABLE_III_KEYS},
                "intervals": intervals,
            }
        )
        for (model, trained), cols in paper.items():
            published = dict(zip(TABLE_III_KEYS, cols[test], strict=True))
            rows.append(
                {
                    "subset": subset,
                    "who": f"paper ({model})",
                    "trained_on": trained,
                    **published,
                    "inside_interval": {k: _inside(v, intervals[k]) for k, v in published.items()},
                }
            )
    return rows


def _table3_markdown(rows: list[dict]) -> str:
    """The Table III comparison: our numbers with their intervals, the paper's marked inside or
    outside them."""
    out = []
    for r in rows:
        cells = {"subset": r["subset"], "who": r["who"], "trained on": r["trained_on"]}
        for k in TABLE_III_KEYS:
            if "intervals" in r:
                ci = r["intervals"].get(k) or {}
                cells[k] = format_ci(r[k], ci.get("low"), ci.get("high"))
            else:
                inside = r["inside_interval"].get(k)
                mark = "" if inside is None else " (inside)" if inside else " (outside)"
                cells[k] = f"{r[k]:.2f}{mark}"
        out.append(cells)
    return _md_table(out)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "undefined"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _md_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _flat_row(subset: str, m: dict) -> dict:
    """A subset's numbers as one CSV row: each metric, then `<key> low`, `<key> high` and
    `<key> floor` (the best trivial predictor's score) beside the headline ones."""
    row: dict = {"subset": subset}
    extra = headline_frame({"subsets": {subset: m}}).set_index("metric")
    for k, v in m.items():
        if isinstance(v, (dict, list)):
            continue
        row[k] = v
        if k in extra.index:
            e = extra.loc[k]
            row.update({f"{k} low": e["low"], f"{k} high": e["high"], f"{k} floor": e["floor"]})
    return row


def _subset_markdown(name: str, m: dict, threshold: float) -> list[str]:
    """A subset's section: the headline metrics with their intervals and floors, then the rest."""
    head = headline_frame({"threshold": threshold, "subsets": {name: m}})
    rows = [
        {
            "metric": r.metric,
            "value [95 % interval]": r.text + (f" (no interval: {r.reason})" if r.reason else ""),
            "floor (best trivial predictor)": "undefined" if r.floor is None or pd.isna(r.floor)
            else f"{r.floor:.2f} ({r.floor_by})",
        }
        for r in head.itertuples()
    ]
    rest = [{"metric": k, "value": v} for k, v in m.items()
            if not isinstance(v, (dict, list)) and k not in set(head["metric"])]
    return [f"## Subset: {name}\n", _md_table(rows), "\nOther metrics:\n\n", _md_table(rest)]


def _mismatches(table: pd.DataFrame, policy: str) -> dict:
    rows = table[table["mask_event"] != ""]
    return {
        "policy": policy,
        "paper_protocol": "left out of paper/pixel_f1 (kept in the image-level numbers)",
        "count": int(len(rows)),
        "images": [
            {
                "image": r.image,
                "mask": r.mask,
                "image_size": f"{r.height}x{r.width}",
                "mask_size": r.mask_size,
                "standard": r.mask_event,
                "paper": "left out of pixel F1",
            }
            for r in rows.itertuples()
        ],
    }


def write_report(
    out: Path, config: dict, table: pd.DataFrame, results: dict, figures: bool = True
) -> dict:
    """Writes metrics.json, metrics_table.csv, report.md (and figures/); returns the metrics."""
    subsets = results["subsets"]
    name = config["model"]["spec"].get("name", "model")
    label_only = table[(table["label"] == 1) & (table["mask"] == "")]
    metrics = {
        "protocol": config["protocol"],
        "threshold": config["threshold"],
        "image_size": config["image_size"],
        "model": config["model"]["spec"],
        "subsets": subsets,
        "mask_size_mismatch": _mismatches(table, config["mask_policy"]),
        "label_only": {"count": int(len(label_only)), "images": label_only["image"].tolist()},
        "tampered_empty_mask": results.get("tampered_empty_mask", {"count": 0, "images": []}),
        "errors": {"count": len(results["errors"]), "images": results["errors"]},
        "table3": table3_comparison(subsets, name),
        "uncertainty": describe(config.get("ci", 0)),
        "timing": results["timing"],
    }
    if "robustness" in results:
        metrics["robustness"] = results["robustness"]
    with atomic_write(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    flat = pd.DataFrame([_flat_row(s, m) for s, m in subsets.items()])
    with atomic_write(out / "metrics_table.csv") as tmp:
        flat.to_csv(tmp, index=False)
    fig_paths = []
    if figures:
        fig_paths = write_figures(out, table, metrics, config)
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(_markdown(metrics, config, fig_paths))
    return metrics


ROBUSTNESS_KEYS = ("paper/pixel_f1", "paper/auc", "standard/pixel_f1@best", "standard/image_auc")


def _robustness_markdown(metrics: dict) -> str:
    rows = []
    for name, r in metrics["robustness"].items():
        both = r["subsets"].get("both")
        texts = {} if both is None else dict(
            headline_frame({"threshold": metrics["threshold"], "subsets": {"both": both}})
            .set_index("metric")["text"])
        rows.append({"perturbation": name, **{k: texts.get(k) for k in ROBUSTNESS_KEYS}})
    return _md_table(rows)


def _uncertainty_markdown(u: dict) -> str:
    """How the intervals were made, in one paragraph."""
    if not u.get("resamples"):
        return "No intervals (`--ci 0`). Floors: what trivial predictors score on the same images.\n"
    return (
        f"Each headline metric is given as value [{u['level'] * 100:g} % interval]: a bootstrap "
        f"over images ({u['resamples']} resamples, {u['method']}, seed {u['seed']}; "
        f"resampled: {u['resampled']}). "
        f"A metric over fewer than {u['min_images']} images, or needing both classes where there is "
        "one, says so instead. The floor is the best score of a trivial predictor (every pixel "
        "tampered, no pixel tampered, a constant image score) on the same images (the "
        "project's docs/protocols.md, \"How sure a number is\").\n"
    )


def _markdown(metrics: dict, config: dict, fig_paths: list[Path]) -> str:
    parts = [
        f"# Evaluation of {metrics['model'].get('name')} on {config['manifest']}\n",
        f"Protocol(s): {metrics['protocol']}; threshold {metrics['threshold']}; input "
        f"{metrics['image_size']}x{metrics['image_size']}. Keys name their protocol: `paper/...` "
        "(the authors' evaluation procedure: pixel F1 over all images; a mask of another size "
        "than its image is left out of pixel F1) and `standard/...` (pixel metrics over tampered "
        "images; masks of another size: policy "
        f"`{metrics['mask_size_mismatch']['policy']}`).\n",
    ]
    parts.append(_uncertainty_markdown(metrics["uncertainty"]))
    for subset, m in metrics["subsets"].items():
        parts += _subset_markdown(subset, m, metrics["threshold"])
        parts += [f"- note: {n}\n" for n in m["notes"]]
    mm = metrics["mask_size_mismatch"]
    parts.append(f"## Masks of another size than their image: {mm['count']}\n")
    parts.append(_md_table(mm["images"]) or "None.\n")
    parts.append(
        f"\nLabel-only fakes (image-level metrics only): {metrics['label_only']['count']}\n"
    )
    empty = metrics["tampered_empty_mask"]
    parts.append(f"\nTampered rows whose mask is all zero (scored): {empty['count']}\n")
    parts += [f"- {image}\n" for image in empty["images"]]
    parts.append(f"\n## Rows not scored (unreadable files, missing masks): "
                 f"{metrics['errors']['count']}\n")
    parts.append(_md_table(metrics["errors"]["images"]))
    if metrics["table3"]:
        parts.append("\n## Side by side with the paper's Table III (paper protocol)\n")
        parts.append(
            "The paper's numbers are on its own test lists; they compare with this "
            "run only when this manifest is that list.\n"
        )
        parts.append(
            "Ours with its 95 % interval; each published number says whether it lies inside "
            "that interval.\n"
        )
        parts.append(_table3_markdown(metrics["table3"]))
    if "robustness" in metrics:
        parts.append("\n## Robustness (subset: both, with 95 % intervals)\n")
        parts.append(_robustness_markdown(metrics))
    if fig_paths:
        parts.append("\n## Figures\n")
        parts += [f"![{p.stem}](figures/{p.name})\n" for p in fig_paths]
    return "\n".join(parts)
