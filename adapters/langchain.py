"""LangChain: ``guardrail.wrap(guard, chat_model)`` for any ``langchain_core`` ``BaseChatModel``.

    guarded = guardrail.wrap(guard, ChatOpenAI(model="gpt-4o-mini"))
    chain = prompt | guarded | StrOutputParser()        # invoke, ainvoke, stream, astream, batch, abatch

The wrapper is a ``Runnable`` with the chat model's interface, as NeMo Guardrails' ``RunnableRails`` is: every
request is one ``guardrail.call.Call`` driven by the same drivers as the openai adapter (``_core.call_sync`` /
``call_async``), its LangChain types translated by ``langchain_shapes``. So the input is checked as chat messages
(a ``SystemMessage`` is the system prompt, a ``ToolMessage`` a tool's result), a redaction rewrites the messages
where they sit, a block answers an ``AIMessage`` with the policy's refusal (``finish_reason: content_filter``) or
raises ``guardrail.Blocked``; the answer's text and tool-call arguments are checked and masked, ``restore=True``
puts the user's values back, and streams are checked while they flow by the one hold-back machinery.

Fail closed (DESIGN.md §8): ``with_config``, ``bind`` and composition wrap this runnable, so they keep the guard;
``with_fallbacks`` guards its fallback models too (refusing one it cannot wrap), ``with_retry`` never retries a block;
``bind_tools`` and ``with_structured_output`` return guarded runnables (or raise ``NotImplementedError`` for a shape
they cannot guard); every other attribute of the model (its ``client``, ``generate``, ``predict`` ...) raises
``AttributeError``: ``.unwrapped`` reaches the model deliberately. Callbacks given in the config see this runnable's
guarded input and output, not the model's raw tokens: the model is called with no callbacks (an event stream would
otherwise carry the unchecked answer to the caller), so no ``on_chat_model_*`` event comes from it.

This module imports ``langchain_core``; ``import guardrail`` never does (``guardrail.adapters.wrap`` looks it up in
``sys.modules``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import BaseChatModel, BaseLanguageModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableSequence

from guardrail.call import Call
from guardrail.errors import Blocked
from guardrail.streaming import aclose_quietly, close_quietly

from ._core import GuardedCall, call_async, call_sync
from .langchain_shapes import (
    answer_of,
    checked_message,
    completion_of,
    messages_of,
    reparsed,
    request_messages,
    rewritten_messages,
)
from .langchain_stream import LCOrigin, chunk_of, message_chunk, whole_chunk
from .request_shapes import WRITTEN_FIELDS, refuse_extra_body

if TYPE_CHECKING:
    from langchain_core.runnables.fallbacks import RunnableWithFallbacks
    from langchain_core.runnables.retry import ExponentialJitterParams
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["GuardedChatModel"]

# config keys the model is called without: its callbacks would see the raw answer (see the module docstring)
_UNGUARDED_CONFIG = ("callbacks", "run_id", "run_name")


def _refuse_fields(kwargs: Mapping[str, Any], where: str) -> None:
    """A call argument the model sends in place of, or beside, the checked messages (``messages=``, a predicted
    output ...) would reach it unchecked: refused, as the openai adapter refuses them inside ``extra_body``."""
    refuse_extra_body(kwargs)
    found = sorted(k for k in kwargs if k in WRITTEN_FIELDS)
    if found:
        raise TypeError(f"guardrail does not check {where} {found[0]!r} (text the model reads): it refuses the call")


class _Request:
    """One call of the guarded model: the messages as checked and sent, and the answer as the check left it."""

    def __init__(self, owner: GuardedChatModel, value: Any, kwargs: Mapping[str, Any], *, stream: bool) -> None:
        self.owner = owner
        self.messages = messages_of(value)
        self.sent = request_messages(self.messages)
        self.kwargs = {**owner._bound, **kwargs}
        _refuse_fields(self.kwargs, "the call argument")
        self.name = str(getattr(owner._model, "model_name", None) or type(owner._model).__name__)
        call = Call(owner._guard, context=owner._context)
        request = {"model": self.name, "messages": self.sent, "stream": stream}
        self.gc = GuardedCall(call, "chat", "openai", request, restore=owner._restore)
        # a structured output's text is a JSON document its parser reads: masked and restored value by value
        self.gc.json_text = "response_format" in self.kwargs
        self.answer: AIMessage | None = None
        self.before: ChatCompletion | None = None
        self.blocks = False  # the model streams content blocks rather than strings
        self.parsed: type[Any] | None = None  # the type of a streamed structured output's parsed value
        self.said = ""  # the streamed text released so far

    def to_send(self) -> list[BaseMessage]:
        return rewritten_messages(self.messages, self.sent, self.gc.kwargs["messages"])

    def read(self, answer: Any) -> ChatCompletion:
        if not isinstance(answer, AIMessage):
            raise TypeError(f"guardrail guards chat models that answer an AIMessage, not a {type(answer).__name__}")
        self.answer, self.before = answer, completion_of(answer, self.name)
        return self.before.model_copy(deep=True)

    def result(self, checked: Any) -> AIMessage:
        """The caller's answer: the refusal of a blocked prompt, or the model's answer as the check left it."""
        if self.answer is None or self.before is None:
            return answer_of(checked)
        return checked_message(self.answer, checked, self.before)

    def chunk(self, chunk: Any) -> ChatCompletionChunk:
        if isinstance(chunk, AIMessage) and not isinstance(chunk, AIMessageChunk):
            chunk = whole_chunk(chunk)  # a model that does not stream (disable_streaming) answers whole
        if not isinstance(chunk, AIMessageChunk):
            raise TypeError(f"guardrail guards streams of AIMessageChunk, not of {type(chunk).__name__}")
        if not isinstance(chunk.content, str):
            self.blocks = True
        if (parsed := chunk.additional_kwargs.get("parsed")) is not None:
            self.parsed = type(parsed)
        return chunk_of(chunk, self.name)

    def release(self, chunk: Any) -> AIMessageChunk:
        origin = getattr(chunk, LCOrigin, None) or {}
        out = message_chunk(chunk, self.blocks or bool(origin.get("blocks")))
        self.said += out.text
        if origin.get("parsed") and self.parsed is not None:  # read again from the text the caller was given
            out.additional_kwargs["parsed"] = reparsed(self.parsed, self.said)
        return out


def _inner_config(config: RunnableConfig | None) -> RunnableConfig:
    """The config the model is called with: without the caller's callbacks. They must be replaced, not left out:
    LangChain fills a config's missing keys from the run's context (``ensure_config`` reads the child config this
    runnable's run set), which carries this run's callbacks, so a model called without them would stream its raw
    tokens to ``astream_events``, ``astream_log`` and every handler all the same."""
    inner = {k: v for k, v in (config or {}).items() if k not in _UNGUARDED_CONFIG}
    return cast("RunnableConfig", {**inner, "callbacks": []})


def _reaches_model(runnable: Runnable[Any, Any]) -> bool:
    """Whether ``runnable``'s graph holds a language model that is not guarded (a guarded one is a node of its own)."""
    try:
        nodes = runnable.get_graph().nodes.values()
    except Exception:  # a graph LangChain cannot draw: what it reaches is unknown, so it is refused (fail closed)
        return True
    return any(isinstance(node.data, BaseLanguageModel) for node in nodes)


def _only(inputs: Iterator[Any]) -> Any:
    items = list(inputs)
    if len(items) != 1:
        raise TypeError("guardrail guards one chat model input at a time")
    return items[0]


async def _aonly(inputs: AsyncIterator[Any]) -> Any:
    return _only(iter([item async for item in inputs]))


class GuardedChatModel(Runnable[LanguageModelInput, BaseMessage]):
    """A LangChain chat model, guarded (see the module docstring). ``guardrail.wrap(guard, model)`` makes one."""

    name: str | None = None

    def __init__(
        self,
        guard: Guard,
        model: BaseChatModel,
        *,
        restore: bool = False,
        context: RoutingContext = None,
        bound: Mapping[str, Any] | None = None,
    ) -> None:
        self._guard, self._model, self._restore, self._context = guard, model, restore, context
        self._bound = dict(bound or {})  # what bind_tools / with_structured_output bound to the model's calls
        _refuse_fields(self._bound, "the bound argument")
        for field in ("model_kwargs", "extra_body"):  # sent with every request, beside the checked messages
            value = getattr(model, field, None)
            if isinstance(value, Mapping):
                _refuse_fields(value if field == "model_kwargs" else {"extra_body": value}, f"the model's {field}")

    @property
    def guard(self) -> Guard:
        return self._guard

    @property
    def unwrapped(self) -> BaseChatModel:
        """The model underneath, unguarded (for what you deliberately want to bypass)."""
        return self._model

    @property
    def InputType(self) -> Any:
        return self._model.InputType

    @property
    def OutputType(self) -> Any:
        return self._model.OutputType

    # -- the Runnable interface: batch, abatch, transform and composition come from Runnable -----------------

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        async def one() -> AsyncIterator[LanguageModelInput]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    # -- the drivers ------------------------------------------------------------------------------------------

    def _invoke(
        self, input: LanguageModelInput, run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> AIMessage:
        req = _Request(self, input, kwargs, stream=False)

        def send(**_: Any) -> Any:
            return req.read(self._model.invoke(req.to_send(), _inner_config(config), **req.kwargs))

        return req.result(call_sync(req.gc, send))

    async def _ainvoke(
        self,
        input: LanguageModelInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AIMessage:
        req = _Request(self, input, kwargs, stream=False)

        async def send(**_: Any) -> Any:
            return req.read(await self._model.ainvoke(req.to_send(), _inner_config(config), **req.kwargs))

        return req.result(await call_async(req.gc, send))

    def _stream(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        req = _Request(self, _only(inputs), kwargs, stream=True)

        def upstream() -> Iterator[Any]:
            inner = self._model.stream(req.to_send(), _inner_config(config), **req.kwargs)
            try:
                for chunk in inner:
                    yield req.chunk(chunk)
            finally:  # a block closes this stream: the model's own is closed with it (its connection dropped)
                close_quietly(inner)

        stream = call_sync(req.gc, lambda **_: upstream())
        try:
            for chunk in stream:
                yield req.release(chunk)
        finally:
            stream.close()  # the caller stopped early: the model's stream is closed now, not at garbage collection

    async def _astream(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        req = _Request(self, await _aonly(inputs), kwargs, stream=True)

        async def upstream() -> AsyncIterator[Any]:
            inner = self._model.astream(req.to_send(), _inner_config(config), **req.kwargs)
            try:
                async for chunk in inner:
                    yield req.chunk(chunk)
            finally:
                await aclose_quietly(inner)

        async def send(**_: Any) -> Any:
            return upstream()

        stream = await call_async(req.gc, send)
        try:
            async for chunk in stream:
                yield req.release(chunk)
        finally:
            await stream.close()

    # -- the model's own ways to a configured model: guarded, or refused --------------------------------------

    def bind_tools(self, tools: Any, **kwargs: Any) -> GuardedChatModel:
        """The model with tools bound, guarded: the tool calls it answers are checked and masked like its text."""
        return self._rebound(self._model.bind_tools(tools, **kwargs), "bind_tools")

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable[Any, Any]:
        """The model's structured output, guarded: its answer is checked (a JSON text masked value by value) before
        the model's own parser reads it; a blocked answer is one the parser refuses. ``include_raw=True`` is not
        supported (its raw message would bypass the parser's view of the check)."""
        if include_raw:
            raise NotImplementedError("guardrail does not guard with_structured_output(include_raw=True)")
        chain = self._model.with_structured_output(schema, **kwargs)
        if isinstance(chain, RunnableSequence) and isinstance(chain.first, RunnableBinding):
            rest = [*chain.middle, chain.last]
            guarded = self._rebound(chain.first, "with_structured_output")
            return guarded | (rest[0] if len(rest) == 1 else RunnableSequence(*rest))
        raise NotImplementedError(
            f"guardrail cannot guard {type(self._model).__name__}.with_structured_output (an unknown shape); "
            "use bind_tools and parse the guarded answer, or .unwrapped to bypass the guard deliberately"
        )

    # -- the Runnable's own ways to a configured runnable that would reach a model past the guard ----------------

    def with_fallbacks(
        self,
        fallbacks: Sequence[Runnable[LanguageModelInput, BaseMessage]],
        *,
        exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,),
        exception_key: str | None = None,
    ) -> RunnableWithFallbacks[LanguageModelInput, BaseMessage]:
        """Fallbacks guarded by this guard: a fallback chat model (or one with tools bound) is wrapped as this one is,
        so a failed or blocked call never reaches the next model unchecked; a fallback that reaches a model some
        other way (``prompt | model``) is refused, ``NotImplementedError``: wrap that model yourself."""
        guarded = [self._guarded_fallback(f) for f in fallbacks]
        return super().with_fallbacks(guarded, exceptions_to_handle=exceptions_to_handle, exception_key=exception_key)

    def _guarded_fallback(self, runnable: Any) -> Any:
        if isinstance(runnable, BaseChatModel):
            return GuardedChatModel(self._guard, runnable, restore=self._restore, context=self._context)
        if isinstance(runnable, RunnableBinding) and isinstance(runnable.bound, BaseChatModel):
            model = GuardedChatModel(self._guard, runnable.bound, restore=self._restore, context=self._context)
            return model._rebound(runnable, "with_fallbacks")
        if not isinstance(runnable, GuardedChatModel) and _reaches_model(runnable):
            raise NotImplementedError(
                f"guardrail cannot guard the fallback {runnable!r}: it may call a language model the guard does "
                "not wrap; pass the chat model itself, or wrap it with guardrail.wrap"
            )
        return runnable

    def with_retry(
        self,
        *,
        retry_if_exception_type: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (Exception,),
        wait_exponential_jitter: bool = True,
        exponential_jitter_params: ExponentialJitterParams | None = None,
        stop_after_attempt: int = 3,
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        """Retries, but never of a block (``on_block: raise``): a block is the policy's decision, not a failure;
        asked again, the same prompt is blocked again, after the waits (and a blocked answer is not asked for
        again until one passes)."""
        kinds = retry_if_exception_type

        def retried(error: BaseException) -> bool:
            if isinstance(error, Blocked):
                return False
            return isinstance(error, kinds) if isinstance(kinds, tuple) else bool(kinds(error))

        return super().with_retry(
            retry_if_exception_type=retried,
            wait_exponential_jitter=wait_exponential_jitter,
            exponential_jitter_params=exponential_jitter_params,
            stop_after_attempt=stop_after_attempt,
        )

    def _rebound(self, binding: Any, what: str) -> GuardedChatModel:
        """A guarded model with the arguments ``binding`` (the model's own ``bind``) adds to every call."""
        plain = (
            isinstance(binding, RunnableBinding)
            and binding.bound is self._model
            and not binding.config
            and not binding.config_factories
            and binding.custom_input_type is None
            and binding.custom_output_type is None
        )
        if not plain:
            raise NotImplementedError(
                f"guardrail cannot guard what {type(self._model).__name__}.{what} returned ({type(binding).__name__})"
            )
        bound = {**self._bound, **binding.kwargs}
        return GuardedChatModel(self._guard, self._model, restore=self._restore, context=self._context, bound=bound)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"{name} is not available on a guardrail-guarded chat model (it could bypass the guard): use invoke, "
            "ainvoke, stream, astream, batch, abatch, bind_tools or with_structured_output, or .unwrapped to reach "
            "the model deliberately, unguarded"
        )

    def __repr__(self) -> str:
        return f"<guarded {type(self._model).__name__} policy={self._guard.policy.name!r}>"
