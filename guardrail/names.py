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

__all__ = ["NAME_PATTERN", "NAME_SEPARATORS", "masked_name", "name_reading"]

NAME_SEPARATORS = re.compile(r"[_-]+")  # a name must match ^[a-zA-Z0-9_-]+$: its words are parted by these


def name_reading(name: str) -> str:
    """A message's name as it is checked: runs of ``_``/``-`` read as spaces (a handle's words, and a phone number
    or card written ``555_123_4567``), except inside personal data the name holds as written, which is kept whole so
    that it is found, and masked, whole: ``jane_doe@example.com`` read as ``jane doe@example.com`` would mask only
    ``doe@example.com`` and send "jane"; ``sk_live_...`` would not be found at all."""
    from guardrail.classifiers.patterns import find_entities

    out: list[str] = []
    pos = 0
    for span in find_entities(name):
        out += [NAME_SEPARATORS.sub(" ", name[pos : span.start]), name[span.start : span.end]]
        pos = span.end
    out.append(NAME_SEPARATORS.sub(" ", name[pos:]))
    return "".join(out).strip()


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
