"""Offsets that survive rewriting: which span of the original text each character of a reading came from.

Split from :mod:`guardrail.normalize` (which decides *which* readings to make) because the mapping has one job
that redaction relies on: personal data found in a decoded, re-joined or folded reading must be redacted where it
sits in the original. A map is a few segments (one per change) chained to the map of the text it was rewritten
from, so a long text with few changes costs few segments.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Form", "OffsetMap", "Rewrite", "Seg", "substitute"]


@dataclass(frozen=True, slots=True)
class Seg:
    out: int  # start in the transformed text
    out_end: int
    src: int  # start in the text it was transformed from
    src_end: int
    linear: bool  # a copied run (char i maps to src + i); else every char maps to the whole source span


@dataclass(frozen=True, slots=True)
class OffsetMap:
    """Where each character of a transformed text came from: a few segments (one per change), not one
    entry per character, chained to the map of the text it was transformed from."""

    segs: tuple[Seg, ...]  # in order of the transformed text, none overlapping
    parent: OffsetMap | None = None
    reverse_of: int | None = None  # this text is the reverse of a text of that length
    # where each segment ends, to find the first one a span touches by bisection: mapping every span by a scan of all
    # segments was quadratic on a text with thousands of decoded pieces
    _ends: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ends", tuple(seg.out_end for seg in self.segs))

    def _one(self, start: int, end: int) -> tuple[int, int]:
        if self.reverse_of is not None:
            return self.reverse_of - end, self.reverse_of - start
        lo, hi = None, None
        for k in range(bisect.bisect_right(self._ends, start), len(self.segs)):
            seg = self.segs[k]
            if seg.out >= end:
                break
            if seg.linear:
                a = seg.src + max(start, seg.out) - seg.out
                b = seg.src + min(end, seg.out_end) - seg.out
            else:
                a, b = seg.src, seg.src_end
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
        if lo is None or hi is None:
            return start, end
        return lo, hi

    def __call__(self, start: int, end: int) -> tuple[int, int]:
        a, b = self._one(start, end)
        return self.parent(a, b) if self.parent is not None else (a, b)


@dataclass(frozen=True, slots=True)
class Form:
    """One reading of a text; ``offsets`` maps its characters back to the original (``None``: the
    text is the original)."""

    text: str
    kind: str
    offsets: OffsetMap | None = None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that ``text[start:end]`` came from."""
        return (start, end) if self.offsets is None else self.offsets(start, end)


class Rewrite:
    """A text rewritten piece by piece, left to right, with the map back to the text it was rewritten from: the one
    way readings build their segments (``substitute``, and the URL decoder that rewrites only inside tokens)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str] = []
        self.segs: list[Seg] = []
        self.out = 0

    def keep(self, a: int, b: int) -> None:
        """``source[a:b]`` copied: each character maps to its own."""
        if b > a:
            self.segs.append(Seg(self.out, self.out + b - a, a, b, True))
            self.parts.append(self.source[a:b])
            self.out += b - a

    def put(self, new: str, a: int, b: int) -> None:
        """``new`` in place of ``source[a:b]``: each of its characters maps to the whole span (``a == b``: to none)."""
        self.segs.append(Seg(self.out, self.out + len(new), a, b, False))
        self.parts.append(new)
        self.out += len(new)

    def result(self, parent: OffsetMap | None) -> tuple[str, OffsetMap]:
        return "".join(self.parts), OffsetMap(tuple(self.segs), parent)


def substitute(
    text: str, parent: OffsetMap | None, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str | None]
) -> tuple[str, OffsetMap | None, int]:
    """``pattern.sub`` that keeps offsets: a replaced match maps, as a whole, to the match it replaced."""
    rewrite = Rewrite(text)
    pos = changed = 0
    for m in pattern.finditer(text):
        new = repl(m)
        if new is None or new == m.group(0):
            continue
        rewrite.keep(pos, m.start())
        rewrite.put(new, m.start(), m.end())
        pos = m.end()
        changed += 1
    if not changed:
        return text, parent, 0
    rewrite.keep(pos, len(text))
    return (*rewrite.result(parent), changed)
