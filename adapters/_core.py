"""One guarded client call: the request side of a ``guardrail.call.Call``, and two thin drivers.

``GuardedCall`` holds what is specific to a client request: which texts of the request to check,
how a rewrite changes the request, the refusal and the changed answer in the client's own types,
and placeholder restoring. What a decision *means* (the refusal text or ``Blocked``, the finish
reason, when a stream ends) comes from its ``Call``, which also pins the one policy snapshot of the
request. ``call_sync`` / ``call_async`` do the I/O around it and differ only by ``await``
(DESIGN.md §8, "one core, thin drivers"); ``stream_sync`` / ``stream_async`` hand a stream to the one
streaming implementation (``guardrail.streaming.relay`` / ``arelay``) with the client's own item types.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from guardrail.call import CONTENT_FILTER, Call, Outcome
from guardrail.classifiers.patterns import placeholders, renumbered, restore
from guardrail.decision import Action, Decision
from guardrail.messages import prompt_placeholders
from guardrail.streaming import StreamGuard, aclose_quietly, arelay, close_quietly, relay

from . import shapes
from ._streams import ChatStream, ResponsesStream
from .actions import edit_actions, mask_and_restore
from .answer_text import _get
from .conversations import Conversations, joined
from .json_edits import duplicate_keys, edit_json_text, mask_json_text
from .reask import achecks, answer_async, answer_sync, checks
from .request_shapes import Kind, input_payload, rewritten, with_turns

__all__ = ["AsyncGuardedStream", "GuardedCall", "GuardedStream", "call_async", "call_sync"]

T = TypeVar("T")


class GuardedCall:
    """The request side of one call: the request to check and send, the answer to return."""

    def __init__(
        self,
        call: Call,
        kind: Kind,
        flavour: shapes.Flavour,
        kwargs: Mapping[str, Any],
        *,
        restore: bool = False,
        conversations: Conversations | None = None,
    ) -> None:
        self.call, self.kind, self.flavour, self.restore = call, kind, flavour, restore
        self.kwargs = dict(kwargs)
        # a server-side conversation's earlier placeholders (adapters.conversations), and what this request sends
        self.conversations = conversations
        self.known = conversations.known(self.kwargs) if conversations is not None else {}
        self.sent = dict(self.known)
        self.claimed: dict[str, str] = {}  # what this turn claimed in the conversation (released if never sent)
        self.stream = bool(self.kwargs.get("stream"))
        self.model: str | None = self.kwargs.get("model")
        # the answer's text is a JSON document the caller parses (structured outputs): restored value by value,
        # and stopped if the check leaves it unparseable
        self.json_text = False
        # what the check reads, and where each text came from; a request it cannot read whole is refused here
        # (request_shapes.UncheckedField: a read field inside extra_body ...), before anything is sent
        self.payload, self._sources = input_payload(kind, self.kwargs)
        if kind == "chat" and self.stream and (self.kwargs.get("n") or 1) > 1:
            raise TypeError("guardrail guards streams of one choice; stream=True with n > 1 is not supported")
        self.prompt: Any = self.payload

    # -- input -----------------------------------------------------------------------------------

    def apply(self, out: Outcome) -> None:
        """Put an input rewrite into the request (and remember the redactions for ``restore``)."""
        d = out.decision
        if d.action is Action.REWRITE:
            messages, redactions = list(d.messages) if d.messages is not None else [d.text], dict(d.redactions)
            if self.conversations is not None and redactions:  # numbered and claimed at once (concurrent turns)
                written = prompt_placeholders(self.payload)
                known, redactions, messages = self.conversations.claim(self.kwargs, redactions, messages, written)
                self.claimed = dict(redactions)  # what this turn sends: given back if it fails, kept once answered
                self.known = known
                self.sent = {**known, **self.sent}
            rewritten(self.kind, self.kwargs, self._sources, messages)
            self.prompt = messages
            self.sent.update(redactions)

    @property
    def restore_map(self) -> dict[str, str]:
        """What ``restore=True`` puts back: every value the conversation masked, this request's input redactions and
        a server-side conversation's earlier ones (``sent``)."""
        return self.sent if self.restore else {}

    def unsent(self) -> None:
        """The request failed after its input was checked: what it claimed in the conversation is given back."""
        if self.conversations is not None and self.claimed:
            self.conversations.release(self.kwargs, self.claimed)
            self.claimed = {}

    def answered(self, response: Any) -> None:
        """The provider's answer has an id a later request may continue from: remember what this one sent."""
        if self.conversations is not None:
            self.conversations.remember(self.kwargs, response, self.sent, self.claimed)
            self.claimed = {}

    def reasked(self, answer: str, turn: str) -> dict[str, Any]:
        """The request as it was sent (redactions included), then the blocked ``answer`` as the assistant's turn and
        the guard's ``turn`` as the user's: what asks the model again."""
        return with_turns(self.kind, self.kwargs, answer, turn)

    def refusal(self, out: Outcome) -> Any:
        """The stopped request's answer in the client's own type (a response, or a stream's items)."""
        message, ident = out.text or "", out.decision.id
        if self.kind == "responses":
            if self.stream:
                return list(shapes.refusal_response_events(message, model=self.model, decision_id=ident, opening=True))
            return shapes.refusal_response(message, model=self.model, decision_id=ident)
        if self.stream:
            return shapes.refusal_chunks(self.flavour, message, model=self.model, decision_id=ident)
        return shapes.refusal_completion(self.flavour, message, model=self.model, decision_id=ident)

    # -- output (whole answers) ------------------------------------------------------------------

    def on_output(
        self, result: Any, decisions: list[Decision | None], actions: list[Decision | None] | None = None
    ) -> Any:
        """The answer the caller gets: each choice's text as its decision says; a choice whose actions
        (``actions``: the decisions on ``shapes.action_texts_of``) are stopped is stopped whole. Actions
        cannot be rewritten, only redacted: a replacing rewrite fired by them stops the choice, as it
        stops a stream, and a redaction masks the values in the calls' arguments themselves (or stops the
        choice when a value is still readable after it). ``restore`` reaches the arguments too."""
        self.answered(result)
        texts: dict[int, str] = {}
        reasons: dict[int, str] = {}
        edits: dict[int, Mapping[str, str]] = {}  # per choice: the output redactions of its actions
        originals = shapes.texts_of(result)
        for i, (original, d) in enumerate(zip(originals, decisions, strict=True)):
            acted = actions[i] if actions is not None and i < len(actions) else None
            if acted is not None and (stopped := self.call.outcome(acted, stream=True)).stop:
                texts[i], reasons[i] = stopped.text or "", stopped.finish_reason or ""
                continue
            if acted is not None and acted.action is Action.REWRITE:
                edits[i] = acted.redactions
            if original is None or d is None:
                if i in edits:  # no text: the calls still join the user's values and avoid what was written
                    edits[i] = self._joined_edits(result, i, edits[i], original, {})
                continue
            out = self.call.outcome(d)
            new = out.text if out.text is not None else original
            text_map: Mapping[str, str] = d.redactions
            if self.json_text and d.redactions and not out.finish_reason:
                # a document the caller parses: masked value by value, where each sits (None: still readable)
                entities = self.call.stream_guard().redact_entities
                masked = mask_json_text(original, entities, d.redactions, reserved=self.reserved)
                if masked is not None:
                    new, text_map = masked
            if self.sent and text_map and not out.finish_reason:
                # the user's own values keep the placeholders the prompt gave them (restore puts them back); the
                # answer's own never take one the conversation sent. Not where a document would lose a key to it
                renamed, [joined_text] = joined(text_map, self.sent, [new], self.reserved | placeholders(original))
                if not (self.json_text and duplicate_keys(joined_text) > duplicate_keys(new)):
                    text_map, new = renamed, joined_text
            if i in edits:  # the actions were checked apart: one numbering with the text's
                edits[i] = self._joined_edits(result, i, edits[i], original, text_map)
            if out.finish_reason:
                reasons[i] = out.finish_reason
            elif self.restore_map:
                own = text_map if d.action is Action.REWRITE else {}
                new = self._restored(new, {k: v for k, v in self.restore_map.items() if own.get(k, v) == v})
            cut = _finish_reason(result, i) == "length" or _get(result, "status") == "incomplete"
            if self.json_text and new != original and not reasons.get(i) and not cut and not _is_json(new):
                # a document the caller parses that the check left unparseable (a replacing message, a value
                # masked where only a number fits): stopped as a block is, never handed on broken. What upstream
                # sent cut short is the parser's to judge (the SDK's LengthFinishReasonError)
                new, reasons[i] = self.call.refusal(d), CONTENT_FILTER
            if new != original or i in reasons:
                texts[i] = new
        if edits or self.restore_map:
            result = self._edit_actions(result, texts, reasons, edits, actions or [])
        return shapes.replace_completion_texts(result, texts, finish_reason=reasons) if texts else result

    def _joined_edits(
        self, result: Any, i: int, edits: Mapping[str, str], original: str | None, text_map: Mapping[str, str]
    ) -> dict[str, str]:
        """The output redaction of choice ``i``'s actions, numbered with its text's (``text_map``) and the user's
        values (``sent``), never taking a placeholder the prompt, the text or the actions hold for another."""
        written = placeholders(original or "") | placeholders(shapes.action_texts_of(result)[i] or "")
        return renumbered(edits, {**self.sent, **text_map}, self.reserved | written)

    def _restored(self, text: str, mapping: Mapping[str, str]) -> str:
        """``text`` with the input's values put back: value by value when it is a JSON document the caller parses."""

        def edit(piece: str) -> str:
            return restore(piece, mapping)

        return edit_json_text(text, edit) if self.json_text else edit(text)

    def _edit_actions(
        self,
        result: Any,
        texts: dict[int, str],
        reasons: dict[int, str],
        edits: Mapping[int, Mapping[str, str]],
        actions: list[Decision | None],
    ) -> Any:
        """A copy of ``result`` whose actions are redacted (``edits``) and restored, per choice not stopped; a
        choice whose masked value is still readable is stopped (``texts``, ``reasons`` updated)."""
        result = copy.deepcopy(result)
        for i in range(len(shapes.action_texts_of(result))):
            if reasons.get(i) == CONTENT_FILTER:
                continue
            apply = lambda edit, masking, i=i: edit_actions(result, i, edit, masking=masking)  # noqa: E731
            read = lambda i=i: shapes.action_texts_of(result)[i] or ""  # noqa: E731
            if not mask_and_restore(apply, read, edits.get(i, {}), self.restore_map):
                d = actions[i]
                assert d is not None  # a masked value came from this choice's action decision
                texts[i], reasons[i] = self.call.refusal(d), CONTENT_FILTER
        return result

    # -- streams ---------------------------------------------------------------------------------

    def stream_guard(self) -> StreamGuard:
        self.call.route(self.prompt or None)  # a Call new to this answer (the proxy's output hook) routes by the prompt
        sg = self.call.stream_guard()
        sg.reserved, sg.known = self.reserved, self.sent
        return sg

    @property
    def reserved(self) -> frozenset[str]:
        """The placeholders of the prompt as sent (the input's redactions): the answer's own values never take
        one, in its text (the engine, the stream guard) or in what it does besides (calls, audio, documents)."""
        return prompt_placeholders(self.prompt) | frozenset(self.known)

    def stream_state(self, sg: StreamGuard) -> ChatStream | ResponsesStream:
        edits_audio = bool(sg.redact_entities or self.restore_map)
        if self.kind == "responses":
            return ResponsesStream(self, edits_audio=edits_audio)
        return ChatStream(self, edits_audio=edits_audio)

    def check_window(self, window: str) -> Decision:
        return self.call.check_output(window, prompt=self.prompt)

    async def acheck_window(self, window: str) -> Decision:
        return await self.call.acheck_output(window, prompt=self.prompt)


# ---------------------------------------------------------------------------------------- drivers


def call_sync(gc: GuardedCall, send: Callable[..., Any]) -> Any:
    result: Any
    try:
        out, result = gc.call.send(gc.payload, lambda: send(**gc.kwargs), gc.apply)
    except BaseException:
        gc.unsent()
        raise
    if out.stop:
        refusal = gc.refusal(out)
        return GuardedStream(iter(refusal)) if gc.stream else refusal
    if gc.stream:  # never asked again (adapters.reask): its text was released as it was checked
        return GuardedStream(stream_sync(gc, result), result)
    return answer_sync(gc, send, result)


async def call_async(gc: GuardedCall, send: Callable[..., Any]) -> Any:
    result: Any
    try:
        out, result = await gc.call.asend(gc.payload, lambda: send(**gc.kwargs), gc.apply)
    except BaseException:
        gc.unsent()
        raise
    if out.stop:
        refusal = gc.refusal(out)
        return AsyncGuardedStream(_aiter(refusal)) if gc.stream else refusal
    if gc.stream:
        return AsyncGuardedStream(stream_async(gc, result), result)
    return await answer_async(gc, send, result)


def check_answer(gc: GuardedCall, result: Any) -> Any:
    """Check a whole answer (each choice's text, and apart from it what the choice does: tool calls,
    refusal, audio) and return it as the decisions say; never asked for again (a stored answer)."""
    return gc.on_output(result, *checks(gc, result))


async def acheck_answer(gc: GuardedCall, result: Any) -> Any:
    """:func:`check_answer` for async code."""
    return gc.on_output(result, *(await achecks(gc, result)))


def stream_sync(gc: GuardedCall, upstream: Iterable[Any]) -> Iterator[Any]:
    sg = gc.stream_guard()
    state = gc.stream_state(sg)
    check = lambda window: gc.check_window(state.with_actions(window))  # noqa: E731
    return relay(upstream, state.take, sg, check, lambda rel: state.emit(rel, sg))


def stream_async(gc: GuardedCall, upstream: Any) -> AsyncGenerator[Any, None]:
    sg = gc.stream_guard()
    state = gc.stream_state(sg)
    acheck = lambda window: gc.acheck_window(state.with_actions(window))  # noqa: E731
    return arelay(upstream, state.take, sg, acheck, lambda rel: state.emit(rel, sg))


async def _aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


class GuardedStream(Generic[T]):
    """What ``create(stream=True)`` returns: iterate it, use it as a context manager, ``close()`` it.
    Other attributes (``response`` ...) come from the upstream stream."""

    def __init__(self, items: Iterator[T], upstream: Any = None) -> None:
        self._items, self._upstream = items, upstream

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._items)

    def close(self) -> None:
        """Close the guarding generator and the upstream response: closed before it was read, the generator never
        started, so closing it alone left the connection open and the model writing (and billing) an answer no one
        reads."""
        close = getattr(self._items, "close", None)
        try:
            if callable(close):
                close()  # may raise (a generator still running on another thread): the upstream is closed anyway
        finally:
            if self._upstream is not None:
                close_quietly(self._upstream)

    def __enter__(self) -> GuardedStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        upstream = self.__dict__.get("_upstream")
        if upstream is None or name.startswith("__"):  # never borrow the other iteration protocol
            raise AttributeError(name)
        return getattr(upstream, name)


class AsyncGuardedStream(Generic[T]):
    """The async twin of :class:`GuardedStream` (``async for``, ``async with``, ``await close()``)."""

    def __init__(self, items: AsyncIterator[T], upstream: Any = None) -> None:
        self._items, self._upstream = items, upstream

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._items.__anext__()

    async def close(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        try:
            if callable(aclose):
                await aclose()
        finally:
            if self._upstream is not None:  # as GuardedStream.close: one never read still has its connection open
                await aclose_quietly(self._upstream)

    aclose = close

    async def __aenter__(self) -> AsyncGuardedStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        upstream = self.__dict__.get("_upstream")
        if upstream is None or name.startswith("__"):  # never borrow the other iteration protocol
            raise AttributeError(name)
        return getattr(upstream, name)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _finish_reason(result: Any, index: int) -> Any:
    choices = _get(result, "choices")
    return _get(choices[index], "finish_reason") if isinstance(choices, list) and index < len(choices) else None
