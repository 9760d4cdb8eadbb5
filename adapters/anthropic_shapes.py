"""Anthropic Messages answers built by guardrail, in the SDK's own types: the refusal (a ``Message``, or the stream
events of one) and the text events of a guarded stream.

An application that does not catch exceptions must keep working when guardrail steps in, so a stopped request is
answered as the API answers one its own classifiers stopped: ``stop_reason="refusal"`` and the policy's message as
the text. The ``anthropic`` package is imported inside the functions: by the time one is called, the client that
needs it is loaded.
"""

from __future__ import annotations

from typing import Any, Final

from .response_shapes import _id

__all__ = ["REFUSAL", "block_start", "block_stop", "message_end", "refusal_events", "refusal_message", "text_delta"]

REFUSAL: Final = "refusal"  # the stop_reason of every answer guardrail stopped (the API's own for a refused answer)


def refusal_message(message: str, *, model: str | None, decision_id: str | None = None) -> Any:
    """A whole ``Message`` carrying ``message``, stopped as a refusal."""
    from anthropic.types import Message, TextBlock, Usage

    return Message(
        id=_id("msg", decision_id),
        type="message",
        role="assistant",
        content=[TextBlock(type="text", text=message)],
        model=model or "guardrail",
        stop_reason=REFUSAL,
        stop_sequence=None,
        usage=Usage(input_tokens=0, output_tokens=0),
    )


def refusal_events(message: str, *, model: str | None, decision_id: str | None = None) -> list[Any]:
    """The stream of a request stopped before it was sent: the whole refusal message, as events."""
    from anthropic.types import RawMessageStartEvent

    empty = refusal_message("", model=model, decision_id=decision_id)
    empty.content, empty.stop_reason = [], None
    return [
        RawMessageStartEvent(type="message_start", message=empty),
        block_start(0),
        text_delta(0, message),
        block_stop(0),
        *message_end(),
    ]


def block_start(index: int) -> Any:
    """The start of a text block at ``index``."""
    from anthropic.types import RawContentBlockStartEvent, TextBlock

    return RawContentBlockStartEvent(
        type="content_block_start", index=index, content_block=TextBlock(type="text", text="")
    )


def text_delta(index: int, text: str) -> Any:
    from anthropic.types import RawContentBlockDeltaEvent, TextDelta

    delta = TextDelta(type="text_delta", text=text)
    return RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta)


def block_stop(index: int) -> Any:
    from anthropic.types import RawContentBlockStopEvent

    return RawContentBlockStopEvent(type="content_block_stop", index=index)


def message_end() -> list[Any]:
    """``message_delta`` (``stop_reason="refusal"``) and ``message_stop``: how a stream the guard stopped ends."""
    from anthropic.types import MessageDeltaUsage, RawMessageDeltaEvent, RawMessageStopEvent
    from anthropic.types.raw_message_delta_event import Delta

    delta = Delta(stop_reason=REFUSAL, stop_sequence=None)
    return [
        RawMessageDeltaEvent(type="message_delta", delta=delta, usage=MessageDeltaUsage(output_tokens=0)),
        RawMessageStopEvent(type="message_stop"),
    ]
