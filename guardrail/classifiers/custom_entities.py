"""Ops-defined personal data: ``pii_entities:`` in a policy names a pattern, and ``redact`` masks it as ``<NAME_1>``.

    pii_entities:
      employee_id: 'EMP-\\d{6}'
    input:
      rules:
        - {category: pii, action: redact, entities: [email, employee_id]}

This module owns what such a definition may be, the detectors made from it, and the sample values a replay puts
where a log masked one. Why the rules are what they are:

- **One run of printable ASCII, no spaces.** A stream is released only up to the start of a run that may still
  become an entity (``streaming._run_start``); a value with a space in it, or a non-ASCII letter, could be
  released in two parts and never be masked whole. The built-in detectors have the same shape, so custom ones
  ride the same hold-back. Write the characters a value may contain (``[A-Z0-9]``, ``\\d``, ``\\w``); ``.``,
  ``[^x]``, ``\\S``, ``\\W`` and ``\\s`` are refused.
- **RE2 finds them.** Redaction needs each match's span, and only RE2 (the ``google-re2`` package, the ``re2``
  extra) gives spans in linear time; the built-in linear matcher answers only "is there a match". A pattern on
  Python's backtracking ``re`` could hang the guard on hostile input, so without RE2 a policy that defines
  entities does not load (it says how to install it) rather than run unsafely.
- **Case-insensitive**, as every policy pattern is.
- **One name, one pattern in a process.** Spans, placeholders and logs carry the entity's name, so the
  detectors are looked up by name (:func:`register` at policy load). A policy file may change its own
  definitions (a hot reload); two different files defining one name differently is a load error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from guardrail._linear_re import _c, _p
from guardrail.classifiers.pii_detectors import Detector

__all__ = ["NAME", "detectors", "is_custom", "pattern_problem", "register", "sample"]

# letters and single underscores: its placeholder <EMPLOYEE_ID_1> must read back as one (patterns._PLACEHOLDER)
NAME: Final = re.compile(r"[a-z]+(?:_[a-z]+)*")
_PRINTABLE: Final = range(0x21, 0x7F)  # printable ASCII without the space
_OK_CATEGORIES: Final = {_c.CATEGORY_DIGIT, _c.CATEGORY_WORD}


@dataclass(frozen=True, slots=True)
class _Entry:
    pattern: str
    origin: str
    detector: Detector


_LOCK = threading.Lock()
_REGISTRY: dict[str, _Entry] = {}  # written under _LOCK; checks on other threads read only _SNAPSHOT
_SNAPSHOT: tuple[Detector, ...] = ()  # replaced whole, so a reload never changes it under a running check


def _re2() -> Any:
    try:
        import re2
    except ImportError:
        return None
    return re2


def _compile(pattern: str) -> Any:
    re2 = _re2()
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False
    return re2.compile(pattern, opts)


def _whole(_text: str, m: Any) -> tuple[int, int]:
    return (m.start(), m.end())


def _always(_text: str) -> bool:
    return True


def _char_problem(op: Any, av: Any) -> str | None:
    """Why one character construct may match a space or a non-ASCII character, or None."""
    if op is _c.LITERAL:
        return None if av in _PRINTABLE else f"the character {chr(av)!r} is not printable ASCII"
    if op in (_c.ANY, _c.NOT_LITERAL):
        return "'.' and negations match any character (spaces, other scripts); write the characters a value has"
    for sub_op, sub_av in av:  # IN: a character set
        if sub_op is _c.NEGATE:
            return "a negated set [^...] matches spaces and other scripts; list the characters a value has"
        if sub_op is _c.LITERAL and sub_av not in _PRINTABLE:
            return f"the character {chr(sub_av)!r} is not printable ASCII"
        if sub_op is _c.RANGE and not (sub_av[0] in _PRINTABLE and sub_av[1] in _PRINTABLE):
            return f"the range {chr(sub_av[0])!r}-{chr(sub_av[1])!r} goes beyond printable ASCII"
        if sub_op is _c.CATEGORY and sub_av not in _OK_CATEGORIES:
            return "\\s, \\S, \\W and \\D match spaces or other scripts; use \\d, \\w or a set such as [A-Z0-9-]"
    return None


def _tree_problem(items: Any) -> str | None:
    for op, av in items:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            why = _char_problem(op, av)
        elif op is _c.SUBPATTERN:
            why = _tree_problem(av[3])
        elif op is _c.BRANCH:
            why = next((w for alt in av[1] if (w := _tree_problem(alt)) is not None), None)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            why = _tree_problem(av[2])
        else:  # anchors; what the linear-time check refuses (back-references, look-around) it has named already
            why = None
        if why is not None:
            return why
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot define an entity (a sentence for the policy error), or None."""
    from guardrail.custom_rules import check_pattern

    why = check_pattern(pattern)
    if why is not None:
        return why
    why = _tree_problem(_p.parse(pattern, re.IGNORECASE | re.ASCII))
    if why is not None:
        return f"a value is one run of printable ASCII without spaces, so a stream can hold it back whole: {why}"
    if _re2() is None:
        return "finding its spans in linear time needs RE2: pip install 'guardrail-sdk[re2]' (google-re2)"
    try:
        rx = _compile(pattern)
    except Exception as exc:  # re2.error: a construct RE2 refuses
        return f"RE2 cannot compile it: {exc}"
    if rx.fullmatch("") is not None:
        return "it matches the empty text; a value has at least one character"
    return None


def register(definitions: Mapping[str, str], origin: str) -> None:
    """Make ``definitions`` (name -> pattern, each already checked) the detectors of those names.

    ValueError (naming the entity) when another policy file defined one of the names with another pattern: spans
    and logs carry only the name, so it cannot mean two patterns in one process. A file redefining its own
    (reloaded after an edit) replaces them."""
    global _SNAPSHOT
    with _LOCK:
        for name, pattern in definitions.items():
            held = _REGISTRY.get(name)
            if held is not None and held.pattern != pattern and held.origin != origin:
                raise ValueError(
                    f"{name}: already defined as {held.pattern!r} by {held.origin}; one name has one pattern in a "
                    "process, so give this one another name"
                )
        for name, pattern in definitions.items():
            held = _REGISTRY.get(name)
            if held is None or held.pattern != pattern or held.origin != origin:
                _REGISTRY[name] = _Entry(pattern, origin, Detector(name, _compile(pattern), _whole, _always))
        _SNAPSHOT = tuple(e.detector for e in _REGISTRY.values())


def detectors() -> tuple[Detector, ...]:
    """The custom detectors registered in this process (looked up per call: a reload may replace one)."""
    return _SNAPSHOT


def is_custom(entity: str) -> bool:
    return any(d.entity == entity for d in _SNAPSHOT)


def sample(entity: str, n: int) -> str | None:
    """A value of the custom ``entity`` that its detector finds whole, varied by ``n`` so two placeholders
    stay two values where the pattern has room; None when no simple value is found (the placeholder stays)."""
    held = next((d for d in _SNAPSHOT if d.entity == entity), None)
    if held is None:
        return None
    text = _build(_p.parse(held.regex.pattern, re.IGNORECASE | re.ASCII), [n])
    m = held.regex.search(text, 0) if text is not None else None
    return text if text is not None and m is not None and _whole(text, m) == (0, len(text)) else None


def _build(items: Any, n: list[int]) -> str | None:
    out: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            out.append(chr(av))
        elif op is _c.IN:
            chars = _set_chars(av)
            if not chars:
                return None
            out.append(chars[n[0] % len(chars)])
            n[0] //= len(chars)
        elif op is _c.SUBPATTERN:
            part = _build(av[3], n)
            if part is None:
                return None
            out.append(part)
        elif op is _c.BRANCH:
            part = _build(av[1][0], n)
            if part is None:
                return None
            out.append(part)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, _hi, sub = av
            for _ in range(max(lo, 1)):
                part = _build(sub, n)
                if part is None:
                    return None
                out.append(part)
        elif op is not _c.AT:
            return None
    return "".join(out)


def _set_chars(items: Any) -> str:
    chars: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            chars.append(chr(av))
        elif op is _c.RANGE:
            chars += [chr(c) for c in range(av[0], av[1] + 1)]
        elif op is _c.CATEGORY:
            chars += list("0123456789") if av is _c.CATEGORY_DIGIT else list("abcdefghij0123456789")
    return "".join(dict.fromkeys(chars))
