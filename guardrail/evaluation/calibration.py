"""Thresholds chosen on your data: the core of ``guardrail calibrate`` (the CLI is ``calibrate_cmd``).

For each category, the threshold is the lowest one whose false-positive rate on that category's
negatives is at most the target (or the highest one that still finds the target share of its
positives), placed halfway between neighbouring scores and rounded short so it reads well in a
policy file. The expected precision and recall printed next to it are measured on the same data:
in-sample numbers, optimistic by construction on small sets; check them with ``guardrail eval`` on
data the thresholds were not chosen on.

Two guards against writing a threshold nobody should trust:

- a category is calibrated on a stage only with at least :data:`MIN_EXAMPLES` (20) positives and 20
  negatives there (``--min-examples`` changes it). Below that one row moves the false-positive rate
  or the recall by more than five points, so a threshold "for an FPR of 2%" is set by one or two
  scores; the category is skipped, with the counts in its note, rather than written;
- a category the policy has no rule for on that stage is skipped too (its note says so), unless the
  user asks for new rules (``--add-rules``, with ``--action``): labels in a data file are not a
  decision to start blocking a category.

``--write FILE`` writes the thresholds: into a new policy file that ``extends`` the policy (only the
calibrated rules are listed), or, when FILE exists, into that file in place with its comments and
layout kept (:mod:`guardrail.evaluation.policy_edit`); without ``--policy``, an existing FILE is the
policy calibrated (its rules, its thresholds in the "was" column). Either way the result is loaded
and checked before it replaces anything.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.decision import RuleAction
from guardrail.evaluation.data import EvalRow, Progress
from guardrail.evaluation.metrics import (
    counts_at,
    false_positive_rate,
    precision,
    recall,
    threshold_for_fpr,
    threshold_for_recall,
)
from guardrail.evaluation.policy_edit import RuleEdit, apply_edits, flow_rule
from guardrail.policy import BUNDLED_POLICIES, Policy, load_policy
from guardrail.scoring_form import scoring_form
from guardrail.taxonomy import STAGES, Stage

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier

__all__ = [
    "MIN_EXAMPLES",
    "Choice",
    "choose_thresholds",
    "flow_rule_for",
    "format_choices",
    "labelled_targets",
    "score_rows",
    "without_new_rules",
    "write_policy",
]

MIN_EXAMPLES = 20  # fewest positives, and fewest negatives, a category needs on a stage to be calibrated


@dataclass(frozen=True, slots=True)
class Choice:
    stage: Stage
    category: str
    threshold: float | None  # None: skipped (see note)
    previous: float | None
    precision: float = math.nan
    recall: float = math.nan
    fpr: float = math.nan
    n_pos: int = 0
    n_neg: int = 0
    note: str = ""


def _prompt_form(prompt: str | None) -> str | None:
    return None if prompt is None else scoring_form(prompt)


def score_rows(
    rows: Sequence[EvalRow], classifier: Classifier, *, batch_size: int = 32, progress: Progress | None = None
) -> list[dict[str, float]]:
    """Scores of every row, batched per stage, on the text form the engine scores (``scoring_form``)."""
    out: list[dict[str, float]] = [{} for _ in rows]
    for stage in STAGES:
        idx = [i for i, r in enumerate(rows) if r.stage == stage]
        for start in range(0, len(idx), batch_size):
            part = idx[start : start + batch_size]
            texts = [scoring_form(rows[i].text) for i in part]
            prompts = [_prompt_form(rows[i].prompt) for i in part] if stage == "output" else None
            for i, scores in zip(part, classifier.predict(texts, stage=stage, prompts=prompts), strict=True):
                out[i] = scores
            if progress is not None:
                progress.step(len(part))
    return out


def labelled_targets(
    rows: Sequence[EvalRow],
    scores: Sequence[dict[str, float]],
    *,
    rules_of: Policy | None = None,
    categories: Sequence[str] | None = None,
) -> list[tuple[Stage, str]]:
    """(stage, category) pairs to calibrate: the named ``categories``, else the threshold rules of
    ``rules_of``, else every category the data labels; always only where rows have labels and scores."""
    present = {(r.stage, k) for r, s in zip(rows, scores, strict=True) for k in r.truth if k in s}
    if categories:
        return [(st, c) for st in STAGES for c in categories if (st, c) in present]
    if rules_of is not None:
        wanted = [(st, r.category) for st in STAGES for r in rules_of.rules(st) if r.action is not RuleAction.REDACT]
        return [t for t in wanted if t in present]
    return sorted(present, key=lambda t: (STAGES.index(t[0]), t[1]))


def choose_thresholds(
    rows: Sequence[EvalRow],
    scores: Sequence[dict[str, float]],
    targets: Sequence[tuple[Stage, str]],
    *,
    target_fpr: float | None = None,
    target_recall: float | None = None,
    policy: Policy | None = None,
    min_examples: int = MIN_EXAMPLES,
) -> list[Choice]:
    """One :class:`Choice` per target; exactly one of ``target_fpr``/``target_recall`` must be given.
    ``policy`` only supplies the thresholds in force before (``Choice.previous``). A target with fewer
    than ``min_examples`` positives or negatives is skipped (``threshold`` None, the counts in ``note``)."""
    if (target_fpr is None) == (target_recall is None):
        raise ValueError("give exactly one of --target-fpr or --target-recall")
    out = []
    for stage, cat in targets:
        pairs = [
            (r.truth[cat], sc[cat])
            for r, sc in zip(rows, scores, strict=True)
            if r.stage == stage and cat in r.truth and cat in sc
        ]
        y, s = [p[0] for p in pairs], [p[1] for p in pairs]
        n_pos = sum(y)
        n_neg = len(y) - n_pos
        rule = next((r for r in policy.rules(stage) if r.category == cat), None) if policy else None
        previous = rule.threshold if rule is not None else None
        if n_pos == 0 or n_neg == 0:
            missing = "positives" if n_pos == 0 else "negatives"
            out.append(Choice(stage, cat, None, previous, n_pos=n_pos, n_neg=n_neg, note=f"skipped: no {missing}"))
            continue
        if min(n_pos, n_neg) < min_examples:
            note = f"skipped: too few rows; a threshold needs {min_examples}+ and {min_examples}- (--min-examples)"
            out.append(Choice(stage, cat, None, previous, n_pos=n_pos, n_neg=n_neg, note=note))
            continue
        if target_fpr is not None:
            t = threshold_for_fpr(y, s, target_fpr)
            note = f"only {n_neg} negatives: FPR moves in steps of {1 / n_neg:.3f}" if n_neg * target_fpr < 5 else ""
        else:
            assert target_recall is not None
            t = threshold_for_recall(y, s, target_recall)
            note = f"only {n_pos} positives: recall moves in steps of {1 / n_pos:.3f}" if n_pos < 20 else ""
        c = counts_at(y, s, t)
        if target_fpr is not None and false_positive_rate(c) > target_fpr:
            note = "target not reachable: negatives score as high as any positive"
        out.append(Choice(stage, cat, t, previous, precision(c), recall(c), false_positive_rate(c), n_pos, n_neg, note))
    return out


def without_new_rules(choices: Sequence[Choice], policy: Policy, name: str) -> list[Choice]:
    """``choices`` with those for a (stage, category) that ``policy`` (shown as ``name``) has no rule for
    skipped, and said so: a new rule is added only when asked for (``--add-rules``)."""
    out = []
    for c in choices:
        if c.threshold is not None and not any(r.category == c.category for r in policy.rules(c.stage)):
            note = f"skipped: {name} has no {c.stage} rule for {c.category} (--add-rules adds one)"
            c = Choice(c.stage, c.category, None, c.previous, n_pos=c.n_pos, n_neg=c.n_neg, note=note)
        out.append(c)
    return out


# ------------------------------------------------------------------------------------------ writing


def _rule_for(policy: Policy | None, choice: Choice, action: str) -> dict[str, Any]:
    rule = next((r for r in policy.rules(choice.stage) if r.category == choice.category), None) if policy else None
    if rule is None:
        return {"category": choice.category, "action": action}
    d = rule.model_dump(mode="json", exclude_none=True, exclude={"threshold", "entities"})
    if d.get("mode") == "enforce":
        del d["mode"]
    return {"category": d.pop("category"), **d}


def _expected(c: Choice) -> str:
    return f"calibrated: precision {c.precision:.3f}, recall {c.recall:.3f}, FPR {c.fpr:.3f} ({c.n_pos}+ / {c.n_neg}-)"


def _ref(policy_ref: str | None, target: Path) -> str:
    if policy_ref is None:
        return "default"
    if policy_ref in BUNDLED_POLICIES and not Path(policy_ref).exists():
        return policy_ref
    rel = os.path.relpath(Path(policy_ref).resolve(), target.resolve().parent)
    return rel if "/" in rel or os.sep in rel else f"./{rel}"


def _plain(value: str) -> str:
    """A YAML scalar: plain when that reads back as the same string, else double-quoted."""
    return (
        value
        if re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*", value) and value.strip() == value
        else json.dumps(value)
    )


def new_policy_text(
    choices: Sequence[Choice], base: Policy | None, policy_ref: str | None, target: Path, *, action: str,
    header: str, model: str | None = None,
) -> str:  # fmt: skip
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    name = f"{base.name if base else 'default'}-calibrated"
    lines += ["version: 1", f"name: {_plain(name)}", f"extends: {_plain(_ref(policy_ref, target))}"]
    if model is not None:
        rel = os.path.relpath(Path(model).resolve(), target.resolve().parent)
        lines.append(f"model: {_plain(rel if '/' in rel else './' + rel)}")
    for stage in STAGES:
        chosen = [c for c in choices if c.stage == stage and c.threshold is not None]
        if not chosen:
            continue
        lines += [f"{stage}:", "  rules:"]
        for c in chosen:
            assert c.threshold is not None
            lines += [
                f"    # {_expected(c)}",
                f"    - {flow_rule({**_rule_for(base, c, action), 'threshold': c.threshold})}",
            ]
    return "\n".join(lines) + "\n"


def write_policy(
    target: Path, choices: Sequence[Choice], *, base: Policy | None, policy_ref: str | None, action: str = "block",
    header: str = "", model: str | None = None,
) -> str:  # fmt: skip
    """Write (or update in place) ``target``; returns "created" or "updated". Validated before replacing."""
    chosen = [c for c in choices if c.threshold is not None]
    if target.exists():
        text = target.read_text(encoding="utf-8")
        current = load_policy(target)
        edits = [
            RuleEdit(c.stage, c.category, c.threshold, _rule_for(current, c, action), _expected(c))
            for c in chosen
            if c.threshold is not None
        ]
        new_text, verb = apply_edits(text, edits, str(target)), "updated"
    else:
        new_text = new_policy_text(chosen, base, policy_ref, target, action=action, header=header, model=model)
        verb = "created"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".yaml", dir=target.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        loaded = load_policy(tmp)
        for c in chosen:
            got = next((r.threshold for r in loaded.rules(c.stage) if r.category == c.category), None)
            if got is None or abs(got - float(c.threshold or 0.0)) > 1e-9:
                raise ValueError(f"internal error: {c.stage}.{c.category} reads back as {got}, not {c.threshold}")
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return verb


# ------------------------------------------------------------------------------------------ display


def format_choices(choices: Sequence[Choice]) -> str:
    head = f"{'stage':6s} {'category':22s} {'n+':>5s} {'n-':>6s} {'was':>6s} {'threshold':>9s} "
    head += f"{'precision':>9s} {'recall':>6s} {'FPR':>6s}"
    lines = [head, "-" * len(head)]
    for c in choices:
        was = "—" if c.previous is None else f"{c.previous:.3f}"
        if c.threshold is None:
            lines.append(f"{c.stage:6s} {c.category:22s} {c.n_pos:5d} {c.n_neg:6d} {was:>6s}  {c.note}")
            continue
        lines.append(
            f"{c.stage:6s} {c.category:22s} {c.n_pos:5d} {c.n_neg:6d} {was:>6s} {c.threshold:9.4f} {c.precision:9.3f} "
            f"{c.recall:6.3f} {c.fpr:6.3f}" + (f"  ({c.note})" if c.note else "")
        )
    lines.append("expected precision/recall/FPR are measured on this data (in-sample)")
    return "\n".join(lines)


def flow_rule_for(policy: Policy | None, choice: Choice, action: str) -> str:
    """The rule of ``choice`` as one flow-style YAML line (what to paste into a policy)."""
    return flow_rule({**_rule_for(policy, choice, action), "threshold": choice.threshold})
