"""Classification and latency metrics: pure functions over numpy arrays, nothing else imported.

Conventions shared with the engine (``Rule.fires``): a text is *flagged* when its score is **at or
above** the threshold; ``y`` holds 0/1 ground truth and ``s`` the scores, both 1-D and of equal
length. Ratios with an empty denominator are ``nan`` (not 0): "no negatives, so no false-positive
rate" must not read as "a perfect false-positive rate" in a report.

The precision-recall curve and average precision follow scikit-learn's definitions (distinct scores
as thresholds, step-wise AP without interpolation), so numbers agree with what users compute there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BinaryMetrics",
    "Counts",
    "Sweep",
    "average_precision",
    "binary_metrics",
    "counts_at",
    "f1_score",
    "false_positive_rate",
    "latency_summary",
    "pr_curve",
    "precision",
    "recall",
    "recall_at_fpr",
    "sweep",
    "threshold_for_fpr",
    "threshold_for_recall",
    "wilson_interval",
]

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | npt.NDArray[Any]


def _arrays(y: ArrayLike, s: ArrayLike) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    ya = np.asarray(y, dtype=np.float64).ravel()
    sa = np.asarray(s, dtype=np.float64).ravel()
    if ya.shape != sa.shape:
        raise ValueError(f"labels and scores differ in length ({ya.size} vs {sa.size})")
    if ya.size and not np.isin(ya, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(sa).any():
        raise ValueError("scores contain NaN")
    return ya == 1.0, sa


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


@dataclass(frozen=True, slots=True)
class Counts:
    """The confusion counts of one threshold."""

    tp: int
    fp: int
    tn: int
    fn: int


def counts_at(y: ArrayLike, s: ArrayLike, threshold: float) -> Counts:
    pos, sa = _arrays(y, s)
    pred = sa >= threshold
    return Counts(
        tp=int((pred & pos).sum()),
        fp=int((pred & ~pos).sum()),
        tn=int((~pred & ~pos).sum()),
        fn=int((~pred & pos).sum()),
    )


def precision(c: Counts) -> float:
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Counts) -> float:
    return _ratio(c.tp, c.tp + c.fn)


def false_positive_rate(c: Counts) -> float:
    return _ratio(c.fp, c.fp + c.tn)


def f1_score(c: Counts) -> float:
    """2TP / (2TP + FP + FN); nan when there is nothing to find and nothing was flagged."""
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> dict[str, float]:
    """The Wilson score interval of a rate (``{"low", "high"}``, 95% by default; nan when ``n`` is 0).

    Why: a recall of 0.84 on 138 rows is 0.77-0.89, so two models 0.02 apart on such a set are not told apart. The
    Wilson interval stays inside [0, 1] and is sound at 0 or n successes, where the normal approximation is not."""
    if n <= 0:
        return {"low": math.nan, "high": math.nan}
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def pr_curve(y: ArrayLike, s: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(precision, recall, thresholds), one point per distinct score, highest threshold first.

    Point *i* is what flagging every score ``>= thresholds[i]`` gives. Empty arrays when there are
    no scores; recall is nan throughout when there are no positives.
    """
    pos, sa = _arrays(y, s)
    if sa.size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty, empty
    order = np.argsort(-sa, kind="mergesort")
    ss, yy = sa[order], pos[order].astype(np.float64)
    last = np.r_[np.nonzero(np.diff(ss))[0], ss.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(yy)[last]
    flagged = (last + 1).astype(np.float64)
    n_pos = float(yy.sum())
    prec = tp / flagged
    rec = tp / n_pos if n_pos else np.full(tp.shape, math.nan)
    return prec, rec, ss[last]


def average_precision(y: ArrayLike, s: ArrayLike) -> float:
    """Area under the precision-recall curve as the step sum ``Σ (R_i - R_{i-1}) · P_i`` (nan without positives)."""
    prec, rec, _ = pr_curve(y, s)
    if rec.size == 0 or math.isnan(float(rec[0])):
        return math.nan
    steps = np.diff(np.r_[0.0, rec])
    return float((steps * prec).sum())


def _between(lo: float, hi: float) -> float:
    """A short decimal t with ``lo < t <= hi`` (a threshold people can read in a policy file)."""
    if hi <= lo:
        return hi
    mid = (lo + hi) / 2.0
    for digits in range(1, 7):
        t = round(mid, digits)
        if lo < t <= hi:
            return t
    return hi if mid <= lo else mid


def threshold_for_fpr(y: ArrayLike, s: ArrayLike, target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate is at most ``target_fpr``.

    The lowest one, because recall only grows as the threshold falls. The threshold sits halfway
    (rounded short) between the highest negative score it must exclude and the next higher score,
    so it does not rest exactly on one example's score. With no negatives the constraint is void
    and the lowest score is returned; when excluding enough negatives needs a threshold above every
    score, the threshold flags nothing (recall 0), or is 1.0 when negatives score 1.0 (then the
    target is out of reach: callers report the false-positive rate it achieves).
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError("target_fpr must be within [0, 1]")
    pos, sa = _arrays(y, s)
    if sa.size == 0:
        raise ValueError("no scores")
    neg = np.sort(sa[~pos])[::-1]
    allowed = math.floor(target_fpr * neg.size + 1e-9)  # how many negatives may score at or above
    if allowed >= neg.size:
        return float(sa.min())
    lo = float(neg[allowed])  # this negative (and every one below it) must fall under the threshold
    above = sa[sa > lo]
    if above.size == 0:  # nothing scores above it: flag nothing (possible unless it scored 1.0)
        return _between(lo, 1.0) if lo < 1.0 else 1.0
    return _between(lo, float(above.min()))


def threshold_for_recall(y: ArrayLike, s: ArrayLike, target_recall: float) -> float:
    """The highest threshold whose recall is at least ``target_recall`` (the fewest false positives).

    It sits halfway (rounded short) between the score of the last positive it must keep and the
    next lower score, so that positive is kept with a margin.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError("target_recall must be within (0, 1]")
    pos, sa = _arrays(y, s)
    p = np.sort(sa[pos])[::-1]
    if p.size == 0:
        raise ValueError("no positives: recall is undefined")
    need = max(1, math.ceil(target_recall * p.size - 1e-9))
    hi = float(p[need - 1])
    below = sa[sa < hi]
    if below.size == 0:
        return hi
    return _between(float(below.max()), hi)


def recall_at_fpr(y: ArrayLike, s: ArrayLike, target_fpr: float) -> tuple[float, float, float]:
    """(recall, threshold, achieved FPR) at the threshold of :func:`threshold_for_fpr`."""
    t = threshold_for_fpr(y, s, target_fpr)
    c = counts_at(y, s, t)
    return recall(c), t, false_positive_rate(c)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Metrics at each threshold of a grid (for the threshold-sweep plot)."""

    thresholds: FloatArray
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    fpr: FloatArray


def sweep(y: ArrayLike, s: ArrayLike, thresholds: Iterable[float] | None = None) -> Sweep:
    """Precision, recall, F1 and FPR at every threshold (default: 0.00, 0.01, ..., 1.00)."""
    grid = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(list(thresholds), dtype=np.float64)
    pos, sa = _arrays(y, s)
    pred = sa[None, :] >= grid[:, None]
    tp = (pred & pos).sum(axis=1).astype(np.float64)
    fp = (pred & ~pos).sum(axis=1).astype(np.float64)
    n_pos, n_neg = float(pos.sum()), float((~pos).sum())
    fn = n_pos - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        rec = tp / n_pos if n_pos else np.full(grid.shape, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        fpr = fp / n_neg if n_neg else np.full(grid.shape, np.nan)
    return Sweep(grid, prec, rec, f1, fpr)


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    """Everything a report says about one head at one threshold."""

    n_pos: int
    n_neg: int
    threshold: float | None
    precision: float
    recall: float
    f1: float
    fpr: float
    auprc: float
    recall_at_fpr: dict[str, float]  # "1%" -> recall at the lowest threshold with FPR <= 1%
    threshold_at_fpr: dict[str, float]
    recall_ci: dict[str, float]  # 95% Wilson interval of recall at the threshold ({"low", "high"})
    fpr_ci: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in asdict(self).items()}


def _json_float(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    if isinstance(v, dict):
        return {k: _json_float(x) for k, x in v.items()}
    return v


def binary_metrics(
    y: ArrayLike, s: ArrayLike, threshold: float | None, fprs: Sequence[float] = (0.01, 0.05)
) -> BinaryMetrics:
    """Precision/recall/F1/FPR at ``threshold`` (nan when it is None), AUPRC and recall at fixed FPRs."""
    pos, sa = _arrays(y, s)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    nan = {"low": math.nan, "high": math.nan}
    if threshold is None:
        p = r = f = fpr = math.nan
        r_ci = f_ci = nan
    else:
        c = counts_at(pos.astype(np.float64), sa, threshold)
        p, r, f, fpr = precision(c), recall(c), f1_score(c), false_positive_rate(c)
        r_ci, f_ci = wilson_interval(c.tp, c.tp + c.fn), wilson_interval(c.fp, c.fp + c.tn)
    at: dict[str, float] = {}
    at_t: dict[str, float] = {}
    for target in fprs:
        key = f"{target * 100:g}%"
        if n_pos and n_neg:
            at[key], at_t[key], _ = recall_at_fpr(pos.astype(np.float64), sa, target)
        else:
            at[key] = at_t[key] = math.nan
    ap = average_precision(pos.astype(np.float64), sa) if n_pos else math.nan
    return BinaryMetrics(n_pos, n_neg, threshold, p, r, f, fpr, ap, at, at_t, r_ci, f_ci)


def latency_summary(ms: ArrayLike, percentiles: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"n", "mean", "p50", "p90", "p99", "max"}`` in the unit given (linear interpolation, as numpy)."""
    a = np.asarray(ms, dtype=np.float64).ravel()
    if a.size == 0:
        return {"n": 0.0}
    out: dict[str, float] = {"n": float(a.size), "mean": float(a.mean())}
    for q, v in zip(percentiles, np.percentile(a, list(percentiles)), strict=True):
        out[f"p{q:g}"] = float(v)
    out["max"] = float(a.max())
    return out
