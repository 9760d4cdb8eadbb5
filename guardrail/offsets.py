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

__all__ = ["Form", "OffsetMap", "Rewrite", "Seg", "excerpt", "rebased", "substitute"]


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
    # where each segment starts and ends, to find the first and the last one a span touches by bisection: mapping
    # every span by a scan of all segments was quadratic on a text with thousands of decoded pieces, and a scan of
    # the segments a span covers made halving a long reading (``excerpt``) cost a pass per halving
    _starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    _ends: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(seg.out for seg in self.segs))
        object.__setattr__(self, "_ends", tuple(seg.out_end for seg in self.segs))

    def _one(self, start: int, end: int) -> tuple[int, int]:
        """The span ``[start, end)`` came from: from where the first segment it touches starts mapping it to where the
        last one ends. Every map is written left to right (``Rewrite``), so its sources only grow along its
        segments: the first and last segments bound the span, whatever lies between them."""
        if self.reverse_of is not None:
            return self.reverse_of - end, self.reverse_of - start
        k = bisect.bisect_right(self._ends, start)
        if k == len(self.segs) or self.segs[k].out >= end:
            return start, end
        first, last = self.segs[k], self.segs[bisect.bisect_left(self._starts, end, k) - 1]
        lo = first.src + max(start, first.out) - first.out if first.linear else first.src
        hi = last.src + min(end, last.out_end) - last.out if last.linear else last.src_end
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

    def swap(self, new: str, a: int) -> None:
        """``new`` in place of as many characters of the source from ``a``, each mapping to the one it replaced (a
        separator written as a space: the letters around it keep their own offsets)."""
        self.segs.append(Seg(self.out, self.out + len(new), a, a + len(new), True))
        self.parts.append(new)
        self.out += len(new)

    def put(self, new: str, a: int, b: int) -> None:
        """``new`` in place of ``source[a:b]``: each of its characters maps to the whole span (``a == b``: to none)."""
        self.segs.append(Seg(self.out, self.out + len(new), a, b, False))
        self.parts.append(new)
        self.out += len(new)

    def result(self, parent: OffsetMap | None) -> tuple[str, OffsetMap]:
        return "".join(self.parts), OffsetMap(tuple(self.segs), parent)


def substitute(
    text: str,
    parent: OffsetMap | None,
    pattern: re.Pattern[str],
    repl: Callable[[re.Match[str]], str | None],
    *,
    aligned: bool = False,
) -> tuple[str, OffsetMap | None, int]:
    """``pattern.sub`` that keeps offsets: a replaced match maps, as a whole, to the match it replaced; with
    ``aligned`` (a replacement written character for character, as rot13 is), each character to its own."""
    rewrite = Rewrite(text)
    pos = changed = 0
    for m in pattern.finditer(text):
        new = repl(m)
        if new is None or new == m.group(0):
            continue
        rewrite.keep(pos, m.start())
        if aligned and len(new) == m.end() - m.start():
            rewrite.swap(new, m.start())
        else:
            rewrite.put(new, m.start(), m.end())
        pos = m.end()
        changed += 1
    if not changed:
        return text, parent, 0
    rewrite.keep(pos, len(text))
    return (*rewrite.result(parent), changed)


def rebased(spans: OffsetMap | None, base: OffsetMap | None) -> OffsetMap | None:
    """``spans`` (a map made with no parent: to the text it was read from) continued by ``base`` (that text's own map
    to the original). A reading is made relative first when only its changes are kept (:func:`excerpt`); the chain is
    a few maps deep, and each copy shares its segments."""
    if spans is None or base is None:
        return base if spans is None else spans
    return OffsetMap(spans.segs, rebased(spans.parent, base) if spans.parent is not None else base, spans.reverse_of)


_GRAIN = 64  # a changed stretch is located to within this many characters
_BLOCK = 4096  # halving starts from blocks of this size: the steps grow with the text, not with its logarithm too


def excerpt(text: str, spans: OffsetMap, source: str, margin: int) -> tuple[str, OffsetMap] | None:
    """The parts of ``text`` (a reading of ``source``, mapped to it by ``spans``, a map with no parent) that differ
    from ``source``, each with about ``margin`` characters around it, joined by blank lines, and their map to
    ``source`` (continue it with :func:`rebased`); None when nothing differs, or when the excerpt would hold half the
    text or more (the whole reading is as cheap then, and reads whole).

    Why: a reading that changed only a little of a long text (a spaced request after 50,000 characters of a document)
    would send the classifier the whole text a second time; the excerpt costs what the change costs. Where the
    changes are is found by halving blocks of the text: a stretch whose characters are those of the span of
    ``source`` it maps to is unchanged and skipped whole, so the comparisons cost a few passes of character compares
    in C and a few Python steps per block and per changed stretch."""
    changed: list[tuple[int, int]] = []
    held = 0  # characters the windows found so far hold, about
    todo = [(i, min(len(text), i + _BLOCK)) for i in range(len(text) - len(text) % _BLOCK, -1, -_BLOCK)]
    while todo:
        i, j = todo.pop()
        if i >= j:
            continue
        a, b = spans(i, j)
        if b - a == j - i and text[i:j] == source[a:b]:
            continue
        if j - i > _GRAIN:
            mid = (i + j) // 2
            todo += [(mid, j), (i, mid)]  # the left half first: windows come in order
            continue
        if changed and changed[-1][1] >= i - 2 * margin - 64:  # close to the last: one window
            held += j - changed[-1][1]
            changed[-1] = (changed[-1][0], j)
        else:
            held += j - i + 2 * margin
            changed.append((i, j))
        if 2 * held >= len(text):
            return None
    if not changed:
        return None
    segs: list[Seg] = []
    parts: list[str] = []
    out = 0
    for i, j in changed:
        a, b = _edge(text, i - margin, back=True), _edge(text, j + margin, back=False)
        if parts:  # between two windows: a blank line, from nowhere in the source
            segs.append(Seg(out, out + 2, segs[-1].src_end, segs[-1].src_end, False))
            parts.append("\n\n")
            out += 2
        segs.append(Seg(out, out + b - a, a, b, True))
        parts.append(text[a:b])
        out += b - a
    return "".join(parts), OffsetMap(tuple(segs), spans)


def _edge(text: str, at: int, *, back: bool) -> int:
    """``at`` clipped to the text and moved to a word's edge within a few characters (a window starts and ends
    between words, so no half word at its edges reads as something else)."""
    at = max(0, min(len(text), at))
    if 0 < at < len(text):
        k = text.rfind(" ", max(0, at - 32), at) if back else text.find(" ", at, at + 32)
        if k != -1:
            return k + 1 if back else k
    return at
