"""One guarded LLM call, shared by every adapter: a pure core and two thin drivers.

``GuardedCall`` holds everything that is decided rather than done: which texts of the request to
check, how a rewrite changes the request, what a block returns, how the answer is changed and
restored. ``call_sync`` / ``call_async`` do the I/O around it and differ only by ``await``
(DESIGN.md §8, "one core, thin drivers"); so do ``stream_sync`` / ``stream_async``, which run the
one streaming implementation (``guardrail.streaming.guard_stream`` / ``aguard_stream``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from guardrail.classifiers.patterns import restore
from guardrail.decision import Action, Decision
from guardrail.errors import Blocked
from guardrail.streaming import StreamGuard, aguard_stream, guard_stream

from . import shapes
from ._streams import ChatStream, ResponsesStream

if TYPE_CHECKING:
    from guardrail.engine import Guard

__all__ = ["AsyncGuardedStream", "GuardedCall", "GuardedStream", "call_async", "call_sync"]

Kind = Literal["chat", "responses"]
T = TypeVar("T")


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


class GuardedCall:
    """The pure part of one call: the request to check and send, the answer to return."""

    def __init__(
        self, guard: Guard, kind: Kind, flavour: shapes.Flavour, kwargs: Mapping[str, Any], *, restore: bool = False
    ) -> None:
        self.guard, self.kind, self.flavour, self.restore = guard, kind, flavour, restore
        self.policy = guard.policy  # one snapshot for the whole call, even across a hot reload
        self.kwargs = dict(kwargs)
        self.stream = bool(self.kwargs.get("stream"))
        self.model: str | None = self.kwargs.get("model")
        self.restore_map: dict[str, str] = {}
        if kind == "chat" and self.stream and (self.kwargs.get("n") or 1) > 1:
            raise TypeError("guardrail guards streams of one choice; stream=True with n > 1 is not supported")
        self.payload, self._sources = self._input_payload()
        self.prompt: Any = self.payload

    # -- input -----------------------------------------------------------------------------------

    def _input_payload(self) -> tuple[Any, list[tuple[str, int | None]]]:
        """The chat messages to check, and where each came from in the request (for rewrites)."""
        if self.kind == "chat":
            return self.kwargs.get("messages") or [], []
        items: list[Any] = []
        sources: list[tuple[str, int | None]] = []
        instructions, inp = self.kwargs.get("instructions"), self.kwargs.get("input")
        if isinstance(instructions, str) and instructions:
            items.append({"role": "system", "content": instructions})
            sources.append(("instructions", None))
        if isinstance(inp, str):
            items.append({"role": "user", "content": inp})
            sources.append(("input", None))
        elif isinstance(inp, Iterable) and not isinstance(inp, (bytes, Mapping)):
            inp = self.kwargs["input"] = list(inp)  # an iterator would be used up by the check
            for i, item in enumerate(inp):  # messages only: tool calls and their outputs have no role
                if isinstance(_get(item, "role"), str):
                    items.append(item)
                    sources.append(("input", i))
        return items, sources

    def on_input(self, d: Decision) -> Any | None:
        """None to go on (the request possibly rewritten), or the refusal to return instead."""
        if d.action is Action.BLOCK:
            return self.refusal(d)
        if d.action is Action.REWRITE:
            self._rewrite(list(d.messages) if d.messages is not None else [d.text])
            if self.restore:
                self.restore_map = dict(d.redactions)
        return None

    def _rewrite(self, messages: list[Any]) -> None:
        if self.kind == "chat":
            self.kwargs["messages"] = self.prompt = messages
            return
        new_input = self.kwargs.get("input")
        new_input = list(new_input) if isinstance(new_input, Iterable) and not isinstance(new_input, str) else new_input
        for (field, index), msg in zip(self._sources, messages, strict=True):
            if field == "instructions":
                self.kwargs["instructions"] = _get(msg, "content")
            elif index is None:
                new_input = _get(msg, "content")
            else:
                assert isinstance(new_input, list)
                new_input[index] = msg
        self.kwargs["input"] = new_input
        self.prompt = messages

    def blocked(self, d: Decision) -> str:
        """The refusal text for a block, or ``Blocked`` when the policy says ``on_block: raise``."""
        if self.policy.on_block.respond == "raise":
            raise Blocked(d)
        return d.message or self.policy.on_block.message

    def refusal(self, d: Decision) -> Any:
        message = self.blocked(d)
        if self.kind == "responses":
            if self.stream:
                return list(shapes.refusal_response_events(message, model=self.model, decision_id=d.id))
            return shapes.refusal_response(message, model=self.model, decision_id=d.id)
        if self.stream:
            return shapes.refusal_chunks(self.flavour, message, model=self.model, decision_id=d.id)
        return shapes.refusal_completion(self.flavour, message, model=self.model, decision_id=d.id)

    # -- output (whole answers) ------------------------------------------------------------------

    def output_texts(self, result: Any) -> list[str | None]:
        if self.kind == "responses":
            return [shapes.response_text(result)]
        return [c if isinstance(c := _get(_get(ch, "message"), "content"), str) else None for ch in result.choices]

    def on_output(self, result: Any, decisions: list[Decision | None]) -> Any:
        texts: dict[int, str] = {}
        reasons: dict[int, str] = {}
        for i, (original, d) in enumerate(zip(self.output_texts(result), decisions, strict=True)):
            if original is None:
                continue
            new: str = original
            own: Mapping[str, str] = {}
            if d is not None and d.action is Action.BLOCK:
                new, reasons[i] = self.blocked(d), shapes.CONTENT_FILTER
            else:
                if d is not None and d.action is Action.REWRITE:
                    new, own = d.text, d.redactions
                if self.restore_map:
                    new = restore(new, {k: v for k, v in self.restore_map.items() if k not in own})
            if new != original or i in reasons:
                texts[i] = new
        return shapes.replace_completion_texts(result, texts, finish_reason=reasons) if texts else result

    # -- streams ---------------------------------------------------------------------------------

    def stream_guard(self) -> StreamGuard:
        return StreamGuard.for_policy(self.policy)

    def stream_state(self) -> ChatStream | ResponsesStream:
        return ResponsesStream(self) if self.kind == "responses" else ChatStream(self)

    def check_window(self, window: str) -> Decision:
        return self.guard.check_output(window, prompt=self.prompt)

    async def acheck_window(self, window: str) -> Decision:
        return await self.guard.acheck_output(window, prompt=self.prompt)


# ---------------------------------------------------------------------------------------- drivers


def call_sync(call: GuardedCall, send: Callable[..., Any]) -> Any:
    refusal = call.on_input(call.guard.check_input(call.payload))
    if refusal is not None:
        return GuardedStream(iter(refusal)) if call.stream else refusal
    result = send(**call.kwargs)
    if call.stream:
        return GuardedStream(stream_sync(call, result), result)
    texts = call.output_texts(result)
    return call.on_output(result, [call.guard.check_output(t, prompt=call.prompt) if t else None for t in texts])


async def call_async(call: GuardedCall, send: Callable[..., Any]) -> Any:
    refusal = call.on_input(await call.guard.acheck_input(call.payload))
    if refusal is not None:
        return AsyncGuardedStream(_aiter(refusal)) if call.stream else refusal
    result = await send(**call.kwargs)
    if call.stream:
        return AsyncGuardedStream(stream_async(call, result), result)
    texts = call.output_texts(result)
    return call.on_output(result, [await call.guard.acheck_output(t, prompt=call.prompt) if t else None for t in texts])


def stream_sync(call: GuardedCall, upstream: Iterable[Any]) -> Iterator[Any]:
    state, sg = call.stream_state(), call.stream_guard()

    def texts() -> Iterator[str]:
        for item in upstream:
            if text := state.take(item):
                yield text

    source = texts()
    releases = guard_stream(source, sg, call.check_window)
    try:
        for rel in releases:
            yield from state.emit(rel, sg)
    finally:
        _close(releases)
        _close(source)
        _close(upstream)


async def stream_async(call: GuardedCall, upstream: Any) -> AsyncIterator[Any]:
    state, sg = call.stream_state(), call.stream_guard()

    async def texts() -> AsyncIterator[str]:
        async for item in upstream:
            if text := state.take(item):
                yield text

    source = texts()
    releases = aguard_stream(source, sg, call.acheck_window)
    try:
        async for rel in releases:
            for item in state.emit(rel, sg):
                yield item
    finally:
        await _aclose(releases)
        await _aclose(source)
        await _aclose(upstream)


def _close(upstream: Any) -> None:
    close = getattr(upstream, "close", None)
    if callable(close):
        close()


async def _aclose(upstream: Any) -> None:
    close = getattr(upstream, "aclose", None) or getattr(upstream, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result


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
        close = getattr(self._items, "close", None)
        if callable(close):
            close()
        elif self._upstream is not None:
            _close(self._upstream)

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
        if callable(aclose):
            await aclose()
        elif self._upstream is not None:
            await _aclose(self._upstream)

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
