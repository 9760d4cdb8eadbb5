"""``guardrail.wrap(guard, openai.OpenAI())`` and ``guardrail.wrap(guard, openai.AsyncOpenAI())``.

The wrapper has the client's interface: ``chat.completions.create`` and ``responses.create`` are
guarded (input before the call, output after it, streams while they flow); every other attribute
is the client's own (``models``, ``embeddings``, ``files``...), reached through ``__getattr__``.
``with_options``/``copy`` return a guarded client, so a per-call option never drops the guard.

``chat.completions.parse`` and ``responses.parse`` (structured outputs) are guarded too (``structured``). The
guarded resources' other ways of generating text (``stream``, ``with_raw_response``,
``with_streaming_response``, ``responses.compact``; ``chat.completions.retrieve`` / ``list`` / ``update``, which
return stored answers as the model wrote them) would bypass the guard, so they raise ``AttributeError`` instead of
silently answering unguarded (fail closed, DESIGN.md §8); so do the client's own (``_CLIENT_SIDE_DOORS``: legacy
completions, beta, realtime, batches, the generic ``post`` / ``get`` / ``request`` ...).

Media generation (``images.generate`` / ``edit``, ``audio.speech.create``, ``videos.create`` / ``remix`` / ``edit`` /
``extend``) has its prompt checked on the input stage, and a block raises ``guardrail.Blocked`` whatever the policy's
``on_block.respond`` (there is no refusal shape for a file); the media itself is not checked (``media``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guardrail.call import Call

from ._client import GuardedClient
from ._core import GuardedCall, acheck_answer, call_async, call_sync, check_answer
from .conversations import Conversations
from .media import OPENAI_RESOURCES, MediaResource
from .structured import Structured

if TYPE_CHECKING:
    import openai

    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["GuardedAsyncOpenAI", "GuardedOpenAI"]

_SIDE_DOORS = frozenset({"parse", "stream", "with_raw_response", "with_streaming_response", "connect"})
# stored chat completions come back as the model wrote them (a blocked answer's original included, with store=True)
_COMPLETIONS_SIDE_DOORS = _SIDE_DOORS | {"retrieve", "list", "update"}
# compact sends the input to a model and returns what it wrote, unchecked
_RESPONSES_SIDE_DOORS = _SIDE_DOORS | {"compact"}
# the client's own doors to text generation that this wrapper does not guard: the raw and streaming
# response views of the whole client, legacy text completions, beta (assistants, threads, parse), realtime,
# batches and evals (a model answers a file of requests), and the generic HTTP calls (client.post("/chat/completions"))
_CLIENT_SIDE_DOORS = frozenset(
    {
        "with_raw_response", "with_streaming_response", "completions", "beta", "realtime", "conversations",
        "batches", "evals", "post", "get", "put", "patch", "request", "get_api_list", "_request",
    }
)  # fmt: skip


class _Resource:
    """A guarded SDK resource: ``create`` is ours, the rest is the resource's own."""

    _path = ""
    _doors = _SIDE_DOORS

    def __init__(self, target: Any, owner: _Client) -> None:
        self._target, self._owner = target, owner

    def __getattr__(self, name: str) -> Any:
        if name in self._doors:
            raise AttributeError(
                f"{self._path}.{name} is not available on a guardrail-wrapped client (it would bypass the guard); "
                f"use {self._path}.create (stream=True for streaming)"
            )
        return getattr(self._target, name)

    def _call(self, kind: Any, kwargs: dict[str, Any]) -> GuardedCall:
        owner = self._owner
        conversations = owner._conversations if kind == "responses" else None
        call = Call(owner._guard, context=owner._context)
        return GuardedCall(call, kind, "openai", kwargs, restore=owner._restore, conversations=conversations)


class _Completions(_Resource):
    _path = "chat.completions"
    _doors = _COMPLETIONS_SIDE_DOORS

    def create(self, **kwargs: Any) -> Any:
        return call_sync(self._call("chat", kwargs), self._target.create)

    def parse(self, **kwargs: Any) -> Any:
        """Structured outputs, guarded (``structured.Structured``)."""
        gc, parse = _parse_call(self, "chat", kwargs)
        return parse.parsed(call_sync(gc, lambda **kw: parse.decoded(self._target.create(**kw))))


class _AsyncCompletions(_Resource):
    _path = "chat.completions"
    _doors = _COMPLETIONS_SIDE_DOORS

    async def create(self, **kwargs: Any) -> Any:
        return await call_async(self._call("chat", kwargs), self._target.create)

    async def parse(self, **kwargs: Any) -> Any:
        gc, parse = _parse_call(self, "chat", kwargs)

        async def send(**kw: Any) -> Any:
            return parse.decoded(await self._target.create(**kw))

        return parse.parsed(await call_async(gc, send))


def _parse_call(resource: _Resource, kind: Any, kwargs: dict[str, Any]) -> tuple[GuardedCall, Structured]:
    parse = Structured(kind, kwargs)
    gc = resource._call(kind, parse.create_kwargs)
    # with a format, its text is a JSON document the caller parses (restore and the check keep it one)
    gc.json_text = parse.has_format
    return gc, parse


class _Responses(_Resource):
    _path = "responses"
    _doors = _RESPONSES_SIDE_DOORS

    def create(self, **kwargs: Any) -> Any:
        return call_sync(self._call("responses", kwargs), self._target.create)

    def parse(self, **kwargs: Any) -> Any:
        """Structured outputs (``text_format=``), guarded as ``chat.completions.parse`` is."""
        gc, parse = _parse_call(self, "responses", kwargs)
        return parse.parsed(call_sync(gc, lambda **kw: parse.decoded(self._target.create(**kw))))

    def retrieve(self, response_id: str, **kwargs: Any) -> Any:
        """A stored (e.g. background) response, its answer checked like any other (the prompt is not known here,
        so the route follows the answer's text; placeholders are restored when this client sent its request)."""
        gc = self._call("responses", _retrievable(response_id, kwargs))
        return check_answer(gc, self._target.retrieve(response_id, **kwargs))

    def cancel(self, response_id: str, **kwargs: Any) -> Any:
        """A cancelled background response carries what was produced so far: checked like ``retrieve``."""
        return check_answer(
            self._call("responses", _retrievable(response_id)), self._target.cancel(response_id, **kwargs)
        )


class _AsyncResponses(_Resource):
    _path = "responses"
    _doors = _RESPONSES_SIDE_DOORS

    async def create(self, **kwargs: Any) -> Any:
        return await call_async(self._call("responses", kwargs), self._target.create)

    async def parse(self, **kwargs: Any) -> Any:
        gc, parse = _parse_call(self, "responses", kwargs)

        async def send(**kw: Any) -> Any:
            return parse.decoded(await self._target.create(**kw))

        return parse.parsed(await call_async(gc, send))

    async def retrieve(self, response_id: str, **kwargs: Any) -> Any:
        gc = self._call("responses", _retrievable(response_id, kwargs))
        return await acheck_answer(gc, await self._target.retrieve(response_id, **kwargs))

    async def cancel(self, response_id: str, **kwargs: Any) -> Any:
        gc = self._call("responses", _retrievable(response_id))
        return await acheck_answer(gc, await self._target.cancel(response_id, **kwargs))


def _retrievable(response_id: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The request a stored answer is checked under: the conversation it ends (what its own request sent, if this
    client sent it; adapters.conversations), and nothing that is sent."""
    if kwargs and kwargs.get("stream"):
        raise TypeError("guardrail checks a retrieved response whole; retrieve(..., stream=True) is not supported")
    return {"previous_response_id": response_id}


class _Chat:
    def __init__(self, target: Any, completions: _Resource) -> None:
        self._target, self.completions = target, completions

    def __getattr__(self, name: str) -> Any:
        if name in _SIDE_DOORS:
            raise AttributeError(
                f"chat.{name} is not available on a guardrail-wrapped client (it would bypass the guard); "
                "use chat.completions.create"
            )
        return getattr(self._target, name)


class _Client(GuardedClient):
    _completions: type[_Resource] = _Completions
    _responses: type[_Resource] = _Responses
    _async = False  # whether its media resources' methods are coroutines (adapters.media)
    _doors = _CLIENT_SIDE_DOORS
    _use = "chat.completions.create or responses.create"

    def __init__(
        self,
        guard: Guard,
        client: Any,
        *,
        restore: bool = False,
        context: RoutingContext = None,
        conversations: Conversations | None = None,
    ) -> None:
        super().__init__(guard, client, restore=restore, context=context)
        # the placeholders its server-side conversations sent (shared with its with_options / copy clients)
        self._conversations = conversations or Conversations()
        self.chat = _Chat(client.chat, self._completions(client.chat.completions, self))
        self.responses = self._responses(client.responses, self)

    def _like(self, client: Any) -> Any:
        return type(self)(
            self._guard, client, restore=self._restore, context=self._context, conversations=self._conversations
        )

    def _attribute(self, name: str) -> Any:
        if name in OPENAI_RESOURCES:  # images, audio, videos: their prompts are checked (adapters.media)
            methods, children = OPENAI_RESOURCES[name]
            target = getattr(self._client, name)
            return MediaResource(target, name, self._new_call, is_async=self._async, methods=methods, children=children)
        return getattr(self._client, name)

    def _new_call(self) -> Call:
        return Call(self._guard, context=self._context)


class GuardedOpenAI(_Client):
    """``openai.OpenAI`` with guarded ``chat.completions.create`` and ``responses.create`` (and media prompts)."""

    def __init__(
        self,
        guard: Guard,
        client: openai.OpenAI,
        *,
        restore: bool = False,
        context: RoutingContext = None,
        conversations: Conversations | None = None,
    ) -> None:
        super().__init__(guard, client, restore=restore, context=context, conversations=conversations)

    def __enter__(self) -> GuardedOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()


class GuardedAsyncOpenAI(_Client):
    """``openai.AsyncOpenAI`` with guarded ``chat.completions.create`` and ``responses.create`` (and media prompts)."""

    _completions = _AsyncCompletions
    _responses = _AsyncResponses
    _async = True

    def __init__(
        self,
        guard: Guard,
        client: openai.AsyncOpenAI,
        *,
        restore: bool = False,
        context: RoutingContext = None,
        conversations: Conversations | None = None,
    ) -> None:
        super().__init__(guard, client, restore=restore, context=context, conversations=conversations)

    async def __aenter__(self) -> GuardedAsyncOpenAI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()
