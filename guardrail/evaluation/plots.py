"""PNG plots for evaluation reports (matplotlib, Agg canvas; imported only when a report is written).

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through
``pyplot``: no global figure registry, no GUI backend picked from the environment, and safe to call
from any thread.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from guardrail.evaluation.metrics import ArrayLike, Sweep, counts_at, pr_curve, precision, recall

__all__ = ["plot_pr_curve", "plot_sweep"]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    return path


def plot_pr_curve(path: Path, y: ArrayLike, s: ArrayLike, threshold: float | None, title: str, auprc: float) -> Path:
    """Precision against recall over every threshold, with the current threshold's point marked."""
    prec, rec, _ = pr_curve(y, s)
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.add_subplot()
    ax.step([0.0, *rec.tolist()], [float(prec[0]) if prec.size else 1.0, *prec.tolist()], where="post", lw=1.6)
    if threshold is not None:
        c = counts_at(y, s, threshold)
        p, r = precision(c), recall(c)
        if not (math.isnan(p) or math.isnan(r)):
            ax.plot([r], [p], "o", color="crimson", label=f"threshold {threshold:g}: P {p:.2f} R {r:.2f}")
            ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title}  (AUPRC {auprc:.3f})", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_sweep(path: Path, sw: Sweep, threshold: float | None, title: str) -> Path:
    """Precision, recall, F1 and false-positive rate against the threshold; the current one marked."""
    fig = Figure(figsize=(5.8, 4.2))
    ax = fig.add_subplot()
    for values, name in ((sw.precision, "precision"), (sw.recall, "recall"), (sw.f1, "F1"), (sw.fpr, "FPR")):
        ax.plot(sw.thresholds, values, label=name, lw=1.5, ls="--" if name == "FPR" else "-")
    if threshold is not None:
        ax.axvline(threshold, color="black", lw=1.0, ls=":", label=f"current {threshold:g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("threshold (flag when score ≥ threshold)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
