"""The pure steps of one check, beside :class:`guardrail.engine.Guard` that drives them.

A check's state (:class:`Pending`, :class:`Plan`, :class:`Scores`) and the steps that need no
scheduler, audit or clock of their own: the load-time coverage check (every enforced category is
scored by some classifier on its stage), the merge and validation of the classifiers' scores (a
missing category, NaN or out-of-range score is ``invalid_scores``, never an allow), the rules with
the policy's unsupported-language handling, and the error kind of a failed check. Apart from the
engine so each is small enough to read whole, and so the sync and async drivers share one copy.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from guardrail._answer import masked_answer
from guardrail._context import (
    JAILBREAK,
    NOT_ASKED,
    context_counts,
    context_reading,
    jailbreak_of,
)
from guardrail._shared_models import stage_labels
from guardrail.classifiers.base import Classifier
from guardrail.classifiers.patterns import Span
from guardrail.decision import Action, Decision, Finding, RuleAction
from guardrail.errors import CheckTimeout, InvalidScores
from guardrail.language import dominant_script
from guardrail.messages import (
    DATA_ROLES,
    Extra,
    Extracted,
    answer_extract,
    extract,
    prompt_placeholders,
    replace_texts,
)
from guardrail.policy import Policy, Rule
from guardrail.routing import RoutingContext
from guardrail.rules import Judged, Unit, Verdict, evaluate
from guardrail.taxonomy import Stage

__all__ = [
    "UNSUPPORTED",
    "Pending",
    "Plan",
    "Scores",
    "aligned",
    "context_plan",
    "failure_kind",
    "merge_scores",
    "new_decision",
    "prepare",
    "timeout_error",
    "verdict",
    "with_context",
]

UNSUPPORTED = "unsupported_language"  # the finding for text in a script the model was not measured on


@dataclass(slots=True)
class Pending:
    stage: Stage
    policy: Policy
    started: float  # time.perf_counter(), for latency
    started_mono: float  # time.monotonic(), for the deadline
    original: str  # the text the decision is about (last scanned text), for audit
    texts: tuple[str, ...] = ()
    only: tuple[frozenset[str] | None, ...] = ()  # per text: the categories it may raise (None: all)
    prompt: str | None = None  # output stage: the prompt; input stage: the system prompt as context
    reserved: frozenset[str] = frozenset()  # placeholders already in the conversation: never given to new values
    extracted: Extracted | None = None
    extra: tuple[Extra, ...] = ()  # more readings of the texts: joined where split, a message's name
    payload: Any = None
    early: Decision | None = None
    notes: list[str] = field(default_factory=list)
    answer: tuple[dict[str, Any], ...] | None = None  # output stage: the answer's messages, masked (_answer)
    context: RoutingContext = None  # the caller's routing context, for the audit event (guardrail._audit_read)


@dataclass(frozen=True, slots=True)
class Plan:
    scan: tuple[str, ...]  # every text the classifiers score: the forms of each of pending.texts
    owner: tuple[int, ...]  # scan[k] is a form of pending.texts[owner[k]]
    prompts: tuple[str | None, ...] | None
    spans: tuple[tuple[Span, ...], ...]  # PII spans per pending text, for redaction
    deadline: float  # time.monotonic()
    budget_ms: float
    needs_model: bool
    # the first len(alone_of) entries of scan read a text with the system prompt; entry k's reading alone is
    # scan[alone_of[k]] (merge_scores takes only a gated jailbreak score from them)
    alone_of: tuple[int, ...] = ()
    context: str | None = None  # the system prompt, when the policy reads it (a second reading may follow)
    # a second reading's texts per classifier (indices into scan): each reads only those past its own gate
    asked: tuple[tuple[int, ...], ...] = ()
    # scan[k] reads text unit[k] (< len(texts)) or extra reading unit[k] - len(texts); per extra reading, its PII
    unit: tuple[int, ...] = ()
    extra_spans: tuple[tuple[Span, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Scores:
    scores: dict[str, float]
    spans: tuple[tuple[Span, ...], ...]
    # per unit (Plan.unit), the highest score of each category over its readings: what an allowlist judges by
    units: dict[int, dict[str, float]] = field(default_factory=dict)
    extra_spans: tuple[tuple[Span, ...], ...] = ()  # as Plan's: what rules.evaluate and _answer mask


def prepare(stage: Stage, payload: Any, prompt: Any, policy: Policy, context: RoutingContext = None) -> Pending:
    """A check's texts: on the input stage the turns the policy's scope reads (each tool result or
    document limited to the data categories), with the system prompt as context when asked; on the
    output stage the whole completion, with the prompt it answers. ``context`` is kept for the audit event."""
    pending = Pending(stage, policy, time.perf_counter(), time.monotonic(), "", context=context)
    if stage == "input":
        ex = extract(payload, policy.input.scope)
        pending.extracted, pending.payload = ex, payload
        pending.notes += [f"skipped non-text part: {s}" for s in ex.skipped]
        texts = ex.texts
        data = frozenset(policy.input.data_categories)
        narrow = policy.input.scope == "untrusted"
        pending.only = tuple(data if narrow and r in DATA_ROLES else None for r in ex.roles)
        if policy.input.system_context and ex.system:
            pending.prompt = ex.system
        # placeholders already in the conversation (an earlier turn's, in the history) are never given to this
        # turn's values: restore=True would put this turn's value back into the older text too
        pending.reserved = prompt_placeholders(payload)
        pending.extra = ex.extra
    else:
        # a completion given as messages is checked whole (the input scope would pick no assistant turn), its
        # tool calls and refusal included
        answer = answer_extract(payload) if payload is not None else None
        if answer is not None and answer.is_messages:  # masked where its calls sit, too (guardrail._answer)
            pending.extracted, pending.payload = answer, payload
        texts = answer.texts if answer is not None else ("",)
        pending.extra = answer.extra if answer is not None else ()
        pending.only = (None,) * len(texts)
        if prompt is not None:
            p = extract(prompt, "last_user").texts
            pending.prompt = p[-1] if p else None
            pending.reserved = prompt_placeholders(prompt)
    pending.texts = texts
    pending.original = texts[-1] if texts else ""
    return pending


def merge_scores(pending: Pending, plan: Plan, clfs: Sequence[Classifier], results: Sequence[Sequence[Any]]) -> Scores:
    """Merge every classifier's scores (per category, the highest over texts and forms), refusing
    anything that is not a full set of probabilities: that must never read as "safe". A reading with the system
    prompt (the first ``len(plan.alone_of)`` rows) is ``NOT_ASKED`` for a classifier whose gate the text did not
    reach; its text's reading alone carries every score the policy needs. One that was asked must carry jailbreak."""
    labels: set[str] = set()
    for clf in clfs:
        labels |= stage_labels(clf, pending.stage)
    needed: set[str] = set()
    for r in pending.policy.rules(pending.stage):
        if r.action is not RuleAction.REDACT:
            needed.add(r.category)
            needed |= set(r.requires or ())
    needed &= labels
    merged: dict[str, float] = {}
    units: dict[int, dict[str, float]] = {}
    for k, i in enumerate(plan.owner if results else ()):
        only = pending.only[i] if i < len(pending.only) else None
        seen: set[str] = set()
        context = k < len(plan.alone_of)
        unit = units.setdefault(plan.unit[k], {})
        for clf, rows in zip(clfs, results, strict=True):
            row = rows[k]
            if context and row is NOT_ASKED:
                continue  # this classifier's gate was not reached: it was not asked to read it
            if not isinstance(row, Mapping):
                raise InvalidScores(f"result {k} is a {type(row).__name__}, not a mapping", classifier=clf.name)
            if context and JAILBREAK in needed and JAILBREAK not in row:
                raise InvalidScores("no jailbreak score in the reading with the system prompt", classifier=clf.name)
            for cat, v in row.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v <= 1):
                    raise InvalidScores(f"score {cat}={v!r} is not a probability", classifier=clf.name)
                seen.add(cat)
                if context and not context_counts(clf, cat, v, rows[plan.alone_of[k]]):
                    continue
                if only is None or cat in only:
                    merged[cat] = max(merged.get(cat, -1.0), float(v))
                    unit[cat] = max(unit.get(cat, -1.0), float(v))
        missing = needed - seen
        if missing and not context:
            names = ", ".join(c.name for c in clfs)
            raise InvalidScores(f"no score for {', '.join(sorted(missing))}, which the policy uses", classifier=names)
    return Scores(merged, plan.spans, units, plan.extra_spans)


def aligned(plan: Plan, clfs: Sequence[Classifier], results: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Each classifier's rows aligned with ``plan.scan``: a second reading's rows go back to their texts,
    ``NOT_ASKED`` where the classifier was not asked (``Plan.asked``)."""
    if not plan.asked:
        return [list(r) for r in results]
    out: list[list[Any]] = []
    for clf, mine, rows in zip(clfs, plan.asked, results, strict=True):
        if len(rows) != len(mine):
            raise InvalidScores(f"{len(rows)} results for {len(mine)} texts", classifier=clf.name)
        full: list[Any] = [NOT_ASKED] * len(plan.scan)
        for k, row in zip(mine, rows, strict=True):
            full[k] = row
        out.append(full)
    return out


def context_plan(plan: Plan, clfs: Sequence[Classifier], results: Sequence[Sequence[Any]]) -> Plan | None:
    """The second reading of a cascade: the texts read alone whose jailbreak score reached some classifier's gate,
    read again with the system prompt (None: no system prompt read, or no text reached a gate). Most texts never
    do, so the reading costs nothing for them (bundled model: gate 0.5, which 4% of 600 ordinary dev prompts reach)."""
    if plan.context is None or not results:
        return None
    gates = [context_reading(clf)[0] for clf in clfs]
    past = [
        {k for k in range(min(len(plan.scan), len(rows))) if jailbreak_of(rows[k]) >= gate}  # short: merge refuses
        for gate, rows in zip(gates, results, strict=True)
    ]
    picked = sorted(set().union(*past))
    if not picked:
        return None
    asked = tuple(tuple(j for j, k in enumerate(picked) if k in mine) for mine in past)
    return Plan(
        tuple(plan.scan[k] for k in picked), tuple(plan.owner[k] for k in picked), (plan.context,) * len(picked),
        plan.spans, plan.deadline, plan.budget_ms, True, tuple(picked), asked=asked,
        unit=tuple(plan.unit[k] for k in picked), extra_spans=plan.extra_spans,
    )  # fmt: skip


def with_context(
    plan: Plan, results: Sequence[Sequence[Any]], second: Plan, more: Sequence[Sequence[Any]]
) -> tuple[Plan, list[list[Any]]]:
    """Both readings as one plan for ``merge_scores``: the readings with the system prompt first (``more``: per
    classifier, a row for each of ``second``'s texts, ``NOT_ASKED`` where that classifier was not asked)."""
    n = len(second.scan)
    prompts = (*(second.prompts or (None,) * n), *(plan.prompts or (None,) * len(plan.scan)))
    merged = Plan(
        second.scan + plan.scan, second.owner + plan.owner, prompts, plan.spans, plan.deadline, plan.budget_ms,
        plan.needs_model, tuple(n + k for k in second.alone_of), unit=second.unit + plan.unit,
        extra_spans=plan.extra_spans,
    )  # fmt: skip
    return merged, [list(m) + list(r) for m, r in zip(more, results, strict=True)]


def verdict(pending: Pending, outcome: Scores, clfs: Sequence[Classifier]) -> tuple[Verdict, dict[str, float]]:
    """The rules' verdict on merged scores, and the scores the Decision reports. Text in a script no
    classifier was measured on gets the policy's ``unsupported_language`` handling, as one more rule."""
    policy = pending.policy
    rules: Sequence[Any] = policy.input.rules if pending.stage == "input" else policy.output.rules
    scores = outcome.scores
    besides = tuple(e.text for e in pending.extra if e.scored and not e.joined)  # an answer's tool calls, a long name
    script = _unsupported_script((*pending.texts, *besides), clfs)
    if script is not None:
        # text the model was never measured on: the policy's documented handling, as one more rule
        ul = policy.unsupported_language
        action = RuleAction.BLOCK if ul.action == "block" else RuleAction.LOG
        rule = Rule.model_construct(
            category=UNSUPPORTED, threshold=1.0, action=action, message=ul.message, mode="enforce",
            entities=None, requires=None,
        )  # fmt: skip
        kept = _measured_scores(pending, outcome, clfs) if ul.action == "allow" else scores
        rules = [*rules, rule]
        scores = {**kept, UNSUPPORTED: 1.0}
    result = evaluate(
        rules,
        scores,
        pending.texts,
        outcome.spans,
        shadow_all=policy.mode == "shadow",
        block_message=policy.on_block.message,
        only=pending.only or None,
        reserved=pending.reserved,
        also=tuple((e.text, e.owner, _judged(e)) for e in pending.extra),
        units=_units(pending, outcome.units) if outcome.units else None,
        # the personal data in an answer's calls, and in a message's name (masked in the name: replace_texts)
        also_spans=outcome.extra_spans if pending.payload is not None else (),
    )
    result = masked_answer(pending, result, outcome.extra_spans)  # masked where its calls sit (guardrail._answer)
    if script is not None:
        named = tuple(replace(f, entities=(script,)) if f.category == UNSUPPORTED else f for f in result.findings)
        result = replace(result, findings=named)
        scores = {**outcome.scores, UNSUPPORTED: 1.0}
    return result, scores


def _units(pending: Pending, units: Mapping[int, Mapping[str, float]]) -> tuple[Unit, ...]:
    """Each scored unit's scores, with the texts (numbered as ``rules.evaluate`` does) an allowlist must exempt for it
    to be exempt: a text or a reading of its own itself, a joined reading every text it joins."""
    n, extra = len(pending.texts), pending.extra
    kept = [u for u in sorted(units) if u - n < len(extra)]  # a text (u < n), or one of the extra readings
    return tuple((((u,) if u < n else (extra[u - n].joined or (u,))), units[u]) for u in kept)


def _judged(extra: Extra) -> Judged:
    """When an allowlist must exempt a reading too (``rules.evaluate``): never a joined one (its texts are judged), a
    handle only where a rule's keywords hit it, anything scored as a text of its own always."""
    return "never" if extra.joined else "always" if extra.scored else "hits"


def _measured_scores(pending: Pending, outcome: Scores, clfs: Sequence[Classifier]) -> dict[str, float]:
    """``unsupported_language: allow``: the model's scores of the texts in a script it was measured on. Only the
    others' are set aside: before, one Georgian turn or tool result dropped every score of the check, and a plain
    English request for a drug recipe beside it passed."""
    n = len(pending.texts)
    kept: dict[str, float] = {}
    for unit, scores in outcome.units.items():
        text = pending.texts[unit] if unit < n else pending.extra[unit - n].text
        if _unsupported_script((text,), clfs) is None:
            for category, value in scores.items():
                kept[category] = max(kept.get(category, 0.0), value)
    return kept


def _unsupported_script(texts: Sequence[str], clfs: Sequence[Classifier]) -> str | None:
    """The first script among the texts that a classifier declares it was not measured on, if any."""
    declared = [getattr(c, "scripts", None) for c in clfs]
    if not declared or any(d is None for d in declared):
        return None
    supported = frozenset().union(*[d for d in declared if d is not None])
    for text in texts:
        script = dominant_script(text)
        if script is not None and script not in supported:
            return script
    return None


def new_decision(
    pending: Pending,
    action: Action,
    scores: Mapping[str, float],
    findings: tuple[Finding, ...],
    texts: Sequence[str],
    message: str | None,
    redactions: Mapping[str, str] | None,
    error: str | None,
    error_kind: str | None,
) -> Decision:
    """The Decision of a check; a rewrite of chat messages also carries the rewritten messages."""
    messages = pending.answer if action is Action.REWRITE else None  # output stage: masked in its calls too
    ex, policy = pending.extracted, pending.policy
    if pending.stage == "input" and ex is not None and ex.is_messages and action is Action.REWRITE:
        messages = tuple(replace_texts(pending.payload, ex, texts, redactions))
    return Decision(
        id=uuid.uuid4().hex,
        action=action,
        stage=pending.stage,
        text=texts[-1] if texts else "",
        scores=dict(scores),
        findings=findings,
        policy=policy.name,
        policy_hash=policy.hash,
        latency_ms=(time.perf_counter() - pending.started) * 1000.0,
        error=error,
        message=message,
        redactions=dict(redactions or {}),
        messages=messages,
        error_kind=error_kind,
    )


def timeout_error(plan: Plan) -> CheckTimeout:
    return CheckTimeout(f"no scores within the check's budget of {plan.budget_ms:.0f} ms")


def failure_kind(exc: BaseException) -> str:
    """The error kind of why a check could not be scored (``guardrail.errors.ERROR_KINDS``)."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str):
        return kind
    if isinstance(exc, (TimeoutError, cf.TimeoutError)):
        return "timeout"
    return "classifier_error"
