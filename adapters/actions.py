"""Editing what an answer does besides its text: the strings its tool and function calls carry, its refusal, its
reasoning and the content parts read besides its text (every field ``guardrail.answer_actions`` lists).

``shapes.action_texts_of`` reads these strings as one text to check. This module writes them back: an output
redaction fired by a tool call's arguments masks the value in the arguments themselves (before, the decision
said "rewrite" and the e-mail address went out in the call), and ``restore=True`` puts the user's own values
back into the arguments the application executes (before, an agent was handed ``"to": "<EMAIL_1>"``).

JSON documents (arguments) are edited value by value where each sits (``json_edits``). Ids, names and the
other plumbing are never touched; nor, when restoring, is reasoning that carries a signature (a provider refuses
signed thinking that comes back changed). A Responses stream's held tool and audio events are edited in
:mod:`adapters.response_events`, with this module's edits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from guardrail.answer_actions import CALL_FIELDS, PROVIDER_FIELDS, REASONING_BLOCKS, SAID_FIELDS, part_fields
from guardrail.classifiers.patterns import placeholders, redact, renumbered, restore
from guardrail.revealed import entity_spans

from .answer_text import (
    _ACTIONS,
    _ITEM_PLUMBING,
    MESSAGE_CALLS,
    _get,
    _is_message,
    _put,
    block_fields,
)
from .json_edits import Edit, edit_field, edited, redactor
from .response_shapes import text_part

__all__ = [
    "edit_actions",
    "edit_block",
    "edit_message",
    "has_calls",
    "mask_and_restore",
    "merge_calls",
    "own_redaction",
    "redactor",
    "without_calls",
    "without_fields",
]  # fmt: skip


_CALL_FIELDS = ("arguments", "input")  # a function's arguments, a custom tool's input


def own_redaction(
    text: str, entities: frozenset[str], reserved: frozenset[str], taken: dict[str, str] | None = None
) -> dict[str, str]:
    """The output redaction of a part of an answer checked on its own (calls, audio): numbered with the rest of the
    answer (``taken``, placeholder -> value, which it joins: a value already masked keeps its placeholder) and never
    given a placeholder the prompt holds (``reserved``) or the part already carries."""
    taken = {} if taken is None else taken
    if not entities:
        return {}
    _, own = redact(
        text,
        entity_spans(text, entities),  # read as the check reads it: decoded forms too
        reserved=reserved | set(taken),
    )
    own = renumbered(own, taken, reserved | placeholders(text))
    taken.update(own)
    return own


def mask_and_restore(
    apply: Callable[[Edit, bool], None], read: Callable[[], str], own: Mapping[str, str], restore_map: Mapping[str, str]
) -> bool:
    """What output redaction and ``restore=True`` do to an answer's actions, for a whole answer and a stream alike:
    mask each value of ``own`` (``placeholder -> value``, the output redaction) and check with ``read`` (the
    actions' text as checked) that none is still readable; then put the input's values back (``restore_map``),
    never those ``own`` just hid, and never into signed reasoning. ``apply(edit, masking)`` edits the actions in
    place (``masking`` True for the redaction, False for the restore). False when a masked value is still
    readable: the caller stops the answer rather than leak it."""
    # the user's own values the answer wrote (they kept the prompt's placeholder) are left where restore would put
    # them back: masking them would empty audio whose transcript ends up unchanged
    hide = {k: v for k, v in own.items() if restore_map.get(k) != v}
    if hide:
        apply(redactor(hide), True)
        if any(value in read() for value in hide.values()):
            return False
    mapping = {k: v for k, v in restore_map.items() if own.get(k, v) == v}  # never what the answer's own masks hide
    if mapping:
        apply(lambda text: restore(text, mapping), False)
    return True


def edit_actions(result: Any, index: int, edit: Edit, *, masking: bool = True) -> None:
    """Apply ``edit`` in place to every string the actions of choice ``index`` carry (a Responses or Messages
    answer has one "choice", its whole output). ``masking`` (a redaction) also reaches signed reasoning and
    empties audio whose transcript it changed; ``masking=False`` (a restore) leaves both as they are."""
    choices = _get(result, "choices")
    if isinstance(choices, list):
        message = _get(choices[index], "message")
        if message is not None:
            _edit_chat_message(message, edit, masking)
        return
    output = _get(result, "output")
    if isinstance(output, list):
        for item in output:
            edit_responses_item(item, edit)
        return
    if _is_message(result):
        for part in _get(result, "content") or []:
            kind = _get(part, "type")
            if kind in MESSAGE_CALLS:
                edit_field(part, "input", edit)
            elif kind == "refusal" or (kind == "thinking" and (masking or not _get(part, "signature"))):
                edit_field(part, kind, edit)
            elif kind == "text":
                for citation in _get(part, "citations") or []:
                    edit_block(citation, edit)
            elif kind not in ("thinking", "redacted_thinking"):  # a server tool's result, or a block of a new kind
                edit_block(part, edit)


def edit_block(block: Any, edit: Edit) -> None:
    """Apply ``edit`` in place to every string of a Messages answer block that ``answer_text.block_texts`` reads (a
    server tool's result, a citation ...): the same fields, at any depth; its plumbing stays as it was."""
    for name in block_fields(block):
        value = _get(block, name)
        if isinstance(value, str):
            edit_field(block, name, edit)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    value[i] = edited(item, edit)
                else:
                    edit_block(item, edit)
        elif isinstance(value, Mapping) or hasattr(type(value), "model_fields"):
            edit_block(value, edit)


def has_calls(chunk: Any) -> bool:
    """Whether a chat stream chunk carries part of a tool or function call."""
    return any(
        _get(d, "tool_calls") or _get(d, "function_call")
        for c in _get(chunk, "choices") or []
        if (d := _get(c, "delta")) is not None
    )


def without_calls(chunk: Any) -> Any | None:
    """A copy of ``chunk`` without its calls (what else it carries: a finish reason, usage), or None."""
    return without_fields(chunk, CALL_FIELDS)


def without_fields(chunk: Any, names: tuple[str, ...]) -> Any | None:
    """A copy of ``chunk`` without the delta fields ``names`` (what else it carries goes on), or None."""
    out = copy.deepcopy(chunk)
    keep = bool(_get(out, "usage"))
    for c in _get(out, "choices") or []:
        delta = _get(c, "delta")
        for name in names:
            if delta is not None and _get(delta, name) is not None:
                _put(delta, name, None)
        keep = keep or bool(_get(c, "finish_reason")) or bool(_get(delta, "role"))
        keep = keep or any(_get(delta, name) for name in _ACTIONS)  # a refusal, reasoning ... sent as before
    return out if keep else None


def merge_calls(chunks: list[Any]) -> Any:
    """One chunk that carries whole the calls streamed in ``chunks`` (chat deltas of one choice): each tool
    call's argument fragments joined in order under its index, with its id, type and name. A client joins
    fragments by index, so the whole arguments in one delta read the same; and only whole arguments can be
    edited (a value cut between two fragments is neither found nor masked)."""
    out = copy.deepcopy(chunks[0])
    if _get(out, "usage") is not None:  # usage, role and the rest went out with ``without_calls``
        _put(out, "usage", None)
    choice = _get(out, "choices")[0]  # a chunk with calls (``has_calls``) has a choice
    delta = _get(choice, "delta")
    _put(choice, "finish_reason", None)
    for name in ("content", "role", *_ACTIONS):
        if name not in CALL_FIELDS and _get(delta, name) is not None:
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
    for kind in ("function", "custom"):  # a function call's arguments, a custom tool call's input
        fn, more = _get(whole, kind), _get(part, kind)
        if more is None:
            continue
        if fn is None:
            _put(whole, kind, copy.deepcopy(more))
        else:
            _join_fields(fn, more)


def _join_fields(fn: Any, more: Any) -> Any:
    if _get(fn, "name") is None and _get(more, "name") is not None:
        _put(fn, "name", _get(more, "name"))
    for name in _CALL_FIELDS:
        if _get(fn, name) is not None or _get(more, name) is not None:
            _put(fn, name, (_get(fn, name) or "") + (_get(more, name) or ""))
    return fn


def edit_message(message: Any, edit: Edit, *, masking: bool = True) -> None:
    """Apply ``edit`` in place to what a chat message, or a merged stream delta, does besides its text."""
    _edit_chat_message(message, edit, masking)


def _edit_chat_message(message: Any, edit: Edit, masking: bool) -> None:
    for call in _get(message, "tool_calls") or []:
        fn = _get(call, "function") or _get(call, "custom")
        if fn is not None:
            for name in _CALL_FIELDS:
                edit_field(fn, name, edit)
    if (fn := _get(message, "function_call")) is not None:
        edit_field(fn, "arguments", edit)
    for name in SAID_FIELDS:
        edit_field(message, name, edit)
    content = _get(message, "content")
    for part in content if isinstance(content, list) else []:  # a refusal part, a thinking part ...
        for name in part_fields(part):
            edit_field(part, name, edit)
    if (audio := _get(message, "audio")) is not None:
        transcript = _get(audio, "transcript")
        edit_field(audio, "transcript", edit)
        if masking and _get(audio, "transcript") != transcript and _get(audio, "data"):
            _put(audio, "data", "")  # the sound would still say what the masked transcript hides
    _edit_reasoning(message, edit, masking)
    provider = _get(message, PROVIDER_FIELDS)
    if isinstance(provider, Mapping):  # litellm's: every string the provider sent there, signed reasoning as above
        _edit_reasoning(provider, edit, masking)
        for name in [n for n in provider if n not in REASONING_BLOCKS]:
            edit_field(provider, name, edit)


def _edit_reasoning(message: Any, edit: Edit, masking: bool) -> None:
    """Apply ``edit`` to a message's reasoning blocks (``thinking_blocks``, ``reasoning_details``); when restoring,
    never to a signed one."""
    for block in [b for name in REASONING_BLOCKS for b in _get(message, name) or []]:
        if masking or not _get(block, "signature"):
            edit_block(block, edit)


def edit_responses_item(item: Any, edit: Edit) -> None:
    kind = _get(item, "type")
    if kind == "message":
        for part in _get(item, "content") or []:
            if not text_part(part):  # a refusal, reasoning text ...: every string read (``answer_text.parts_said``)
                edit_block(part, edit)
        return
    if kind == "reasoning":
        for part in [*(_get(item, "summary") or []), *(_get(item, "content") or [])]:
            edit_field(part, "text", edit)
        return
    # litellm's stream items are models with extra="allow" and no declared fields: their content is in model_extra
    names = list(item) if isinstance(item, Mapping) else [*getattr(type(item), "model_fields", {})]
    names += [n for n in getattr(item, "model_extra", None) or {} if n not in names]
    for name in names:
        if name not in _ITEM_PLUMBING:
            edit_field(item, name, edit)
