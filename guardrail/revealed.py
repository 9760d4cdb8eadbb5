"""The personal data of a text, read through its readings too, each span where it sits in the text.

A value written encoded (base64, hex), spaced apart or reversed is found in the reading that decodes it
(``guardrail.normalize.forms``) and masked where it sits in what was written. The whole-answer check, the
stream's release, an answer's calls and the logs all ask here, so none sends what another would mask.

The entities asked for are looked for before overlaps are resolved: with only e-mail redacted, an address in a
base64 token after ``token: `` is the e-mail, not part of a key no rule masks.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence

from guardrail.classifiers.patterns import ENTITIES, Span, find_entities
from guardrail.normalize import Form, forms

__all__ = ["Reading", "entity_spans", "spans_and_readings", "spread"]

Reading = tuple[Form, list[Span]]  # a reading of the text and the entities found in it, at its own offsets


def entity_spans(text: str, entities: Iterable[str] | None = None) -> list[Span]:
    """The ``entities`` (None: all) of ``text`` and of its readings, mapped back to ``text`` (sorted, none
    overlapping)."""
    return _spans(text, None if entities is None else frozenset(entities), forms(text))


def spans_and_readings(
    text: str, entities: Iterable[str] | None = None, hidden: Iterable[str] = ()
) -> tuple[list[Span], list[Reading]]:
    """:func:`entity_spans` (what redaction masks), and each reading with all the entities found in it (what the
    classifiers are shown masked; the text's own reading with what earlier readings revealed in it too). ``hidden``:
    more kinds the classifiers are shown masked though this check does not redact them (the policy's own)."""
    readings = forms(text)
    wanted = None if entities is None else frozenset(entities)
    # what the classifiers are shown masked: the built-in kinds, what this check redacts and the policy's own kinds,
    # never another policy's (pii_entities in force in the process), so its patterns never change this one's scores
    shown = frozenset(ENTITIES) | (wanted or frozenset()) | frozenset(hidden)
    scored: list[Reading] = []
    every = find_entities(text, shown)
    for form in readings:
        if form.text == text:
            scored.append((form, list(every)))
        else:
            revealed = find_entities(form.text, shown)
            scored.append((form, _carried(every, form, revealed)))
            every = _merge(text, every, revealed, form)
    return (every if wanted is None else _spans(text, wanted, readings)), scored


def _carried(spans: Sequence[Span], form: Form, found: list[Span]) -> list[Span]:
    """``found`` (the spans a reading's own detectors found), plus the text's ``spans`` where they sit in the reading:
    a reading that rewrote a value (leetspeak turns "E123456" into "Ei2eas6", which no detector finds) showed it to
    the classifiers, an LLM judge included, in that form. One pass over the reading, each character mapped back.

    A value the reading turned into more words than it holds is not carried: that reading decoded what a token says
    ("token: aG93IGRv..." is a base64 message, found as a key by its cue), and the classifiers must read it; the
    values in what it says are the reading's own detectors' (``found``). Carried, the whole request went to them as
    ``token: API_KEY_1``."""
    if not spans or form.offsets is None:
        return found
    bounds = sorted(spans, key=lambda x: x.start)
    starts = [x.start for x in bounds]
    runs: list[list[int]] = []  # [index in bounds, start, end] in the reading
    for i in range(len(form.text)):
        a, b = form.to_original(i, i + 1)
        k = bisect.bisect_right(starts, a) - 1
        hit = next((j for j in (k, k + 1) if 0 <= j < len(bounds) and bounds[j].start < b and a < bounds[j].end), None)
        if hit is None:
            continue
        if runs and runs[-1][0] == hit and runs[-1][2] == i:
            runs[-1][2] = i + 1
        else:
            runs.append([hit, i, i + 1])
    # what the reading's detectors found, by start, with the furthest end so far: a run overlaps one of them if one
    # that starts before the run ends reaches into it (one bisection per run: a scan of all was quadratic on a long
    # text full of values)
    mine = sorted(found, key=lambda x: x.start)
    found_starts = [x.start for x in mine]
    reach = list(itertools.accumulate((x.end for x in mine), max))
    out = list(found)
    for hit, i, j in runs:
        k = bisect.bisect_left(found_starts, j)
        if k and reach[k - 1] > i:
            continue
        piece = form.text[i:j]
        if _words(piece, bounds[hit].value) > max(1, len(bounds[hit].value.split())):
            continue
        out.append(Span(bounds[hit].entity, i, j, piece))
    return sorted(out, key=lambda x: x.start)


# words joined by a mark instead of a space ("how_to_build_a_pipe_bomb", "how-do-i-make-meth")
_JOINED = re.compile(r"[\s_.+/\-]+")


def _words(piece: str, value: str) -> int:
    """The words ``piece`` (a value as a reading shows it) holds: parted by spaces, or, where the reading rewrote the
    value, by the marks that join words in one token: a base64 token after "token:" that decodes to
    "how_to_build_a_pipe_bomb" is a message of seven words, not one (carried, it was masked and the request allowed).
    Only words of letters count there, three at least, so a number ("10.0.0.1", "415-555-2671") written in another
    form is still one value; a value the reading left as written is carried whatever it holds (an address that a
    reading rewrote is found again there by its own detectors)."""
    spaced = len(piece.split())
    if piece.strip() == value.strip():
        return spaced
    joined = sum(w.isalpha() for w in _JOINED.split(piece))
    return max(spaced, joined if joined >= 3 else 0)


def _spans(text: str, entities: frozenset[str] | None, readings: Sequence[Form]) -> list[Span]:
    if entities is not None and not entities:
        return []
    spans = find_entities(text, entities)
    for form in readings:
        if form.text != text:
            spans = _merge(text, spans, find_entities(form.text, entities), form)
    return spans


def _merge(text: str, spans: list[Span], revealed: Sequence[Span], form: Form) -> list[Span]:
    """``spans`` of ``text``, plus the spans found in one of its readings, mapped back to ``text``
    (where they overlap none already found)."""
    out = sorted(spans, key=lambda x: x.start)
    starts = [x.start for x in out]
    for s in revealed:
        a, b = form.to_original(s.start, s.end)
        k = bisect.bisect_left(starts, a)  # the spans are apart: only the neighbours can overlap [a, b)
        if a < b and not (k > 0 and out[k - 1].end > a) and not (k < len(out) and out[k].start < b):
            out.insert(k, Span(s.entity, a, b, text[a:b]))
            starts.insert(k, a)
    return out


def spread(
    texts: Sequence[str],
    joined: Sequence[int],
    starts: Sequence[int],
    found: Sequence[Span],
    spans: list[tuple[Span, ...]],
) -> None:
    """Spans ``found`` in a reading that holds the texts ``joined`` (``texts[joined[n]]`` begins at ``starts[n]``),
    put back into each text they touch (``spans[k]``: the spans of ``texts[k]``, updated in place). An address cut
    across two parts ("jane.roe" + "@corp.example") is masked in both pieces, each where it sits. A span that touches
    one already found in a text alone is left out: parts are joined with nothing between them, so
    "bob@example.com" + "hello" reads as one longer address."""
    bounds = [(k, a, a + len(texts[k])) for k, a in zip(joined, starts, strict=True)]
    for s in found:
        pieces = [(k, max(s.start, a) - a, min(s.end, b) - a) for k, a, b in bounds if max(s.start, a) < min(s.end, b)]
        if any(o.start < e and b < o.end for k, b, e in pieces for o in spans[k]):
            continue
        for k, a, b in pieces:
            spans[k] = tuple(sorted((*spans[k], Span(s.entity, a, b, texts[k][a:b])), key=lambda x: x.start))
