"""The LiteLLM proxy guardrail on the Anthropic-format endpoint ``/v1/messages`` (``call_type`` ``anthropic_messages``).

The proxy runs a guardrail's hooks on ``/v1/messages`` as on chat completions, with the request and the answer in
Anthropic's own shapes; this module reads them with the Anthropic SDK wrapper's pieces (``MessagesCall``: the request
read by ``anthropic_request``, the answer by ``answer_text``, the stream re-emitted by ``anthropic_stream``, the refusal
built by ``anthropic_shapes``), so there is one reading of an Anthropic request and answer:

- pre_call / during_call get the request body as sent (``messages``, ``system``, tools ...): checked, redacted in
  place (pre_call), or blocked;
- post_call gets the answer as a dict (a ``Message``): checked, redacted, or replaced by the refusal;
- a stream reaches the iterator hook as raw SSE bytes (the provider's own, cut anywhere, or one event per chunk from
  LiteLLM's adapters): parsed into the SDK's events, guarded by ``MessagesStream``, written back as SSE. A stream that
  is not a Messages event stream, an event it cannot parse, or a delta of a kind ``MessagesStream`` does not read
  that carries text (a beta ``compaction_delta`` ...), is not passed on unread (``GuardrailLiteLLM._unread``); the
  provider's ``error`` event, before any text, reaches the client as the error it is; after it, its message is
  checked with the answer's last window, masked as the answer is, or replaced by the refusal (``MessagesStream``).

A block answers as an Anthropic client expects: a ``Message`` with ``stop_reason="refusal"``, or its stream events.
The proxy has no refusal of its own for this endpoint that a client reads as one (its passthrough answer is a
``Message`` ending ``end_turn``, sent to a stream as a lone data frame no Anthropic client reads), so a pre_call block
answers through the proxy's paths and this guardrail's own post_call hooks put the refusal in place: a whole answer
through litellm's ``mock_response`` (the upstream is never called) and the post_call hook, a stream through the proxy's
passthrough exception and the iterator hook (``should_run_guardrail`` runs them for a request this guardrail refused,
whatever its mode). A during_call block (the model already running) takes the passthrough path: a stream ends as a
refusal, a whole answer is the proxy's ``Message`` with the refusal's text (``stop_reason="end_turn"``).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Protocol

from guardrail.call import Call, summary
from guardrail.decision import Action, Decision
from guardrail.streaming import aclose_quietly

from ._core import GuardedCall, acheck_answer, stream_async
from .answer_text import _get, answer_kind, content_text
from .anthropic import MessagesCall
from .anthropic_shapes import refusal_events, refusal_message
from .anthropic_stream import unread_delta
from .media import proxy_unchecked
from .proxy_request import ProxyRequests
from .request_shapes import UncheckedField

__all__ = ["MESSAGES_CALLS", "ProxyMessages"]

MESSAGES_CALLS = frozenset({"anthropic_messages", "aanthropic_messages"})
_REQUEST_FIELDS = ("messages", "system")  # what a rewrite puts back into the proxy's request
_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)
_PASSED = frozenset({"error"})  # an upstream error ends the stream: sent on (checked, after text); pings are dropped
_SSE_LINE = re.compile(r"\r\n|\n|\r")
_MAX_EVENT = 1 << 20  # characters of one SSE event, at most (a longer one is not read)


class _Owner(Protocol):  # the LiteLLM proxy guardrail (litellm_proxy.GuardrailLiteLLM), as used here
    guardrail_name: str | None
    requests: ProxyRequests

    def call_for(self, data: Mapping[str, Any]) -> Call: ...
    def sent_for(self, data: Mapping[str, Any]) -> dict[str, str]: ...
    def _remember_sent(self, data: Mapping[str, Any], sent: Mapping[str, str]) -> None: ...
    def record(self, data: dict[str, Any], d: Decision, hook: str) -> None: ...
    def _unread(self, what: str, **logged: Any) -> None: ...
    def raise_passthrough_exception(
        self, violation_message: str, request_data: dict[str, Any], detection_info: dict[str, Any] | None = ...
    ) -> Any: ...


class UnreadStream(ValueError):
    """A stream event guardrail cannot read (not SSE with a JSON event, an event of a type it does not know)."""


class InProxy(GuardedCall):
    """What a call inside the proxy adds to its client's call, whichever the endpoint (``litellm_proxy._ProxyCall``
    for chat and Responses, ``_ProxyMessagesCall`` for ``/v1/messages``): the proxy's request (``data``), where
    decisions land, the hook that runs it, and what pre_call's redaction sent (the answer's copy of a value keeps its
    placeholder); a stream window's decision is recorded in the request when it mattered."""

    owner: _Owner
    data: dict[str, Any]
    hook: str

    def in_proxy(self, owner: _Owner, data: dict[str, Any], hook: str) -> None:
        self.owner, self.data, self.hook = owner, data, hook
        self.sent = owner.sent_for(data)

    async def acheck_window(self, window: str) -> Decision:
        d = await super().acheck_window(window)
        if d.action is not Action.ALLOW:  # a long stream is checked many times: keep what mattered
            self.owner.record(self.data, d, self.hook)
        return d


class _ProxyMessagesCall(InProxy, MessagesCall):
    """A ``messages.create`` inside the proxy: the request is the proxy's ``data``; decisions land in it."""

    def __init__(self, owner: _Owner, data: dict[str, Any], hook: str) -> None:
        try:
            MessagesCall.__init__(self, owner.call_for(data), data)
        except UncheckedField as e:
            raise proxy_unchecked(e, owner.guardrail_name) from e
        self.in_proxy(owner, data, hook)


class ProxyMessages:
    """``/v1/messages`` for one ``GuardrailLiteLLM`` (see the module docstring); remembers the requests it refused
    (their refusal text and decision id, in the request's state: ``ProxyRequests``) for the post_call hooks that
    answer them."""

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner

    def refused(self, data: Any) -> tuple[str, str] | None:
        """This guardrail's refusal of the request (its text and decision id), if it refused it."""
        state = self.owner.requests.get(data)
        return state.get("refused") if state is not None else None

    async def check_input(self, data: dict[str, Any], hook: str) -> dict[str, Any]:
        state = self.owner.requests.begin(data, hook)
        state.pop("refused", None)
        gc = _ProxyMessagesCall(self.owner, data, hook)
        d = await gc.call.acheck_input(gc.payload)
        self.owner.record(data, d, hook)
        out = gc.call.outcome(d)  # raises the proxy's HTTP 400 under on_block: raise
        if out.stop:
            text = out.text or ""
            state["refused"] = (text, d.id)
            if hook == "pre_call" and not data.get("stream"):
                # the upstream is never called; post_call puts the refusal in place (litellm reads an empty
                # mock_response as none, and calls the model: an empty refusal message still mocks)
                data["mock_response"] = text or " "
                return data
            self.owner.raise_passthrough_exception(violation_message=text, request_data=data, detection_info=summary(d))
        if hook == "pre_call" and out.text is not None:  # during_call: too late to change the request
            gc.apply(out)
            self.owner._remember_sent(data, gc.sent)
            for key in _REQUEST_FIELDS:
                if key in gc.request.top:
                    data[key] = gc.kwargs[key]
        return data

    async def check_answer(self, data: dict[str, Any], response: Any) -> Any:
        """A whole answer (a ``Message`` dict): checked as the SDK wrapper checks one, or this guardrail's refusal
        of the request put in place of litellm's mock answer."""
        refused = self.refused(data)
        if refused is not None:
            message = refusal_message(refused[0], model=data.get("model"), decision_id=refused[1])
            kept = {k: v for k, v in response.items() if k.startswith("_")} if isinstance(response, Mapping) else {}
            return {**message.to_dict(mode="json"), **kept}  # litellm's hidden params (its headers) stay
        gc = _ProxyMessagesCall(self.owner, data, "post_call")
        before = len(gc.call.decisions)
        try:
            return await acheck_answer(gc, response)
        finally:  # recorded even when the block is the proxy's HTTP error
            for d in gc.call.decisions[before:]:
                self.owner.record(data, d, "post_call")

    async def stream(self, source: AsyncIterator[Any], data: dict[str, Any]) -> AsyncGenerator[Any, None]:
        """A streamed answer: this guardrail's refusal; or SSE bytes parsed, guarded and written back; or a stream
        that is not a Messages event stream, refused (or passed on as it came, under ``unread_endpoints: pass``)."""
        refused = self.refused(data)
        if refused is not None:  # the proxy's passthrough answer (one Message dict) stands for this refusal
            await aclose_quietly(source)
            for event in refusal_events(refused[0], model=data.get("model"), decision_id=refused[1]):
                yield _sse(event)
            return
        head = _Head(source)
        events = _events(head.chunks())
        try:
            why = ""
            try:
                first = await events.__anext__()
            except (UnreadStream, StopAsyncIteration) as e:
                first, why = None, str(e) or "no event"
            kind = _get(first, "type")
            if kind == "error":  # the provider's error (overloaded ...) before any text: the client reads it as one
                yield _sse(first)
                return
            if kind != "message_start":  # a stream of another shape is not read as a message
                await events.aclose()
                self.owner._unread("this stream", stream=True, reason=why or f"a stream that starts with {kind!r}")
                for item in head.seen or []:  # unread_endpoints: pass, as it came
                    yield item
                async for item in source:
                    yield item
                return
            head.seen = None
            items = stream_async(_ProxyMessagesCall(self.owner, data, "post_call"), _chain(first, events))
            try:
                async for event in items:
                    yield _sse(event)
            finally:
                await items.aclose()
        finally:
            await events.aclose()
            await aclose_quietly(source)


class _Head:
    """A stream's chunks, the ones read before its first event kept (to be sent on as they came, when it is not a
    Messages stream and ``unread_endpoints: pass``); ``seen = None`` stops keeping them."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        self.source = source
        self.seen: list[Any] | None = []

    async def chunks(self) -> AsyncGenerator[Any, None]:
        async for chunk in self.source:  # leaving this loop does not close the source: its owner does
            if self.seen is not None:
                self.seen.append(chunk)
            yield chunk


def reads_stream(head: Any) -> bool:
    """Whether a stream's first item is one this module reads or refuses: raw SSE (str or bytes), or the proxy's
    passthrough answer (a lone ``Message`` dict, what it streams when a guardrail stopped the request)."""
    return isinstance(head, (str, bytes, bytearray)) or answer_kind(head) == "message"


# -- SSE ---------------------------------------------------------------------------------------------------------


async def _events(source: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """The SDK's events of an SSE byte stream (or of the proxy's passthrough ``Message``, its one item), framed as the
    SSE spec (and the SDK's decoder) frames them: a line ends at CRLF, LF or CR, whatever the line before it ended
    with, and a blank line ends an event; a chunk may end anywhere, even inside a character or inside a CRLF. Each
    chunk is split once (an unfinished line waits in ``partial``), so a long line in small chunks costs its length."""
    decoder, lines, size = codecs.getincrementaldecoder("utf-8")(), [], 0  # size: the event's finished lines
    partial: list[str] = []  # the unfinished line's pieces
    held = 0  # their length
    after_cr = False  # the last line ended at a CR: an LF that comes next is that line end's second half
    async for chunk in source:
        if isinstance(chunk, Mapping) and answer_kind(chunk) == "message":  # another guardrail's passthrough
            for event in refusal_events(content_text(chunk.get("content")) or "", model=_get(chunk, "model")):
                yield event
            continue
        if not isinstance(chunk, (str, bytes, bytearray)):
            raise UnreadStream(f"a {type(chunk).__name__} in an SSE stream")
        text = chunk if isinstance(chunk, str) else _decode(decoder, bytes(chunk))
        if not text:
            continue
        if after_cr and text.startswith("\n"):
            text = text[1:]
        after_cr = text.endswith("\r")
        *done, rest = _SSE_LINE.split(text)
        if done:
            done[0] = "".join([*partial, done[0]])
            partial, held = [], 0
        for line in done:
            if line:
                lines.append(line)
                size += len(line)
                continue
            if (event := _parse(lines)) is not None:  # a blank line: the event's end
                yield event
            lines, size = [], 0
        if rest:
            partial.append(rest)
            held += len(rest)
        if size + held > _MAX_EVENT:
            raise UnreadStream("an SSE event longer than guardrail reads")
    lines += [line for line in _SSE_LINE.split("".join([*partial, _decode(decoder, b"", final=True)])) if line]
    if (event := _parse(lines)) is not None:  # an unterminated last event: read, not skipped
        yield event


def _decode(decoder: codecs.IncrementalDecoder, data: bytes, final: bool = False) -> str:
    try:
        return decoder.decode(data, final=final)
    except UnicodeDecodeError:
        raise UnreadStream("an SSE stream that is not UTF-8") from None


def _parse(lines: list[str]) -> Any:
    """One SSE event (its lines) as the SDK's event object; None for a comment, a ping, a frame without data or with
    empty data, and the ``[DONE]`` some streams end with (none of them carries anything a client reads)."""
    data: list[str] = []
    for line in lines:
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    text = "\n".join(data)
    if not text.strip() or text.strip() == "[DONE]":
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        raise UnreadStream("an SSE event whose data is not JSON") from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind == "ping":
        return None
    if kind in _PASSED:  # the provider's error: the SDK's object, read by MessagesStream as the rest are
        from anthropic._models import construct_type
        from anthropic.types import ErrorResponse

        return construct_type(type_=ErrorResponse, value=payload)
    if kind not in _EVENTS:
        raise UnreadStream(f"an SSE event of type {kind!r}")
    delta = payload.get("delta") if kind == "content_block_delta" else None
    if isinstance(delta, Mapping) and unread_delta(delta):
        # a delta of a kind the stream's reader passes on as it came (a compaction summary ...): never unread text
        raise UnreadStream(f"a {delta.get('type')!r} delta, whose text guardrail does not read")
    from anthropic._models import construct_type  # as the SDK builds the events it streams
    from anthropic.types import RawMessageStreamEvent

    return construct_type(type_=RawMessageStreamEvent, value=payload)


async def _chain(first: Any, rest: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()


def _sse(event: Any) -> bytes:
    # a block of a kind the SDK does not know is sent as it came, without a serializer warning for each event
    payload = event if isinstance(event, Mapping) else event.to_dict(mode="json", warnings=False)
    return f"event: {payload.get('type')}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
