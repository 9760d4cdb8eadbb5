"""A chat message's ``name``: how the check reads it, and how personal data in it is masked in the request.

The model reads a message's name beside its text (OpenAI's ``{"role": "user", "name": "jane_doe", ...}``), so
``messages.extract`` gives the check a reading of it, and a ``redact`` rule masks what it finds there as in the
texts: ``replace_texts`` puts ``masked_name`` in the rewritten messages. A name is not free text, though: OpenAI
accepts only ``^[a-zA-Z0-9_-]{1,64}$`` for some models, so the stand-in there is the placeholder without its
angle brackets (``EMAIL_1``), with the number the value has everywhere else in the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["NAME_PATTERN", "NAME_SEPARATORS", "masked_name", "name_reading", "name_words"]

NAME_SEPARATORS = re.compile(r"[_-]+")  # a name must match ^[a-zA-Z0-9_-]+$: its words are parted by these


def name_reading(name: str) -> str:
    """A message's name as it is checked: runs of ``_``/``-`` read as spaces (a handle's words, and a phone number
    or card written ``555_123_4567``), except inside personal data the name holds as written, which is kept whole so
    that it is found, and masked, whole: ``jane_doe@example.com`` read as ``jane doe@example.com`` would mask only
    ``doe@example.com`` and send "jane"; ``sk_live_...`` would not be found at all.

    A value is looked for in the whole name and in every run of up to ``_WINDOW`` of its words with the separators
    between them as written: in ``key_sk_live_...`` or ``jane_doe@example.com_support`` the ``_`` beside the value is
    a word character, so no detector saw where the value starts or ends, and the name went out unmasked."""
    out: list[str] = []
    pos = 0
    for start, end in _whole_values(name):
        out += [NAME_SEPARATORS.sub(" ", name[pos:start]), name[start:end]]
        pos = end
    out.append(NAME_SEPARATORS.sub(" ", name[pos:]))
    return "".join(out).strip()


def name_words(name: str) -> int:
    """How many words ``name`` has, its separators read as spaces whatever it holds: a sentence written into a name
    around an address (``a_b_c@x.com_how_to_...``) is a sentence still, and scored as one (``messages.extract``)."""
    return len(NAME_SEPARATORS.sub(" ", name).split())


_WINDOW = 8  # words: a grouped IBAN has up to 9 groups; a phone number, a card or a key fewer


def _whole_values(name: str) -> list[tuple[int, int]]:
    """Where ``name`` holds personal data as written (``_`` and ``-`` inside it kept): found in the whole name, and
    in each run of 2 to ``_WINDOW`` words, which gives a value the edges the separators beside it hid. The longest
    wins where two overlap. At most ``_WINDOW`` look-ups per word, a few for an ordinary name."""
    from guardrail.classifiers.patterns import find_entities

    found = [(s.start, s.end) for s in find_entities(name)]
    words = [(m.start(), m.end()) for m in _WORD.finditer(name)]
    for i, (start, _) in enumerate(words):
        for _, end in words[i + 1 : i + _WINDOW]:
            found += [(start + s.start, start + s.end) for s in find_entities(name[start:end])]
    kept: list[tuple[int, int]] = []
    for start, end in sorted(set(found), key=lambda se: (se[0] - se[1], se[0])):
        if all(end <= a or start >= b for a, b in kept):
            kept.append((start, end))
    return sorted(kept)


_WORD = re.compile(r"[^_-]+")


NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # what OpenAI accepts as a message's name (fullmatch)


def masked_name(name: str, redactions: Mapping[str, str]) -> str | None:
    """``name`` with each redacted value in it replaced by its placeholder *without the angle brackets*
    (``jane.doe@example.com`` -> ``EMAIL_1``), or None when the name must be left out of the request.

    The values were found in the name's reading (``name_reading``: runs of ``_``/``-`` read as spaces), so each is
    matched with any run of ``_``, ``-`` or spaces where it has a space. None when a value is still there after
    that, or when a name OpenAI would have taken no longer fits its pattern (over 64 characters): a name is
    optional in every API that has one, and sending it unmasked is what this is here to prevent."""
    masked = name
    for placeholder, value in sorted(redactions.items(), key=lambda kv: -len(kv[1])):
        if words := [w for w in _NAME_GAP.split(value) if w]:
            body = placeholder.strip("<>")  # letters, digits and "_" (patterns._PLACEHOLDER)
            found = re.compile(_NAME_GAP.pattern.join(re.escape(w) for w in words), re.IGNORECASE)
            masked = found.sub(lambda _: body, masked)  # noqa: B023 (used at once, in this iteration)
    read = _reading(masked)
    if any((v := _reading(value)) and v in read for value in redactions.values()):
        return None
    if NAME_PATTERN.fullmatch(name) and not NAME_PATTERN.fullmatch(masked):
        return None
    return masked


def _reading(text: str) -> str:
    """A name or value as ``extract`` reads a name: separators and spaces as one space, casefolded."""
    return " ".join(_NAME_GAP.split(text.strip())).strip().casefold()


_NAME_GAP = re.compile(r"[\s_-]+")
