"""Responses API answers in the client's own types: a stopped answer (``status="incomplete"``, reason
``content_filter``), its stream events, and an answer's text read and replaced. ``shapes`` re-exports what the
adapters use; this module imports nothing of theirs.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Sequence
from typing import Any

from guardrail.call import CONTENT_FILTER

__all__ = ["refusal_response", "refusal_response_events", "response_text", "text_delta_event", "text_part"]

# the types of a Responses message's parts whose ``text`` is the answer's text: ``output_text``, and what compatible
# servers send for it (no type, ``text``). Every other part (a refusal, ``reasoning_text`` ...) is read as what the
# answer says besides (``answer_text.parts_said``), whole or streamed
_TEXT_PARTS = (None, "output_text", "text")


def _id(prefix: str, decision_id: str | None) -> str:
    return f"{prefix}-guardrail-{decision_id or uuid.uuid4().hex}"


# ------------------------------------------------------------------------------ Responses API


def text_part(part: Any) -> bool:
    """Whether a Responses message part's ``text`` is the answer's text (:data:`_TEXT_PARTS`): the one predicate of
    whole answers and streams (``response_events``)."""
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return kind in _TEXT_PARTS


def response_text(response: Any) -> str:
    """All the text of a Responses API response: every text part's (:func:`text_part`; the SDK's ``output_text``
    reads only ``output_text`` parts, while an application that walks the parts reads them all)."""
    parts: list[str] = []
    for item in getattr(response, "output", None) or []:
        if getattr(item, "type", None) == "message":
            for part in getattr(item, "content", None) or []:
                if text_part(part) and isinstance(text := getattr(part, "text", None), str):
                    parts.append(text)
    return "".join(parts)


def _set_response_text(response: Any, text: str, *, blocked: bool) -> None:
    """Put ``text`` in the first text part and drop the others (the text is one whole now)."""
    placed = False
    for item in response.output:
        if getattr(item, "type", None) != "message":
            continue
        kept = []
        for part in item.content:
            if not text_part(part):
                kept.append(part)
            elif not placed:
                part.text, placed = text, True
                part.annotations = []
                if getattr(part, "logprobs", None):  # their tokens spell the text the model wrote, which is gone
                    part.logprobs = []
                if getattr(part, "parsed", None) is not None:  # a structured output parsed from the old text
                    part.parsed = None
                kept.append(part)
        item.content = kept
    if not placed:
        response.output.append(_message_item(text))
    if blocked:  # the refusal replaces the whole answer: its tool and function calls and other parts go too
        response.output = [item for item in response.output if getattr(item, "type", None) == "message"]
        for item in response.output:
            item.content = [part for part in item.content if text_part(part)]
        _mark_incomplete(response)


def _message_item(text: str, item_id: str | None = None) -> Any:
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    return ResponseOutputMessage(
        id=item_id or f"msg_guardrail_{uuid.uuid4().hex}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def _mark_incomplete(response: Any) -> None:
    from openai.types.responses.response import IncompleteDetails

    response.status = "incomplete"
    response.incomplete_details = IncompleteDetails(reason=CONTENT_FILTER)


def refusal_response(
    message: str, *, model: str | None, base: Any = None, text_before: str = "", decision_id: str | None = None
) -> Any:
    """A Responses API ``Response`` carrying ``message``, marked incomplete for ``content_filter``.
    ``base`` (an upstream response, e.g. from ``response.created``) supplies id, model and settings."""
    from openai.types.responses import Response

    if base is not None and not isinstance(base, Response):  # litellm's ResponsesAPIResponse (the proxy)
        try:
            base = Response.model_validate(base.model_dump())
        except Exception:  # a shape the openai type does not take: a fresh response instead
            base = None
    if base is not None:
        out = copy.deepcopy(base)
        out.output = [_message_item(text_before + message)]
        _mark_incomplete(out)
        return out
    resp = Response(
        id=_id("resp", decision_id),
        object="response",
        created_at=float(int(time.time())),
        model=model or "guardrail",
        output=[_message_item(message)],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        status="completed",
    )
    _mark_incomplete(resp)
    return resp


def text_delta_event(template: Any, text: str, sequence_number: int) -> Any:
    """A ``response.output_text.delta`` event for ``text``, placed like ``template`` (item, part)."""
    from openai.types.responses import ResponseTextDeltaEvent

    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        delta=text,
        item_id=getattr(template, "item_id", None) or f"msg_guardrail_{uuid.uuid4().hex}",
        output_index=getattr(template, "output_index", 0),
        content_index=getattr(template, "content_index", 0),
        logprobs=[],
        sequence_number=sequence_number,
    )


def refusal_response_events(
    message: str,
    *,
    model: str | None,
    template: Any = None,
    base: Any = None,
    text_before: str = "",
    sequence_number: int = 0,
    decision_id: str | None = None,
    opening: bool = False,
) -> Sequence[Any]:
    """The end of a blocked Responses stream: the message as a text delta, then ``response.incomplete``. A
    stream that opened no message item of its own (``template`` None: a tool-only answer) first gets one, so
    the delta has an item and a part to land in, and with ``opening`` (a stream stopped before it started: a
    blocked prompt) ``response.created`` before that: the openai SDK's stream helper raises on a delta without."""
    from openai.types.responses import (
        ResponseContentPartAddedEvent,
        ResponseCreatedEvent,
        ResponseIncompleteEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputText,
    )

    final = refusal_response(message, model=model, base=base, text_before=text_before, decision_id=decision_id)
    head: list[Any] = []
    if opening:
        started = final.model_copy(update={"status": "in_progress", "output": [], "incomplete_details": None})
        head.append(ResponseCreatedEvent(type="response.created", response=started, sequence_number=sequence_number))
        sequence_number += 1
    if getattr(template, "item_id", None) is None:
        item = _message_item("", f"msg_guardrail_{uuid.uuid4().hex}")
        item.status, item.content = "in_progress", []
        template = ResponseContentPartAddedEvent(
            type="response.content_part.added", item_id=item.id, output_index=0, content_index=0,
            part=ResponseOutputText(type="output_text", text="", annotations=[]), sequence_number=sequence_number + 1,
        )  # fmt: skip
        added = ResponseOutputItemAddedEvent(
            type="response.output_item.added", output_index=0, item=item, sequence_number=sequence_number
        )
        head, sequence_number = [*head, added, template], sequence_number + 2
    return [
        *head,
        text_delta_event(template, message, sequence_number),
        ResponseIncompleteEvent(type="response.incomplete", response=final, sequence_number=sequence_number + 1),
    ]
