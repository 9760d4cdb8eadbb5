"""Editing the strings an answer carries without breaking the documents they sit in.

Tool-call arguments and structured outputs are JSON documents the application parses. An edit (masking personal
data, restoring the user's own values) is applied to each string value where it sits and re-encoded there, so a
restored value with a quote or a line break keeps the document valid, and every other byte (numbers, spacing)
stays as the model wrote it. Keys are edited too, unless that would make two keys of an object equal. Nested SDK
models (a computer call's action ...) are edited in place.
``actions`` (an answer's calls, refusal, audio, reasoning) and ``_core`` (a structured answer's text) ask here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from guardrail.classifiers.patterns import redact
from guardrail.revealed import entity_spans

from .answer_text import _ITEM_PLUMBING, _get, _put, unescape_json

__all__ = ["Edit", "duplicate_keys", "edit_field", "edit_json_text", "edited", "mask_json_text", "redactor"]

Edit = Callable[[str], str]
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_KEY_END = re.compile(r"\s*:")


def redactor(redactions: Mapping[str, str]) -> Edit:
    """The edit that masks each redacted value (``placeholder -> value``) with its placeholder, longest first
    (so a value inside a longer one cannot leave part of the longer one visible)."""
    pairs = sorted(((v, k) for k, v in redactions.items() if v), key=lambda p: -len(p[0]))

    def edit(text: str) -> str:
        for value, placeholder in pairs:
            text = text.replace(value, placeholder)
        return text

    return edit


def edit_field(obj: Any, name: str, edit: Edit) -> None:
    value = _get(obj, name)
    if value is None:
        return
    new = edited(value, edit)
    if new is not value:
        _put(obj, name, new)


def edited(value: Any, edit: Edit) -> Any:
    """``value`` with ``edit`` applied to each string in it; the same object when nothing changed."""
    if isinstance(value, str):
        changed = _edited_json(value, edit) if value.lstrip()[:1] in ("{", "[") else None
        if changed is None:
            changed = edit(value)
        return value if changed == value else changed
    if isinstance(value, dict):
        out = {k: edited(v, edit) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [edited(v, edit) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    fields = getattr(type(value), "model_fields", None)
    if fields:  # a nested model (a computer call's action ...): edited in place
        for name in fields:
            if name not in _ITEM_PLUMBING:
                edit_field(value, name, edit)
    return value


def edit_json_text(text: str, edit: Edit) -> str:
    """``edit`` applied to ``text``: value by value, each re-encoded where it sits, when ``text`` is a JSON document
    (a restored value with a quote or a line break keeps it valid); as plain text otherwise."""
    edited = _edited_json(text, edit)
    return edit(text) if edited is None else edited


def mask_json_text(
    text: str, entities: frozenset[str], found: Mapping[str, str], *, reserved: frozenset[str] = frozenset()
) -> tuple[str, dict[str, str]] | None:
    """``text``, a JSON document, with the personal data in its string values masked where each sits and the
    document kept valid (what a redaction of the raw text cannot promise: a value after an escaped line break, or
    a number, has no place for a placeholder). The values are read decoded and numbered across the document.
    Returns the masked text and its mapping (placeholder -> value); None when one the check ``found``
    (placeholder -> value) is still readable after it: the caller stops."""
    if _edited_json(text, lambda piece: piece) is None:
        return None
    values = _json_strings(text)
    joined = "\n".join(values)
    _, own = redact(joined, entity_spans(joined, entities), reserved=reserved) if entities else ("", {})
    masked = _edited_json(text, redactor(own)) if own else text
    if masked is None:
        return None
    read = [unescape_json(masked), *_json_strings(masked)]
    left = [v for v in (*own.values(), *found.values()) if any(v in r for r in read)]
    return None if left else (masked, own)


def _json_strings(text: str) -> list[str]:
    out: list[str] = []

    def collect(piece: str) -> str:
        out.append(piece)
        return piece

    _edited_json(text, collect)
    return out


def _edited_json(text: str, edit: Edit) -> str | None:
    """``text``, a JSON document, with ``edit`` applied to each string where it sits, keys included (a mapping
    keyed by the user's addresses gets them back, and one keyed by an address is masked rather than stopped);
    every other byte kept. The document's keys are all left as written when editing them would make two keys of
    any one object equal (the parser would silently drop one). None when ``text`` is not JSON (or nested too deep
    to parse)."""
    try:
        before = _duplicate_keys(text)
    except (ValueError, RecursionError):  # deeper than the parser's limit: edited as plain text, never raised
        return None
    out = _edit_strings(text, edit, keys=True)
    if out != text and _duplicate_keys(out) > before:
        out = _edit_strings(text, edit, keys=False)
    return out


def _edit_strings(text: str, edit: Edit, *, keys: bool) -> str:
    pieces: list[str] = []
    last = 0
    for m in _JSON_STRING.finditer(text):
        value = json.loads(m.group())
        if _KEY_END.match(text, m.end()):  # a key
            if not keys:
                continue
            new: Any = edit(value)
        else:
            new = edited(value, edit)  # a string value may itself hold JSON
        if new != value:
            pieces += [text[last : m.start()], _encoded(new)]
            last = m.end()
    return "".join([*pieces, text[last:]]) if pieces else text


def duplicate_keys(text: str) -> int:
    """How many keys of the JSON document ``text`` repeat an earlier key of their object (0 when not JSON)."""
    try:
        return _duplicate_keys(text)
    except (ValueError, RecursionError):
        return 0


def _encoded(value: Any) -> str:
    """``value`` as JSON, non-ASCII kept readable; a lone surrogate (written escaped, decoded by the parser) stays
    escaped, since the text could no longer be encoded to be sent."""
    out = json.dumps(value, ensure_ascii=False)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return out


def _duplicate_keys(text: str) -> int:
    """How many keys of ``text``'s objects repeat an earlier key of the same object; ValueError if not JSON."""
    count = 0

    def hook(pairs: list[tuple[str, Any]]) -> None:
        nonlocal count
        count += len(pairs) - len({k for k, _ in pairs})

    json.loads(text, object_pairs_hook=hook)
    return count
