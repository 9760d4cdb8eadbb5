"""What the Responses API's stream events are, to the guarded stream (``_streams.ResponsesStream``): which carry the
answer's actions (fragments, whole repeats), which repeat its text, which end the response, and which may go before
a refusal. Tables and predicates only.
"""

from __future__ import annotations

from typing import Any

from . import actions
from .answer_text import _get

__all__ = ["ACTION_DELTAS", "ACTION_DONE", "DONE_EVENTS", "FINAL_RESPONSES", "lifecycle_or_message", "text_part"]

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
    "response.audio.transcript.done": ("transcript",),
}


def text_part(part: Any) -> bool:
    """An ``output_text`` part (or one of no type, as some compatible servers send): its text is the answer's."""
    return _get(part, "type") in (None, "output_text")


def lifecycle_or_message(event: Any) -> bool:
    """Whether a held Responses event may precede a refusal: the response's own lifecycle and the message
    item's frames do; function calls, tool calls and their arguments (the blocked answer's actions) do not."""
    kind = actions.event_kind(event)
    if kind in ("response.created", "response.in_progress", "response.queued"):
        return True
    if kind == "response.output_item.added":
        return bool(_get(getattr(event, "item", None), "type") == "message")
    # a text part's frame, never a done event (it repeats the blocked text) or a refusal part
    return kind == "response.content_part.added" and text_part(getattr(event, "part", None))
