"""What the Responses API's stream events are, to the guarded stream (``_streams.ResponsesStream``): which carry the
answer's actions (fragments, whole repeats), which repeat its text, which end the response, and which may go before
a refusal; and how the stream's held tool and audio events are joined and edited (with :mod:`adapters.actions`'
edits). Audio cannot be edited: when masking changes an answer's audio transcript, the audio's data is emptied,
since its sound would still say the value the transcript now hides.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from . import actions
from .answer_text import _get, item_action_text, unescape_json
from .json_edits import Edit, edited
from .response_shapes import text_part  # re-exported: a part whose text is the answer's, one predicate for all

__all__ = [
    "ACTION_DELTAS", "ACTION_DONE", "AUDIO_EVENTS", "DONE_EVENTS", "FINAL_RESPONSES", "edit_events", "edit_held_events",
    "event_kind", "events_text", "lifecycle_or_message", "merge_event_deltas", "text_part",
]  # fmt: skip

FINAL_RESPONSES = ("response.completed", "response.incomplete", "response.failed")
DONE_EVENTS = ("response.output_text.done", "response.content_part.done", "response.output_item.done")
# Responses events that stream what the answer does besides its text
ACTION_DELTAS = frozenset(
    {
        "response.function_call_arguments.delta", "response.custom_tool_call_input.delta", "response.refusal.delta",
        "response.audio.transcript.delta", "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
        "response.mcp_call_arguments.delta", "response.code_interpreter_call_code.delta",
    }
)  # fmt: skip


# done events that repeat an action whole, and where its text is
ACTION_DONE = {
    "response.function_call_arguments.done": ("arguments",),
    "response.custom_tool_call_input.done": ("input",),
    "response.refusal.done": ("refusal",),
    "response.mcp_call_arguments.done": ("arguments",),
    "response.code_interpreter_call_code.done": ("code",),
    "response.audio.transcript.done": ("transcript",),  # not in OpenAI's type; compatible servers may send it
}


def event_kind(event: Any) -> str:
    """A Responses stream event's type as text (litellm's events carry a str Enum)."""
    t = getattr(event, "type", "")
    return str(getattr(t, "value", t))


def lifecycle_or_message(event: Any) -> bool:
    """Whether a held Responses event may precede a refusal: the response's own lifecycle and the message
    item's frames do; function calls, tool calls and their arguments (the blocked answer's actions) do not."""
    kind = event_kind(event)
    if kind in ("response.created", "response.in_progress", "response.queued"):
        return True
    if kind == "response.output_item.added":
        return bool(_get(getattr(event, "item", None), "type") == "message")
    # a text part's frame, never a done event (it repeats the blocked text) or a refusal part
    return kind == "response.content_part.added" and text_part(getattr(event, "part", None))


# ------------------------------------------------------------------ editing a held stream's tool and audio events

# The action events a held stream edits: the tool calls' and the audio transcript's. A refusal's and reasoning's
# deltas are not held (they are checked as they go, and reasoning may be signed).
_NOT_HELD = ("response.refusal.", "response.reasoning_summary_text.", "response.reasoning_text.")
_EVENT_DELTAS = frozenset(k for k in ACTION_DELTAS if not k.startswith(_NOT_HELD))
_EVENT_WHOLE = {k: fields[0] for k, fields in ACTION_DONE.items() if not k.startswith(_NOT_HELD)}
# the sound of an answer's audio, whose transcript the deltas above carry
AUDIO_EVENTS = frozenset({"response.audio.delta", "response.audio.transcript.delta"})
_EVENT_ITEMS = ("response.output_item.added", "response.output_item.done")


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
        elif kind in FINAL_RESPONSES:
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
            actions.edit_responses_item(event.item, edit)
        elif kind in FINAL_RESPONSES and isinstance(_get(getattr(event, "response", None), "output"), list):
            event = copy.deepcopy(event)
            for item in _get(event.response, "output"):
                if _is_tool_item(item):
                    actions.edit_responses_item(item, edit)
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
    own = actions.own_redaction(events_text(out), entities, reserved, taken)

    def apply(edit: Edit, masking: bool) -> None:
        before = out[:]
        out[:] = edit_events(out, edit)
        if masking and any(
            a is not b and event_kind(b) == "response.audio.transcript.delta" for a, b in zip(before, out, strict=True)
        ):
            out[:] = [_silenced(e) for e in out]

    if not actions.mask_and_restore(apply, lambda: events_text(out), own, restore_map):
        return None
    return [(k, e) for (k, _), e in zip(merged, out, strict=True)]


def _silenced(event: Any) -> Any:
    """An audio event emptied (a copy): sound cannot be edited, and it would still say what the transcript hides."""
    if event_kind(event) != "response.audio.delta" or not getattr(event, "delta", None):
        return event
    event = copy.copy(event)
    event.delta = ""
    return event
