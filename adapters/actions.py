"""Editing what an answer does besides its text: the strings its tool and function calls carry, its refusal
and its reasoning.

``shapes.action_texts_of`` reads these strings as one text to check. This module writes them back: an output
redaction fired by a tool call's arguments masks the value in the arguments themselves (before, the decision
said "rewrite" and the e-mail address went out in the call), and ``restore=True`` puts the user's own values
back into the arguments the application executes (before, an agent was handed ``"to": "<EMAIL_1>"``).

A string that holds a JSON object or array (how chat and Responses tool calls carry their arguments) is edited
value by value and written back as JSON, so a restored value with a quote or a line break stays valid JSON.
Keys, ids and the other plumbing are never touched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from .shapes import _ITEM_PLUMBING, _get, _is_message, _put

__all__ = ["edit_actions", "edit_message", "has_calls", "merge_calls", "redactor", "without_calls"]

Edit = Callable[[str], str]

# chat message fields that are text the model wrote besides its content
_CHAT_TEXTS = ("refusal", "reasoning_content")
_CALL_FIELDS = ("arguments", "input")  # a function's arguments, a custom tool's input


def redactor(redactions: Mapping[str, str]) -> Edit:
    """The edit that masks each redacted value (``placeholder -> value``) with its placeholder, longest first
    (so a value inside a longer one cannot leave part of the longer one visible)."""
    pairs = sorted(((v, k) for k, v in redactions.items() if v), key=lambda p: -len(p[0]))

    def edit(text: str) -> str:
        for value, placeholder in pairs:
            text = text.replace(value, placeholder)
        return text

    return edit


def edit_actions(result: Any, index: int, edit: Edit) -> None:
    """Apply ``edit`` in place to every string the actions of choice ``index`` carry (a Responses or Messages
    answer has one "choice", its whole output)."""
    choices = _get(result, "choices")
    if isinstance(choices, list):
        message = _get(choices[index], "message")
        if message is not None:
            _edit_chat_message(message, edit)
        return
    output = _get(result, "output")
    if isinstance(output, list):
        for item in output:
            _edit_responses_item(item, edit)
        return
    if _is_message(result):
        for part in _get(result, "content") or []:
            kind = _get(part, "type")
            if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
                _edit_field(part, "input", edit)
            elif kind in ("thinking", "refusal"):
                _edit_field(part, kind, edit)


def has_calls(chunk: Any) -> bool:
    """Whether a chat stream chunk carries part of a tool or function call."""
    return any(
        _get(d, "tool_calls") or _get(d, "function_call")
        for c in _get(chunk, "choices") or []
        if (d := _get(c, "delta")) is not None
    )


def without_calls(chunk: Any) -> Any | None:
    """A copy of ``chunk`` without its calls (what else it carries: a finish reason, usage), or None."""
    out = copy.deepcopy(chunk)
    keep = bool(_get(out, "usage"))
    for c in _get(out, "choices") or []:
        delta = _get(c, "delta")
        for name in ("tool_calls", "function_call"):
            if delta is not None and _get(delta, name) is not None:
                _put(delta, name, None)
        keep = keep or bool(_get(c, "finish_reason"))
    return out if keep else None


def merge_calls(chunks: list[Any]) -> Any:
    """One chunk that carries whole the calls streamed in ``chunks`` (chat deltas of one choice): each tool
    call's argument fragments joined in order under its index, with its id, type and name. A client joins
    fragments by index, so the whole arguments in one delta read the same; and only whole arguments can be
    edited (a value cut between two fragments is neither found nor masked)."""
    out = copy.deepcopy(chunks[0])
    choice = (_get(out, "choices") or [None])[0]
    delta = _get(choice, "delta")
    _put(choice, "finish_reason", None)
    for name in ("content", "refusal", "role"):
        if _get(delta, name) is not None:
            _put(delta, name, None)
    calls: dict[int, Any] = {}
    function: Any = None
    for chunk in chunks:
        for c in _get(chunk, "choices") or []:
            d = _get(c, "delta")
            for call in _get(d, "tool_calls") or []:
                index = _get(call, "index") or 0
                if index not in calls:
                    calls[index] = copy.deepcopy(call)
                    continue
                whole = calls[index]
                for key in ("id", "type"):
                    if _get(whole, key) is None and _get(call, key) is not None:
                        _put(whole, key, _get(call, key))
                _join(whole, call)
            if (fn := _get(d, "function_call")) is not None:
                function = copy.deepcopy(fn) if function is None else _join_fields(function, fn)
    _put(delta, "tool_calls", [calls[k] for k in sorted(calls)] or None)
    _put(delta, "function_call", function)
    return out


def _join(whole: Any, part: Any) -> None:
    fn, more = _get(whole, "function"), _get(part, "function")
    if more is None:
        return
    if fn is None:
        _put(whole, "function", copy.deepcopy(more))
    else:
        _join_fields(fn, more)


def _join_fields(fn: Any, more: Any) -> Any:
    if _get(fn, "name") is None and _get(more, "name") is not None:
        _put(fn, "name", _get(more, "name"))
    _put(fn, "arguments", (_get(fn, "arguments") or "") + (_get(more, "arguments") or ""))
    return fn


def edit_message(message: Any, edit: Edit) -> None:
    """Apply ``edit`` in place to what a chat message, or a merged stream delta, does besides its text."""
    _edit_chat_message(message, edit)


def _edit_chat_message(message: Any, edit: Edit) -> None:
    for call in _get(message, "tool_calls") or []:
        fn = _get(call, "function") or _get(call, "custom")
        if fn is not None:
            for name in _CALL_FIELDS:
                _edit_field(fn, name, edit)
    if (fn := _get(message, "function_call")) is not None:
        _edit_field(fn, "arguments", edit)
    for name in _CHAT_TEXTS:
        _edit_field(message, name, edit)
    if (audio := _get(message, "audio")) is not None:
        _edit_field(audio, "transcript", edit)
    for block in _get(message, "thinking_blocks") or []:
        _edit_field(block, "thinking", edit)


def _edit_responses_item(item: Any, edit: Edit) -> None:
    kind = _get(item, "type")
    if kind == "message":
        for part in _get(item, "content") or []:
            _edit_field(part, "refusal", edit)
        return
    if kind == "reasoning":
        for part in [*(_get(item, "summary") or []), *(_get(item, "content") or [])]:
            _edit_field(part, "text", edit)
        return
    names = list(item) if isinstance(item, Mapping) else list(getattr(type(item), "model_fields", {}))
    for name in names:
        if name not in _ITEM_PLUMBING:
            _edit_field(item, name, edit)


def _edit_field(obj: Any, name: str, edit: Edit) -> None:
    value = _get(obj, name)
    if value is None:
        return
    new = _edited(value, edit)
    if new is not value:
        _put(obj, name, new)


def _edited(value: Any, edit: Edit) -> Any:
    """``value`` with ``edit`` applied to each string in it; the same object when nothing changed."""
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                new = _edited(parsed, edit)
                return value if new is parsed else json.dumps(new, ensure_ascii=False)
        changed = edit(value)
        return value if changed == value else changed
    if isinstance(value, dict):
        out = {k: _edited(v, edit) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [_edited(v, edit) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    fields = getattr(type(value), "model_fields", None)
    if fields:  # a nested model (a computer call's action ...): edited in place
        for name in fields:
            if name not in _ITEM_PLUMBING:
                _edit_field(value, name, edit)
    return value
