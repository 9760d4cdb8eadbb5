"""LiteLLM: ``guardrail.wrap(guard, litellm)`` for the SDK, and ``GuardrailLiteLLM`` for the LiteLLM proxy.

SDK::

    llm = guardrail.wrap(guard, litellm)            # completion / acompletion guarded, streams too
    llm.completion(model="gpt-4o-mini", messages=[...])
    llm.image_generation(prompt="...", model="gpt-image-1")   # media: the prompt is checked (adapters.media)

Proxy (``config.yaml``; the proxy imports the class by its dotted path)::

    guardrails:
      - guardrail_name: guardrail-input
        litellm_params:
          guardrail: guardrail.adapters.litellm.GuardrailLiteLLM
          mode: pre_call          # pre_call | during_call | post_call | logging_only, or a list
          default_on: true
          policy: /etc/guardrail/support.yaml   # or a bundled name; else $GUARDRAIL_POLICY; else default

Modes: ``pre_call`` checks the prompt before the model is called and can redact it; ``during_call``
checks it while the model runs and can only block (the request has already gone); ``post_call``
checks answers, streamed ones as they flow; ``logging_only`` checks both after the fact, for the
audit log, and never changes anything. Each hook drives a ``guardrail.call.Call`` (one policy
snapshot; what a block means). A block follows the policy's ``on_block``: ``refusal`` answers 200
with ``finish_reason: content_filter`` and the policy message, ``raise`` answers HTTP 400
``{"error": {"message": ...}}`` like the proxy's own guardrails. A ``pre_call`` refusal becomes the
model's answer through litellm's ``mock_response`` (the provider is never called, and the proxy's
normal path adds the headers and ends a stream with ``content_filter``); a ``during_call`` refusal
uses the proxy's passthrough exception (the model is already running), whose answer carries no
headers. An image, speech or video request's prompt is checked by ``pre_call`` (which redacts) and
``during_call``; its block is always the HTTP 400, a file having no refusal shape (``adapters.media``).
Decisions go into the request metadata (``guardrail_decisions``, and the proxy's standard guardrail
logging) and into ``x-guardrail-*`` response headers; a stream's headers are set when its first
chunk is ready, so they include the stream's first check.

Test hook (documented, small): ``fake_rules: {regex: {category: score}}`` in ``litellm_params``
uses ``guardrail.testing.FakeClassifier`` instead of the model, so a proxy can run without one.

This module imports litellm (it subclasses ``CustomGuardrail``); ``import guardrail`` never
imports it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from guardrail.call import Call

from . import litellm_offline
from ._core import GuardedCall, call_async, call_sync
from .media import litellm_function

litellm_offline()  # before the first import of litellm: no price-map download

if TYPE_CHECKING:
    import types

    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["GuardedLiteLLM", "GuardrailLiteLLM", "proxy_context"]

_POSITIONAL = ("model", "messages")

# litellm's other ways of making a model write text (or of reading back what one wrote), which this wrapper does not
# guard: they raise AttributeError rather than answer unchecked, as the openai wrapper's side doors do. Functions ...
_SIDE_DOORS = frozenset(
    {
        "text_completion", "atext_completion", "responses", "aresponses", "responses_with_retries",
        "aresponses_with_retries", "aresponses_api_with_mcp", "compact_responses", "acompact_responses",
        "get_responses", "aget_responses", "cancel_responses", "acancel_responses",
        "completion_with_retries", "acompletion_with_retries", "completion_with_fallbacks",
        "async_completion_with_fallbacks", "batch_completion", "batch_completion_models",
        "batch_completion_models_all_responses", "adapter_completion", "aadapter_completion",
        "aadapter_generate_content", "anthropic_messages", "anthropic_messages_handler", "config_completion",
        "create_run", "acreate_run", "run_thread", "arun_thread", "run_thread_stream", "arun_thread_stream",
        "add_message", "a_add_message", "get_messages", "aget_messages", "create_batch", "acreate_batch",
        "_arealtime", "_aresponses_websocket", "arealtime_calls", "llm_passthrough_route", "allm_passthrough_route",
        "run_tool_loop", "arun_tool_loop", "maybe_run_chat_completion_agentic_loop", "Router",
        # Google GenAI's generateContent (litellm exports agenerate_content; the rest may follow it up)
        "generate_content", "agenerate_content", "generate_content_stream", "agenerate_content_stream",
        "decisions", "adecisions", "systemone", "asystemone",  # a model answers questions about the input
        "query", "aquery",  # RAG: a completion over retrieved documents
        # ... and the submodules that hold them (litellm.main.completion, litellm.anthropic.messages, ...)
        "main", "litellm", "llms", "router", "anthropic", "anthropic_interface", "assistants", "batches",
        "chat_completions", "completion_extras", "google_genai", "interactions", "litellm_agent", "messages",
        "passthrough", "realtime_api", "tool_loop", "evals", "rag",
        "images", "videos",  # litellm.images.main.image_generation ...: the media functions, unguarded
        # the openai SDK's clients, which litellm re-exports: a client built from them is not wrapped
        "OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI",
        # old provider handlers litellm still exports, each with a completion() of its own
        "oobabooga", "petals_handler", "vllm_handler", "vertex_ai_non_gemini", "aleph_alpha",
    }
)  # fmt: skip


# provider handlers litellm exports (replicate_chat_completion, OpenAIChatCompletion, openai_chat_completions ...): each
# has a completion(..., messages, ...) that reaches its provider, so every name of that shape is a door, present or
# added in a later litellm
_HANDLER = re.compile(
    r"(?:ChatCompletion|TextCompletion|ChatHandler|ImageGeneration|ImageEdit)$|_chat_completion$"
    r"|_(?:chat|text)_completions$|llm_(?:aio)?http_handler$"
)  # an image handler's class (BlackForestLabsImageGeneration ...) sends a prompt as a chat handler sends messages


# the base classes of litellm's provider handlers (each subclass has a completion(..., messages) of its own)
_HANDLER_BASES = frozenset(
    {"BaseLLM", "BaseLLMHTTPHandler", "BaseLLMAIOHTTPHandler", "BaseAWSLLM", "VertexBase", "SagemakerLLM"}
)


_OPEN = frozenset({"CustomLLM"})  # the base class an application subclasses for its own provider


def _is_handler(value: Any) -> bool:
    """Whether ``value`` is a provider handler, or a handler class: by any class in its MRO (a subclass instance such
    as openai_audio_transcriptions is an OpenAIChatCompletion)."""
    try:  # a proxy may say it is a class and have no MRO: then its own type's is read
        mro = getattr(value, "__mro__", None) if isinstance(value, type) else None
        mro = mro or type(value).__mro__
        return any(c.__name__ in _HANDLER_BASES or _HANDLER.search(c.__name__) for c in mro)
    except Exception:  # an attribute that cannot be read as a class is no handler
        return False


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if len(args) > len(_POSITIONAL):
        raise TypeError(f"completion() takes at most {len(_POSITIONAL)} positional arguments (model, messages)")
    for name, value in zip(_POSITIONAL, args, strict=False):
        if name in kwargs:
            raise TypeError(f"completion() got multiple values for argument {name!r}")
        kwargs[name] = value
    return kwargs


class GuardedLiteLLM:
    """The ``litellm`` module with ``completion`` / ``acompletion`` guarded; everything else is litellm's, but for
    its other doors to text generation (``_SIDE_DOORS``: text completions, the Responses API, retries, batches ...),
    which raise ``AttributeError``, and its media functions (``image_generation``, ``image_edit``, ``speech``,
    ``video_generation`` / ``remix`` / ``edit`` / ``extension`` and their async twins), whose prompt is checked and
    whose block raises ``guardrail.Blocked`` whatever ``on_block.respond`` says (``media``).

    The adapter adds no network step of its own (the one upstream call is litellm's, with litellm's
    own ``num_retries``), so it adds no retries either.
    """

    def __init__(
        self,
        guard: Guard,
        module: types.ModuleType,
        *,
        restore: bool = False,
        context: RoutingContext = None,
    ) -> None:
        self._guard, self._module, self._restore, self._context = guard, module, restore, context

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> GuardedCall:
        return GuardedCall(self._new_call(), "chat", "litellm", _bind(args, kwargs), restore=self._restore)

    def _new_call(self) -> Call:
        return Call(self._guard, context=self._context)

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        return call_sync(self._call(args, kwargs), self._module.completion)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        return await call_async(self._call(args, kwargs), self._module.acompletion)

    @property
    def guard(self) -> Guard:
        return self._guard

    @property
    def unwrapped(self) -> types.ModuleType:
        return self._module

    def __getattr__(self, name: str) -> Any:
        # a door is refused by its name (whether or not this litellm has it), or by its class's name
        # (openai_chat_completions is an OpenAIChatCompletion)
        media = litellm_function(self._module, name, self._new_call)
        if media is not None:
            return media
        door = name in _SIDE_DOORS or _HANDLER.search(name) is not None
        value = None if door else getattr(self._module, name)  # None is also a setting's value (litellm.api_key)
        if door or (name not in _OPEN and _is_handler(value)):
            raise AttributeError(
                f"litellm.{name} is not available on a guardrail-wrapped litellm (it would bypass the guard); use "
                "completion / acompletion (stream=True for streaming), or .unwrapped to bypass it deliberately"
            )
        return value

    def __repr__(self) -> str:
        return f"<guarded litellm policy={self._guard.policy.name!r}>"


# ------------------------------------------------------------------------------------------ proxy


# the proxy's guardrail lives in its own module; its dotted path in proxy configs stays this one
from .litellm_proxy import GuardrailLiteLLM, proxy_context  # noqa: E402
