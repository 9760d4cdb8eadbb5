"""The LiteLLM proxy's guardrail, ``GuardrailLiteLLM``: configured by its dotted path
``guardrail.adapters.litellm.GuardrailLiteLLM`` (``guardrail.adapters.litellm`` re-exports it; its docstring shows
the config, the modes and what a block does). Each hook drives the adapters' one call core (``_core``) through a
``_ProxyCall``; a request's hooks share one ``guardrail.call.Call`` (one policy snapshot), kept in the request's state
(``proxy_request.ProxyRequests``: under a token in its metadata, not the ``litellm_call_id`` a client picks).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from guardrail.call import Call, headers, summary
from guardrail.decision import Decision
from guardrail.streaming import aclose_quietly

from . import litellm_offline, shapes
from ._core import GuardedCall, acheck_answer, stream_async
from .litellm_proxy_messages import MESSAGES_CALLS, InProxy, ProxyMessages, reads_stream
from .media import PROXY_CALLS, PROXY_PRE_CALL_ONLY, check_proxy_media
from .media import proxy_unchecked as _unchecked
from .proxy_request import ProxyRequests, metadata_of, proxy_context
from .request_shapes import WRITTEN_FIELDS, UncheckedField

litellm_offline()  # before the first import of litellm: no price-map download
import litellm  # noqa: E402  (imported only when this module is)
from litellm.integrations.custom_guardrail import CustomGuardrail  # noqa: E402
from litellm.types.guardrails import GuardrailEventHooks  # noqa: E402

if TYPE_CHECKING:
    from guardrail.engine import Guard

__all__ = ["METADATA_KEY", "GuardrailLiteLLM", "proxy_context"]

_CHAT_CALLS = frozenset({"completion", "acompletion"})
_RESPONSES_CALLS = frozenset({"responses", "aresponses"})
# endpoints that make a model write text in shapes this guardrail does not read: refused, never passed on unchecked
# (/v1/completions, Gemini's generateContent, assistants' threads, realtime); /v1/messages: litellm_proxy_messages
_UNREAD_TEXT_CALLS = frozenset(
    {
        "text_completion", "atext_completion", "generate_content", "agenerate_content", "generate_content_stream",
        "agenerate_content_stream", "add_message", "a_add_message", "run_thread", "arun_thread", "run_thread_stream",
        "arun_thread_stream", "_arealtime", "_aresponses_websocket", "send_message", "asend_message",
        "create_interaction", "acreate_interaction", "llm_passthrough_route", "allm_passthrough_route",
        "pass_through_endpoint",
    }
)  # fmt: skip
METADATA_KEY = "guardrail_decisions"
_log = structlog.get_logger("guardrail")


def _http_error(message: str, d: Decision, guardrail_name: str | None) -> Exception:
    from fastapi import HTTPException

    return HTTPException(
        status_code=400,
        detail={"error": message, "guardrail": guardrail_name, "decision": summary(d)},
        headers=headers([summary(d)]),
    )


class _ProxyCall(InProxy):
    """A call inside the proxy: ``on_block: raise`` is the proxy's HTTP 400, decisions land in the request."""

    def __init__(self, owner: GuardrailLiteLLM, kind: Any, data: dict[str, Any], hook: str) -> None:
        try:
            GuardedCall.__init__(self, owner.call_for(data), kind, "litellm", data)
        except UncheckedField as e:
            raise _unchecked(e, owner.guardrail_name) from e
        self.in_proxy(owner, data, hook)


class GuardrailLiteLLM(CustomGuardrail):
    """A LiteLLM proxy guardrail that runs a guardrail policy (see the module docstring)."""

    def __init__(
        self,
        policy: str | Mapping[str, Any] | None = None,
        fake_rules: Mapping[str, Mapping[str, float]] | None = None,
        guard: Guard | None = None,
        unread_endpoints: str = "refuse",
        **kwargs: Any,
    ) -> None:
        """``unread_endpoints``: what to do with requests to text endpoints this guardrail cannot read
        (``/v1/completions``, Gemini's, ...): ``refuse`` (a 400, the default) or ``pass`` (let them
        through unchecked, each one logged)."""
        if unread_endpoints not in ("refuse", "pass"):
            raise ValueError(f"unread_endpoints must be 'refuse' or 'pass', not {unread_endpoints!r}")
        self.unread_endpoints = unread_endpoints
        self.guard = guard if guard is not None else _make_guard(policy, fake_rules)
        self.requests = ProxyRequests()  # each request's state between its hooks
        self.anthropic = ProxyMessages(self)  # /v1/messages: its requests, answers and streams
        super().__init__(**kwargs)

    def call_for(self, data: Mapping[str, Any]) -> Call:
        """The one Call of a proxy request, shared by its hooks (pre_call, during_call, post_call, the stream): one
        policy snapshot from the prompt's check to the answer's last window (kept in the request's state,
        ``proxy_request.ProxyRequests``, from its input check on)."""
        state = self.requests.get(data)
        call = state.get("call") if state is not None else None
        if call is None:
            name = self.guardrail_name
            call = Call(
                self.guard, context=proxy_context(data) or None,
                raise_as=lambda d, message: _http_error(message, d, name),
            )  # fmt: skip
            if state is not None:
                state["call"] = call
        return call

    def sent_for(self, data: Mapping[str, Any]) -> dict[str, str]:
        """The values pre_call's redaction masked in this request (placeholder -> value): the answer's hooks never
        see them otherwise (the request they get is the masked one). Kept in memory only, never in the request
        (the proxy logs it), in the request's state."""
        state = self.requests.get(data)
        return dict(state.get("sent", {})) if state is not None else {}

    def _remember_sent(self, data: Mapping[str, Any], sent: Mapping[str, str]) -> None:
        state = self.requests.get(data)
        if state is not None and sent:
            state["sent"] = dict(sent)

    # -- bookkeeping -------------------------------------------------------------------------------

    def record(self, data: dict[str, Any], d: Decision, hook: str) -> None:
        """Put the decision in the request metadata (headers, spend logs) and the proxy's guardrail log."""
        entry = {"guardrail": self.guardrail_name, "hook": hook, **d.to_dict(include_text=False), **summary(d)}
        metadata_of(data, create=True).setdefault(METADATA_KEY, []).append(entry)
        status = "success" if d.allowed else "guardrail_intervened"
        with contextlib.suppress(Exception):  # logging must never change the traffic
            self.add_standard_logging_guardrail_information_to_request_data(
                guardrail_json_response=entry,
                request_data=data,
                guardrail_status=status,  # type: ignore[arg-type]
                duration=d.latency_ms / 1000.0,
                end_time=time.time(),
                guardrail_provider="guardrail",
            )

    @staticmethod
    def _kind(call_type: Any) -> str | None:
        value = getattr(call_type, "value", call_type)
        return "chat" if value in _CHAT_CALLS else "responses" if value in _RESPONSES_CALLS else None

    async def _check_input(self, data: dict[str, Any], call_type: Any, hook: str) -> dict[str, Any]:
        value = str(getattr(call_type, "value", call_type))
        if value in MESSAGES_CALLS:
            return await self.anthropic.check_input(data, hook)
        kind = self._kind(call_type)
        if kind is None:
            media = PROXY_CALLS.get(value)
            if media is not None:  # images, speech, video: the prompt is checked (adapters.media)
                self.requests.begin(data, hook)
                await check_proxy_media(self, data, media, value, hook)
            elif value in _UNREAD_TEXT_CALLS:
                self._unread(f"{value} requests (it checks chat completions and the Responses API)", call_type=value)
            return data  # embeddings, files, moderations, transcriptions ...: no prompt asks a model for anything
        self.requests.begin(data, hook)
        gc = _ProxyCall(self, kind, data, hook)
        d = await gc.call.acheck_input(gc.payload)
        self.record(data, d, hook)
        out = gc.call.outcome(d)  # raises the proxy's HTTP 400 under on_block: raise
        if out.stop:
            if hook == "pre_call" and kind == "chat":
                # Answer through the proxy's normal path, with the refusal as the model's answer: the
                # upstream is never called (litellm's mock_response), the x-guardrail-* headers and the
                # other guardrails' hooks run as for any answer, and a stream ends with content_filter.
                data["mock_response"] = shapes.refusal_completion(
                    "litellm", out.text or "", model=data.get("model"), decision_id=d.id
                )
                return data
            # during_call (the model is already running) and the Responses API: the proxy's passthrough
            self.raise_passthrough_exception(
                violation_message=out.text or "", request_data=data, detection_info=summary(d)
            )
        if hook == "pre_call" and out.text is not None:  # during_call: too late to change the request
            gc.apply(out)
            self._remember_sent(data, gc.sent)
            for key in WRITTEN_FIELDS:
                if key in gc.kwargs:
                    data[key] = gc.kwargs[key]
        return data

    # -- the proxy's hooks -------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """pre_call: check the prompt before the model is called; redact it or block. A during_call guardrail runs
        here only for the media endpoints that have no during_call hook (``should_run_guardrail``), and only blocks,
        and for the endpoints it cannot read (pass-through, realtime ...), which it refuses."""
        if not self._event_hook_is_event_type(GuardrailEventHooks.pre_call):
            value = str(getattr(call_type, "value", call_type))
            # and the endpoints it cannot read, refused at the first hook they run (some run no during_call hook)
            pre_call_only = value in PROXY_PRE_CALL_ONLY or value in _UNREAD_TEXT_CALLS
            return await self._check_input(data, call_type, "during_call") if pre_call_only else data
        return await self._check_input(data, call_type, "pre_call")

    def should_run_guardrail(self, data: Any, event_type: GuardrailEventHooks) -> bool:
        """As configured, but a during_call guardrail also runs at pre_call: the proxy's /images/generations and
        /audio/speech call no during_call hook, so their prompt would go unchecked (``async_pre_call_hook``)."""
        pre, during = GuardrailEventHooks.pre_call, GuardrailEventHooks.during_call
        if event_type == GuardrailEventHooks.post_call and self.anthropic.refused(data) is not None:
            return True  # a /v1/messages request it refused: its post_call hooks answer with the refusal
        if event_type == pre and not self._event_hook_is_event_type(pre):
            event_type = during
        return super().should_run_guardrail(data, event_type) is True

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: Any, call_type: Any) -> Any:
        """during_call: check the prompt while the model runs (LiteLLM's parallel mode); only a block
        can still act."""
        await self._check_input(data, call_type, "during_call")
        return None

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        """post_call: check the answer; a block replaces it (refusal) or fails the request (raise)."""
        if self.anthropic.refused(data) is not None or shapes.answer_kind(response) == "message":  # /v1/messages
            return await self.anthropic.check_answer(data, response)
        kind = "chat" if isinstance(getattr(response, "choices", None), list) else None
        if kind is None and isinstance(getattr(response, "output", None), list):
            kind = "responses"
        if kind is None and shapes.answer_kind(response) in ("chat", "message"):  # a dict answer, /v1/messages
            kind = "chat"
        if kind is None:
            model_text = isinstance(response, Mapping) and (
                "choices" in response or "output" in response or isinstance(response.get("content"), list)
            )
            if model_text:  # a pass-through endpoint's answer in a shape it cannot read
                self._unread("this answer's text", answer_keys=sorted(response)[:8])
            return None
        gc = _ProxyCall(self, kind, data, "post_call")
        before = len(gc.call.decisions)
        try:
            return await acheck_answer(gc, response)
        finally:  # recorded even when the block is the proxy's HTTP error
            for d in gc.call.decisions[before:]:
                self.record(data, d, "post_call")

    def _unread(self, what: str, **logged: Any) -> None:
        """Text guardrail cannot read (a request to an endpoint, a stream, an answer): refused with a 400, or,
        under ``unread_endpoints: pass``, let through and logged as ``guardrail.unchecked_endpoint``."""
        if self.unread_endpoints == "pass":
            _log.warning("guardrail.unchecked_endpoint", guardrail=self.guardrail_name, **logged)
            return
        from fastapi import HTTPException

        name = self.guardrail_name or "guardrail"
        why = f"the {name} guardrail cannot read {what}; it is refused, not passed on unchecked"
        raise HTTPException(status_code=400, detail={"error": why, "guardrail": self.guardrail_name})

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """post_call on streams: hold back, check windows, end with a content_filter chunk on a block. Chat
        completion streams, Responses API event streams and /v1/messages SSE (``litellm_proxy_messages``) alike."""
        upstream = response.__aiter__()
        try:
            head = await upstream.__anext__()
        except StopAsyncIteration:
            return
        source = _prepend(head, upstream)
        if self.anthropic.refused(request_data) is not None or reads_stream(head):  # raw SSE: read if /v1/messages'
            items = self.anthropic.stream(source, request_data)
        elif kind := _stream_kind(head, request_data):
            items = stream_async(_ProxyCall(self, kind, request_data, "post_call"), source)
        else:
            items = _passthrough(source)
        first = True
        try:
            async for chunk in items:
                if first:  # the proxy sends its headers with the first chunk: say what is known by now
                    _stream_headers(response, request_data)
                    first = False
                yield chunk
        finally:
            await items.aclose()

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """``x-guardrail-*`` headers: the strongest action, the decision ids, categories, policy.

        The proxy asks before a stream starts, but sends its headers with the stream's first chunk: when
        one of these guardrails checks the stream (post_call), the answer waits for that first chunk
        (``_stream_headers``), so the headers include what the stream's first check decided (a block
        before anything was released reads ``block``, not ``allow``)."""
        if not isinstance(data, dict):
            return None
        if hasattr(response, "__aiter__") and _stream_is_guarded(data):
            return None
        entries = metadata_of(data).get(METADATA_KEY)
        return headers(entries) if entries else None

    async def async_logging_hook(
        self, kwargs: dict[str, Any], result: Any, call_type: str
    ) -> tuple[dict[str, Any], Any]:
        """logging_only: check prompt and answer after the fact, for the audit log; change nothing."""
        if self._kind(call_type) == "chat":
            call, messages, text = self._logged(kwargs, result)
            try:
                await call.acheck_input(messages)
                if text:
                    await call.acheck_output(text, prompt=messages)
            except Exception:  # never let a logging-only check break the request's logging
                pass
        return kwargs, result

    def logging_hook(self, kwargs: dict[str, Any], result: Any, call_type: str) -> tuple[dict[str, Any], Any]:
        if self._kind(call_type) == "chat":
            call, messages, text = self._logged(kwargs, result)
            try:
                call.check_input(messages)
                if text:
                    call.check_output(text, prompt=messages)
            except Exception:
                pass
        return kwargs, result

    def _logged(self, kwargs: Mapping[str, Any], result: Any) -> tuple[Call, Any, str | None]:
        response = (
            kwargs.get("async_complete_streaming_response") or kwargs.get("complete_streaming_response") or result
        )
        texts = shapes.texts_of(response)
        return Call(self.guard), kwargs.get("messages") or [], texts[0] if texts else None


async def _prepend(head: Any, rest: Any) -> AsyncGenerator[Any, None]:
    """``head`` (already read to tell the stream's kind), then the rest of the stream; closes it when done."""
    try:
        yield head
        async for item in rest:
            yield item
    finally:
        await aclose_quietly(rest)


def _stream_kind(head: Any, request_data: Mapping[str, Any]) -> str | None:
    if getattr(head, "choices", None) is not None:
        return "chat"
    if str(getattr(getattr(head, "type", ""), "value", getattr(head, "type", ""))).startswith("response."):
        return "responses"
    return "chat" if "messages" in request_data else "responses" if "input" in request_data else None


async def _passthrough(response: Any) -> AsyncGenerator[Any, None]:
    async for item in response:
        yield item


def _stream_is_guarded(data: dict[str, Any]) -> bool:
    """A GuardrailLiteLLM checks this streamed answer (its post_call iterator hook will run)."""
    for cb in litellm.callbacks:
        if isinstance(cb, GuardrailLiteLLM):
            with contextlib.suppress(Exception):
                if cb.should_run_guardrail(data=data, event_type=GuardrailEventHooks.post_call) is True:
                    return True
    return False


def _stream_headers(response: Any, data: dict[str, Any]) -> None:
    """Put the x-guardrail-* headers where the proxy reads a stream's headers when its first chunk is
    ready (the stream's hidden ``additional_headers``); best effort: a proxy that reads them elsewhere
    keeps the headers it asked for before the stream."""
    entries = metadata_of(data).get(METADATA_KEY)
    hidden = getattr(response, "_hidden_params", None)
    if entries and isinstance(hidden, dict):
        extra = hidden.get("additional_headers")
        if not isinstance(extra, dict):
            extra = hidden["additional_headers"] = {}
        extra.update(headers(entries))


def _make_guard(policy: str | Mapping[str, Any] | None, fake_rules: Mapping[str, Mapping[str, float]] | None) -> Guard:
    from guardrail.engine import Guard

    source = policy if policy is not None else os.environ.get("GUARDRAIL_POLICY")
    if fake_rules:
        from guardrail.testing import FakeClassifier

        return Guard(source, classifiers=FakeClassifier(rules=fake_rules))
    return Guard(source)
