"""Calibrate each head and choose its default threshold on hard negatives.

Calibration is Platt scaling per head (p = sigmoid(a * logit + b)) fitted on the random dev split,
so a threshold of 0.8 means roughly the same thing on every head. The default threshold is then
chosen where users feel it: not on easy negatives (Alpaca instructions) but on the benign look-alikes
(support posts, contrast prompts, scary-word questions) whose over-blocking is the classifier's own
exaggerated safety. Rule: the threshold maximising F1 on dev, raised until the false-positive rate
on hard negatives is at most ``max_hard_fpr`` (and on ordinary prompts at most ``max_ordinary_fpr``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Benign crops of long documents ("document-window") are deliberately not here: they are many and
# mostly easy, so counting them would dilute the 5% hard-negative quota and let the threshold drop
# (measured: unsafe threshold 0.73 -> 0.41, CoCoNot-contrast FPR 3.7% -> 9.8%). They still count as negatives.
HARD_NEGATIVE_KINDS = {
    "benign-scary", "lookalike", "support", "neutral", "edgy-benign", "benign_lookalike",
}  # fmt: skip


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))
    return out


def fit_platt(logits: np.ndarray, y: np.ndarray, iters: int = 100, ridge: float = 1.0) -> tuple[float, float]:
    """Fit p = sigmoid(a * logit + b) by damped Newton steps; returns (1, 0) when a class is absent.

    Undamped Newton diverges on (nearly) separable dev data: a run of the pipeline once produced
    a = 3.8e7, which snaps every score to 0 or 1 and leaves no usable threshold. Two guards: a ridge
    prior pulling (a, b) towards the identity (1, 0), and step halving until the penalised loss falls.
    Logits are clipped so a single extreme window cannot dominate.
    """
    if len(y) < 10 or y.min() == y.max():
        return 1.0, 0.0
    x = np.clip(logits.astype(np.float64), -30.0, 30.0)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))  # Platt's smoothed targets

    def loss(a: float, b: float) -> float:
        z = a * x + b
        nll = float(np.sum(np.logaddexp(0.0, z) - t * z))
        return nll + 0.5 * ridge * ((a - 1.0) ** 2 + b**2)

    a, b = 1.0, 0.0
    cur = loss(a, b)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        g = p - t
        ga = float((g * x).sum()) + ridge * (a - 1.0)
        gb = float(g.sum()) + ridge * b
        w = p * (1 - p) + 1e-12
        haa = float((w * x * x).sum()) + ridge
        hab = float((w * x).sum())
        hbb = float(w.sum()) + ridge
        det = haa * hbb - hab * hab
        if det <= 1e-12:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = 1.0
        while step > 1e-6:
            na, nb = a - step * da, b - step * db
            new = loss(na, nb)
            if new <= cur:
                break
            step /= 2
        else:
            break
        if abs(a - na) < 1e-8 and abs(b - nb) < 1e-8:
            a, b = na, nb
            break
        a, b, cur = na, nb, new
    return float(a), float(b)


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as sklearn's average_precision_score)."""
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    y = y[order]
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / y.sum())


@dataclass
class HeadReport:
    label: str
    threshold: float
    a: float
    b: float
    auprc: float
    precision: float
    recall: float
    f1: float
    hard_fpr: float
    ordinary_fpr: float
    n_pos: int
    n_neg: int


def _grid(p: np.ndarray) -> np.ndarray:
    """Candidate thresholds: a fixed 0.05-0.99 grid plus every score in that range (each score is an exact cut)."""
    grid = np.unique(np.round(np.concatenate([np.linspace(0.05, 0.99, 95), p]), 4))
    out: np.ndarray = grid[(grid >= 0.05) & (grid <= 0.99)]
    return out


def choose_threshold(
    p: np.ndarray,
    y: np.ndarray,
    p_hard: np.ndarray,
    p_ordinary: np.ndarray,
    *,
    max_hard_fpr: float,
    max_ordinary_fpr: float,
) -> float:
    grid = _grid(p)
    best_t, best_f1 = 0.5, -1.0
    for t in grid:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        fp = float((pred & (y == 0)).sum())
        fn = float((~pred & (y == 1)).sum())
        f1 = 2 * tp / max(1.0, 2 * tp + fp + fn)
        if f1 > best_f1:
            best_t, best_f1 = float(t), f1
    t = best_t
    for cand in grid[grid >= best_t]:
        t = float(cand)
        hard_ok = len(p_hard) == 0 or float((p_hard >= t).mean()) <= max_hard_fpr
        ord_ok = len(p_ordinary) == 0 or float((p_ordinary >= t).mean()) <= max_ordinary_fpr
        if hard_ok and ord_ok:
            break
    return round(t, 4)


def threshold_at_budget(
    p: np.ndarray, y: np.ndarray, p_hard: np.ndarray, *, max_fpr: float, max_hard_fpr: float
) -> float:
    """The lowest threshold whose false-positive rate on all negatives is at most ``max_fpr`` and on hard
    negatives at most ``max_hard_fpr``: maximum recall within an over-blocking budget.

    Why not F1 on dev: for ``harmful_response`` the dev positives are few (~60) and mostly one source's style,
    so the F1 peak sits on a plateau edge that does not carry over to other answers (v5: dev F1 peak at 0.47,
    where recall on the project's own answers was 0.62). The issue states the output target as a budget (at most
    3% of ordinary answers blocked), so the threshold spends a budget on dev instead, counted over *all* dev
    negatives of the stage (ordinary answers, refusals and the harder sensitive-but-legitimate answers alike),
    which is stricter than counting ordinary answers alone.
    """
    grid = _grid(p)
    neg = p[y == 0]
    for t in grid:
        fpr_ok = len(neg) == 0 or float((neg >= t).mean()) <= max_fpr
        hard_ok = len(p_hard) == 0 or float((p_hard >= t).mean()) <= max_hard_fpr
        if fpr_ok and hard_ok:
            return round(float(t), 4)
    return 0.99


def report(
    label: str, threshold: float, a: float, b: float, p: np.ndarray, y: np.ndarray, p_hard: np.ndarray,
    p_ord: np.ndarray,
) -> HeadReport:  # fmt: skip
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    prec = tp / max(1, tp + fp)
    rec = tp / max(1, tp + fn)
    return HeadReport(
        label, threshold, a, b, average_precision(y, p), prec, rec, 2 * prec * rec / max(1e-9, prec + rec),
        float((p_hard >= threshold).mean()) if len(p_hard) else float("nan"),
        float((p_ord >= threshold).mean()) if len(p_ord) else float("nan"), int(y.sum()), int(len(y) - y.sum()),
    )  # fmt: skip


def targets_for(labels: Sequence[dict[str, float]], head: str) -> tuple[np.ndarray, np.ndarray]:
    """(row indices supervised for ``head``, their 0/1 targets)."""
    rows = [i for i, lab in enumerate(labels) if head in lab]
    return np.array(rows, dtype=np.int64), np.array([labels[i][head] for i in rows], dtype=np.float32)
