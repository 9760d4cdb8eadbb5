"""Presenting an evaluation: the terminal table, ``metrics.json``, ``report.md`` and the PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from guardrail.evaluation.evaluator import OUTCOMES

__all__ = ["format_table", "public_report", "shown_categories", "write_outputs"]


def shown_categories(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows worth a line: a category with positives, or one the policy enforces (its FPR matters).
    The rest (all-negative heads without a rule) stay in metrics.json."""
    return [m for m in report["categories"] if m["n_pos"] or (m["threshold_source"] == "policy" and m["n_neg"])]


def _f(v: Any, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _ci(ci: Any) -> str:
    """`` [low, high]`` of a rate's interval, or nothing when there is none."""
    if not isinstance(ci, dict) or ci.get("low") is None or ci.get("high") is None:
        return ""
    return f" [{_f(ci['low'])}, {_f(ci['high'])}]"


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
            f"recall {_f(m['recall'])}{_ci(m.get('recall_ci'))}  F1 {_f(m['f1'])}  FPR {_f(m['fpr'])}"
            f"{_ci(m.get('fpr_ci'))}  ({m['n_pos']} harmful, {m['n_neg']} benign; [95% interval])"
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


def public_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the per-row arrays kept for plotting (what metrics.json holds)."""
    cats = [{k: v for k, v in m.items() if not k.startswith("_")} for m in report["categories"]]
    return dict(report, categories=cats)


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
    public = public_report(report)
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
            f"- **{stage}** (stopped = block or rewrite): precision {_f(m['precision'])}, recall {_f(m['recall'])}"
            f"{_ci(m.get('recall_ci'))}, F1 {_f(m['f1'])}, false-positive rate {_f(m['fpr'])}{_ci(m.get('fpr_ci'))} "
            f"({m['n_pos']} harmful, {m['n_neg']} benign rows; [95% Wilson interval])"
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
