"""The evaluation report: metrics.json, a metrics table per subset (CSV and report.md), the mask
size mismatches and unreadable files, and the paper's Table III side by side where subsets match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from sdfl_lib.evaluate.figures import write_figures
from sdfl_lib.models.weights import TABLE_III
from sdfl_lib.runtime import atomic_write

TABLE_III_KEYS = ("paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc")
SUBSET_TO_TEST = {"shallowfakes": "S", "deepfakes": "D", "both": "both"}


def table3_comparison(subsets: dict, model_name: str) -> list[dict]:
    """Rows (subset, who, trained on, the four numbers) for subsets matching a Table III column:
    ours, then the paper's rows for the same model (all rows for another model)."""
    rows = []
    paper = {k: v for k, v in TABLE_III.items() if k[0] == model_name} or TABLE_III
    for subset, test in SUBSET_TO_TEST.items():
        if subset not in subsets or "paper/pixel_f1" not in subsets[subset]:
            continue
        m = subsets[subset]
        rows.append(
            {
                "subset": subset,
                "who": f"this run ({model_name})",
                "trained_on": "",
                **{k: m.get(k) for k in TABLE_III_KEYS},
            }
        )
        for (model, trained), cols in paper.items():
            rows.append(
                {
                    "subset": subset,
                    "who": f"paper ({model})",
                    "trained_on": trained,
                    **dict(zip(TABLE_III_KEYS, cols[test], strict=True)),
                }
            )
    return rows


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
        "timing": results["timing"],
    }
    if "robustness" in results:
        metrics["robustness"] = results["robustness"]
    with atomic_write(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    flat = pd.DataFrame(
        [{"subset": s, **{k: v for k, v in m.items() if k != "notes"}} for s, m in subsets.items()]
    )
    with atomic_write(out / "metrics_table.csv") as tmp:
        flat.to_csv(tmp, index=False)
    fig_paths = []
    if figures:
        fig_paths = write_figures(out, table, metrics, config)
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(_markdown(metrics, config, fig_paths))
    return metrics


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
    for subset, m in metrics["subsets"].items():
        parts.append(f"## Subset: {subset}\n")
        parts.append(_md_table([{"metric": k, "value": v} for k, v in m.items() if k != "notes"]))
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
        parts.append(_md_table(metrics["table3"]))
    if "robustness" in metrics:
        parts.append("\n## Robustness (subset: both)\n")
        rows = [
            {
                "perturbation": k,
                **{
                    m: v["subsets"].get("both", {}).get(m)
                    for m in (
                        "paper/pixel_f1",
                        "paper/auc",
                        "standard/pixel_f1@best",
                        "standard/image_auc",
                    )
                },
            }
            for k, v in metrics["robustness"].items()
        ]
        parts.append(_md_table(rows))
    if fig_paths:
        parts.append("\n## Figures\n")
        parts += [f"![{p.stem}](figures/{p.name})\n" for p in fig_paths]
    return "\n".join(parts)
