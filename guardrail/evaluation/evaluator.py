"""How a policy performs on labelled data: the core of ``guardrail eval`` (the CLI is ``eval_cmd``).

Every row goes through a real :class:`~guardrail.engine.Guard` one at a time, exactly as traffic
would (scope, normalisation, rules, fail mode), so the actions counted are the actions the policy
would take and the latencies are single-check latencies. Per-category metrics use the scores each
decision carries, at the policy's threshold for that category (or the model's default when the
policy has no rule for it). Rows are described in :mod:`guardrail.evaluation.data`.

The policy's ``timeout_ms`` is lifted during the run (``--timeout-ms``): a slow check on a busy
machine would otherwise be scored as a fail-mode block and corrupt quality numbers. The report says
how many checks took longer than the policy allows.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.decision import Action, Decision, RuleAction
from guardrail.evaluation.data import EvalRow, Progress
from guardrail.evaluation.eval_cmd import DEFAULT_EVAL_TIMEOUT_MS
from guardrail.evaluation.metrics import (
    binary_metrics,
    counts_at,
    f1_score,
    false_positive_rate,
    latency_summary,
    wilson_interval,
)
from guardrail.evaluation.metrics import precision as _precision
from guardrail.evaluation.metrics import recall as _recall
from guardrail.policy import DEFAULT_THRESHOLD, Policy, load_policy, model_labels
from guardrail.taxonomy import STAGES

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

__all__ = [
    "OUTCOMES",
    "Checked",
    "evaluate",
    "quiet_audit",
    "run_checks",
    "run_eval",
    "with_model",
]

# what happened to a row: "redact" is a rewrite that only masked PII; "rewrite" replaced the text
OUTCOMES = ("allow", "log", "redact", "rewrite", "block")


@dataclass(frozen=True, slots=True)
class Checked:
    row: EvalRow
    decision: Decision
    outcome: str


def outcome_of(d: Decision) -> str:
    if d.action is Action.REWRITE:
        replaced = any(f.action is RuleAction.REWRITE and not f.shadow for f in d.findings)
        return "rewrite" if replaced else "redact"
    return str(d.action.value)


def stops(outcome: str) -> bool:
    """The request does not reach (or the response does not reach the user) as written."""
    return outcome in ("block", "rewrite")


def with_model(policy_ref: str | None, model: str | os.PathLike[str]) -> Policy:
    """The policy re-resolved against another model folder (its default thresholds come from there)."""
    ref = policy_ref or "default"
    if os.sep in ref or "/" in ref or ref.endswith((".yaml", ".yml")):
        ref = str(Path(ref).resolve())
    name = load_policy(ref).name
    return load_policy({"version": 1, "name": name, "extends": ref, "model": str(Path(model).resolve())})


def run_checks(guard: Guard, rows: Sequence[EvalRow], progress: Progress | None = None) -> list[Checked]:
    out = []
    for row in rows:
        if row.stage == "input":
            d = guard.check_input(row.messages or row.text)
        else:
            d = guard.check_output(row.text, prompt=row.prompt)
        out.append(Checked(row, d, outcome_of(d)))
        if progress is not None:
            progress.step()
    return out


# ----------------------------------------------------------------------------------------- metrics


def _default_thresholds(policy: Policy) -> dict[str, float]:
    labels = model_labels(policy.model)
    return {k: v.threshold for k, v in (labels or {}).items()}


def evaluate(checked: Sequence[Checked], policy: Policy, *, show: int = 10) -> dict[str, Any]:
    """Everything the report says, as JSON-ready data (``metrics.json``)."""
    defaults = _default_thresholds(policy)
    scored = [c for c in checked if c.decision.error is None]
    categories: list[dict[str, Any]] = []
    for stage in STAGES:
        rules = {r.category: r for r in policy.rules(stage) if r.action is not RuleAction.REDACT}
        rows = [c for c in scored if c.row.stage == stage]
        known = sorted({k for c in rows for k in c.row.truth if k in c.decision.scores}, key=_category_order(rules))
        for cat in known:
            pairs = [
                (c.row.truth[cat], c.decision.scores[cat])
                for c in rows
                if cat in c.row.truth and cat in c.decision.scores
            ]
            y, s = [p[0] for p in pairs], [p[1] for p in pairs]
            rule = rules.get(cat)
            thr = rule.threshold if rule is not None else defaults.get(cat, DEFAULT_THRESHOLD)
            m = binary_metrics(y, s, thr)
            categories.append(
                {
                    "stage": stage,
                    "category": cat,
                    "threshold_source": "policy" if rule is not None else "model default",
                    "action": rule.action.value if rule is not None else None,
                    **m.to_dict(),
                    "_y": y,
                    "_s": s,
                }
            )
    return {
        "policy": {"name": policy.name, "hash": policy.hash, "source": policy.source, "model": policy.model},
        "rows": len(checked),
        "rows_by_stage": dict(Counter(c.row.stage for c in checked)),
        "errors": len(checked) - len(scored),
        "categories": categories,
        "policy_outcome": _policy_outcome(checked),
        "actions": _actions(checked),
        "over_refusal": _over_refusal(checked, policy, show),
        "latency_ms": _latency(checked, policy),
    }


def _category_order(rules: dict[str, Any]) -> Any:
    order = {c: i for i, c in enumerate(rules)}
    return lambda cat: (order.get(cat, len(order)), cat)


def _policy_outcome(checked: Sequence[Checked]) -> dict[str, Any]:
    """The policy as one binary classifier per stage: does it stop (block/rewrite) harmful rows?"""
    out: dict[str, Any] = {}
    for stage in ("input", "output"):
        rows = [c for c in checked if c.row.stage == stage and c.row.label is not None]
        if not rows:
            continue
        y = [float(c.row.label or 0) for c in rows]
        s = [1.0 if stops(c.outcome) else 0.0 for c in rows]
        k = counts_at(y, s, 0.5)
        out[stage] = _clean(
            {
                "n_pos": k.tp + k.fn,
                "n_neg": k.fp + k.tn,
                "precision": _precision(k),
                "recall": _recall(k),
                "f1": f1_score(k),
                "fpr": false_positive_rate(k),
                "recall_ci": _clean(wilson_interval(k.tp, k.tp + k.fn)),
                "fpr_ci": _clean(wilson_interval(k.fp, k.fp + k.tn)),
            }
        )
    return out


def _actions(checked: Sequence[Checked]) -> dict[str, dict[str, dict[str, int]]]:
    """Confusion of actions: truth (harmful / benign / unlabelled) x what the policy did."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for stage in ("input", "output"):
        rows = [c for c in checked if c.row.stage == stage]
        if not rows:
            continue
        table: dict[str, dict[str, int]] = {}
        for truth in ("harmful", "benign", "unlabelled"):
            group = [c for c in rows if _truth_name(c.row) == truth]
            if group:
                n = Counter(c.outcome for c in group)
                table[truth] = {o: n.get(o, 0) for o in OUTCOMES}
        out[stage] = table
    return out


def _truth_name(row: EvalRow) -> str:
    return "unlabelled" if row.label is None else ("harmful" if row.label == 1 else "benign")


def _over_refusal(checked: Sequence[Checked], policy: Policy, show: int) -> dict[str, Any]:
    marked = [c for c in checked if c.row.benign]
    basis = "benign marker"
    if not marked:
        marked, basis = [c for c in checked if c.row.label == 0], "label 0 (no row has a benign marker)"
    if not marked:
        return {"n": 0}
    n = Counter(c.outcome for c in marked)
    near: list[dict[str, Any]] = []
    for c in marked:
        best: tuple[float, str, float, float] | None = None
        for r in policy.rules(c.row.stage):
            if r.action in (RuleAction.BLOCK, RuleAction.REWRITE) and r.threshold is not None and policy.enforces(r):
                score = c.decision.scores.get(r.category)
                if score is not None and (best is None or score - r.threshold > best[0]):
                    best = (score - r.threshold, r.category, score, r.threshold)
        if best is not None:
            near.append(
                {
                    "id": c.row.id,
                    "stage": c.row.stage,
                    "outcome": c.outcome,
                    "category": best[1],
                    "score": round(best[2], 4),
                    "threshold": best[3],
                    "margin": round(best[0], 4),
                    "text": _short(c.row.text),
                }
            )
    over = sorted((e for e in near if e["margin"] >= 0), key=lambda e: e["margin"])[:show]
    under = sorted((e for e in near if e["margin"] < 0), key=lambda e: -e["margin"])[:show]
    total = len(marked)
    return {
        "basis": basis,
        "n": total,
        "blocked": n.get("block", 0) / total,
        "rewritten": n.get("rewrite", 0) / total,
        "redacted": n.get("redact", 0) / total,
        "over_threshold_closest": over,
        "under_threshold_closest": under,
    }


def _short(text: str, n: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _latency(checked: Sequence[Checked], policy: Policy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage in ("input", "output"):
        ms = [c.decision.latency_ms for c in checked if c.row.stage == stage]
        if ms:
            out[stage] = latency_summary(ms)
    out["all"] = latency_summary([c.decision.latency_ms for c in checked])
    out["policy_timeout_ms"] = policy.timeout_ms
    out["over_policy_timeout"] = sum(c.decision.latency_ms > policy.timeout_ms for c in checked)
    return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


# ------------------------------------------------------------------------------------------- driver


def run_eval(
    rows: Sequence[EvalRow],
    policy: Policy | str | None = None,
    *,
    classifiers: Classifier | Sequence[Classifier] | None = None,
    out: Path | None = None,
    plots: bool = True,
    show: int = 10,
    timeout_ms: int | None = DEFAULT_EVAL_TIMEOUT_MS,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check ``rows`` with the policy; returns the report (and writes it to ``out`` when given)."""
    from guardrail.engine import Guard

    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    run_pol = pol.model_copy(update={"timeout_ms": timeout_ms}) if timeout_ms else pol
    guard = Guard(run_pol, classifiers=classifiers)
    try:
        for clf in guard.classifiers():
            warm = getattr(clf, "warmup", None)
            if callable(warm):
                warm()
        checked = run_checks(guard, rows, progress)
    finally:
        guard.close()
    report = evaluate(checked, pol, show=show)
    if out is not None:
        from guardrail.evaluation.report import write_outputs

        report["files"] = [str(p) for p in write_outputs(report, out, plots=plots)]
    return report


def quiet_audit() -> None:
    """The CLI is the application here: audit events would drown the table, so they are dropped."""
    import structlog

    def drop(*_: Any) -> Any:
        raise structlog.DropEvent

    structlog.configure(processors=[drop], cache_logger_on_first_use=False)
