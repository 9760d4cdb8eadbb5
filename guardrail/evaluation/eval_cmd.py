"""``guardrail eval DATA --policy P --out DIR``: how a policy performs on labelled data.

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

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.decision import Action, Decision, RuleAction
from guardrail.evaluation.data import EvalRow, Progress, load_rows
from guardrail.evaluation.metrics import binary_metrics, counts_at, f1_score, false_positive_rate, latency_summary
from guardrail.evaluation.metrics import precision as _precision
from guardrail.evaluation.metrics import recall as _recall
from guardrail.policy import DEFAULT_THRESHOLD, Policy, load_policy, model_labels
from guardrail.taxonomy import STAGES

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

__all__ = ["OUTCOMES", "Checked", "add_parser", "cmd_eval", "evaluate", "run_checks", "run_eval"]

# what happened to a row: "redact" is a rewrite that only masked PII; "rewrite" replaced the text
OUTCOMES = ("allow", "log", "redact", "rewrite", "block")
DEFAULT_EVAL_TIMEOUT_MS = 30_000


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
    return load_policy({"version": 1, "extends": ref, "model": str(Path(model).resolve())})


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
            pairs = [(c.row.truth[cat], c.decision.scores[cat]) for c in rows if cat in c.row.truth]
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


# ------------------------------------------------------------------------------------- presenting


def shown_categories(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows worth a line: a category with positives, or one the policy enforces (its FPR matters).
    The rest (all-negative heads without a rule) stay in metrics.json."""
    return [m for m in report["categories"] if m["n_pos"] or (m["threshold_source"] == "policy" and m["n_neg"])]


def _f(v: Any, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    head = f"{'stage':6s} {'category':22s} {'n+':>5s} {'n-':>6s} {'thr':>6s} {'prec':>6s} {'recall':>6s} "
    head += f"{'F1':>6s} {'FPR':>6s} {'AUPRC':>6s} {'R@1%':>6s} {'R@5%':>6s}"
    lines = [head, "-" * len(head)]
    for m in shown_categories(report):
        thr = _f(m["threshold"], 2) + ("*" if m["threshold_source"] != "policy" else " ")
        lines.append(
            f"{m['stage']:6s} {m['category']:22s} {m['n_pos']:5d} {m['n_neg']:6d} {thr:>6s} {_f(m['precision']):>6s} "
            f"{_f(m['recall']):>6s} {_f(m['f1']):>6s} {_f(m['fpr']):>6s} {_f(m['auprc']):>6s} "
            f"{_f(m['recall_at_fpr']['1%']):>6s} {_f(m['recall_at_fpr']['5%']):>6s}"
        )
    lines.append(
        "(* no rule in the policy: the model's default threshold; heads without positives or a rule: metrics.json)"
    )
    for stage, m in report["policy_outcome"].items():
        lines.append(
            f"policy on {stage} (stopped = block or rewrite): precision {_f(m['precision'])}  "
            f"recall {_f(m['recall'])}  F1 {_f(m['f1'])}  FPR {_f(m['fpr'])}  "
            f"({m['n_pos']} harmful, {m['n_neg']} benign)"
        )
    for stage, table in report["actions"].items():
        lines.append(f"actions on {stage}: " + "; ".join(
            f"{truth} " + " ".join(f"{o} {n}" for o, n in counts.items() if n) for truth, counts in table.items()
        ))  # fmt: skip
    o = report["over_refusal"]
    if o.get("n"):
        lines.append(
            f"over-refusal ({o['n']} rows by {o['basis']}): {o['blocked']:.1%} blocked, "
            f"{o['rewritten']:.1%} rewritten, {o['redacted']:.1%} redacted"
        )
    lat = report["latency_ms"]
    for stage in ("input", "output"):
        if stage in lat:
            s = lat[stage]
            lines.append(
                f"latency {stage}: p50 {s['p50']:.1f} ms  p90 {s['p90']:.1f} ms  p99 {s['p99']:.1f} ms  "
                f"max {s['max']:.1f} ms"
            )
    if lat["over_policy_timeout"]:
        lines.append(
            f"{lat['over_policy_timeout']} check(s) took longer than the policy's {lat['policy_timeout_ms']} ms"
        )
    if report["errors"]:
        lines.append(f"{report['errors']} check(s) failed and were decided by the fail mode (left out of the metrics)")
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """report.md, metrics.json and (with ``plots``) one PR curve and one sweep PNG per category."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, tuple[str, str]] = {}
    if plots:
        from guardrail.evaluation.metrics import sweep
        from guardrail.evaluation.plots import plot_pr_curve, plot_sweep

        for m in report["categories"]:
            if not (m["n_pos"] and m["n_neg"]):
                continue
            key = f"{m['stage']}_{m['category']}"
            title = f"{m['category']} ({m['stage']})"
            auprc = m["auprc"] if m["auprc"] is not None else math.nan
            pr = plot_pr_curve(out / f"pr_{key}.png", m["_y"], m["_s"], m["threshold"], title, auprc)
            sw = plot_sweep(out / f"sweep_{key}.png", sweep(m["_y"], m["_s"]), m["threshold"], title)
            images[key] = (pr.name, sw.name)
            written += [pr, sw]
    public = dict(
        report, categories=[{k: v for k, v in m.items() if not k.startswith("_")} for m in report["categories"]]
    )
    public["plots"] = sorted(p.name for p in written)
    (out / "metrics.json").write_text(json.dumps(public, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(public, images), encoding="utf-8")
    return [out / "report.md", out / "metrics.json", *written]


def _markdown(r: dict[str, Any], images: dict[str, tuple[str, str]]) -> str:
    p = r["policy"]
    md = [
        f"# guardrail eval: policy `{p['name']}` ({p['hash'][:12]})",
        "",
        f"{r['rows']} rows ({', '.join(f'{n} {s}' for s, n in r['rows_by_stage'].items())}); model `{p['model']}`.",
        "",
        "## Per category",
        "",
        "| stage | category | n+ | n− | threshold | precision | recall | F1 | FPR | AUPRC "
        "| recall@1%FPR | recall@5%FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in shown_categories(r):
        src = "" if m["threshold_source"] == "policy" else " (model default)"
        md.append(
            f"| {m['stage']} | {m['category']} | {m['n_pos']} | {m['n_neg']} | {_f(m['threshold'], 3)}{src} | "
            f"{_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} | {_f(m['fpr'])} | {_f(m['auprc'])} | "
            f"{_f(m['recall_at_fpr']['1%'])} (t={_f(m['threshold_at_fpr']['1%'])}) | "
            f"{_f(m['recall_at_fpr']['5%'])} (t={_f(m['threshold_at_fpr']['5%'])}) |"
        )
    md += ["", "## What the policy would do", ""]
    for stage, m in r["policy_outcome"].items():
        md.append(
            f"- **{stage}** (stopped = block or rewrite): precision {_f(m['precision'])}, recall {_f(m['recall'])}, "
            f"F1 {_f(m['f1'])}, false-positive rate {_f(m['fpr'])} ({m['n_pos']} harmful, {m['n_neg']} benign rows)"
        )
    for stage, table in r["actions"].items():
        md += ["", f"Actions on {stage} rows:", "", "| truth | " + " | ".join(OUTCOMES) + " |", "|---" * 6 + "|"]
        md += [f"| {t} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |" for t, c in table.items()]
    o = r["over_refusal"]
    md += ["", "## Over-refusal", ""]
    if not o.get("n"):
        md.append("No benign rows (mark them with `benign: true` or `label: 0`).")
    else:
        md.append(
            f"{o['n']} benign rows (by {o['basis']}): **{o['blocked']:.1%} blocked**, {o['rewritten']:.1%} rewritten, "
            f"{o['redacted']:.1%} only redacted."
        )
        for key, title in (
            (
                "over_threshold_closest",
                "Benign rows stopped, closest to the threshold first (a small raise frees them)",
            ),
            ("under_threshold_closest", "Benign rows allowed but closest to the threshold (the next to be stopped)"),
        ):
            if o[key]:
                md += [
                    "",
                    f"{title}:",
                    "",
                    "| id | stage | category | score | threshold | outcome | text |",
                    "|---" * 7 + "|",
                ]
                md += [
                    f"| {e['id']} | {e['stage']} | {e['category']} | {e['score']:.3f} | {e['threshold']:.3f} | "
                    f"{e['outcome']} | {e['text'].replace('|', '¦')} |"
                    for e in o[key]
                ]
    lat = r["latency_ms"]
    md += [
        "",
        "## Latency per check (ms, sequential, this machine)",
        "",
        "| stage | n | p50 | p90 | p99 | max |",
        "|---" * 6 + "|",
    ]
    for stage in ("input", "output", "all"):
        if stage in lat and lat[stage].get("n"):
            s = lat[stage]
            md.append(
                f"| {stage} | {int(s['n'])} | {s['p50']:.1f} | {s['p90']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |"
            )
    md.append(f"\n{lat['over_policy_timeout']} check(s) exceeded the policy's timeout_ms ({lat['policy_timeout_ms']}).")
    if r["errors"]:
        md.append(
            f"\n{r['errors']} check(s) failed and were decided by the fail mode; they are left out of the metrics."
        )
    if images:
        md += ["", "## Plots", ""]
        for key, (pr, sw) in images.items():
            md.append(f"### {key}\n\n![PR curve]({pr}) ![threshold sweep]({sw})\n")
    return "\n".join(md) + "\n"


# --------------------------------------------------------------------------------------------- CLI


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
        report["files"] = [str(p) for p in write_outputs(report, out, plots=plots)]
    return report


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a policy on labelled data (per-category metrics, actions, over-refusal, latency)",
        description="Check every row of DATA with the policy and report how it did. DATA is JSONL or CSV with "
        "`text`, optional `prompt` (the row is then a response), and a binary `label` and/or category labels "
        "(a `labels` list, or 0/1 columns named after categories); `benign: true` marks over-refusal probes.",
    )
    p.add_argument("data", help="JSONL or CSV file")
    p.add_argument("--policy", "-p", default=None, help="bundled policy name or YAML path (default: default)")
    p.add_argument("--model", default=None, help="model folder to score with (default: the policy's model)")
    p.add_argument("--out", "-o", default=None, help="write report.md, metrics.json and PNG plots to this folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--show", type=int, default=10, help="benign examples to list on each side of the threshold")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    p.add_argument(
        "--timeout-ms", type=int, default=DEFAULT_EVAL_TIMEOUT_MS,
        help="time-out per check during the run (0: the policy's own; a time-out is scored as the fail mode)",
    )  # fmt: skip
    p.set_defaults(func=cmd_eval)


def _quiet_audit() -> None:
    """The CLI is the application here: audit events would drown the table, so they are dropped."""
    import structlog

    def drop(*_: Any) -> Any:
        raise structlog.DropEvent

    structlog.configure(processors=[drop], cache_logger_on_first_use=False)


def cmd_eval(args: argparse.Namespace) -> int:
    _quiet_audit()
    rows = load_rows(args.data)[: args.limit]
    policy = with_model(args.policy, args.model) if args.model else load_policy(args.policy)
    out = Path(args.out) if args.out else None
    report = run_eval(
        rows, policy, out=out, plots=not args.no_plots, show=args.show, timeout_ms=args.timeout_ms or None,
        progress=Progress(len(rows), "eval "),
    )  # fmt: skip
    if args.json:
        public = dict(
            report, categories=[{k: v for k, v in m.items() if not k.startswith("_")} for m in report["categories"]]
        )
        print(json.dumps(public, indent=1, ensure_ascii=False))
    else:
        print(format_table(report))
        if out is not None:
            print(f"wrote {out / 'report.md'}, metrics.json and {len(report['files']) - 2} plot(s)", file=sys.stderr)
    return 0
