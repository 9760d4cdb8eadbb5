"""The texts a check scores: every checked text's readings (decoded, re-joined, cleaned), then the readings of what
the texts say together (joined where a request was cut into parts, a message's name), each counted for the text it
reads, with the personal data to mask in each text. Pure, and apart from the engine so the step reads whole.
"""

from __future__ import annotations

from guardrail._decide import Pending
from guardrail.classifiers.patterns import Span
from guardrail.messages import scoring_form
from guardrail.revealed import spans_and_readings, spread

__all__ = ["readings"]


def readings(
    pending: Pending, entities: set[str], needs_model: bool
) -> tuple[list[str], list[int], list[tuple[Span, ...]]]:
    """``(scan, owner, spans)``: the scoring form of every reading (``scan[k]`` counts for ``pending.texts[owner[k]]``)
    and, per text, the spans of ``entities`` to mask in it, found in the text, its readings, and the joined readings
    that cross it (an address cut across two parts is masked in both pieces)."""
    scan: list[str] = []
    owner: list[int] = []
    spans: list[tuple[Span, ...]] = []
    inside = {k for ex in pending.extra if not ex.alone for k in ex.joined}  # scored only within a joined reading
    for i, t in enumerate(pending.texts):
        # what one reading reveals is redacted where it sits in the text
        text_spans, forms = spans_and_readings(t, entities) if needs_model or entities else ([], [])
        spans.append(tuple(text_spans))
        if needs_model and i not in inside:
            for form, own in forms:
                scan.append(scoring_form(form.text, own))
                owner.append(i)
    for ex in pending.extra:
        found, forms = spans_and_readings(ex.text, entities) if needs_model or entities else ([], [])
        if ex.joined and found:
            spread(pending.texts, ex.joined, ex.starts, found, spans)
        if needs_model and ex.scored:
            for form, own in forms:
                scan.append(scoring_form(form.text, own))
                owner.append(ex.owner)
    return scan, owner, spans
