"""One guarded request: the call object every integration drives.

The OpenAI and LiteLLM wrappers, the decorator and the LiteLLM proxy plugin all make one ``Call`` per
request. It does three things, once, so no integration has its own copy:

- **pins one policy snapshot** for the whole request (``guard.policy`` is read once, in
  ``__init__``; every check of the request is made against that snapshot), so a hot reload that lands
  while a long stream is being checked never mixes two policies in one answer;
- **makes the checks** (``check_input`` / ``check_output`` and their ``a*`` twins), passing the
  caller's routing ``context`` through, and records every Decision (for headers and metadata);
- **says what a decision means for the caller**: :meth:`Call.outcome` turns a Decision into an
  :class:`Outcome` (go on, or stop with this text and ``finish_reason="content_filter"``), raising
  ``Blocked`` (or the integration's own error, e.g. the proxy's HTTP 400) when the policy says
  ``on_block: raise``; :meth:`Call.reask` says whether a blocked answer is first asked for again
  (``on_block.reask``, driven by ``guardrail.adapters.reask``); :func:`headers` renders the
  ``x-guardrail-*`` response headers.

It also runs the input check around the upstream call (:meth:`Call.send` / :meth:`Call.asend`):
one after the other, or both at once under the policy's ``input.parallel`` (the upstream answer is
handed over only once the check passed; a block cancels the upstream request), so that option means
the same in every integration.

Nothing here knows a client's types: turning an Outcome into a ``ChatCompletion``, a litellm
``ModelResponse`` or a stream chunk is ``guardrail.adapters.shapes``' job. With a Guard that routes
by ``context``, the pinned snapshot is the base policy the route is selected from.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

from guardrail import metrics
from guardrail.decision import Action, Decision, RuleAction
from guardrail.errors import Blocked
from guardrail.streaming import StreamGuard, aclose_quietly, close_quietly, ends_stream

if TYPE_CHECKING:
    from guardrail.engine import Guard
    from guardrail.policy import Policy
    from guardrail.routing import RoutingContext

__all__ = ["CONTENT_FILTER", "Call", "Outcome", "header_value", "headers", "summary"]

CONTENT_FILTER: Final = "content_filter"  # the finish reason of every answer the guard stopped
RaiseAs = Callable[[Decision, str], BaseException]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one decision means for the caller.

    ``stop``: the request or stream ends here, and the caller gets ``text`` (the refusal, or for a
    stream stopped by a replacing rewrite, that rule's message) with ``finish_reason``
    (``content_filter``). Otherwise the call goes on; ``text`` is then the rewritten text when the
    decision rewrote it (``None`` when unchanged).
    """

    decision: Decision
    stop: bool
    text: str | None = None
    finish_reason: str | None = None


class Call:
    """One request under one policy snapshot (see the module docstring).

    ``context``: routing keys (tenant, route ...) passed to the Guard's checks when it accepts them.
    ``raise_as``: builds the exception for ``on_block: raise`` from the decision and the message
    (default ``guardrail.Blocked``); the proxy answers with its HTTP error instead.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        context: RoutingContext = None,
        raise_as: RaiseAs | None = None,
    ) -> None:
        self.guard = guard
        self.context = dict(context) if context else None
        self.policy: Policy = guard.policy  # the one read of the policy for the whole request
        self.decisions: list[Decision] = []
        self.reasks = 0  # the times a blocked answer was asked for again (on_block.reask)
        self._raise_as = raise_as
        self._extra = _check_kwargs(guard, self.policy, self.context)
        # the policy the request's route selects, chosen once (from the context and the request's text) and
        # used for every check, stream window, refusal and redaction of the call: an answer streamed in
        # windows is never judged window by window by different policies. The text's script is fixed in
        # the context passed to every check, so the Guard's own routing picks the same policy each time.
        self._route: Policy | None = None if self.policy.routes else self.policy

    def route(self, payload: Any = None) -> Policy:
        """The call's policy: chosen by ``routes`` on the first check (``payload``: the request's text).
        Without a payload (nothing checked yet) it is the policy the context alone selects, not kept."""
        if self._route is None and payload is None:
            return self.policy.select(self.context, None)
        if self._route is None:
            from guardrail.language import dominant_script
            from guardrail.routing import sample_text

            ctx = dict(self.context or {})
            if "script" not in ctx and "context" in _check_params(type(self.guard)):
                ctx["script"] = dominant_script(sample_text(payload)) or ""
                self._extra = {**self._extra, "context": ctx}
            self._route = self.policy.select(ctx, payload)
        return self._route

    def _kwargs(self, payload: Any) -> dict[str, Any]:
        self.route(payload)
        return self._extra

    # -- checks, all under the pinned snapshot -------------------------------------------------

    def _record(self, d: Decision) -> Decision:
        self.decisions.append(d)
        return d

    def check_input(self, payload: Any) -> Decision:
        return self._record(self.guard.check_input(payload, **self._kwargs(payload)))

    async def acheck_input(self, payload: Any) -> Decision:
        return self._record(await self.guard.acheck_input(payload, **self._kwargs(payload)))

    def check_output(self, text: Any, prompt: Any = None) -> Decision:
        kwargs = self._kwargs(prompt or text)  # no prompt known (None, empty): the answer's text routes
        return self._record(self.guard.check_output(text, prompt, **kwargs))

    async def acheck_output(self, text: Any, prompt: Any = None) -> Decision:
        kwargs = self._kwargs(prompt or text)  # no prompt known (None, empty): the answer's text routes
        return self._record(await self.guard.acheck_output(text, prompt, **kwargs))

    # -- what a decision means -----------------------------------------------------------------

    @property
    def parallel(self) -> bool:
        """The policy runs the input check alongside the upstream call (``input.parallel``)."""
        return bool(self.route().input.parallel)

    def refusal(self, d: Decision) -> str:
        """The text that answers a block; raises instead when the policy says ``on_block: raise``.
        The one place that decides what a block means for the caller."""
        policy = self.route()
        if policy.on_block.respond == "raise":
            raise self.blocked(d)
        return d.message or policy.on_block.message

    def reask(self, d: Decision) -> str | None:
        """The user's turn that asks the model again for an answer ``d`` blocked, while the policy's
        ``on_block.reask.attempts`` allows one more for this call (each one counted: ``reasks``); None when the
        block stands. Only the output check's blocks by its rules are asked again: a prompt is never re-sent, and
        a fail-mode block (a classifier that failed) judged nothing for the model to correct."""
        reask = self.route().on_block.reask
        if d.stage != "output" or not d.blocked or d.error is not None or self.reasks >= reask.attempts:
            return None
        enforced = [f for f in d.findings if not f.shadow]
        why = [f.category for f in enforced if f.action is RuleAction.BLOCK] or [f.category for f in enforced]
        self.reasks += 1
        metrics.observe_reask(d.policy)
        return reask.message.replace("{categories}", ", ".join(dict.fromkeys(why)) or "unsafe")

    def blocked(self, d: Decision) -> BaseException:
        """The exception that answers a block: the integration's own (``raise_as``: the proxy's HTTP 400) or
        ``Blocked``. ``on_block: raise`` raises it; so does a request that has no refusal shape whatever the policy
        says (an image, a sound: ``adapters.media``)."""
        message = d.message or self.route().on_block.message
        return self._raise_as(d, message) if self._raise_as is not None else Blocked(d)

    def outcome(self, d: Decision, *, stream: bool = False) -> Outcome:
        """``d`` for the caller. In a stream (``stream=True``) a rewrite by a replacing rule (not a
        redaction) also stops the stream: its message ends it, since released text cannot be edited. The
        same holds for an answer's actions (tool calls cannot be rewritten, only redacted), which the
        adapters read with ``stream=True``."""
        if d.action is Action.BLOCK:
            return Outcome(d, True, self.refusal(d), CONTENT_FILTER)
        if stream and ends_stream(d):
            return Outcome(d, True, d.message or d.text, CONTENT_FILTER)
        return Outcome(d, False, d.text if d.action is Action.REWRITE else None)

    # -- the input check around the upstream call ---------------------------------------------

    def send(self, payload: Any, send: Callable[[], T], apply: Callable[[Outcome], None]) -> tuple[Outcome, T | None]:
        """Check the prompt ``payload``, then call upstream (``send``) unless the decision stops the call;
        ``apply`` puts a rewrite into the request first. Returns the input outcome and what ``send``
        returned (``None`` when stopped). Under ``input.parallel`` the upstream call starts at once, in a
        thread: its result is handed back only after the check passed; a stop discards it (a stream is
        closed as soon as it arrives, which drops the connection; a whole answer cannot be interrupted
        in a thread and is dropped when it arrives) and a rewrite discards it and sends again, rewritten."""
        self.route(payload)
        if not self.parallel:
            out = self.outcome(self.check_input(payload))
            if out.stop:
                return out, None
            apply(out)
            return out, send()
        future = _in_thread(send)
        try:
            out = self.outcome(self.check_input(payload))
        except BaseException:
            _discard(future)
            raise
        if out.stop or out.text is not None:
            _discard(future)
            if out.stop:
                return out, None
            apply(out)
            return out, send()
        return out, future.result()

    async def asend(
        self, payload: Any, send: Callable[[], Awaitable[T]], apply: Callable[[Outcome], None]
    ) -> tuple[Outcome, T | None]:
        """:meth:`send` for async code: under ``input.parallel`` the upstream call is a task that a stop
        or a rewrite cancels (an HTTP client closes the connection), so the request is abandoned mid-way."""
        self.route(payload)
        if not self.parallel:
            out = self.outcome(await self.acheck_input(payload))
            if out.stop:
                return out, None
            apply(out)
            return out, await send()
        task = asyncio.ensure_future(send())
        try:
            out = self.outcome(await self.acheck_input(payload))
        except BaseException:
            await _acancel(task)
            raise
        if out.stop or out.text is not None:
            await _acancel(task)
            if out.stop:
                return out, None
            apply(out)
            return out, await send()
        return out, await task

    def stream_guard(self) -> StreamGuard:
        """The stream windows and output redaction of the pinned policy."""
        return StreamGuard.for_policy(self.route())

    def headers(self) -> dict[str, str]:
        """``x-guardrail-*`` headers for the decisions of this call so far."""
        return headers(summary(d) for d in self.decisions)


def _in_thread(fn: Callable[[], T]) -> cf.Future[T]:
    """Run ``fn`` in a daemon thread of its own (with the caller's contextvars); a pool could queue the
    upstream call behind others and so add the very latency parallel mode is meant to hide."""
    future: cf.Future[T] = cf.Future()
    ctx = contextvars.copy_context()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(ctx.run(fn))
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name="guardrail-upstream", daemon=True).start()
    return future


def _discard(future: cf.Future[Any]) -> None:
    """Drop an upstream result nobody will read: close it (a stream drops its connection) on arrival."""

    def close(f: cf.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is None:
            with contextlib.suppress(Exception):
                close_quietly(f.result())

    future.add_done_callback(close)


async def _acancel(task: asyncio.Future[Any]) -> None:
    """Cancel an upstream task and wait until it has let go of its connection; close what it returned
    if it finished first."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is None:
        with contextlib.suppress(Exception):
            await aclose_quietly(task.result())


_PARAMS: dict[type, frozenset[str]] = {}


def _check_params(cls: type[Guard]) -> frozenset[str]:
    """The keyword parameters of ``cls.check_input`` (read once per Guard class, not per request)."""
    params = _PARAMS.get(cls)
    if params is None:
        params = _PARAMS[cls] = frozenset(inspect.signature(cls.check_input).parameters)
    return params


def _check_kwargs(guard: Guard, policy: Policy, context: RoutingContext) -> dict[str, Any]:
    """The keyword arguments the Guard's checks take: the pinned policy, and ``context`` where the
    Guard routes by it (checked once per call against ``check_input``'s signature)."""
    params = _check_params(type(guard))
    out: dict[str, Any] = {}
    if "policy" in params:
        out["policy"] = policy
    if context is not None:
        if "context" not in params:
            raise TypeError("this Guard does not route by context; pass context=None")
        out["context"] = context
    return out


# ------------------------------------------------------------------------------------ headers


def summary(d: Decision) -> dict[str, Any]:
    """What a client may see of a decision: no scores, no text (they would help tune an attack)."""
    return {
        "id": d.id,
        "action": d.action.value,
        "stage": d.stage,
        "categories": [f.category for f in d.findings if not f.shadow],
        "policy": d.policy,
    }


def headers(summaries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The ``x-guardrail-*`` response headers of one request's decisions (each a :func:`summary`):
    the strongest action, every decision id, the enforced categories and the policies. Empty when
    there was no decision."""
    entries = list(summaries)
    if not entries:
        return {}
    actions = [Action(e["action"]) for e in entries]
    categories = sorted({c for e in entries for c in e["categories"]})
    return {
        "x-guardrail-action": max(actions, key=lambda a: a.strength).value,
        "x-guardrail-decision-ids": ",".join(e["id"] for e in entries),
        "x-guardrail-categories": ",".join(categories),
        "x-guardrail-policy": ",".join(sorted({header_value(e["policy"]) for e in entries})),
    }


# printable ASCII and the inner space go as they are; "%" and "," are encoded so a list splits on "," and unquotes
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%,")


def header_value(value: str) -> str:
    """``value`` (a policy name) made safe for an HTTP header, percent-encoded as UTF-8 where it is not printable
    ASCII, so ``urllib.parse.unquote`` gives it back. A header carries latin-1 without control characters, and no
    whitespace at either end: a name with a newline (YAML's ``name: >`` ends with one) made the HTTP server drop
    every response that named it, and a name in another script ("策略") failed with a 500."""
    body = value.strip(" ")
    lead = len(value) - len(value.lstrip(" ")) if body else len(value)
    trail = len(value) - lead - len(body)
    return "%20" * lead + quote(body, safe=_HEADER_SAFE, errors="surrogatepass") + "%20" * trail
