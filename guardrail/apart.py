"""Letters written apart, re-joined: spaced, dotted or one per line, whatever parts them, with offsets kept.

``h o w  t o``, ``b.o.m.b``: a model reads single letters as noise and scores the request harmless. The joining
patterns read one convention, ASCII spaces (one inside a word, two or more between words), because every detector
and the stream's hold-back are ASCII. A review (session 25) found that was all they read: the same prompts spaced
with no-break, thin or ideographic spaces, tabs, NUL, commas or one letter per line were caught 0% of the time
against 100% with ASCII spaces, and an address spaced with no-break spaces went out unmasked. NFKC turns those
spaces into ASCII ones, but only in the scan form, after the readings are made. So :func:`despace` first folds
other separators into that convention, and only where letters stand apart (ordinary text with a tab or a no-break
space keeps its own reading and costs one search):

- a run of single characters parted by one and the same separator that is not an ASCII space (a no-break space,
  a tab, NUL ...) has it turned into a space, character for character (the offsets stay exact);
- single characters one per line (``H\\nO\\nW``), with blank lines between words, become one spaced line;
- next to such a run, the whitespace that parts it from a single letter standing alone ("I", "a") becomes a word gap
  (two spaces): with NUL inside words and ASCII spaces between them, a single space is a word gap, not part of a
  word. Letters spaced with single ASCII spaces keep them (they are a word by the ASCII convention), so a pair spaced
  with tabs put next to an ASCII-spaced request cannot part its letters.

Then runs of single letters are joined (the ASCII patterns below), so every separator reads as ASCII spaces do.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from guardrail.offsets import OffsetMap, Rewrite, rebased, substitute

__all__ = ["despace"]

# single letters joined by one and the same mark ("b.o.m.b", "k-i-l-l", "k,i,l,l", "k+i+l+l"), or by single spaces
# between whitespace ("h o w  t o": two spaces part the words)
_DOTTED = re.compile(r"(?<![^\W_])[^\W\d_]([.\-_*·•|/,+~])(?:[^\W\d_]\1)*[^\W\d_](?![^\W_])")
# three or more ("j o h n . d o e @ ..."), or two between double spaces ("h o w  d o  y o u"). A spaced address may
# also sit in brackets, quotes or a markdown mark, follow a scheme or a label, or end a sentence
# ("(b o b @ x . c o m).", "**b o b @ ...**", "mailto:b o b @ ..."): read between spaces only, its first and last
# letters stayed outside the reading and outside what was masked. So it starts at a letter after a space, the start,
# marks, or a ":", "=" or "/" (not after a word and one other mark: "Here's b o b @ ..." keeps its "s"; the stream
# holds a word that ends in such a mark and one letter back, so the letter is not sent before it is read), and ends
# before a space, a closing mark or a query's "&"; "-" and "_" do not end it, since an address never ends in them. It
# is ASCII, as every detector and the stream's hold are. Only an address gets that wider edge: code ("i = 0;") would
# otherwise read as spaced letters too
_SPACED = re.compile(
    r"""(?:(?<!\S)|(?<=[^\w\s])(?<!\w[^\w\s:=/]))[A-Za-z](?: [!-?A-~])* @(?: [!-~]){2,}"""
    r"""(?![^\s)\]}"'>.,;:!?”’»›*`…/&])"""
    r"|(?<!\S)[^\W\d_](?: \S){2,}(?!\S)|(?:^|(?<=  ))[^\W\d_] \S(?=  \S|$)"
)
_SPACES = re.compile(r"(?<=\S)  +(?=\S)")
# marks that part fields and terms as often as letters ("id,a,b,c" in a CSV, "a+b+c"): their joins make a reading of
# their own, never the one that stands for the text (the CSV is still read as written)
_FIELDS = frozenset(",+~")

# -- other separators, folded into ASCII spaces -----------------------------------------------------------------

_V = r"[^\s\x00-\x1f\x7f]"  # one visible character
# what parts letters on one line but an ASCII space: tabs, every Unicode space (Zs), and control characters a reader
# does not see (NUL and the other C0 controls; the scan form turns them into spaces too)
_SEP = "\t\x0b\x0c\x00-\x08\x0e-\x1f\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# single characters parted by one and the same separator, from a character after no letter or digit to one before
# none, so an address in brackets ("(b\xa0o\xa0b@...)") is read whole, as its ASCII twin is; a word of two letters or
# more is never part of one (the separator must follow every character but the last)
_LINE_RUN = re.compile(rf"(?<!\w){_V}([{_SEP}]){_V}(?:\1{_V})*(?!\w)")
# three or more single characters one per line (a blank line, or one of spaces, between words); the first may end a
# line and the last start one ("write to b\no\nb ... m now"), as the letters of an address spaced on one line may, so
# at least one line between them holds one character alone (a paragraph that ends in "a" before one that starts
# with "I" is no column)
_COLUMN_RUN = re.compile(rf"(?<!\w){_V}(?:\r?\n(?:[^\S\r\n]*\r?\n)*{_V}(?=\r?\n))+\r?\n(?:[^\S\r\n]*\r?\n)*{_V}(?!\w)")
_COLUMN_BREAK = re.compile(r"\r?\n(?:[^\S\r\n]*\r?\n)*")
# what lies between two runs when it is only gaps and single characters ("d\x00o I b\x00u\x00i\x00l\x00d")
_BETWEEN = re.compile(rf"(?:[\s\x00-\x1f\x7f]+{_V})*[\s\x00-\x1f\x7f]+")
_GAP = re.compile(r"[\s\x00-\x1f\x7f]+")
# cheap tests first (a character class, or a literal line break, is scanned for fast): ordinary prose has no other
# separator than spaces and line breaks, and no line of one character, and then costs two searches
_LINE_GATE = re.compile(f"[{_SEP}]")
_COLUMN_GATE = re.compile(rf"\n{_V}\r?\n")


def _blank(c: str) -> bool:
    """Whether ``c`` parts characters on one line (whitespace or a control character, not a line break)."""
    return (c.isspace() or c < " " or c == "\x7f") and c not in "\n\r"


def _apart(c: str) -> bool:
    """Whether ``c`` parts characters at all (a blank, or a line break)."""
    return _blank(c) or c in "\n\r"


def _single(text: str, k: int) -> bool:
    """Whether ``text[k]`` is a visible character with none right after it."""
    return not _apart(text[k]) and (k + 1 == len(text) or _apart(text[k + 1]))


def _lone(text: str, at: int, stop: int, step: int) -> list[tuple[int, int]]:
    """The gaps that part single characters standing alone next to a run that ends (``step`` 1) or starts (-1) at
    ``at``, up to ``stop``: "I" in "I b\\x00u\\x00i\\x00l\\x00d" is a word of its own, so the space after it is a word
    gap. The walk stops at the first word of two characters, and at letters spaced with ASCII spaces, which the ASCII
    patterns read as a word (a tab-spaced pair put before "h o w  t o" must not part its letters); each character is
    looked at once."""
    gaps: list[tuple[int, int]] = []
    while True:
        k = at
        while k != stop and _blank(text[k if step > 0 else k - 1]):
            k += step
        c = k if step > 0 else k - 1
        if k in (at, stop) or not _single(text, c) or (step < 0 and c > 0 and not _apart(text[c - 1])):
            return gaps
        gaps.append((at, k) if step > 0 else (k, at))
        far = c + 2 * step
        if 0 <= far < len(text) and text[c + step] == " " and not _apart(text[far]):
            return gaps  # "h o w": letters of one word, as ASCII spaces write them
        at = c + 1 if step > 0 else c


def _fold(text: str, spans: OffsetMap | None) -> tuple[str, OffsetMap | None, int]:
    """``text`` with letters parted by other separators written as the joining patterns read them (module
    docstring), and how many runs were folded. Each run is found by one linear search; the text between two runs is
    matched once, and fails at its first word of two characters."""
    runs = [(m.start(), m.end(), "line") for m in _LINE_RUN.finditer(text)] if _LINE_GATE.search(text) else []
    if _COLUMN_GATE.search(text):
        runs.extend((m.start(), m.end(), "column") for m in _COLUMN_RUN.finditer(text))
        runs.sort()
    if not runs:
        return text, spans, 0
    edits: list[tuple[int, int, str]] = []  # (start, end, what): "gap", "line" or "column", in order
    end, last = 0, ""
    for a, b, kind in runs:
        if a < end:  # a column run and a line run met at a character: the first one read keeps it
            continue
        if edits and _BETWEEN.fullmatch(text, end, a):
            gaps = list(_GAP.finditer(text, end, a))
            edits += [
                (g.start(), g.end(), "gap")
                for i, g in enumerate(gaps)
                # a word gap: "\n" is one already; one ASCII space inside is one between ASCII-spaced letters ("a\xa0b
                # h o w c\xa0d": the two runs must not part "how"), but the runs' own edges are always words' edges
                if "\n" not in g.group() and (g.group() != " " or i in (0, len(gaps) - 1))
            ]
        else:  # single letters on the line of a run: words of their own (a column's lines hold nothing else)
            edits += [(x, y, "gap") for x, y in _lone(text, end, a, 1)] if last == "line" else []
            edits += [(x, y, "gap") for x, y in reversed(_lone(text, a, end, -1))] if kind == "line" else []
        edits.append((a, b, kind))
        end, last = b, kind
    edits += [(x, y, "gap") for x, y in _lone(text, end, len(text), 1)] if last == "line" else []
    rewrite = Rewrite(text)
    pos = 0
    for a, b, what in edits:
        rewrite.keep(pos, a)
        if what == "gap" and (b - a < 2 or text[a:b].strip(" ")):  # a word gap: two spaces (ASCII ones already are)
            rewrite.put("  ", a, b)
        elif what == "gap":
            rewrite.keep(a, b)
        elif what == "line":
            rewrite.swap(text[a:b].replace(text[a + 1], " "), a)  # one for one: every letter keeps its own offset
        else:
            at = a
            for g in _COLUMN_BREAK.finditer(text, a, b):
                rewrite.keep(at, g.start())
                rewrite.put(" " if g.group().count("\n") == 1 else "  ", g.start(), g.end())
                at = g.end()
            rewrite.keep(at, b)
        pos = b
    rewrite.keep(pos, len(text))
    return (*rewrite.result(spans), len(runs))


def despace(text: str, spans: OffsetMap | None) -> tuple[str, OffsetMap | None, int]:
    """Runs of single letters split by one separator re-joined; two or more separators stay a space. Returns the
    reading, its map (continuing ``spans``) and how many characters of ``text`` the joined runs held (0: ``text`` and
    ``spans`` unchanged; at least 1 otherwise), counted in ``text`` itself, so a text spaced with two-character line
    breaks is "mostly spaced" as its twin with one-character separators is; runs joined by ``_FIELDS`` marks count
    for nothing."""
    covered = 0

    def joiner(back: OffsetMap | None) -> Callable[[re.Match[str]], str]:
        def join(m: re.Match[str]) -> str:
            nonlocal covered
            mark = m.group(1) if m.lastindex else " "
            if mark not in _FIELDS:
                a, b = back(m.start(), m.end()) if back is not None else (m.start(), m.end())
                covered += b - a
            return m.group(0).replace(mark, "")

        return join

    folded, fmap, _ = _fold(text, None)
    out, sp, n = substitute(folded, fmap, _DOTTED, joiner(fmap))
    out, sp, k = substitute(out, sp, _SPACED, joiner(sp))
    if not (n or k):
        return text, spans, 0
    if k:
        out, sp, _ = substitute(out, sp, _SPACES, lambda m: " ")
    return out, rebased(sp, spans), max(covered, 1)
