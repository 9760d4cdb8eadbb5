"""What an answer's message does besides its text, as the check reads it: tool and function calls, refusal, audio
transcript, reasoning and citation titles. The one reading of it: ``Guard.check_output`` on messages and every
adapter's answer (``guardrail.adapters.answer_text``) ask here, so a tool call's arguments are checked the same way
everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["actions_text", "annotation_titles", "mask_actions", "unescape_json", "unmasked"]


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def unescape_json(text: str) -> str:
    """``text`` with JSON ``\\uXXXX`` escapes decoded: what an application reads out of tool arguments,
    where an escaped word would otherwise slip past the check."""
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\u" in text else text


def actions_text(message: Any) -> str:
    """What a chat message, or one stream delta, does besides its text: each tool or function call as
    ``"\nname: arguments"`` (a delta that continues a call carries only an argument fragment, and gets no
    name), then its refusal (the field, or refusal parts of its content), audio transcript, reasoning
    (``reasoning_content``, ``thinking_blocks``) and its citations' titles, each on a line of its own.
    Arguments sent as objects are written as JSON."""
    out = ""
    calls = [_get(c, "function") or _get(c, "custom") for c in _get(message, "tool_calls") or []]
    if (fn := _get(message, "function_call")) is not None:
        calls.append(fn)
    for fn in calls:
        name, args = _get(fn, "name"), _get(fn, "arguments") or _get(fn, "input") or ""
        out += (f"\n{name}: " if name else "") + (args if isinstance(args, str) else json.dumps(args, default=str))
    content = _get(message, "content")
    refused = [_get(p, "refusal") for p in content if _get(p, "type") == "refusal"] if isinstance(content, list) else []
    for text in (
        _get(message, "refusal"),
        *refused,  # a refusal part of the content: what the model says in place of an answer
        _get(_get(message, "audio"), "transcript"),
        _get(message, "reasoning_content"),
        *annotation_titles(_get(message, "annotations")),
    ):
        if isinstance(text, str) and text:
            out += ("\n" if out else "") + text  # apart: a value at the end of one field is not run into the next
    for block in _get(message, "thinking_blocks") or []:  # litellm's reasoning, as Anthropic-style blocks
        if isinstance(thought := _get(block, "thinking"), str) and thought:
            out += ("\n" if out else "") + thought
    return out


def annotation_titles(annotations: Any) -> list[str]:
    """The titles of an answer's citations (chat ``url_citation``, a Responses part's annotations): text the model
    wrote or chose that the application shows beside the answer, so it is read as part of what the answer says."""
    titles: list[str] = []
    for annotation in annotations if isinstance(annotations, list) else []:
        for source in (annotation, _get(annotation, "url_citation")):
            if isinstance(title := _get(source, "title"), str) and title:
                titles.append(title)
    return titles


def mask_actions(message: dict[str, Any], redactions: Mapping[str, str]) -> dict[str, Any]:
    """``message`` (a plain dict the caller owns: edited in place, and returned) with each value of ``redactions``
    (placeholder -> value) replaced by its placeholder in what it does besides its text: tool and function call
    arguments (each string of arguments sent as objects), refusal (the field and refusal parts), audio transcript
    (its sound emptied when changed: it would still say the value), reasoning, citation titles, and its name. The
    core's masking of an answer given as messages (``Guard.check_output``); a value written differently there
    (JSON-escaped) stays, and :func:`unmasked` finds it."""
    pairs = sorted(((v, k) for k, v in redactions.items() if v), key=lambda p: -len(p[0]))

    def masked(value: Any) -> Any:  # arguments sent as objects are masked in each string they hold
        if isinstance(value, str):
            for original, placeholder in pairs:
                value = value.replace(original, placeholder)
            return value
        if isinstance(value, dict):
            return {k: masked(v) for k, v in value.items()}
        return [masked(v) for v in value] if isinstance(value, (list, tuple)) else value

    def edit(obj: Any, key: str) -> bool:
        if isinstance(obj, dict) and isinstance(value := obj.get(key), (str, dict, list, tuple)):
            obj[key] = new = masked(value)
            return bool(new != value)
        return False

    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            edit(call.get("function") or call.get("custom"), "arguments")
            edit(call.get("custom"), "input")
    edit(message.get("function_call"), "arguments")
    edit(message, "name")  # read beside the message's text (``messages.extract``)
    edit(message, "refusal")
    edit(message, "reasoning_content")
    content = message.get("content")
    for part in content if isinstance(content, list) else []:
        edit(part, "refusal")
    for block in message.get("thinking_blocks") or []:
        edit(block, "thinking")
    for annotation in message.get("annotations") or []:  # citation titles: read as what the answer says
        edit(annotation, "title")
        edit(annotation.get("url_citation") if isinstance(annotation, dict) else None, "title")
    if edit(audio := message.get("audio"), "transcript") and isinstance(audio, dict) and audio.get("data"):
        audio["data"] = ""
    return message


def unmasked(message: Any, entities: frozenset[str]) -> bool:
    """Whether what ``message`` does besides its text still holds personal data of ``entities``."""
    from guardrail.classifiers.patterns import find_entities

    said = unescape_json(actions_text(message))
    return bool(said) and bool(find_entities(said, entities))
