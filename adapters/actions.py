"""Editing what an answer does besides its text: the strings its tool and function calls carry, its refusal
and its reasoning.

``shapes.action_texts_of`` reads these strings as one text to check. This module writes them back: an output
redaction fired by a tool call's arguments masks the value in the arguments themselves (before, the decision
said "rewrite" and the e-mail address went out in the call), and ``restore=True`` puts the user's own values
back into the arguments the application executes (before, an agent was handed ``"to": "<EMAIL_1>"``).

JSON documents (arguments) are edited value by value where each sits (``json_edits``). Ids, names and the
other plumbing are never touched; nor, when restoring, is reasoning that carries a signature (a provider refuses
signed thinking that comes back changed). Audio cannot be edited: when masking changes an answer's audio
transcript, the audio's data is emptied, since its sound would still say the value the transcript now hides.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

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
    item_action_text,
    unescape_json,
)
from .json_edits import Edit, edit_field, edited, redactor

__all__ = [
    "edit_actions",
    "edit_block",
    "edit_events",
    "edit_held_events",
    "edit_message",
    "event_kind",
    "events_text",
    "has_calls",
    "mask_and_restore",
    "merge_calls",
    "merge_event_deltas",
    "own_redaction",
    "redactor",
    "without_calls",
    "without_fields",
]  # fmt: skip


# chat message fields that are text the model wrote besides its content
_CHAT_TEXTS = ("refusal", "reasoning_content")
_CALL_FIELDS = ("arguments", "input")  # a function's arguments, a custom tool's input
_CALLS = ("tool_calls", "function_call")


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
            _edit_responses_item(item, edit)
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
    return without_fields(chunk, _CALLS)


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
        if name not in _CALLS and _get(delta, name) is not None:
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
    for name in _CHAT_TEXTS:
        edit_field(message, name, edit)
    if (audio := _get(message, "audio")) is not None:
        transcript = _get(audio, "transcript")
        edit_field(audio, "transcript", edit)
        if masking and _get(audio, "transcript") != transcript and _get(audio, "data"):
            _put(audio, "data", "")  # the sound would still say what the masked transcript hides
    for block in _get(message, "thinking_blocks") or []:
        if masking or not _get(block, "signature"):
            edit_field(block, "thinking", edit)


def _edit_responses_item(item: Any, edit: Edit) -> None:
    kind = _get(item, "type")
    if kind == "message":
        for part in _get(item, "content") or []:
            edit_field(part, "refusal", edit)
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


# Responses stream events that carry an action's text: its fragments (``delta``), and the field of the event
# that repeats it whole
_EVENT_DELTAS = frozenset(
    {
        "response.function_call_arguments.delta", "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta", "response.code_interpreter_call_code.delta",
        "response.audio.transcript.delta",
    }
)  # fmt: skip
# the sound of an answer's audio, whose transcript the deltas above carry
AUDIO_EVENTS = frozenset({"response.audio.delta", "response.audio.transcript.delta"})
_EVENT_WHOLE = {
    "response.function_call_arguments.done": "arguments",
    "response.custom_tool_call_input.done": "input",
    "response.mcp_call_arguments.done": "arguments",
    "response.code_interpreter_call_code.done": "code",
    "response.audio.transcript.done": "transcript",  # not in OpenAI's type; compatible servers may send it
}
_EVENT_ITEMS = ("response.output_item.added", "response.output_item.done")
_EVENT_RESPONSES = ("response.completed", "response.incomplete", "response.failed")


def event_kind(event: Any) -> str:
    """A Responses stream event's type as text (litellm's events carry a str Enum)."""
    t = getattr(event, "type", "")
    return str(getattr(t, "value", t))


def merge_event_deltas(events: list[Any]) -> list[tuple[int, Any]]:
    """``events`` with each item's action fragments (function-call arguments, tool input ...) joined into its
    first fragment event (a copy), as (index in ``events``, event); the later fragments are dropped. A value cut
    between two fragments can be neither found nor masked, and a client joins fragments per item, so one
    whole fragment reads the same."""
    first: dict[tuple[str, str, str], Any] = {}
    out: list[tuple[int, Any]] = []
    for i, event in enumerate(events):
        kind = event_kind(event)
        if kind not in _EVENT_DELTAS or not isinstance(getattr(event, "delta", None), str):
            out.append((i, event))
            continue
        key = (kind, str(getattr(event, "item_id", "") or ""), str(getattr(event, "output_index", "")))
        if key in first:
            first[key].delta += event.delta
            continue
        first[key] = copy.copy(event)
        out.append((i, first[key]))
    return out


def events_text(events: list[Any]) -> str:
    """The action text Responses stream events carry (fragments, whole repeats, items, the final response's
    tool items), escapes decoded: what must not show a masked value."""
    texts: list[str] = []
    for event in events:
        kind = event_kind(event)
        if kind in _EVENT_DELTAS:
            texts.append(str(getattr(event, "delta", "") or ""))
        elif kind in _EVENT_WHOLE:
            texts.append(str(getattr(event, _EVENT_WHOLE[kind], "") or ""))
        elif kind in _EVENT_ITEMS and _is_tool_item(item := getattr(event, "item", None)):
            texts.append(item_action_text(item) or "")
        elif kind in _EVENT_RESPONSES:
            output = _get(getattr(event, "response", None), "output") or []
            texts += [item_action_text(item) or "" for item in output if _is_tool_item(item)]
    return unescape_json("\n".join(t for t in texts if t))


def _is_tool_item(item: Any) -> bool:
    """A Responses output item that is a tool call (a held stream edits these, and the audio): not a message, whose
    text the stream guard releases itself, nor reasoning, whose streamed deltas are not held (and may be signed)."""
    return item is not None and _get(item, "type") not in ("message", "reasoning")


def edit_events(events: list[Any], edit: Edit) -> list[Any]:
    """``events`` with ``edit`` applied to every action string they carry: copies of the events it changes,
    the others as they are (an event object may be shared with the caller's upstream iterator)."""
    out: list[Any] = []
    for event in events:
        kind = event_kind(event)
        field = "delta" if kind in _EVENT_DELTAS else _EVENT_WHOLE.get(kind)
        if field is not None and isinstance(getattr(event, field, None), str):
            new = edited(getattr(event, field), edit)
            if new is not getattr(event, field):
                event = copy.copy(event)
                setattr(event, field, new)
        elif kind in _EVENT_ITEMS and _is_tool_item(getattr(event, "item", None)):
            event = copy.deepcopy(event)
            _edit_responses_item(event.item, edit)
        elif kind in _EVENT_RESPONSES and isinstance(_get(getattr(event, "response", None), "output"), list):
            event = copy.deepcopy(event)
            for item in _get(event.response, "output"):
                if _is_tool_item(item):
                    _edit_responses_item(item, edit)
        out.append(event)
    return out


def edit_held_events(
    events: list[Any],
    entities: frozenset[str],
    restore_map: Mapping[str, str],
    reserved: frozenset[str] = frozenset(),
    taken: dict[str, str] | None = None,
) -> list[tuple[int, Any]] | None:
    """A Responses stream's held tool and audio events at its last check: each item's fragments joined (and the
    audio transcript's), the arguments and the transcript redacted as the policy redacts the answer's text
    (``entities``; the sound emptied when its transcript was masked) and the input's values restored
    (``restore_map``), as (index in ``events``, event); None when a value to mask is still readable."""
    merged = merge_event_deltas(events)
    out = [e for _, e in merged]
    own = own_redaction(events_text(out), entities, reserved, taken)

    def apply(edit: Edit, masking: bool) -> None:
        before = out[:]
        out[:] = edit_events(out, edit)
        if masking and any(
            a is not b and event_kind(b) == "response.audio.transcript.delta" for a, b in zip(before, out, strict=True)
        ):
            out[:] = [_silenced(e) for e in out]

    if not mask_and_restore(apply, lambda: events_text(out), own, restore_map):
        return None
    return [(k, e) for (k, _), e in zip(merged, out, strict=True)]


def _silenced(event: Any) -> Any:
    """An audio event emptied (a copy): sound cannot be edited, and it would still say what the transcript hides."""
    if event_kind(event) != "response.audio.delta" or not getattr(event, "delta", None):
        return event
    event = copy.copy(event)
    event.delta = ""
    return event
