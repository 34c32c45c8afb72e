"""`python -m sdfl_lib.bench int8`: does int8 inference keep the fp32 pixel F1 on COVERAGE?

Evaluates one model twice on a COVERAGE folder (`image/N.tif` authentic, `image/Nt.tif`
tampered, `mask/Nforged.tif` its ground truth) through the ONNX backend, in fp32 and in int8
(calibrated on images from another data set), and prints both pixel F1s (paper protocol), their
difference against the 0.01 bound, the pixel agreement of the two sets of maps and the speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from sdfl_lib.data.manifest import IMAGE_EXTENSIONS
from sdfl_lib.evaluate import evaluate
from sdfl_lib.inference import InferenceUnavailable
from sdfl_lib.models import build_model, load_checkpoint

BOUND = 0.01  # largest pixel F1 change int8 may bring


def coverage_manifest(root: str | Path) -> pd.DataFrame:
    """Manifest rows of a COVERAGE folder: every authentic/tampered pair with a forged mask."""
    root = Path(root)
    rows = []
    for tampered in sorted((root / "image").glob("*t.tif")):
        pair = tampered.stem[:-1]
        authentic, mask = root / "image" / f"{pair}.tif", root / "mask" / f"{pair}forged.tif"
        if not (authentic.is_file() and mask.is_file()):
            raise FileNotFoundError(f"{root}: pair {pair} lacks {authentic.name} or {mask.name}")
        rows.append({"image": str(authentic), "mask": "", "label": 0, "source": "coverage"})
        rows.append({"image": str(tampered), "mask": str(mask), "label": 1, "source": "coverage"})
    if not rows:
        raise FileNotFoundError(f"no COVERAGE pairs (image/Nt.tif) under {root}")
    return pd.DataFrame(rows)


def _maps(out: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    table = pd.read_csv(out / "predictions.csv")
    maps = {r.image: np.asarray(Image.open(out / "maps" / r.map)) for r in table.itertuples()}
    return maps, dict(zip(table["image"], table["score"], strict=True))


def check_int8(
    model: Any,
    coverage: str | Path,
    calibration: list[str],
    image_size: int | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Both evaluations' pixel F1s, their difference, map agreement at 0.5 and forward times."""

    manifest = coverage_manifest(coverage)
    result: dict[str, Any] = {"images": len(manifest), "calibration": len(calibration)}
    with tempfile.TemporaryDirectory() as tmp:
        maps, scores = {}, {}
        for name, int8 in (("fp32", False), ("int8", True)):
            out = Path(tmp) / name
            start = time.perf_counter()
            m = evaluate(
                model if checkpoint is None else checkpoint, manifest, out, protocol="paper",
                image_size=image_size, backend="onnx", int8=int8, calibration=calibration,
                workers=0, figures=False, progress=False, resume=False,
            )  # fmt: skip
            both = m["subsets"]["both"]
            result[name] = {
                "pixel_f1": both["paper/pixel_f1"],
                "image_f1": both.get("paper/image_f1"),
                "wall_s": time.perf_counter() - start,
                "forward_s": m["timing"]["forward_s"],
            }
            maps[name], scores[name] = _maps(out)
    # The paper protocol's decision: map / 255 > 0.5.
    same = [((maps["fp32"][k] > 127) == (maps["int8"][k] > 127)) for k in maps["fp32"]]
    result["mask_agreement"] = float(np.concatenate([s.ravel() for s in same]).mean())
    # The paper's image decision: score > 0.5.
    result["image_flips"] = sum(
        (scores["fp32"][k] > 0.5) != (scores["int8"][k] > 0.5) for k in maps["fp32"]
    )
    result["score_difference"] = max(
        abs(scores["fp32"][k] - scores["int8"][k]) for k in maps["fp32"]
    )
    result["f1_difference"] = abs(result["int8"]["pixel_f1"] - result["fp32"]["pixel_f1"])
    result["passes"] = result["f1_difference"] <= BOUND
    return result


def format_check(r: dict[str, Any]) -> str:
    """The check's figures as printed lines."""
    f, q = r["fp32"], r["int8"]
    verdict = "PASSES" if r["passes"] else "FAILS"
    return "\n".join(
        [
            f"COVERAGE sample: {r['images']} images; int8 calibrated on {r['calibration']} others",
            f"pixel F1 (paper protocol): fp32 {f['pixel_f1']:.4f}, int8 {q['pixel_f1']:.4f} "
            f"(difference {r['f1_difference']:.4f}: {verdict} the {BOUND} bound)",
            f"image F1: fp32 {f['image_f1']:.4f}, int8 {q['image_f1']:.4f} "
            f"({r['image_flips']} of {r['images']} image decisions changed; image scores "
            f"differ by at most {r['score_difference']:.3f})",
            f"mask agreement (map > 0.5): {r['mask_agreement']:.4%} of pixels",
            f"forward time: fp32 {f['forward_s']:.1f} s, int8 {q['forward_s']:.1f} s "
            f"({f['forward_s'] / max(q['forward_s'], 1e-9):.2f}x)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run `check_int8`, print the figures; exit 1 when int8 fails."""
    parser = argparse.ArgumentParser(prog="python -m sdfl_lib.bench int8", description=__doc__)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="the model to check (.pt)")
    src.add_argument(
        "--synthetic-reference",
        metavar="DIR",
        help="the checkpoint-reference folder: its deterministic authors'-layout weights",
    )
    parser.add_argument("--coverage", required=True, help="COVERAGE folder (image/, mask/)")
    parser.add_argument(
        "--calibrate-on", required=True, help="folder of images to calibrate int8 on"
    )
    parser.add_argument("--calibration", type=int, default=32, help="calibration images (32)")
    parser.add_argument(
        "--size", type=int, default=None, help="input size (default: the model's own, else 512)"
    )
    args = parser.parse_args(argv)

    files = sorted(
        p for p in Path(args.calibrate_on).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
    )[: args.calibration]
    if not files:
        print(f"error: no images in {args.calibrate_on}", file=sys.stderr)
        return 2
    model = None
    if args.synthetic_reference:
        sys.path.insert(0, str(Path(args.synthetic_reference)))
        import synth_weights  # why: a test helper, on sys.path only in gpu-check

        model = build_model("ours", image_size=args.size or 512).eval()
        load_checkpoint(model, synth_weights.synth_state_dict(synth_weights.load_manifest("ours")))

    try:
        r = check_int8(model, args.coverage, [str(f) for f in files], args.size, args.checkpoint)
    except InferenceUnavailable as err:
        # The library's own guard refused int8 for this model: the check fails, with the reason.
        print(f"int8 check: FAIL: {err}")
        return 1
    print(format_check(r))
    return 0 if r["passes"] else 1
