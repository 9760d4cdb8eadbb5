"""Characters a reader does not see but a model reads past: what the scan form drops, decodes or folds.

An LLM reads straight through format controls, variation selectors and stray combining marks, so a request
written with one between every letter ("b\u200eo\u200em\u200eb", "b\u0336o\u0336m\u0336b") means to it what the
plain request means, while a classifier or a keyword list that reads the characters as written sees noise. A
review found every one of these passing the bundled model, the keyword ban lists and the personal-data detectors.
Unicode tag characters (U+E0020-U+E007E) are the invisible twins of ASCII: a whole request written in them
("ASCII smuggling") shows nothing on screen and reads as plain text to many models, so they are decoded, not
dropped. Hangul fillers and the Braille blank are letters and symbols to Unicode, but each shows as an empty cell:
between words they part them as a space does, so they read as a space (dropped, "How\\u3164do\\u3164I" ran together
as "HowdoI" and the model missed 55% of the harmful prompts so written); inside a conjoining-jamo syllable, where
the two jamo fillers belong, they are still dropped.

One owner for this set: :func:`guardrail.scoring_form.scan_form` (what classifiers and custom rules read) and
:func:`guardrail.normalize.forms` (the readings personal data is looked for in, with offsets back to the text)
both ask here. The sets are written out, not derived from ``unicodedata`` at import (a scan of every code point
would cost ~100 ms on ``import guardrail``).
"""

from __future__ import annotations

import re
import unicodedata

from guardrail.offsets import OffsetMap, substitute

__all__ = ["BLANK_IN_WORD", "cleaned", "drop_unseen", "has_blank"]

# Format controls (Unicode category Cf: bidi marks and isolates, zero-width and joiners, word joiner and invisible
# operators, soft hyphen, BOM, interlinear annotation, tag controls), variation selectors, the combining grapheme
# joiner, Mongolian free variation selectors and Khmer inherent vowels: none is seen, all are read past. Zero-width
# joiners inside Persian or Indic words and emoji sequences go too: the scan form is for classifiers and rules only,
# the text that travels on is never changed here.
_UNSEEN = (
    "\u00ad\u034f\u061c\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufe00-\ufe0f\ufeff\ufff9-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e007f"
    "\U000e0100-\U000e01ef"
)
# blanks (module docstring): the Hangul filler, its half-width form, the Braille blank, and the choseong and
# jungseong fillers outside a syllable (a choseong filler before a vowel jamo, a jungseong one after a leading
# consonant, belong to it and are dropped as unseen)
_IN_SYLLABLE = "\u115f(?=[\u1160-\u11a7\ud7b0-\ud7c6])|(?<=[\u1100-\u115f\ua960-\ua97c])\u1160"
_BLANK = f"[\u2800\u3164\uffa0]|(?!{_IN_SYLLABLE})[\u115f\u1160]"
# a blank between two letters: the one place where reading it as nothing may be what the writer meant ("G\u3164lobex"
# is one word to a model that reads past the filler), so the normaliser reads such a text both ways
BLANK_IN_WORD = re.compile(f"(?<=[^\\W\\d_])(?:{_BLANK})+(?=[^\\W\\d_])")
_TAGS = "\U000e0020-\U000e007e"  # tag characters: ASCII 0x20-0x7e shifted into plane 14
# combining marks in the blocks used to over-strike Latin text ("zalgo", strike-through): dropped only after a
# printable ASCII character (a space or a full stop struck through too), once canonical composition has made
# accented letters single characters (é stays é; the marks of Devanagari, Thai, Hebrew or Arabic never follow one)
_MARKS = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# letters and digits in compatibility forms that fold to ASCII: full-width, mathematical, circled, ligatures,
# super- and subscripts, letterlike symbols
_COMPAT = "\u2070-\u209f\u2100-\u214f\u2460-\u24ff\ufb00-\ufb06\uff01-\uff5e\U0001d400-\U0001d7ff\U0001f130-\U0001f189"

_UNSEEN_RE = re.compile(f"(?:[{_UNSEEN}]|{_IN_SYLLABLE})+")
_BLANK_RE = re.compile(_BLANK)  # one space each: two blanks in a row part words as two spaces do
_TAGS_RE = re.compile(f"[{_TAGS}]+")
_MARKS_RE = re.compile(f"(?<=[\x20-\x7e])[{_MARKS}]+")
_ANY_RE = re.compile(
    f"(?P<unseen>(?:[{_UNSEEN}]|{_IN_SYLLABLE})+)|(?P<blank>{_BLANK})|(?P<tags>[{_TAGS}]+)"
    f"|(?<=[\x20-\x7e])(?P<marks>[{_MARKS}]+)|(?P<compat>[{_COMPAT}])"
)
_GATE = re.compile(f"[{_UNSEEN}\u115f\u1160\u2800\u3164\uffa0{_TAGS}{_MARKS}{_COMPAT}]")


_ANY_BLANK = re.compile("[\u115f\u1160\u2800\u3164\uffa0]")


def has_blank(text: str) -> bool:
    """Whether ``text`` holds a blank (one search of a character class: ``BLANK_IN_WORD`` looks behind everywhere)."""
    return _ANY_BLANK.search(text) is not None


def _untag(run: str) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in run)


def drop_unseen(text: str) -> str:
    """``text`` with tag characters decoded to ASCII and every other unseen character dropped (before NFKC, so
    that a mark parted from its letter by an unseen character composes with it again)."""
    if not _GATE.search(text):
        return text
    return _UNSEEN_RE.sub("", _BLANK_RE.sub(" ", _TAGS_RE.sub(lambda m: _untag(m.group(0)), text)))


def drop_stray_marks(text: str) -> str:
    """Over-striking combining marks after a printable ASCII character dropped (call after NFKC composition)."""
    return _MARKS_RE.sub("", text) if _GATE.search(text) else text


def cleaned(text: str, parent: OffsetMap | None = None, blank: str = " ") -> tuple[str, OffsetMap | None, int]:
    """``text`` as a reader sees it, with offsets back: unseen characters dropped, blanks read as ``blank`` (a space;
    ``""`` for the reading of a text whose blanks sit inside words), tag characters decoded, stray marks dropped,
    compatibility letters folded to ASCII one by one (an address in full-width letters, or with a zero-width space
    inside it, is found here and masked where it sits). Unchanged text returns itself, at the cost of one search."""
    if not _GATE.search(text):
        return text, parent, 0
    return substitute(text, parent, _ANY_RE, lambda m: blank if m.lastgroup == "blank" else _clean_match(m))


def _clean_match(m: re.Match[str]) -> str | None:
    if m.lastgroup == "tags":
        return _untag(m.group(0))
    if m.lastgroup == "marks":  # decomposed accents ("u" + U+0308) compose with their letter: they stay
        composed = unicodedata.normalize("NFC", m.string[m.start() - 1] + m.group(0))
        return None if not any(unicodedata.combining(c) for c in composed) else ""
    if m.lastgroup == "compat":  # folded only where it becomes ASCII (a symbol such as U+2122 stays as it is)
        folded = unicodedata.normalize("NFKC", m.group(0))
        return folded if folded.isascii() else None
    return ""
