"""``@guard.protect`` and ``guardrail.guarded(...)``: guard your own LLM-calling functions.

The wrapper is chosen once, at decoration time (tenacity's ``retry`` does the same): a coroutine
function gets an ``async def`` wrapper (so ``inspect.iscoroutinefunction`` stays true), an async
generator an async-generator wrapper whose output is guarded like any stream, and anything else a
plain wrapper. The prompt is the argument named ``prompt_arg``, else ``messages``/``prompt``, else
the first ``str`` argument; a rewrite (redaction) replaces that argument before the call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from guardrail.decision import Action, Decision
from guardrail.errors import Blocked
from guardrail.streaming import StreamGuard, aguard_stream

if TYPE_CHECKING:
    from guardrail.engine import Guard

__all__ = ["guarded", "protect"]

F = TypeVar("F", bound=Callable[..., Any])


def _find_prompt(sig: inspect.Signature, bound: inspect.BoundArguments, prompt_arg: str | None) -> str | None:
    if prompt_arg is not None:
        if prompt_arg not in sig.parameters:
            raise TypeError(f"protect: the function has no argument {prompt_arg!r}")
        return prompt_arg
    for name in ("messages", "prompt"):
        if name in bound.arguments:
            return name
    return next((n for n, v in bound.arguments.items() if isinstance(v, str)), None)


def _text_of(result: Any) -> str | None:
    """The text of a function's result: a str, or an OpenAI-style response (choices[0].message.content)."""
    if isinstance(result, str):
        return result
    choices = getattr(result, "choices", None)
    if choices:
        msg = getattr(choices[0], "message", None)
        content = getattr(msg, "content", None)
        if isinstance(content, str):
            return content
    return None


def _with_text(result: Any, text: str, *, blocked: bool = False) -> Any:
    if isinstance(result, str):
        return text
    from guardrail.adapters.shapes import replace_completion_text

    return replace_completion_text(result, text, finish_reason="content_filter" if blocked else None)


class _Call:
    """The pure part shared by the three wrappers: bind arguments, interpret decisions."""

    def __init__(self, guard: Guard, fn: Callable[..., Any], prompt_arg: str | None) -> None:
        self.guard, self.fn, self.prompt_arg = guard, fn, prompt_arg
        self.sig = inspect.signature(fn)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[inspect.BoundArguments, str | None]:
        bound = self.sig.bind(*args, **kwargs)
        return bound, _find_prompt(self.sig, bound, self.prompt_arg)

    def after_input(self, d: Decision, bound: inspect.BoundArguments, name: str) -> Any:
        """None to go on (arguments possibly rewritten), or the refusal to return."""
        if d.action is Action.BLOCK:
            return self.refuse(d)
        if d.action is Action.REWRITE:
            bound.arguments[name] = list(d.messages) if d.messages is not None else d.text
        return None

    def refuse(self, d: Decision) -> str:
        if self.guard.policy.on_block.respond == "raise":
            raise Blocked(d)
        return d.message or self.guard.policy.on_block.message

    def after_output(self, d: Decision, result: Any) -> Any:
        if d.action is Action.BLOCK:
            return _with_text(result, self.refuse(d), blocked=True)
        if d.action is Action.REWRITE:
            return _with_text(result, d.text)
        return result

    def stream_guard(self) -> StreamGuard:
        return StreamGuard.for_policy(self.guard.policy)


def protect(guard: Guard, fn: F | None = None, *, prompt_arg: str | None = None) -> Any:
    """Decorate ``fn`` (or return a decorator when called with options only)."""
    if fn is None:
        return lambda f: protect(guard, f, prompt_arg=prompt_arg)
    call = _Call(guard, fn, prompt_arg)

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[str]:
            bound, name = call.bind(args, kwargs)
            prompt = bound.arguments.get(name) if name else None
            if name is not None:
                refusal = call.after_input(await guard.acheck_input(prompt), bound, name)
                if refusal is not None:
                    yield refusal
                    return
            prompt_text = prompt if isinstance(prompt, str) else None

            async def check(window: str) -> Decision:
                return await guard.acheck_output(window, prompt=prompt_text)

            async def texts() -> AsyncIterator[str]:
                async for piece in fn(*bound.args, **bound.kwargs):
                    yield piece if isinstance(piece, str) else str(piece)

            async for rel in aguard_stream(texts(), call.stream_guard(), check):
                if rel.text:
                    yield rel.text
                if rel.blocked is not None:
                    yield call.refuse(rel.blocked)

        return agen_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            bound, name = call.bind(args, kwargs)
            prompt = bound.arguments.get(name) if name else None
            if name is not None:
                refusal = call.after_input(await guard.acheck_input(prompt), bound, name)
                if refusal is not None:
                    return refusal
            result = await fn(*bound.args, **bound.kwargs)
            text = _text_of(result)
            if text is None:
                return result
            return call.after_output(await guard.acheck_output(text, prompt=prompt), result)

        return async_wrapper

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        bound, name = call.bind(args, kwargs)
        prompt = bound.arguments.get(name) if name else None
        if name is not None:
            refusal = call.after_input(guard.check_input(prompt), bound, name)
            if refusal is not None:
                return refusal
        result = fn(*bound.args, **bound.kwargs)
        text = _text_of(result)
        if text is None:
            return result
        return call.after_output(guard.check_output(text, prompt=prompt), result)

    return sync_wrapper


@overload
def guarded(fn: F, /) -> F: ...
@overload
def guarded(*, policy: Any = None, prompt_arg: str | None = None, guard: Guard | None = None) -> Callable[[F], F]: ...
def guarded(fn: Any = None, /, *, policy: Any = None, prompt_arg: str | None = None, guard: Guard | None = None) -> Any:
    """``@guardrail.guarded`` or ``@guardrail.guarded(policy="strict")``: a Guard made for you."""

    def deco(f: Any) -> Any:
        from guardrail.engine import Guard

        return protect(guard or Guard(policy), f, prompt_arg=prompt_arg)

    return deco(fn) if fn is not None else deco
