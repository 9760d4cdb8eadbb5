"""The integration entry points: ``guardrail.protect(guard)`` for your own functions, ``guardrail.wrap``
for clients, and ``guardrail.guarded`` (a Guard made for you).

They live here, not on ``Guard``, so the Guard stays the decision core: every integration drives
one ``guardrail.call.Call`` per request, which pins the policy snapshot and says what a decision
means for the caller (``Guard.protect`` / ``Guard.wrap`` remain as deprecated aliases).

The decorator's wrapper is chosen once, at decoration time (tenacity's ``retry`` does the same): a
coroutine function gets an ``async def`` wrapper (so ``inspect.iscoroutinefunction`` stays true), an
async generator an async-generator wrapper and a plain generator a generator wrapper, whose output
is guarded like any stream, and anything else a plain wrapper. The prompt is the argument named
``prompt_arg``, else ``messages``/``prompt``, else the one messages list, else the one ``str`` argument
(``**kwargs`` and ``*args`` are looked into: a thin forwarder ``def chat(*args, **kwargs)`` is guarded too); a call
in which none is found, or several may be it (two ``str`` arguments: a model name and the prompt), raises
``TypeError`` rather than run unchecked, unless no argument may hold text (none at all, or numbers). A rewrite
(redaction) replaces the prompt before the call. What the function returns is checked when it has text (a
``str``, a list of them, a chat completion, a Responses API response or a Messages API message; see
``shapes.answer_kind``), with what it does (tool calls ...) apart from its text, and is replaced in place on a
block or a rewrite; a result it cannot read raises ``TypeError``. Under ``input.parallel`` async functions and
async generators start while the prompt is checked (a block cancels them); sync ones are not moved to another
thread behind your back, so they run after the check.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from guardrail.call import Call, Outcome
from guardrail.decision import Action, Decision
from guardrail.messages import prompt_placeholders
from guardrail.streaming import Release, StreamGuard, aclose_quietly, arelay, relay

if TYPE_CHECKING:
    from guardrail.engine import Guard

__all__ = ["deprecated", "guarded", "protect", "wrap"]

F = TypeVar("F", bound=Callable[..., Any])
Context = Mapping[str, str] | None


def deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old}(...) is deprecated; use {new}", DeprecationWarning, stacklevel=3)


def wrap(guard: Guard, client: Any, *, restore: bool = False, context: Context = None) -> Any:
    """The same client, guarded: ``openai.OpenAI`` / ``AsyncOpenAI``, ``anthropic.Anthropic`` / ``AsyncAnthropic``
    or the ``litellm`` module.
    ``restore=True`` maps redaction placeholders in answers back to the caller's original values;
    ``context`` (tenant, route ...) goes with every check, for Guards that route by it."""
    _need_guard(guard, "guardrail.wrap(guard, client)")
    from guardrail.adapters import wrap as wrap_client

    return wrap_client(guard, client, restore=restore, context=context)


def _need_guard(guard: Any, usage: str) -> None:
    """A Guard (or anything with its checks) must come first: the arguments swapped, or ``@guardrail.protect``
    used bare, would otherwise fail later and confusingly."""
    if not (callable(getattr(guard, "check_input", None)) and callable(getattr(guard, "acheck_output", None))):
        raise TypeError(f"expected a guardrail.Guard first, got {type(guard).__name__}: use {usage}")


class _Request:
    """One call of the decorated function: its arguments, its prompt, and the guarded Call."""

    def __init__(self, deco: _Decorated, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        from guardrail.adapters import prompt_args

        self.fn = deco.fn
        self.bound = deco.sig.bind(*args, **kwargs)
        name = getattr(deco.fn, "__qualname__", type(deco.fn).__name__)
        # under scope: all the system prompt is checked text, never trusted configuration beside the prompt
        policy = deco.guard.policy  # any policy its routes may select: the route may depend on the text
        reads_system = any(p.input.scope == "all" for p in (policy, *policy.routed))
        config = prompt_args.CONFIG - prompt_args.SYSTEM_ARGS if reads_system else prompt_args.CONFIG
        where = prompt_args.find_prompt(deco.sig, self.bound, deco.prompt_arg, name, config)
        if where is None and prompt_args.may_hold_text(self.bound):  # never run unchecked: say how to name the prompt
            named = f"prompt_arg={deco.prompt_arg!r} is" if deco.prompt_arg else "no messages=, prompt= or str argument"
            raise TypeError(
                f"guardrail.protect found no prompt to check in this call of {name}() ({named} "
                "not among its arguments): pass the prompt, or name it with protect(guard, prompt_arg=...) (an "
                "argument, or a key of **kwargs)"
            )
        # None: the call has no argument that may hold text (none at all, numbers): only the answer is checked
        self.where = where
        self.prompt = prompt_args.prompt_at(self.bound, where) if where is not None else None
        self.sent: dict[str, str] = {}  # the input's redactions (placeholder -> the user's value)
        self.call = Call(deco.guard, context=deco.context)

    def apply(self, out: Outcome) -> None:
        """A rewrite replaces the prompt argument (messages, or the text)."""
        d = out.decision
        if self.where is not None and d.action is Action.REWRITE:
            from guardrail.adapters import prompt_args

            self.sent = dict(d.redactions)  # the user's values: an answer that writes one keeps its placeholder
            # the answer is judged against the prompt as sent, whose placeholders it must not reuse
            self.prompt = list(d.messages) if d.messages is not None else d.text
            prompt_args.put_prompt(self.bound, self.where, self.prompt)

    def invoke(self) -> Any:
        return self.fn(*self.bound.args, **self.bound.kwargs)

    def checked(self, result: Any) -> Any:
        """What the function returned, checked: its text and, apart from it, what it does (tool calls ...),
        through the adapters' one answer check; a list or tuple of texts item by item."""
        from guardrail.adapters._core import check_answer

        items = _answers(result)
        return result if items is None else _rebuilt(result, [check_answer(self._answer_call(), i) for i in items])

    async def achecked(self, result: Any) -> Any:
        """:meth:`checked` for async functions."""
        from guardrail.adapters._core import acheck_answer

        items = _answers(result)
        if items is None:
            return result
        return _rebuilt(result, [await acheck_answer(self._answer_call(), i) for i in items])

    def _answer_call(self) -> Any:
        from guardrail.adapters._core import GuardedCall

        gc = GuardedCall(self.call, "chat", "openai", {})
        gc.prompt, gc.sent = self._text_prompt(), self.sent
        return gc

    def stream_text(self, rel: Release, sg: StreamGuard) -> Iterator[str]:
        if rel.text:
            yield rel.text
        if rel.blocked is not None:
            end = self.call.outcome(rel.blocked, stream=True).text
            if end:
                yield sg.end_text(end)

    def stream_guard(self) -> StreamGuard:
        """The stream windows and output redaction of the policy, reserving the prompt's placeholders."""
        sg = self.call.stream_guard()
        sg.reserved, sg.known = prompt_placeholders(self._text_prompt()), self.sent
        return sg

    def check_window(self, window: str) -> Decision:
        return self.call.check_output(window, prompt=self._text_prompt())

    async def acheck_window(self, window: str) -> Decision:
        return await self.call.acheck_output(window, prompt=self._text_prompt())

    def _text_prompt(self) -> Any:
        return self.prompt if isinstance(self.prompt, (str, list)) else None


def _piece(item: Any) -> str:
    """The text of one piece a guarded generator yields."""
    return item if isinstance(item, str) else str(item)


def _readable(result: Any) -> str | None:
    """Which kind of answer the decorated function returned ("texts" for a list or tuple of strings), or None
    when it carries no text (``None``, a number). Anything holding text in a form the decorator cannot read
    (an iterator or a client's stream returned rather than yielded, bytes, a dict or object that is not an
    answer it knows) is an error, never passed on unchecked."""
    from guardrail.adapters.shapes import answer_kind

    if result is None or isinstance(result, numbers.Number):
        return None
    if isinstance(result, (list, tuple)) and all(isinstance(x, str) for x in result):
        return "texts"
    streaming = hasattr(result, "__next__") or hasattr(result, "__anext__")  # a generator, a client's stream
    kind: str | None = None
    if not streaming and not isinstance(result, (bytes, bytearray, memoryview)):
        kind = answer_kind(result)
    if kind is None:
        raise TypeError(
            f"guardrail.protect cannot check a {type(result).__name__} returned by the function: return text, a "
            "list of texts, a chat completion, a Responses API response or a Messages API message, or make the "
            "function a generator (its output is then guarded as a stream)"
        )
    return kind


def _answers(result: Any) -> list[Any] | None:
    """The answers to check in what the function returned (each text of a list or tuple of texts), or None
    when it carries no text; ``TypeError`` when it holds text guardrail cannot read (see :func:`_readable`)."""
    kind = _readable(result)
    if kind is None:
        return None
    return list(result) if kind == "texts" else [result]


def _rebuilt(original: Any, checked: list[Any]) -> Any:
    """The checked answers in the shape of what the function returned: the one answer; a list, tuple or named
    tuple of the same type, or ``original`` itself when no item changed."""
    if not isinstance(original, (list, tuple)):
        return checked[0]
    if all(a is b for a, b in zip(original, checked, strict=True)):
        return original
    if isinstance(original, list):
        return type(original)(checked) if type(original) is not list else checked
    return type(original)(*checked) if hasattr(original, "_fields") else type(original)(checked)


class _Decorated:
    def __init__(self, guard: Guard, fn: Callable[..., Any], prompt_arg: str | None, context: Context) -> None:
        self.guard, self.fn, self.prompt_arg, self.context = guard, fn, prompt_arg, context
        self.sig = inspect.signature(fn)
        from guardrail.adapters import prompt_args

        prompt_args.check_prompt_arg(self.sig, prompt_arg)

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Request:
        return _Request(self, args, kwargs)


def _sync_function(deco: _Decorated) -> Callable[..., Any]:
    @functools.wraps(deco.fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        req = deco.request(args, kwargs)
        if req.where is not None:
            out = req.call.outcome(req.call.check_input(req.prompt))
            if out.stop:
                return out.text
            req.apply(out)
        return req.checked(req.invoke())

    return wrapper


def _async_function(deco: _Decorated) -> Callable[..., Any]:
    @functools.wraps(deco.fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        req = deco.request(args, kwargs)
        if req.where is not None:
            out, result = await req.call.asend(req.prompt, req.invoke, req.apply)
            if out.stop:
                return out.text
        else:
            result = await req.invoke()
        return await req.achecked(result)

    return wrapper


def _sync_generator(deco: _Decorated) -> Callable[..., Any]:
    @functools.wraps(deco.fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[str]:
        req = deco.request(args, kwargs)
        if req.where is not None:
            out = req.call.outcome(req.call.check_input(req.prompt))
            if out.stop:
                if out.text:
                    yield out.text
                return
            req.apply(out)
        sg = req.stream_guard()
        yield from relay(req.invoke(), _piece, sg, req.check_window, lambda rel: req.stream_text(rel, sg))

    return wrapper


class _Primed:
    """An async generator whose first step already ran (as the upstream call of ``input.parallel``)."""

    def __init__(self, gen: Any, first: list[Any]) -> None:
        self.gen, self.first = gen, first

    def __aiter__(self) -> _Primed:
        return self

    async def __anext__(self) -> Any:
        return self.first.pop(0) if self.first else await self.gen.__anext__()

    async def aclose(self) -> None:
        await aclose_quietly(self.gen)


async def _prime(gen: Any) -> _Primed:
    try:
        first = [await gen.__anext__()]
    except StopAsyncIteration:
        first = []
    except BaseException:
        await aclose_quietly(gen)
        raise
    return _Primed(gen, first)


def _async_generator(deco: _Decorated) -> Callable[..., Any]:
    @functools.wraps(deco.fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[str]:
        req = deco.request(args, kwargs)
        if req.where is not None:
            out, primed = await req.call.asend(req.prompt, lambda: _prime(req.invoke()), req.apply)
            if out.stop or primed is None:
                if out.text:
                    yield out.text
                return
        else:
            primed = await _prime(req.invoke())

        sg = req.stream_guard()
        relayed = arelay(primed, _piece, sg, req.acheck_window, lambda rel: req.stream_text(rel, sg))
        try:
            async for text in relayed:
                yield text
        finally:
            await relayed.aclose()  # the caller stopped early: close the source now, not at garbage collection

    return wrapper


def protect(guard: Guard, fn: F | None = None, *, prompt_arg: str | None = None, context: Context = None) -> Any:
    """Guard ``fn`` with ``guard``: ``@guardrail.protect(guard)``, ``@guardrail.protect(guard,
    prompt_arg="question")``, or ``guardrail.protect(guard, fn)``."""
    _need_guard(guard, "@guardrail.protect(guard) or guardrail.protect(guard, fn)")
    if fn is None:
        return lambda f: protect(guard, f, prompt_arg=prompt_arg, context=context)
    deco = _Decorated(guard, fn, prompt_arg, context)
    if inspect.isasyncgenfunction(fn):
        return _async_generator(deco)
    if inspect.iscoroutinefunction(fn):
        return _async_function(deco)
    if inspect.isgeneratorfunction(fn):
        return _sync_generator(deco)
    return _sync_function(deco)


@overload
def guarded(fn: F, /) -> F: ...
@overload
def guarded(
    *, policy: Any = None, prompt_arg: str | None = None, guard: Guard | None = None, context: Context = None
) -> Callable[[F], F]: ...
def guarded(
    fn: Any = None,
    /,
    *,
    policy: Any = None,
    prompt_arg: str | None = None,
    guard: Guard | None = None,
    context: Context = None,
) -> Any:
    """``@guardrail.guarded`` or ``@guardrail.guarded(policy="strict")``: a Guard made for you."""

    def deco(f: Any) -> Any:
        from guardrail.engine import Guard

        return protect(guard or Guard(policy), f, prompt_arg=prompt_arg, context=context)

    return deco(fn) if fn is not None else deco
