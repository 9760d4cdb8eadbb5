"""The personal data of a text, read through its readings too, each span where it sits in the text.

A value written encoded (base64, hex), spaced apart or reversed is found in the reading that decodes it
(``guardrail.normalize.forms``) and masked where it sits in what was written. The whole-answer check and the
stream's release both ask here, so a stream never sends what the same answer, checked whole, would mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from guardrail.classifiers.patterns import Span, find_entities
from guardrail.normalize import Form, forms

__all__ = ["Reading", "merge_spans", "spans_and_readings"]

Reading = tuple[Form, list[Span]]  # a reading of the text and the entities found in it, at its own offsets


def spans_and_readings(text: str, entities: Iterable[str] | None = None) -> tuple[list[Span], list[Reading]]:
    """The entities of ``text`` and of its readings, mapped back to ``text`` (sorted, none overlapping); and each
    reading with its own entities (for scoring it with them masked). ``entities`` limits what is looked for,
    before overlaps are resolved (a phone number inside an address is the phone when only phones are asked)."""
    own = find_entities(text, entities)
    spans = list(own)
    readings: list[Reading] = []
    for form in forms(text):
        if form.text == text:  # the text itself (with what earlier readings revealed in it)
            readings.append((form, list(spans)))
        else:
            revealed = find_entities(form.text, entities)
            readings.append((form, revealed))
            spans = merge_spans(text, spans, revealed, form)
    return spans, readings


def merge_spans(text: str, spans: list[Span], revealed: Sequence[Span], form: Form) -> list[Span]:
    """``spans`` of ``text``, plus the spans found in one of its readings, mapped back to ``text``
    (where they overlap none already found)."""
    out = list(spans)
    for s in revealed:
        a, b = form.to_original(s.start, s.end)
        if a < b and not any(a < x.end and x.start < b for x in out):
            out.append(Span(s.entity, a, b, text[a:b]))
    return sorted(out, key=lambda x: x.start)
