"""What a red-team run found, and how it is reported: one probe's outcome (the model's answer, what the input
and output rules did, what the user would get), the summary counts, and the files a run writes (results.jsonl,
summary.json, report.md). Kept apart from the runner (guardrail.evaluation.redteam) so the report's format has
one owner whichever way the outcomes were produced.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guardrail.taxonomy import RESPONSE_CLASS_IDS

__all__ = ["Judged", "Outcome", "Probe", "format_summary", "summarize", "write_outputs"]


@dataclass(frozen=True, slots=True)
class Probe:
    id: str
    prompt: str
    kind: str  # "risky" or "benign"
    category: str = ""


@dataclass(slots=True)
class Judged:
    harmful: bool
    refusal: bool
    response_class: str | None
    scores: dict[str, float]


@dataclass(slots=True)
class Outcome:
    probe: Probe
    answer: str | None = None  # the model's answer without the guard
    judged: Judged | None = None
    input_action: str = ""  # what the input rules did to the prompt
    output_action: str = ""  # what the output rules did to the answer ("" when none reached them)
    delivered: str | None = None  # what the user would get with the guard
    guarded_harmful: bool = False
    calls: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def guard_stopped(self) -> bool:
        return self.input_action in ("block", "rewrite") or self.output_action == "block"


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {"probes": len(outcomes), "errors": sum(o.error is not None for o in outcomes)}
    out["calls"] = sum(o.calls for o in outcomes)
    for kind in ("risky", "benign"):
        group = [o for o in outcomes if o.probe.kind == kind and o.error is None and o.judged is not None]
        if not group:
            continue
        n = len(group)
        classes = Counter(o.judged.response_class for o in group if o.judged is not None and o.judged.response_class)
        out[kind] = {
            "n": n,
            "harmful_without_guard": sum(o.judged is not None and o.judged.harmful for o in group),
            "harmful_with_guard": sum(o.guarded_harmful for o in group),
            "refused_by_model": sum(o.judged is not None and o.judged.refusal for o in group),
            "stopped_by_guard": sum(o.guard_stopped for o in group),
            "blocked_on_input": sum(o.input_action == "block" for o in group),
            "rewritten_on_input": sum(o.input_action == "rewrite" for o in group),
            "blocked_on_output": sum(o.output_action == "block" for o in group),
            "response_classes": {c: classes.get(c, 0) for c in RESPONSE_CLASS_IDS} if classes else {},
        }
    return out


def _pct(k: int, n: int) -> str:
    return f"{k:3d}/{n:<3d} ({k / n:6.1%})" if n else "—"


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"{s['probes']} probes, {s['calls']} model calls, {s['errors']} failed"]
    rows = [
        ("harmful answers, no guard", "harmful_without_guard"),
        ("harmful answers, with guard", "harmful_with_guard"),
        ("refused by the model", "refused_by_model"),
        ("stopped by the guard", "stopped_by_guard"),
        ("  blocked on input", "blocked_on_input"),
        ("  rewritten on input", "rewritten_on_input"),
        ("  blocked on output", "blocked_on_output"),
    ]
    kinds = [k for k in ("risky", "benign") if k in s]
    lines.append(f"{'':30s}" + "".join(f"{k:>20s}" for k in kinds))
    for label, key in rows:
        lines.append(f"{label:30s}" + "".join(f"{_pct(s[k][key], s[k]['n']):>20s}" for k in kinds))
    if any(s[k]["response_classes"] for k in kinds):
        lines.append("Do-Not-Answer response class of the unguarded answers (judged):")
        for c in RESPONSE_CLASS_IDS:
            lines.append(
                f"  {c:28s}" + "".join(f"{_pct(s[k]['response_classes'].get(c, 0), s[k]['n']):>20s}" for k in kinds)
            )
    return "\n".join(lines)


def _record(o: Outcome) -> dict[str, Any]:
    d = asdict(o)
    d["probe"] = asdict(o.probe)
    if o.judged is not None:
        d["judged"]["scores"] = {k: round(v, 4) for k, v in o.judged.scores.items()}
    d["guard_stopped"] = o.guard_stopped
    return d


def write_outputs(out: Path, outcomes: Sequence[Outcome], summary: dict[str, Any], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w", encoding="utf-8") as fh:
        for o in outcomes:
            fh.write(json.dumps(_record(o), ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps({**meta, **summary}, indent=1) + "\n", encoding="utf-8")
    md = [
        f"# guardrail redteam: `{meta['model']}` with policy `{meta['policy']}`",
        "",
        "```",
        format_summary(summary),
        "```",
    ]
    sections: list[tuple[str, Callable[[Outcome], bool], bool]] = [  # (title, which, show what the user got)
        ("Harmful answers that got through without the guard", lambda o: bool(o.judged and o.judged.harmful), False),
        ("Harmful answers that got through with the guard", lambda o: o.guarded_harmful, True),
        (
            "Benign prompts refused by the model",
            lambda o: o.probe.kind == "benign" and bool(o.judged and o.judged.refusal),
            False,
        ),
        ("Benign prompts stopped by the guard", lambda o: o.probe.kind == "benign" and o.guard_stopped, True),
        ("Failed probes", lambda o: o.error is not None, False),
    ]
    for title, pick, guarded in sections:
        chosen = [o for o in outcomes if pick(o)]
        md += ["", f"## {title} ({len(chosen)})", ""]
        for o in chosen[:50]:
            what = o.error or " ".join(((o.delivered if guarded else o.answer) or "").split())[:200]
            md.append(f"- `{o.probe.id}` ({o.probe.category or o.probe.kind}) {o.probe.prompt[:120]!r} → {what}")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
