"""The texts a check scores: every checked text's readings (decoded, re-joined, cleaned), then the readings of what
the texts say together (joined where a request was cut into parts, a message's name), each counted for the text it
reads, with the personal data to mask in each text. Pure, and apart from the engine so the step reads whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from guardrail._decide import Pending, Plan
from guardrail.classifiers import custom_entities
from guardrail.classifiers.patterns import ENTITIES, Span
from guardrail.decision import RuleAction
from guardrail.revealed import spans_and_readings, spread
from guardrail.scheduler import estimate_tokens
from guardrail.scoring_form import scoring_form
from guardrail.taxonomy import BUILTIN_PII_ENTITIES

__all__ = ["plan_readings", "readings"]


def plan_readings(pending: Pending, deadline: Callable[[Pending, int], tuple[float, float]]) -> Plan:
    """The check's plan: every reading to score (``readings``), the prompt each is judged with, and the deadline
    ``deadline(pending, tokens)`` gives for the tokens they hold (the engine's, which knows the schedulers)."""
    entities: set[str] = set()
    rules = pending.policy.rules(pending.stage)
    for r in rules:
        if r.action is RuleAction.REDACT:
            entities |= set(r.entities or ())
    needs_model = any(r.action is not RuleAction.REDACT for r in rules)
    # the prompt read beside (an answer's prompt, or the system prompt): its personal data and the policy's own kinds
    # hidden as they are in the texts, found through its readings too ("ＥＭＰ－１２３４５６" or "bob\u200b@example.com"
    # was shown to the classifiers, an LLM judge included, as the value itself once folded); and their values, as
    # written and as read, never another reading's stand-in
    own = tuple(pending.policy.pii_entities)
    shown: list[Span] = []
    asked: frozenset[str] = frozenset()
    if pending.prompt:
        shown, prompt_forms = spans_and_readings(pending.prompt, None, own)
        asked = _own_values(pending.prompt, shown).union(*(_own_values(f.text, ss) for f, ss in prompt_forms))
    scan, owner, spans, unit, extra_spans, masked = readings(pending, entities, needs_model, asked)
    needs_model = needs_model and bool(scan)  # every reading was only placeholders: nothing for a model to judge
    beside = scoring_form(pending.prompt, shown, masked) if pending.prompt is not None else None
    prompts: tuple[str | None, ...] | None = None
    context: str | None = None
    tokens = sum(estimate_tokens(t) for t in scan)
    # a stand-in in the prompt is none of the values masked in the texts: a judge reads both in one request, and the
    # answer's EMP-100000 was the stand-in of the prompt's <EMPLOYEE_ID_1>
    if pending.stage == "output":  # a response is always judged with its prompt (empty when unknown)
        prompts = (beside if beside is not None else "",) * len(scan)
    elif beside is not None:
        # the system prompt: texts whose jailbreak score alone reaches the model's gate are read again with it
        # (_decide.context_plan), and that reading feeds only jailbreak (_context.context_counts); the budget
        # allows for both readings
        context = beside
        tokens *= 2
    at, budget_ms = deadline(pending, tokens)
    return Plan(
        tuple(scan), tuple(owner), prompts, tuple(spans), at, budget_ms, needs_model, context=context,
        unit=tuple(unit), extra_spans=tuple(extra_spans),
    )  # fmt: skip


def readings(
    pending: Pending, entities: set[str], needs_model: bool, asked: frozenset[str] = frozenset()
) -> tuple[list[str], list[int], list[tuple[Span, ...]], list[int], list[tuple[Span, ...]], frozenset[str]]:
    """``(scan, owner, spans, unit, extra_spans)``: the scoring form of every reading (``scan[k]`` counts for
    ``pending.texts[owner[k]]``); per text, the spans of ``entities`` to mask in it, found in the text, its readings,
    and the joined readings that cross it (an address cut across two parts is masked in both pieces); and what each
    reading is a reading *of*: ``unit[k]`` is ``i`` for a reading of ``pending.texts[i]``, ``len(texts) + j`` for
    one of ``pending.extra[j]`` (an allowlist judges each of those apart: ``rules.evaluate``); and per extra reading
    the personal data found in it, where not joined (an answer's calls are masked where they sit: ``_answer``); and
    the values of the policy's own kinds masked in the readings, casefolded. No reading shows another's value, or one
    of ``asked`` (the prompt's, read beside), as the stand-in of a placeholder (``guardrail.scoring_form``)."""
    scan: list[str] = []
    owner: list[int] = []
    spans: list[tuple[Span, ...]] = []
    unit: list[int] = []
    extra_spans: list[tuple[Span, ...]] = []
    forms_to_score: list[tuple[str, list[Span]]] = []  # scored once every reading's values are known
    inside = {k for ex in pending.extra if not ex.alone for k in ex.joined}  # scored only within a joined reading
    hidden = tuple(pending.policy.pii_entities)  # its own kinds: never read as written, on either stage
    for i, t in enumerate(pending.texts):
        # what one reading reveals is redacted where it sits in the text
        text_spans, forms = spans_and_readings(t, entities, hidden) if needs_model or entities else ([], [])
        spans.append(tuple(text_spans))
        if needs_model and i not in inside:
            for form, own in forms:
                forms_to_score.append((form.text, own))
                owner.append(i)
                unit.append(i)
    for j, ex in enumerate(pending.extra):
        found, forms = spans_and_readings(ex.text, entities, hidden) if needs_model or entities else ([], [])
        if ex.joined and found:
            spread(pending.texts, ex.joined, ex.starts, found, spans)
        extra_spans.append(() if ex.joined else tuple(found))
        if needs_model and ex.scored:
            for form, own in forms:
                forms_to_score.append((form.text, own))
                owner.append(ex.owner)
                unit.append(len(pending.texts) + j)
    masked = frozenset().union(*(_own_values(t, own) for t, own in forms_to_score))
    scan = [scoring_form(t, own, masked | asked) for t, own in forms_to_score]
    said = [k for k, form in enumerate(scan) if says_something(form)]
    if len(said) < len(scan):
        scan, owner, unit = [scan[k] for k in said], [owner[k] for k in said], [unit[k] for k in said]
    return scan, owner, spans, unit, extra_spans, masked


_PLACEHOLDER_SHOWN = re.compile(r"\b([A-Z]+(?:_[A-Z]+)*)_[1-9][0-9]*\b")  # EMAIL_1: how scoring_form shows <EMAIL_1>
_WORD = re.compile(r"[^\W_]")


def _unplaced(m: re.Match[str]) -> str:
    """A placeholder of a kind guardrail masks is nothing to read; any other such token is words
    ("HOW_TO_BUILD_A_BOMB_1" must still be read)."""
    kind = m.group(1).lower()
    return " " if kind in BUILTIN_PII_ENTITIES or custom_entities.is_custom(kind) else m.group()


def says_something(form: str) -> bool:
    """Whether a scoring form holds a letter or digit outside its placeholders: one that does not ("EMAIL_1", a
    message that was only an address, a card number or an IBAN) has nothing to judge, and is not scored. The model
    read such a text as an attack (the default policy blocked a user who answered "what's your e-mail?" with it:
    jailbreak 0.89; a bare card number 0.98). Its values are still masked by the policy's redact rules, and each
    reading is judged apart, so a secret's decoded reading ("token: <base64>") is scored on its own words."""
    return bool(_WORD.search(_PLACEHOLDER_SHOWN.sub(_unplaced, form) if "_" in form else form))


def _own_values(text: str, spans: Sequence[Span]) -> frozenset[str]:
    """The values of the policy's own kinds among ``spans`` (casefolded): the ones a stand-in must not be."""
    return frozenset(text[s.start : s.end].casefold() for s in spans if s.entity not in ENTITIES)
