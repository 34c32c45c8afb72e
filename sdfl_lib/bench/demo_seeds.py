"""`python -m sdfl_lib.bench demo-seeds --seeds 0 1 2 [--isa native avx2]`: the demo's result over seeds.

Trains the demo's model as `make demo` does (the parameters file's `data` section made as 01 makes
it, its `train` section trained as 03 trains it) once per seed and instruction set, evaluates each
on the test split with the library's `evaluate` (as 04, without robustness and figures), and
prints standard pixel F1@0.5 per forgery type and the image AUC of every run, then their
mean ± sd over the seeds, naming the CPU. The seed is the study's `seed`: it makes the synthetic
data, the split and the training, as changing `seed` in the parameters file does; `--data-seed N`
keeps the data of seed N for every run, so only the training differs.

`--isa avx2` emulates an AVX2-only CPU on a newer one: each run is a fresh process whose PyTorch
kernels (ATen), oneDNN and MKL are capped at AVX2, so it follows that CPU's training trajectory.
A benchmark, not a test: each run is a full demo training (minutes); it never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sdfl_lib.errors import UsageError, exit_code_of, non_negative_int

# What each emulated instruction set caps, and what `torch.backends.cpu.get_cpu_capability()`
# says when the cap took effect ("native": nothing capped).
ISA_ENV = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
ISA_CAPABILITY = {"avx2": "AVX2"}
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile")
PIXEL_KEY, AUC_KEY = "standard/pixel_f1@0.5", "standard/image_auc"


def make_data(params: dict[str, Any], seed: int, out: Path) -> dict[str, Path]:
    """The study's data as notebook 01 makes it from synthetic forgeries: train, val and test CSVs."""
    from sdfl_lib.data import read_manifest, synthesize, write_manifest
    from sdfl_lib.data.split import sample_manifest, split_manifest_file

    data = params.get("data") or {}
    if data.get("datasets") or data.get("paper_lists") or not data.get("synthetic_n"):
        raise UsageError("demo-seeds needs a study on synthetic data only (data.synthetic_n > 0,"
                         " no data.datasets or data.paper_lists)")
    manifest = synthesize(out / "synth", int(data["synthetic_n"]), seed,
                          size=int(data.get("synthetic_size", 160)), progress=False)
    write_manifest(read_manifest(manifest), out / "all.csv")
    splits = split_manifest_file(out / "all.csv", out / "lists", seed=seed, **(data.get("split") or {}))
    paths = {}
    for part, path in splits.items():
        rows = read_manifest(path)
        if part == "test":
            rows = sample_manifest(rows, int(data.get("max_test", 0)), seed)
        paths[part] = write_manifest(rows, out / f"{part}.csv")
    return paths


def train_and_evaluate(params: dict[str, Any], seed: int, data: dict[str, Path], out: Path) -> dict:
    """One run, as 03 then 04 do it: fit the `train` section with `seed`, evaluate best.pt on the
    test split. Returns the CPU capability torch used, the training time and the metrics."""
    import torch

    from sdfl_lib.evaluate import evaluate
    from sdfl_lib.train import TrainConfig, fit

    device = params.get("device", "auto")
    config = TrainConfig.from_dict({
        "seed": seed, "device": device, "train_manifest": str(data["train"]),
        "val_manifest": str(data["val"]), "out_dir": str(out / "train"), "overwrite": True,
        "progress": False, **(params.get("train") or {}),
    })
    t0 = time.perf_counter()
    result = fit(config)
    train_s = time.perf_counter() - t0
    if result.status == "interrupted":  # a signal stopped the training: nothing to evaluate
        raise RuntimeError(f"the training of seed {seed} was interrupted (state in {out / 'train'})")
    ev = params.get("evaluate") or {}
    metrics = evaluate(result.best_checkpoint, data["test"], out / "eval", protocol="both",
                       batch_size=int(ev.get("batch_size", 8)), workers=int(ev.get("workers", 0)),
                       device=device, save_maps=False, resume=False, figures=False, progress=False)
    return {"capability": torch.backends.cpu.get_cpu_capability(), "train_s": train_s,
            "best_epoch": result.best_epoch, "metrics": metrics}


def summarize(metrics: dict) -> dict[str, float | None]:
    """Pixel F1@0.5 per forgery type (the `source/...` subsets with tampered images), over all
    tampered images, and the image AUC."""
    subsets = metrics["subsets"]
    row = {name.split("/", 1)[1].removeprefix("synth-"): m.get(PIXEL_KEY)
           for name, m in subsets.items() if name.startswith("source/") and m.get("count/tampered")}
    row["all"] = subsets["both"].get(PIXEL_KEY)
    row["AUC"] = subsets["both"].get(AUC_KEY)
    return row


def run_isolated(isa: str, params: dict, seed: int, data: dict[str, Path], out: Path) -> dict:
    """`train_and_evaluate` in a fresh process (torch reads the caps when it loads); checks the cap
    took effect."""
    from unittest import mock  # restores the environment as it was, whatever the run raises

    with mock.patch.dict(os.environ, ISA_ENV[isa]), \
            ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        run = pool.submit(train_and_evaluate, params, seed, data, out).result()
    wanted = ISA_CAPABILITY.get(isa)
    if wanted and run["capability"] != wanted:
        raise UsageError(f"--isa {isa}: torch still used {run['capability']} kernels; this CPU or"
                         " PyTorch build does not honour ATEN_CPU_CAPABILITY")
    return run


def _mean_sd(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    sd = statistics.stdev(known) if len(known) > 1 else float("nan")
    return f"{statistics.fmean(known):.3f} ± {sd:.3f}" + (f" ({len(known)} of {len(values)})" if len(known) < len(values) else "")


def format_table(runs: list[dict]) -> str:
    """One line per run, then mean ± sd (sample sd over the seeds) per instruction set and overall."""
    # The forgery types of every run (a small split may miss one), then the totals.
    types = sorted({c for r in runs for c in r["row"]} - {"all", "AUC"})
    columns = [*types, "all", "AUC"]
    cell = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["isa     seed  " + "  ".join(f"{c:>8}" for c in columns) + "  train_s  best_epoch"]
    for r in runs:
        lines.append(f"{r['isa']:<7} {r['seed']:>4}  " + "  ".join(f"{cell(r['row'].get(c)):>8}" for c in columns)
                     + f"  {r['train_s']:7.0f}  {r['best_epoch']:>10}")
    groups = {isa: [r for r in runs if r["isa"] == isa] for isa in dict.fromkeys(r["isa"] for r in runs)}
    if len(groups) > 1:
        groups["all"] = runs
    for isa, group in groups.items():
        lines.append(f"mean ± sd, {isa} ({len(group)} runs):")
        lines.extend(f"  {c:<9} {_mean_sd([r['row'].get(c) for r in group])}" for c in columns)
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sdfl_lib.bench demo-seeds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=None, help="study parameters (default: params/demo.yaml)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2], help="study seeds to run")
    p.add_argument("--isa", nargs="+", default=["native"], choices=sorted(ISA_ENV),
                   help="instruction sets to run each seed at (avx2: emulated)")
    p.add_argument("--data-seed", type=non_negative_int, default=None,
                   help="make the data of this seed for every run (default: each run's seed)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="change a parameter as `sdfl study --set` does, e.g. train.epochs=12")
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write every run's figures to this JSON file")
    args = p.parse_args(argv)
    if len(set(args.seeds)) < len(args.seeds) or len(set(args.isa)) < len(args.isa):
        p.error("--seeds and --isa must not repeat a value")
    return args


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """The study's parameters with the --set items, every key and value checked before any data."""
    from sdfl_lib.paths import REPO_ROOT
    from sdfl_lib.study import checked_parameters

    params, *_ = checked_parameters(args.params or REPO_ROOT / "params" / "demo.yaml", args.sets)
    return params


def describe_cpu() -> str:
    """The CPU in one line: model name, cores, the vector instruction sets that decide which
    kernels PyTorch, oneDNN and MKL pick, and the kernels torch uses in this process."""
    import torch

    from sdfl_lib.runtime import cpu_info

    info = cpu_info()
    isa = " ".join(f for f in ISA_FLAGS if f in info.flags) or "unknown"
    return (f"{info.name} ({os.cpu_count()} cores; ISA {isa}; torch kernels"
            f" {torch.backends.cpu.get_cpu_capability()})")


def run_all(args: argparse.Namespace, params: dict[str, Any], work: Path) -> list[dict]:
    """Every (isa, seed) run, printing each as it ends; the data of each data seed made once."""
    data: dict[int, dict[str, Path]] = {}
    runs = []
    for isa in args.isa:
        for seed in args.seeds:
            data_seed = seed if args.data_seed is None else args.data_seed
            if data_seed not in data:
                data[data_seed] = make_data(params, data_seed, work / f"data-{data_seed}")
            run = run_isolated(isa, params, seed, data[data_seed], work / f"run-{isa}-{seed}")
            row = summarize(run.pop("metrics"))
            runs.append({"isa": isa, "seed": seed, "data_seed": data_seed, "row": row, **run})
            print(f"  {isa} seed {seed}: " + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a"
                                                      for k, v in row.items())
                  + f"; trained in {run['train_s']:.0f} s", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every seed at every instruction set, print the table and mean ± sd."""
    import json

    args = _parse(argv)
    try:
        params = _params(args)
        print(f"demo-seeds: {args.params or 'params/demo.yaml'}{''.join(' --set ' + s for s in args.sets)};"
              f" seeds {' '.join(map(str, args.seeds))}; data seed "
              f"{'= each seed' if args.data_seed is None else args.data_seed}; isa {' '.join(args.isa)}")
        print(f"CPU: {describe_cpu()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')};"
              f" load average {os.getloadavg()[0]:.1f}", flush=True)
        with contextlib.ExitStack() as stack:
            work = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            runs = run_all(args, params, work)
    except Exception as err:  # a user's mistake (also one met in a run) ends in one line
        code = exit_code_of(err)
        if code is None:
            raise
        print(f"demo-seeds: error: {err}", file=sys.stderr)
        return code
    print(format_table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1, default=str) + "\n")
    return 0
