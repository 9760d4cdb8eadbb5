"""Sample values of ops-defined personal data: what a replay puts where an audit log masked a ``pii_entities`` value.

A replay re-checks logged traffic whose values were masked (``<EMPLOYEE_ID_1>``). The classifiers should read
something shaped like the value, not the placeholder, so this builds a value from the pattern ops wrote, the
simplest one its own detector finds whole. Apart from :mod:`guardrail.classifiers.custom_entities` (what a
definition may be, and the detectors) because only replay asks for it.
"""

from __future__ import annotations

from typing import Any

from guardrail._linear_re import _c
from guardrail.classifiers import custom_entities

__all__ = ["sample"]


def sample(entity: str, n: int) -> str | None:
    """A value of the custom ``entity`` that its detector finds whole, varied by ``n`` so two placeholders
    stay two values where the pattern has room; None when no simple value is found (the placeholder stays)."""
    held = custom_entities.in_force(entity)
    if held is None:
        return None
    pattern, detector = held
    text = _build(custom_entities.parse(pattern), [n])
    m = detector.regex.search(text, 0) if text is not None else None
    return text if text is not None and m is not None and (m.start(), m.end()) == (0, len(text)) else None


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
