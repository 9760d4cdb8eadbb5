"""What every PII detector is made of (``pii_detectors``, ``pii_phone``): a regex, a check and a gate.

Split out so the catalogue can live in more than one module (the phone numbers, with their cue words, are a module
of their own) without a circular import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Check", "Detector", "Gate", "compile_ascii", "contains", "contains_lower", "has_digit", "lowered", "whole"]

# A check receives the whole text and the regex hit and returns the accepted (start, end), possibly
# trimmed, or None to reject the hit. The text is needed to look past the match (e.g. IBAN length).
Check = Callable[[str, re.Match[str]], tuple[int, int] | None]


# A gate is a much cheaper necessary condition for the pattern to match ('@' for an e-mail). Gates are
# what make a typical prompt cheap: most have no '@', key prefix or PEM header, and a substring test is
# a memchr where a regex scan is a match attempt per character.
Gate = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Detector:
    entity: str
    regex: re.Pattern[str]
    check: Check
    gate: Gate


def whole(_text: str, m: re.Match[str]) -> tuple[int, int]:
    return m.span()


# Most patterns start with a character class and check the character *before* the match in a lookbehind
# placed after that first character ("\d(?<![\w-]\d)" rather than "(?<![\w-])\d"): the regex engine can
# then skip to candidate characters in C instead of attempting a match at every position.
def compile_ascii(pattern: str, flags: int = 0) -> re.Pattern[str]:
    # ASCII: Unicode digits and letters would pass \d and \w but no checksum or provider format uses them.
    return re.compile(pattern, re.ASCII | re.VERBOSE | flags)


_DIGIT = re.compile(r"\d", re.ASCII)


def has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def contains(*needles: str) -> Gate:
    return lambda text: any(needle in text for needle in needles)


def contains_lower(*needles: str) -> Gate:
    """A gate on the text lower-cased (``needles`` lower-case): the cue words of names and addresses."""
    return lambda text: any(needle in lowered(text) for needle in needles)


_last: tuple[str, str] = ("", "")  # the last text lowered, and its lowered form: the gates of one scan share it


def lowered(text: str) -> str:
    """``text.lower()``, computed once for the many gates that ask about one text in turn."""
    global _last
    held = _last  # one immutable pair, swapped whole: another thread's text never pairs with this one
    if held[0] is not text:
        held = _last = (text, text.lower())
    return held[1]
