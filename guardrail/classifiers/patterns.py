"""Built-in PII and secret detection for the ``redact`` policy action.

A model cannot say *where* an e-mail address or an API key sits in a prompt, and redaction needs exact
character spans, so these detectors are regular expressions plus cheap checksum and structure checks.
Two goals pull against each other: a guardrail that redacts prices, dates and version numbers makes the
LLM's answers worse (over-redaction is the PII analogue of over-refusal), while a missed card number or
key is a leak. The checks (Luhn, ISO 7064 mod-97, SSN area rules, IPv6 grammar, key entropy) are what let
the patterns stay permissive about formatting without firing on ordinary numbers.

Every pattern runs on untrusted text, so each is written to be linear: a candidate may only *start*
where the previous character cannot continue it (a negative lookbehind), repeats are either bounded or
cannot overlap with what follows, and checks run in Python only on the rare regex hits. The detectors
themselves (regexes, checks and gates) are catalogued in ``pii_detectors``; this module resolves their overlaps
and redacts.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from guardrail.classifiers import custom_entities
from guardrail.classifiers.pii_detectors import DETECTORS as _DETECTORS
from guardrail.classifiers.pii_detectors import Detector as _Detector
from guardrail.taxonomy import CUED_PII_ENTITIES, PII_ENTITIES

__all__ = [
    "ENTITIES", "Span", "bare_placeholders", "find_entities", "in_force", "masked_repeats", "placeholders", "redact",
    "redactable", "renumbered", "restore",
]  # fmt: skip

ENTITIES: Final[tuple[str, ...]] = PII_ENTITIES
# names and addresses: found only where asked for by name, never as part of "all" (taxonomy.CUED_PII_ENTITIES)
_ON_REQUEST: Final[frozenset[str]] = frozenset(CUED_PII_ENTITIES)

# Overlap tie-break after length: the more sensitive reading of the same characters wins.
_PRIORITY: Final[dict[str, int]] = {
    name: rank
    for rank, name in enumerate(
        ("private_key", "api_key", "credit_card", "iban", "us_ssn", "email", "ip_address", "phone", "address", "person")
    )
}


@dataclass(frozen=True, slots=True)
class Span:
    """One detected entity; ``value`` is kept so redaction can be undone without the original text."""

    entity: str
    start: int
    end: int
    value: str


def _scan(text: str, detector: _Detector) -> Iterator[tuple[int, int]]:
    search = detector.regex.search
    pos = 0
    while (m := search(text, pos)) is not None:
        span = detector.check(text, m)
        if span is None or span[0] >= span[1]:
            # A rejected hit may hide a valid one starting inside it ("1 4111 1111 1111 1111").
            pos = m.start() + 1
            continue
        yield span
        pos = max(span[1], m.start() + 1)


# (the custom detectors it was made for, every detector, every entity name): rebuilt only when a policy's
# pii_entities change what is in force, so a process without them pays one identity test per call
_catalogue: tuple[tuple[_Detector, ...], tuple[_Detector, ...], frozenset[str]] = ((), _DETECTORS, frozenset(ENTITIES))


def _every() -> tuple[tuple[_Detector, ...], frozenset[str]]:
    global _catalogue
    custom = custom_entities.detectors()
    held = _catalogue
    if held[0] is not custom:
        every = (*_DETECTORS, *custom)
        held = _catalogue = (custom, every, frozenset(d.entity for d in every) - _ON_REQUEST)
    return held[1], held[2]


def in_force() -> frozenset[str]:
    """What ``entities=None`` finds: the built-in kinds found by their format and the custom kinds in force (never
    names and addresses). "All, and names too" is ``in_force() | {"person"}``."""
    return _every()[1]


def redactable(entity: str) -> bool:
    """Whether :func:`redact` takes a span of ``entity`` (a built-in kind, or a custom one ever defined here)."""
    return entity in _PRIORITY or custom_entities.is_custom(entity)


def _selected(entities: Iterable[str] | None, known: frozenset[str]) -> frozenset[str]:
    if entities is None:  # all: the built-in ones and those the policies in use define (pii_entities), but for
        return known  # names and addresses, which are looked for only by name
    names = frozenset((entities,) if isinstance(entities, str) else entities)
    unknown = sorted(names - known - _ON_REQUEST)
    if unknown:
        raise ValueError(f"unknown PII entities {unknown}; supported: {', '.join(sorted(known | _ON_REQUEST))}")
    return names


def _priority(entity: str) -> int:
    """Overlap rank: a custom entity yields to the built-in ones on the same characters (and two custom ones of one
    length and start to each other by name, in ``_resolve``: never by the order policies were loaded in)."""
    return _PRIORITY.get(entity, len(_PRIORITY))


def find_entities(text: str, entities: Iterable[str] | None = None) -> list[Span]:
    """Detect PII and secrets, returning non-overlapping spans sorted by start.

    Detectors overlap by nature (an IBAN contains a card-like run, an e-mail can contain a phone number),
    and redaction needs one answer per character: the longest candidate wins, then the more sensitive
    entity, then the earlier one, so the result does not depend on detector order.
    """
    every, known = _every()
    wanted = _selected(entities, known)
    candidates = [
        Span(d.entity, start, end, text[start:end])
        for d in every
        if d.entity in wanted and d.gate(text)
        for start, end in _scan(text, d)
    ]
    return _resolve(_with_repeats(text, candidates))


def _with_repeats(text: str, candidates: list[Span]) -> list[Span]:
    """``candidates`` and each further place a name or an address found through its cue stands whole in ``text``: "My
    name is Jane Doe. Jane Doe is my legal name" went upstream with the second one as written (no cue before it), while
    the redacted audit log masked both. Whole words only ("Jane" leaves "Janet"), case as written."""
    extra = _repeats(text, {(s.entity, s.value) for s in candidates if s.entity in _ON_REQUEST})
    return [*candidates, *extra] if extra else candidates


def _repeats(text: str, values: Iterable[tuple[str, str]]) -> list[Span]:
    """Every place one of ``values`` (entity, value) stands whole in ``text``. One pass over the words of ``text``:
    each is looked up among the values' first words, and at most ``_REPEATS_PER_WORD`` values are tried there (a text
    of thousands of names sharing one first word stays linear)."""
    by_first: dict[str, list[tuple[str, str]]] = {}
    for entity, value in sorted(values):
        if (first := _WORD_RUN.match(value)) is not None:
            same = by_first.setdefault(first.group(), [])
            if len(same) < _REPEATS_PER_WORD:
                same.append((entity, value))
    if not by_first:
        return []
    found: list[Span] = []
    for m in _WORD_RUN.finditer(text):
        for entity, value in by_first.get(m.group(), ()):
            end = m.start() + len(value)
            if text.startswith(value, m.start()) and not (_WORD_CHAR.match(value[-1]) and _WORD_CHAR.match(text, end)):
                found.append(Span(entity, m.start(), end, value))
    return found


def masked_repeats(text: str, spans: Sequence[Span]) -> list[Span]:
    """``spans`` (disjoint) and each further place a name or an address among them stands whole in ``text``, longest
    first: one that covers only names or addresses found inside it replaces them, one that overlaps anything else is
    left out. For texts redacted joined (``rules._redact_all``: a name one turn says is masked in the others too, and
    "Jane Doe" whole where a reading of parts joined with nothing cut it to "Jane"). Never for a stream's released
    prefix: an occurrence that already went out as written must not be masked after the fact."""
    found = _repeats(text, {(s.entity, s.value) for s in spans if s.entity in _ON_REQUEST})
    if not found:
        return list(spans)
    kept = sorted(spans, key=lambda s: s.start)
    starts = [s.start for s in kept]
    for occ in sorted(found, key=lambda s: (s.start - s.end, s.start)):
        i = bisect_left(starts, occ.start)
        lo = i - 1 if i > 0 and kept[i - 1].end > occ.start else i
        hi = lo
        while hi < len(kept) and kept[hi].start < occ.end:
            hi += 1
        inside = all(k.entity in _ON_REQUEST and occ.start <= k.start and k.end <= occ.end for k in kept[lo:hi])
        if inside:
            kept[lo:hi] = [occ]
            starts[lo:hi] = [occ.start]
    return kept


_WORD_RUN = re.compile(r"(?<!\w)\w+")
_WORD_CHAR = re.compile(r"\w")
_REPEATS_PER_WORD = 16


def _resolve(candidates: list[Span]) -> list[Span]:
    """Keep the longest, then most sensitive, then earliest candidates that do not overlap a kept one."""
    candidates.sort(key=lambda s: (s.start - s.end, _priority(s.entity), s.start, s.entity))
    starts: list[int] = []
    chosen: list[Span] = []
    for span in candidates:
        i = bisect_left(starts, span.start)
        if (i > 0 and chosen[i - 1].end > span.start) or (i < len(chosen) and chosen[i].start < span.end):
            continue
        starts.insert(i, span.start)
        chosen.insert(i, span)
    return chosen


_PLACEHOLDER = re.compile(r"<([A-Z]+(?:_[A-Z]+)*_[1-9][0-9]*)>")


def placeholders(text: str) -> frozenset[str]:
    """The placeholders of ``redact`` that occur in ``text`` (``<EMAIL_1>`` ...)."""
    return frozenset(m.group() for m in _PLACEHOLDER.finditer(text)) if "<" in text else frozenset()


def renumbered(
    mapping: Mapping[str, str], taken: Mapping[str, str], reserved: Collection[str] = frozenset()
) -> dict[str, str]:
    """``mapping`` (placeholder -> value, one redaction) made to agree with ``taken`` (another redaction of the same
    answer, or the user's values the prompt masked): a value ``taken`` already masks keeps its placeholder there,
    and the others take the lowest numbers of their kind that ``taken`` and ``reserved`` leave free, in the order
    of their own numbers (so "bob, then carol" after the user's bob is <EMAIL_1>, <EMAIL_2>, with no gap)."""
    by_value = {v: k for k, v in taken.items()}
    used = set(taken) | set(reserved)
    out = {by_value[v]: v for v in mapping.values() if v in by_value}
    counters: dict[str, int] = {}
    for placeholder, value in sorted(mapping.items(), key=lambda kv: _order(kv[0])):
        if value in by_value:
            continue
        kind = _order(placeholder)[0]
        n = counters.get(kind, 0)
        while (new := f"<{kind}_{n + 1}>") in used:
            n += 1
        counters[kind] = n + 1
        used.add(new)
        out[new] = value
    return out


def _order(placeholder: str) -> tuple[str, int]:
    """``<CREDIT_CARD_2>`` -> ("CREDIT_CARD", 2); anything else sorts as a VALUE after them."""
    m = _PLACEHOLDER.fullmatch(placeholder)
    if not m:
        return ("VALUE", 1 << 30)
    kind, _, number = m.group(1).rpartition("_")
    return (kind, int(number))


def redact(
    text: str,
    spans: Sequence[Span],
    *,
    reserved: Collection[str] = frozenset(),
    known: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Replace spans with typed placeholders and return the mapping needed to undo it.

    Typed, numbered placeholders (``<EMAIL_1>``) let the LLM still reason about the text ("reply to
    <EMAIL_1>"), and one value always gets one placeholder so it can tell two people apart from one
    mentioned twice. A number whose placeholder already occurs in ``text`` is skipped, which is what
    makes ``restore(redact(x))`` exact even for text that contains placeholder-like strings. So is one in
    ``reserved``: an answer's own values never take a placeholder the prompt used for the user's (``<EMAIL_1>``
    would name two people to the application, and ``restore=True`` would have to leave both masked). A value
    ``known`` already masks (placeholder -> value: the user's own, masked in the prompt) keeps its placeholder,
    which names the same value to everyone; the other ``known`` placeholders are reserved.
    """
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    pieces: list[str] = []
    mapping: dict[str, str] = {}
    assigned: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    if known:
        reserved = {*reserved, *known}
        for held, value in known.items():
            kind, _ = _order(held)
            assigned.setdefault((kind.lower(), value), held)
    last = 0
    for span in ordered:
        if not redactable(span.entity):
            raise ValueError(f"unknown PII entity {span.entity!r} in span")
        if span.start < last or not span.start < span.end <= len(text) or text[span.start : span.end] != span.value:
            raise ValueError(f"span {span!r} overlaps another, is empty, or does not match the text")
        placeholder = assigned.get((span.entity, span.value))
        if placeholder is None:
            n = counters.get(span.entity, 0)
            while True:
                n += 1
                placeholder = f"<{span.entity.upper()}_{n}>"
                if placeholder not in text and placeholder not in reserved:
                    break
            counters[span.entity] = n
            assigned[span.entity, span.value] = placeholder
        mapping[placeholder] = span.value
        pieces += (text[last : span.start], placeholder)
        last = span.end
    pieces.append(text[last:])
    return "".join(pieces), mapping


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Put the original values back where the placeholders of ``redact`` appear.

    One pass over the text, so a restored value that itself looks like a placeholder is never expanded
    again; placeholders not in ``mapping`` (e.g. invented by the LLM) are left as they are.
    """
    if not mapping:
        return text
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)


def bare_placeholders(text: str) -> str:
    """``<EMAIL_1>`` -> ``EMAIL_1``: the form a classifier is shown, since markup-like tokens read as
    injection to a small model."""
    return _PLACEHOLDER.sub(r"\1", text) if "<" in text else text
