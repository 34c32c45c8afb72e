"""How sure a number is: bootstrap intervals, trivial-predictor floors and paired comparisons of the
headline metrics of both protocols, from the per-image table alone (no second inference pass).

- `metric_intervals(table)`: a 95 % interval per headline metric, resampling images (BCa, from
  scipy.stats.bootstrap, 1,000 resamples, seeded). Resamples keep the subset's make-up: images are
  drawn within strata of (label, in the standard pixel metrics, in the paper's pixel F1), so every
  resample holds as many authentic and tampered images as the subset does. A metric over fewer
  than `MIN_IMAGES` images, or needing both classes where there is one, gets a reason instead.
- `floors(table)`: what trivial predictors score on the same masks and labels: every pixel
  tampered, no pixel tampered, a constant image score.
- `paired_comparison(a, b)`: b minus a on the images both scored, with a paired percentile
  interval (the same resampled images in both runs) and a two-sided p-value from the same
  resamples; images scored in one run only are left out and named.

Every metric is written as a function of per-image weights (how often a resample drew each image),
so one matrix product evaluates a thousand resamples at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sdfl_lib.errors import DataError
from sdfl_lib.metrics.counts import f1_from_counts
from sdfl_lib.metrics.paper import EPS, pixel_f1_per_image
from sdfl_lib.metrics.protocols import chosen_protocols

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0
MIN_IMAGES = 10  # fewer images than this in a metric: a reason instead of an interval
# Resampled weights kept in memory at once (resamples x images), about 32 MB of float64.
_CELLS = 4_000_000
PREDICTORS = {
    "every_pixel": "every pixel tampered",
    "no_pixel": "no pixel tampered",
    "constant_score": "a constant image score",
}


def headline_keys(threshold: float = 0.5, protocol: str = "both") -> tuple[str, ...]:
    """The headline metrics of a protocol ("paper", "standard" or "both"), named as in metrics.json."""
    t = f"{threshold:g}"
    paper = ("paper/pixel_f1", "paper/image_f1", "paper/combined_f1", "paper/auc")
    standard = (f"standard/pixel_f1@{t}", "standard/pixel_f1@best", f"standard/image_f1@{t}",
                "standard/image_auc", f"standard/micro_pixel_f1@{t}")  # fmt: skip
    keys = {"paper": paper, "standard": standard}
    return tuple(k for name in chosen_protocols(protocol) for k in keys[name])


def format_ci(value: float | None, low: float | None = None, high: float | None = None,
              digits: int = 2) -> str:
    """`0.65 [0.58, 0.71]`; the value alone without an interval; "undefined" without a value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "undefined"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


class _Columns:
    """The per-image numbers every headline metric is a weighted function of."""

    def __init__(self, table: pd.DataFrame, threshold: float) -> None:
        n = len(table)
        self.n = n
        self.label = table["label"].to_numpy().astype(bool)
        score = table["score"].to_numpy(np.float64)
        paper_cols = ("paper_pixel", "paper_tp", "paper_fp", "paper_fn")
        if not set(paper_cols) <= set(table.columns):  # a table built by hand (see paper_metrics)
            paper_cols = ("pixel", "tp", "fp", "fn")
        self.paper_in = table[paper_cols[0]].to_numpy().astype(bool)
        self.paper_f1 = np.where(self.paper_in, pixel_f1_per_image(*(table[c] for c in paper_cols[1:])), 0.0)
        self.std_in = self.label & table["pixel"].to_numpy().astype(bool)
        tp, fp, fn = (table[c].to_numpy(np.float64) * self.std_in for c in ("tp", "fp", "fn"))
        self.counts = np.stack([tp, fp, fn], axis=1)  # (n, 3): summed for the micro F1
        self.std_f1 = np.where(self.std_in, f1_from_counts(tp, fp, fn), 0.0)
        best = (table[c] for c in ("best_tp", "best_fp", "best_fn"))
        self.std_best = np.where(self.std_in, f1_from_counts(*best), 0.0)
        # Image decisions: the paper protocol's are strict (> t), the standard one's inclusive.
        self.paper_pred = score > threshold
        self.std_pred = score >= threshold
        # Ties share a rank in the AUC: each image's group of equal scores, in ascending order.
        self.order = np.argsort(score, kind="stable")
        sorted_scores = score[self.order]
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        group = np.cumsum(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]) - 1
        ends = np.r_[starts[1:], n] - 1
        self.group_start, self.group_end = starts[group], ends[group]
        self.strata = (self.label.astype(int) * 4 + self.std_in * 2 + self.paper_in).astype(int)

    def auc(self, w: np.ndarray) -> np.ndarray:
        """Weighted Mann-Whitney AUC (ties count one half) for each row of weights w (R, n)."""
        ws = w[:, self.order]
        pos = self.label[self.order]
        neg_cum = np.cumsum(ws * ~pos, axis=1)
        zero = np.zeros((len(w), 1))
        neg_cum0 = np.concatenate([zero, neg_cum], axis=1)  # neg_cum0[:, k]: negatives before k
        below = neg_cum0[:, self.group_start]
        equal = neg_cum0[:, self.group_end + 1] - below
        wins = np.sum(ws * pos * (below + 0.5 * equal), axis=1)
        npos, nneg = ws @ pos, ws @ ~pos
        with np.errstate(invalid="ignore", divide="ignore"):
            return wins / (npos * nneg)

    def metrics(self, w: np.ndarray, keys: Sequence[str], threshold: float) -> np.ndarray:
        """(len(keys), R): each headline metric under each row of weights w (R, n)."""
        t = f"{threshold:g}"
        pos, neg = self.label, ~self.label
        with np.errstate(invalid="ignore", divide="ignore"):
            paper_pixel = (w @ self.paper_f1) / (w @ self.paper_in)
            sen = (w @ (pos & self.paper_pred)) / (w @ pos + EPS)
            spe = (w @ (neg & ~self.paper_pred)) / (w @ neg + EPS)
            paper_image = _harmonic(sen, spe)
            tp, fp, fn = (w @ (pos & self.std_pred), w @ (neg & self.std_pred),
                          w @ (pos & ~self.std_pred))  # fmt: skip
            micro = w @ self.counts
            std_n = w @ self.std_in
            auc = self.auc(w) if any(k.endswith("auc") for k in keys) else None
            out = {
                "paper/pixel_f1": paper_pixel,
                "paper/image_f1": paper_image,
                "paper/combined_f1": _harmonic(paper_pixel, paper_image),
                "paper/auc": auc,
                f"standard/pixel_f1@{t}": (w @ self.std_f1) / std_n,
                "standard/pixel_f1@best": (w @ self.std_best) / std_n,
                f"standard/image_f1@{t}": f1_from_counts(tp, fp, fn),
                "standard/image_auc": auc,
                f"standard/micro_pixel_f1@{t}": f1_from_counts(micro[:, 0], micro[:, 1], micro[:, 2]),
            }
        return np.stack([out[k] for k in keys])


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2ab / (a + b), 0 where both are 0 (as `paper.harmonic_mean`)."""
    s = a + b
    return np.where(s == 0, 0.0, 2 * a * b / np.where(s == 0, 1.0, s))


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(R, n) how often each of n images was drawn in each row of indices idx (R, m)."""
    rows = len(idx)
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _statistic(columns: Sequence[_Columns], fixed: np.ndarray, keys: Sequence[str], threshold: float,
               combine: Callable[[list[np.ndarray]], np.ndarray]) -> Callable:
    """scipy's vectorised statistic: the samples are image indices per stratum (…, n_j); images
    of one-image strata (`fixed`) are in every resample."""
    n = columns[0].n

    def statistic(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = np.broadcast_shapes(*(i.shape[:-1] for i in idx))
        parts = [np.broadcast_to(i, batch + i.shape[-1:]) for i in idx]
        parts.append(np.broadcast_to(fixed, batch + fixed.shape))
        full = np.concatenate(parts, axis=-1).reshape(-1, sum(p.shape[-1] for p in parts))
        w = _weights(full.astype(np.int64), n)
        values = combine([c.metrics(w, keys, threshold) for c in columns])
        return values.reshape((len(keys), *batch))

    return statistic


def _strata(strata: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Image indices of each stratum of two or more images, and those of one-image strata."""
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return [g for g in groups if len(g) > 1], np.concatenate(
        [g for g in groups if len(g) == 1] or [np.zeros(0, np.int64)]
    ).astype(np.int64)


def _bootstrap(columns: Sequence[_Columns], strata: np.ndarray, keys: Sequence[str], threshold: float,
               resamples: int, level: float, seed: int, method: str,
               combine: Callable[[list[np.ndarray]], np.ndarray]):
    """scipy.stats.bootstrap over images (stratified); its result, or None with nothing to resample."""
    from scipy.stats import bootstrap  # scipy.stats takes a second to import: only when asked

    samples, fixed = _strata(strata)
    if not samples:
        return None
    statistic = _statistic(columns, fixed, keys, threshold, combine)
    with warnings.catch_warnings():
        # A constant statistic (every resample equal) has no BCa interval; handled by the caller.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*(degenerate|ill-defined).*")
        return bootstrap(samples, statistic, n_resamples=resamples, confidence_level=level, method=method,
                         vectorized=True, batch=max(1, _CELLS // columns[0].n), rng=np.random.default_rng(seed))


def _size_reason(key: str, value: float | None, columns: _Columns) -> str | None:
    """Why `key` gets no interval on this subset (None: it gets one)."""
    both = columns.label.any() and (~columns.label).any()
    if not both and (key.endswith("auc") or key.startswith("paper/image") or key == "paper/combined_f1"):
        return "one class only: needs authentic and tampered images"
    if value is None:
        return "undefined on this subset"
    n = {"paper/pixel_f1": columns.paper_in.sum(), "paper/combined_f1": columns.paper_in.sum()}.get(
        key, columns.std_in.sum() if "pixel" in key else columns.n)
    if n < MIN_IMAGES:
        return f"too few images for an interval: {int(n)} (needs {MIN_IMAGES})"
    return None


def _interval(res, i: int, value: float) -> dict:
    """{"low", "high"} of metric i: BCa, or the percentile interval where BCa is undefined (a
    resampling distribution piled on one value), or [value, value] where every resample agrees."""
    low, high = float(res.confidence_interval.low[i]), float(res.confidence_interval.high[i])
    if np.isfinite(low) and np.isfinite(high):
        return {"low": low, "high": high}
    dist = res.bootstrap_distribution[i]
    dist = dist[np.isfinite(dist)]
    if not len(dist) or np.ptp(dist) == 0:
        return {"low": value, "high": value}
    alpha = (1 - LEVEL) / 2
    return {"low": float(np.quantile(dist, alpha)), "high": float(np.quantile(dist, 1 - alpha)),
            "method": "percentile"}


def metric_intervals(table: pd.DataFrame, values: dict, threshold: float = 0.5, protocol: str = "both",
                     resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """{headline key: {"low", "high"} or {"reason"}} for one subset's per-image rows.

    `values`: the subset's metrics (from `paper_metrics`/`standard_metrics`): a key whose value
    is None is undefined and gets a reason. Images are resampled within strata (label, in the
    standard pixel metrics, in the paper's pixel F1); BCa intervals at `LEVEL` (scipy).
    """
    columns = _Columns(table, threshold)
    keys = [k for k in headline_keys(threshold, protocol) if k in values]
    out = {k: {"reason": r} for k in keys if (r := _size_reason(k, values[k], columns))}
    todo = [k for k in keys if k not in out]
    res = _bootstrap([columns], columns.strata, todo, threshold, resamples, LEVEL, seed, "BCa",
                     lambda v: v[0]) if todo else None  # fmt: skip
    for i, key in enumerate(todo):
        out[key] = _interval(res, i, values[key]) if res else {"reason": "one image per stratum"}
    return {k: out[k] for k in keys}


def floors(table: pd.DataFrame, threshold: float = 0.5, protocol: str = "both") -> dict[str, dict]:
    """{headline key: {predictor: score}}: what trivial predictors score on these images, from the
    same masks and labels. Predictors (`PREDICTORS`): every pixel tampered, no pixel tampered
    (maps); a constant image score (the better side of the threshold; AUC 0.5). Paper keys use
    the paper protocol's pixels, standard keys the standard one's; None where undefined."""
    c = _Columns(table, threshold)
    t = f"{threshold:g}"
    tampered = table["label"].to_numpy().astype(bool)
    both = bool(tampered.any() and (~tampered).any())
    # Pixels of each image: tampered (positives) and authentic (negatives), per protocol.
    pos = c.counts[:, 0] + c.counts[:, 2]
    neg = (table["fp"].to_numpy(np.float64) + table["tn"].to_numpy(np.float64)) * c.std_in
    paper_cols = ("paper_tp", "paper_fn") if "paper_tp" in table else ("tp", "fn")
    paper_pos = sum(table[col].to_numpy(np.float64) for col in paper_cols)
    paper_neg = table["height"].to_numpy(np.float64) * table["width"].to_numpy(np.float64) - paper_pos \
        if "height" in table else (table["fp"] + table["tn"]).to_numpy(np.float64)

    def mean(values: np.ndarray, inside: np.ndarray) -> float | None:
        return float(values[inside].mean()) if inside.any() else None

    every_std = mean(f1_from_counts(pos, neg, 0), c.std_in)
    micro_every = float(f1_from_counts(pos.sum(), neg.sum(), 0)) if c.std_in.any() else None
    zero = 0.0 if c.std_in.any() else None
    paper_every = mean(pixel_f1_per_image(paper_pos, paper_neg, 0), c.paper_in)
    paper_none = mean(pixel_f1_per_image(0, 0, paper_pos), c.paper_in)
    n_pos, n_neg = tampered.sum(), (~tampered).sum()
    out = {
        "paper/pixel_f1": {"every_pixel": paper_every, "no_pixel": paper_none},
        "paper/image_f1": {"constant_score": 0.0 if both else None},
        "paper/combined_f1": {"every_pixel": 0.0 if both else None, "no_pixel": 0.0 if both else None},
        "paper/auc": {"constant_score": 0.5 if both else None},
        f"standard/pixel_f1@{t}": {"every_pixel": every_std, "no_pixel": zero},
        "standard/pixel_f1@best": {"every_pixel": every_std, "no_pixel": zero},
        f"standard/image_f1@{t}": {
            "constant_score": float(f1_from_counts(n_pos, n_neg, 0)) if n_pos else None},
        "standard/image_auc": {"constant_score": 0.5 if both else None},
        f"standard/micro_pixel_f1@{t}": {"every_pixel": micro_every, "no_pixel": zero},
    }
    return {k: out[k] for k in headline_keys(threshold, protocol)}


def best_floor(floor: dict[str, float | None]) -> tuple[float | None, str | None]:
    """(the highest trivial score of one metric, the predictor's name); Nones when undefined."""
    known = {k: v for k, v in floor.items() if v is not None}
    if not known:
        return None, None
    name = max(known, key=lambda k: known[k])
    return known[name], PREDICTORS[name]


@dataclass
class PairedComparison:
    """b minus a on the images both runs scored: one row per headline metric (`table`), and the
    images left out because only one run scored them."""

    table: pd.DataFrame
    images: int
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)


def _image_keys(table: pd.DataFrame) -> pd.Series:
    """Which image a row is: its path, numbered when a table lists one path twice."""
    image = table["image"].astype(str)
    return image + "#" + image.groupby(image).cumcount().astype(str)


def align(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """The rows of the images both tables scored, in the same order, and the images only one did.
    An image labelled differently in the two tables is a DataError."""
    ka, kb = _image_keys(a), _image_keys(b)
    common = ka[ka.isin(set(kb))]
    a2 = a.set_axis(ka).loc[common.to_numpy()]
    b2 = b.set_axis(kb).loc[common.to_numpy()]
    clash = a2["label"].to_numpy() != b2["label"].to_numpy()
    if clash.any():
        first = a2.index[np.flatnonzero(clash)[0]].rsplit("#", 1)[0]
        raise DataError(f"{int(clash.sum())} image(s) labelled differently in the two runs, e.g. {first}")
    only_a = sorted(set(a.loc[~ka.isin(set(kb)).to_numpy(), "image"].astype(str)))
    only_b = sorted(set(b.loc[~kb.isin(set(ka)).to_numpy(), "image"].astype(str)))
    return a2.reset_index(drop=True), b2.reset_index(drop=True), only_a, only_b


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference" from B resampled differences: twice the
    smaller of (1 + #{delta <= 0}) / (B + 1) and (1 + #{delta >= 0}) / (B + 1), at most 1 (the
    add-one Monte Carlo form: never 0, at least 2 / (B + 1); 1 when every delta is 0)."""
    d = deltas[np.isfinite(deltas)]
    if not len(d):
        return float("nan")
    side = min(np.sum(d <= 0), np.sum(d >= 0))
    return float(min(1.0, 2 * (1 + side) / (1 + len(d))))


def verdict(low: float | None, high: float | None) -> str:
    """"better" when the interval of b - a lies above 0, "worse" below, else "within noise"."""
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return "no interval"
    return "better" if low > 0 else "worse" if high < 0 else "within noise"


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, threshold: float = 0.5, protocol: str = "both",
                      resamples: int = RESAMPLES, seed: int = SEED) -> PairedComparison:
    """Each headline metric of b minus a's on the images both scored, with a paired percentile
    interval (the same images drawn for both runs, within the strata of `metric_intervals`) and
    the two-sided `p_value`. Metrics undefined or too small on the common images give a reason."""
    a, b, only_a, only_b = align(a, b)
    if not len(a):
        raise DataError("the two runs have no image in common")
    ca, cb = _Columns(a, threshold), _Columns(b, threshold)
    keys = list(headline_keys(threshold, protocol))
    ones = np.ones((1, len(a)))
    va, vb = ca.metrics(ones, keys, threshold)[:, 0], cb.metrics(ones, keys, threshold)[:, 0]
    reasons = {k: _size_reason(k, None if np.isnan(x) or np.isnan(y) else 0.0, ca)
               or _size_reason(k, 0.0, cb) for k, x, y in zip(keys, va, vb, strict=True)}  # fmt: skip
    todo = [k for k in keys if not reasons[k]]
    strata = ca.strata * 8 + cb.strata
    res = _bootstrap([ca, cb], strata, todo, threshold, resamples, LEVEL, seed, "percentile",
                     lambda v: v[1] - v[0]) if todo else None  # fmt: skip
    rows = []
    for k, x, y in zip(keys, va, vb, strict=True):
        row = {"metric": k, "a": _num(x), "b": _num(y), "delta": _num(y - x), "low": None, "high": None,
               "p": None, "verdict": "no interval", "reason": reasons[k] or ""}
        if res is not None and k in todo:
            i = todo.index(k)
            low, high = float(res.confidence_interval.low[i]), float(res.confidence_interval.high[i])
            row.update(low=low, high=high, p=p_value(res.bootstrap_distribution[i]), verdict=verdict(low, high))
        elif not row["reason"]:
            row["reason"] = "one image per stratum"
        rows.append(row)
    return PairedComparison(pd.DataFrame(rows), len(a), only_a, only_b)


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def describe(resamples: int) -> dict:
    """What metrics.json says about its intervals: level, resamples, method, seed, what is drawn."""
    if not resamples:
        return {"resamples": 0, "note": "no intervals (ci 0)"}
    return {
        "level": LEVEL,
        "resamples": resamples,
        "method": "BCa (scipy.stats.bootstrap); percentile where BCa is undefined",
        "seed": SEED,
        "resampled": "images, with replacement, within strata of (label, whether in the standard "
                     "pixel metrics, whether in the paper's pixel F1)",
        "min_images": MIN_IMAGES,
    }


def headline_frame(metrics: dict, subsets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (subset, headline metric) of an evaluation's metrics (`evaluate`'s return value
    or metrics.json): value, low, high, reason (why there is no interval), floor and floor_by (the
    best trivial predictor's score and its name), images, and text (`format_ci`). Subsets without
    a value for a key are left out; `subsets` picks and orders them."""
    threshold = metrics.get("threshold", 0.5)
    names = list(subsets) if subsets is not None else list(metrics["subsets"])
    rows = []
    for name in names:
        m = metrics["subsets"][name]
        for key in headline_keys(threshold):
            if key not in m:
                continue
            ci = (m.get("intervals") or {}).get(key, {})
            floor, by = best_floor((m.get("floors") or {}).get(key, {}))
            value = m[key]
            rows.append({"subset": name, "metric": key, "value": value, "low": ci.get("low"),
                         "high": ci.get("high"), "reason": ci.get("reason", ""), "floor": floor,
                         "floor_by": by or "", "images": m.get("count/images"),
                         "text": format_ci(value, ci.get("low"), ci.get("high"))})
    columns = ["subset", "metric", "value", "low", "high", "reason", "floor", "floor_by", "images", "text"]
    return pd.DataFrame(rows, columns=columns)
