"""``guardrail.wrap(guard, anthropic.Anthropic())`` and ``guardrail.wrap(guard, anthropic.AsyncAnthropic())``.

The wrapper has the client's interface: ``messages.create`` is guarded as the OpenAI wrapper guards
``chat.completions.create`` (the same ``_core`` drivers around one ``guardrail.call.Call``): the prompt before the
call (``anthropic_request`` reads the messages, the ``system`` prompt and tool results as the check's chat
messages), the answer after it (its text and its ``tool_use`` inputs, masked where they sit), a stream while it flows
(``anthropic_stream``, on the one streaming implementation). A block answers with a ``Message`` stopped as a
refusal (or its stream events), or raises ``guardrail.Blocked`` under ``on_block: raise``.

Every other attribute is the client's own (``models``, ``files`` ...), and
``with_options`` / ``copy`` / ``with_middleware`` return a guarded client. The doors to generation this wrapper does
not guard raise ``AttributeError`` rather than answer unguarded (fail closed, DESIGN.md §8): ``messages.stream`` and
``messages.parse`` (the SDK's helpers: use ``create(stream=True)``), ``messages.count_tokens`` (it sends the
prompt unredacted), the raw and streaming response views,
``messages.batches`` (a model answers a file of requests), and the client's ``beta``, legacy ``completions`` and
generic HTTP calls (``_CLIENT_SIDE_DOORS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guardrail.call import Call, Outcome
from guardrail.decision import Action, Decision
from guardrail.streaming import StreamGuard

from ._client import GuardedClient
from ._core import GuardedCall, call_async, call_sync
from .answer_text import _get, _put
from .anthropic_request import MessagesRequest
from .anthropic_shapes import REFUSAL, refusal_events, refusal_message
from .anthropic_stream import MessagesStream

if TYPE_CHECKING:
    import anthropic

    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["GuardedAnthropic", "GuardedAsyncAnthropic", "MessagesCall"]

# messages' other ways to generate text: the SDK's stream and parse helpers, the raw and streaming response views
# (client.messages.with_raw_response.create), and batches (a model answers a file of requests, unchecked)
# count_tokens sends the messages to the provider as written: the personal data a redaction would mask goes out
_MESSAGES_SIDE_DOORS = frozenset(
    {"stream", "parse", "with_raw_response", "with_streaming_response", "batches", "count_tokens"}
)
# the client's own doors to generation that this wrapper does not guard: its raw and streaming response views, beta
# (beta.messages ...), legacy text completions, and the generic HTTP calls (client.post("/v1/messages"))
_CLIENT_SIDE_DOORS = frozenset(
    {
        "with_raw_response", "with_streaming_response", "beta", "completions", "post", "get", "put", "patch",
        "delete", "request", "get_api_list", "_request",
    }
)  # fmt: skip


class MessagesCall(GuardedCall):
    """One ``messages.create``: the request read and rewritten as a Messages request, the refusal a ``Message`` and
    the stream its events. What it shares with a chat call (the answer's checks, masking and restoring, which read
    a ``Message`` as ``adapters.answer_text`` does) is ``GuardedCall``'s."""

    def __init__(self, call: Call, kwargs: Mapping[str, Any], *, restore: bool = False) -> None:
        self.request = MessagesRequest(kwargs)  # a request it cannot read whole is refused here, before sending
        super().__init__(call, "chat", "openai", self.request.kwargs, restore=restore)
        self.payload, self._sources = self.request.payload, []
        self.prompt = self.payload
        # structured outputs (output_config.format): the answer's text is a JSON document the caller parses, restored
        # value by value and stopped rather than handed on unparseable (as the OpenAI adapter's response_format)
        self.json_text = _get(self.kwargs.get("output_config"), "format") is not None

    def on_output(
        self, result: Any, decisions: list[Decision | None], actions: list[Decision | None] | None = None
    ) -> Any:
        """The answer as the decisions say; one guardrail stopped carries no ``stop_sequence`` (the upstream answer's,
        which the refusal did not stop at), whether it is the SDK's ``Message`` or a dict of one (the proxy's)."""
        out = super().on_output(result, decisions, actions)
        if out is not result and _get(out, "stop_reason") == REFUSAL and _get(out, "stop_sequence") is not None:
            _put(out, "stop_sequence", None)
        return out

    def apply(self, out: Outcome) -> None:
        """Put an input rewrite into the request (and remember the redactions for ``restore``)."""
        d = out.decision
        if d.action is Action.REWRITE and d.messages is not None:
            messages = list(d.messages)
            self.kwargs.update(self.request.rewritten(messages))
            self.prompt = messages
            self.sent.update(d.redactions)

    def refusal(self, out: Outcome) -> Any:
        message, ident = out.text or "", out.decision.id
        if self.stream:
            return refusal_events(message, model=self.model, decision_id=ident)
        return refusal_message(message, model=self.model, decision_id=ident)

    def stream_state(self, sg: StreamGuard) -> MessagesStream:  # type: ignore[override]
        """Messages stream events (the drivers ask only for ``take``, ``emit`` and ``with_actions``)."""
        return MessagesStream(self)


class _Messages:
    """``client.messages`` guarded: ``create`` is ours (in the subclasses), the rest is the resource's own."""

    def __init__(self, target: Any, owner: _Client) -> None:
        self._target, self._owner = target, owner

    def __getattr__(self, name: str) -> Any:
        if name in _MESSAGES_SIDE_DOORS:
            raise AttributeError(
                f"messages.{name} is not available on a guardrail-wrapped client (it would bypass the guard); use "
                "messages.create (stream=True for streaming), or .unwrapped to bypass it deliberately"
            )
        return getattr(self._target, name)

    def _call(self, kwargs: dict[str, Any]) -> MessagesCall:
        owner = self._owner
        return MessagesCall(Call(owner._guard, context=owner._context), kwargs, restore=owner._restore)


class _SyncMessages(_Messages):
    def create(self, **kwargs: Any) -> Any:
        return call_sync(self._call(kwargs), self._target.create)


class _AsyncMessages(_Messages):
    async def create(self, **kwargs: Any) -> Any:
        return await call_async(self._call(kwargs), self._target.create)


class _Client(GuardedClient):
    _messages: type[_Messages] = _SyncMessages
    _doors = _CLIENT_SIDE_DOORS
    _use = "messages.create"

    def __init__(self, guard: Guard, client: Any, *, restore: bool = False, context: RoutingContext = None) -> None:
        super().__init__(guard, client, restore=restore, context=context)
        self.messages = self._messages(client.messages, self)

    def with_middleware(self, *middleware: Any) -> Any:
        return self._like(self._client.with_middleware(*middleware))


class GuardedAnthropic(_Client):
    """``anthropic.Anthropic`` with a guarded ``messages.create``."""

    def __init__(
        self,
        guard: Guard,
        client: anthropic.Anthropic,
        *,
        restore: bool = False,
        context: RoutingContext = None,
    ) -> None:
        super().__init__(guard, client, restore=restore, context=context)

    def __enter__(self) -> GuardedAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()


class GuardedAsyncAnthropic(_Client):
    """``anthropic.AsyncAnthropic`` with a guarded ``messages.create``."""

    _messages = _AsyncMessages

    def __init__(
        self,
        guard: Guard,
        client: anthropic.AsyncAnthropic,
        *,
        restore: bool = False,
        context: RoutingContext = None,
    ) -> None:
        super().__init__(guard, client, restore=restore, context=context)

    async def __aenter__(self) -> GuardedAsyncAnthropic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()
