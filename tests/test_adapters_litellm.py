"""guardrail.wrap(guard, litellm): real litellm calls (to the stub server, and with mock_response), sync and async;
and the GuardrailLiteLLM proxy hooks called directly (the real proxy runs in test_proxy.py)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import litellm
import pytest
from conftest import FAKE_RULES, REFUSAL, make_guard, make_policy
from fastapi import HTTPException
from guardrail.adapters.litellm import GuardedLiteLLM, GuardrailLiteLLM
from litellm.exceptions import ModifyResponseException
from litellm.types.utils import ModelResponse, ModelResponseStream
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard
from guardrail.testing import DecisionLog, FakeClassifier

litellm.suppress_debug_info = True
HARMFUL = "Sure. First you take the parts, then you build the bomb like this, and then you wait for it."
LEAD = "Here is a calm opening line about the weather and the sea. "  # released before the harmful part


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def complete(llm: Any, mode: str, *args: Any, **kwargs: Any) -> Any:
    if mode == "sync":
        return llm.completion(*args, **kwargs)
    return await llm.acompletion(*args, **kwargs)


async def collect(stream: Any) -> list[Any]:
    """Guarded streams are either sync (GuardedStream) or async (AsyncGuardedStream), never both."""
    if hasattr(stream, "__aiter__"):
        return [c async for c in stream]
    return list(stream)


def stub_kw(stub: StubServer) -> dict[str, Any]:
    return {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-test"}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ------------------------------------------------------------------------------------------ SDK


async def test_allowed_call_reaches_the_provider(guard: Guard, stub: StubServer, mode: str) -> None:
    llm = guardrail.wrap(guard, litellm)
    assert isinstance(llm, GuardedLiteLLM)
    resp = await complete(llm, mode, messages=user("hello"), **stub_kw(stub))
    assert isinstance(resp, ModelResponse)
    assert resp.choices[0].message.content == "You said: hello"
    assert len(stub.completions()) == 1


async def test_blocked_call_never_reaches_the_provider(guard: Guard, stub: StubServer, mode: str) -> None:
    resp = await complete(guardrail.wrap(guard, litellm), mode, messages=user("a bomb"), **stub_kw(stub))
    assert isinstance(resp, ModelResponse)
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content == REFUSAL
    assert stub.completions() == []


async def test_blocked_call_raises_per_policy(raising_guard: Guard, stub: StubServer, mode: str) -> None:
    with pytest.raises(Blocked):
        await complete(guardrail.wrap(raising_guard, litellm), mode, messages=user("a bomb"), **stub_kw(stub))
    assert stub.completions() == []


async def test_positional_model_and_messages(guard: Guard, stub: StubServer, mode: str) -> None:
    kw = stub_kw(stub)
    model = kw.pop("model")
    resp = await complete(guardrail.wrap(guard, litellm), mode, model, user("mail bob@example.com"), **kw)
    assert stub.completions()[0].body["messages"] == user("mail <EMAIL_1>")
    assert resp.choices[0].message.content == "You said: mail <EMAIL_1>"


async def test_restore(guard: Guard, stub: StubServer, mode: str) -> None:
    resp = await complete(
        guardrail.wrap(guard, litellm, restore=True), mode, messages=user("mail bob@example.com"), **stub_kw(stub)
    )
    assert resp.choices[0].message.content == "You said: mail bob@example.com"


async def test_restore_and_redaction_reach_tool_call_arguments(guard: Guard, stub: StubServer, mode: str) -> None:
    call = {"id": "t", "type": "function",
            "function": {"name": "send", "arguments": '{"to": "<EMAIL_1>", "cc": "leak@corp.example"}'}}  # fmt: skip
    stub.raw = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}  # fmt: skip
    llm = guardrail.wrap(guard, litellm, restore=True)
    resp = await complete(llm, mode, messages=user("send it to bob@example.com"), **stub_kw(stub))
    args = json.loads(resp.choices[0].message.tool_calls[0].function.arguments)
    assert args["to"] == "bob@example.com" and args["cc"].startswith("<EMAIL_")


async def test_a_streams_tool_call_arguments_are_restored_and_redacted(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return (None, {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})  # fmt: skip

    first = {"index": 0, "id": "t", "type": "function", "function": {"name": "send", "arguments": '{"to": "<EMA'}}
    rest = {"index": 0, "function": {"arguments": 'IL_1>", "cc": "leak@co'}}
    last = {"index": 0, "function": {"arguments": 'rp.example"}'}}
    stub.raw = [chunk({"role": "assistant", "content": "On it. "}), chunk({"tool_calls": [first]}),
                chunk({"tool_calls": [rest]}), chunk({"tool_calls": [last]}), chunk({}, "tool_calls"),
                (None, "[DONE]")]  # fmt: skip
    llm = guardrail.wrap(guard, litellm, restore=True)
    chunks = await collect(
        await complete(llm, mode, messages=user("send it to bob@example.com"), stream=True, **stub_kw(stub))
    )
    args = "".join(
        tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []
    )
    assert json.loads(args)["to"] == "bob@example.com" and json.loads(args)["cc"].startswith("<EMAIL_")


def _spoken(audio: Any) -> tuple[str, str]:
    get = audio.get if isinstance(audio, dict) else lambda k: getattr(audio, k, None)
    return get("transcript") or "", get("data") or ""


async def test_an_audio_answers_sound_goes_when_its_transcript_is_masked(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    """Through litellm's own response and stream types: the masked transcript's sound would still say the address."""
    audio = {"id": "a1", "transcript": "Write to leak@corp.example today.", "data": "QUFB", "expires_at": 0}
    stub.raw = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": None, "audio": audio}}]}  # fmt: skip
    llm = guardrail.wrap(guard, litellm)
    resp = await complete(llm, mode, messages=user("who?"), **stub_kw(stub))
    transcript, sound = _spoken(resp.choices[0].message.audio)
    assert transcript.startswith("Write to <EMAIL_") and "leak" not in transcript and sound == ""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return (None, {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})  # fmt: skip

    pieces = [
        {"id": "a1", "data": "QUFB", "transcript": "Write to leak@co"},
        {"data": "QkJC", "transcript": "rp.example."},
    ]
    stub.raw = [
        chunk({"role": "assistant"}),
        *(chunk({"audio": a}) for a in pieces),
        chunk({}, "stop"),
        (None, "[DONE]"),
    ]
    chunks = await collect(await complete(llm, mode, messages=user("who?"), stream=True, **stub_kw(stub)))
    heard = [_spoken(a) for c in chunks if c.choices and (a := getattr(c.choices[0].delta, "audio", None))]
    assert heard, "litellm dropped the audio deltas"
    transcript = "".join(t for t, _ in heard)
    assert transcript.startswith("Write to <EMAIL_") and "leak" not in transcript
    assert "".join(d for _, d in heard) == ""


async def test_harmful_answer_is_refused(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.reply = HARMFUL
    resp = await complete(guardrail.wrap(guard, litellm), mode, messages=user("story"), **stub_kw(stub))
    assert resp.choices[0].message.content == REFUSAL
    assert resp.choices[0].finish_reason == "content_filter"


async def test_stream_allowed_and_blocked(guard: Guard, stub: StubServer, mode: str) -> None:
    llm = guardrail.wrap(guard, litellm)
    stub.reply = "A calm answer about tea, kettles and the right temperature for green leaves."
    chunks = await collect(await complete(llm, mode, messages=user("tea?"), stream=True, **stub_kw(stub)))
    assert all(isinstance(c, ModelResponseStream) for c in chunks)
    assert text_of(chunks) == stub.reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]

    stub.reply = LEAD + HARMFUL
    chunks = await collect(await complete(llm, mode, messages=user("story"), stream=True, **stub_kw(stub)))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices[0].delta.content == "\n\n" + REFUSAL
    assert "bomb" not in text_of(chunks[:-1])


async def test_blocked_prompt_with_stream(guard: Guard, stub: StubServer, mode: str) -> None:
    chunks = await collect(
        await complete(guardrail.wrap(guard, litellm), mode, messages=user("bomb"), stream=True, **stub_kw(stub))
    )
    assert len(chunks) == 1 and isinstance(chunks[0], ModelResponseStream)
    assert chunks[0].choices[0].finish_reason == "content_filter"
    assert stub.completions() == []


async def test_mock_response_streaming(guard: Guard, mode: str) -> None:
    llm = guardrail.wrap(guard, litellm)
    safe = "This is a mocked answer that is long enough to pass the hold-back window of the policy."
    kw: dict[str, Any] = {"model": "openai/mock", "mock_response": safe}
    resp = await complete(llm, mode, messages=user("hi"), **kw)
    assert resp.choices[0].message.content == safe
    chunks = await collect(await complete(llm, mode, messages=user("hi"), stream=True, **kw))
    assert text_of(chunks) == safe
    kw["mock_response"] = HARMFUL
    chunks = await collect(await complete(llm, mode, messages=user("hi"), stream=True, **kw))
    assert chunks[-1].choices[0].finish_reason == "content_filter"


async def test_a_field_the_check_reads_is_refused_inside_extra_body(guard: Guard, stub: StubServer, mode: str) -> None:
    # litellm sends extra_body merged over the named arguments, after the check
    llm = guardrail.wrap(guard, litellm)
    with pytest.raises(TypeError, match="extra_body carries 'messages'"):
        await complete(llm, mode, messages=user("hello"), extra_body={"messages": user("a bomb")}, **stub_kw(stub))
    assert stub.completions() == []


async def test_a_user_continue_message_is_checked_as_the_users_turn(guard: Guard, stub: StubServer, mode: str) -> None:
    # litellm inserts it as the user's turn after a conversation that ends with the assistant's
    llm = guardrail.wrap(guard, litellm)
    turns = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    continued = {"role": "user", "content": "now the bomb"}
    resp = await complete(
        llm, mode, messages=turns, ensure_alternating_roles=True, user_continue_message=continued, **stub_kw(stub)
    )
    assert resp.choices[0].finish_reason == "content_filter" and stub.completions() == []
    continued = {"role": "user", "content": "mail bob@example.com"}
    await complete(
        llm, mode, messages=turns, ensure_alternating_roles=True, user_continue_message=continued, **stub_kw(stub)
    )
    sent = json.dumps(stub.completions()[0].body)
    assert "bob@example.com" not in sent


async def test_proxy_pre_call_reads_a_bodys_user_continue_message_and_refuses_its_extra_body_fields() -> None:
    gr = proxy_guardrail("pre_call")
    turns = [{"role": "assistant", "content": "hi"}]
    data = {**request("x"), "messages": turns, "user_continue_message": {"role": "user", "content": "a bomb"}}
    out = await gr.async_pre_call_hook(None, None, data, "acompletion")
    assert out["mock_response"].choices[0].finish_reason == "content_filter"
    data = {**request("x"), "messages": turns, "user_continue_message": {"role": "user", "content": "bob@example.com"}}
    out = await gr.async_pre_call_hook(None, None, data, "acompletion")
    assert out["user_continue_message"] == {"role": "user", "content": "<EMAIL_1>"} and out["messages"] == turns
    with pytest.raises(HTTPException) as http:
        await gr.async_pre_call_hook(
            None, None, request("hello", extra_body={"messages": user("a bomb")}), "completion"
        )
    assert http.value.status_code == 400 and "extra_body carries 'messages'" in http.value.detail["error"]


def test_other_attributes_are_litellm_s(guard: Guard) -> None:
    llm = guardrail.wrap(guard, litellm)
    assert llm.ModelResponse is litellm.ModelResponse
    assert llm.unwrapped is litellm
    assert llm.api_key is litellm.api_key  # a setting may be None: it is read, not taken for a closed door
    assert llm.CustomLLM is litellm.CustomLLM  # the base class an application subclasses for its own provider
    assert inspect.iscoroutinefunction(llm.acompletion)
    assert not inspect.iscoroutinefunction(llm.completion)


@pytest.mark.parametrize(
    "name",
    ["text_completion", "atext_completion", "responses", "aresponses", "completion_with_retries",
     "acompletion_with_retries", "batch_completion", "anthropic_messages", "Router", "main", "agenerate_content",
     "decisions", "adecisions", "query", "aquery", "rag", "vllm_handler",
     # provider handlers, each with a completion(..., messages, ...) of its own: closed by the shape of their name
     "replicate_chat_completion", "nlp_cloud_chat_completion", "OpenAIChatCompletion", "AnthropicChatCompletion",
     "AzureChatCompletion", "OpenAITextCompletion", "OpenAILikeChatHandler", "WatsonXChatHandler",
     # ... and litellm's ready-made instances of them, by their class's name
     "openai_chat_completions", "azure_chat_completions", "anthropic_chat_completions", "openai_text_completions",
     # ... their subclasses' instances and the base handlers, by any class they derive from
     "openai_audio_transcriptions", "azure_ai_embedding", "BaseLLMHTTPHandler", "base_llm_http_handler",
     "sagemaker_llm", "VertexLLM", "BedrockConverseLLM",
     # the openai SDK's clients litellm re-exports: llm.OpenAI() built a client no guard wraps
     "OpenAI", "AsyncOpenAI"],
)  # fmt: skip
def test_litellms_other_doors_to_text_generation_are_closed(guard: Guard, stub: StubServer, name: str) -> None:
    # llm.text_completion(prompt=...), llm.responses(input=...), llm.batch_completion(...) reached the model unchecked
    llm = guardrail.wrap(guard, litellm)
    with pytest.raises(AttributeError, match="bypass the guard"):
        getattr(llm, name)
    assert getattr(llm.unwrapped, name) is not None  # still there, deliberately, underneath
    assert llm.embedding is litellm.embedding and llm.completion_cost is litellm.completion_cost
    assert stub.completions() == []


def test_google_genai_generate_content_is_closed_sync_and_async(guard: Guard) -> None:
    # litellm.agenerate_content(model=..., contents=...) reached the model unchecked: only its submodule was closed.
    # Its sync and streaming twins are closed too, whether or not this litellm exports them at the top level.
    llm = guardrail.wrap(guard, litellm)
    for name in ("generate_content", "agenerate_content", "generate_content_stream", "agenerate_content_stream"):
        with pytest.raises(AttributeError, match="bypass the guard"):
            getattr(llm, name)


async def test_sync_and_async_give_identical_decisions(stub: StubServer) -> None:
    prompts = ["hello", "a bomb", "mail bob@example.com", "I want to hurt myself"]
    logs = {"sync": DecisionLog(), "async": DecisionLog()}
    for mode, log in logs.items():
        llm = guardrail.wrap(make_guard(log=log), litellm)
        for p in prompts:
            await complete(llm, mode, messages=user(p), **stub_kw(stub))
    assert [(d.stage, d.action, d.text) for d in logs["sync"]] == [(d.stage, d.action, d.text) for d in logs["async"]]


# ---------------------------------------------------------------------------------- proxy hooks


def proxy_guardrail(mode: str | list[str], *, respond: str = "refusal") -> GuardrailLiteLLM:
    return GuardrailLiteLLM(guard=make_guard(respond=respond), guardrail_name="gr", event_hook=mode, default_on=True)


def request(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "stub", "messages": user(text), "metadata": {}, **extra}


async def test_pre_call_redacts_and_records_the_decision() -> None:
    gr = proxy_guardrail("pre_call")
    data = request("mail bob@example.com")
    out = await gr.async_pre_call_hook(None, None, data, "acompletion")
    assert out["messages"] == user("mail <EMAIL_1>")
    [entry] = data["metadata"]["guardrail_decisions"]
    assert entry["action"] == "rewrite" and entry["hook"] == "pre_call" and entry["guardrail"] == "gr"
    headers = await gr.async_post_call_response_headers_hook(data, None, None)
    assert headers is not None
    assert headers["x-guardrail-action"] == "rewrite"
    assert headers["x-guardrail-categories"] == "pii"
    assert headers["x-guardrail-decision-ids"] == entry["id"]


async def test_pre_call_block_uses_the_proxy_conventions() -> None:
    """A refusal becomes the model's answer (mock_response: the upstream is never called, the proxy's
    own path adds the headers and ends a stream with content_filter); ``raise`` is the proxy's 400."""
    data = await proxy_guardrail("pre_call").async_pre_call_hook(None, None, request("a bomb"), "acompletion")
    refusal = data["mock_response"]
    assert isinstance(refusal, ModelResponse)
    assert (refusal.choices[0].message.content, refusal.choices[0].finish_reason) == (REFUSAL, "content_filter")
    headers = await proxy_guardrail("pre_call").async_post_call_response_headers_hook(data, None, None)
    assert headers is not None and headers["x-guardrail-action"] == "block"
    with pytest.raises(ModifyResponseException) as passthrough:  # during_call: the model is already running
        await proxy_guardrail("during_call").async_moderation_hook(request("a bomb"), None, "acompletion")
    assert passthrough.value.message == REFUSAL
    with pytest.raises(HTTPException) as http:
        await proxy_guardrail("pre_call", respond="raise").async_pre_call_hook(
            None, None, request("a bomb"), "completion"
        )
    assert http.value.status_code == 400
    assert http.value.detail["error"] == REFUSAL
    assert http.value.detail["decision"]["action"] == "block"
    assert http.value.headers is not None and http.value.headers["x-guardrail-action"] == "block"


async def test_during_call_can_only_block() -> None:
    gr = proxy_guardrail("during_call", respond="raise")
    data = request("mail bob@example.com")
    assert await gr.async_moderation_hook(data, None, "acompletion") is None
    assert data["messages"] == user("mail bob@example.com")  # too late to rewrite: recorded only
    assert data["metadata"]["guardrail_decisions"][0]["action"] == "rewrite"
    with pytest.raises(HTTPException):
        await gr.async_moderation_hook(request("bomb"), None, "acompletion")


async def test_other_call_types_pass_untouched() -> None:
    data = {"model": "e", "input": "bomb"}
    assert await proxy_guardrail("pre_call").async_pre_call_hook(None, None, data, "aembedding") == data


async def test_post_call_replaces_a_harmful_answer() -> None:
    gr = proxy_guardrail("post_call")
    response = litellm.ModelResponse(
        choices=[litellm.Choices(message=litellm.Message(content=HARMFUL), finish_reason="stop")]
    )
    data = request("story")
    out = await gr.async_post_call_success_hook(data, None, response)
    assert out.choices[0].message.content == REFUSAL
    assert out.choices[0].finish_reason == "content_filter"
    assert response.choices[0].message.content == HARMFUL  # the upstream object is not changed
    with pytest.raises(HTTPException):
        await proxy_guardrail("post_call", respond="raise").async_post_call_success_hook(request("x"), None, response)


async def test_post_call_streaming_iterator_hook() -> None:
    gr = proxy_guardrail("post_call")

    async def upstream() -> Any:
        for i in range(0, len(HARMFUL), 5):
            yield ModelResponseStream(choices=[{"index": 0, "delta": {"content": HARMFUL[i : i + 5]}}])

    data = request("story")
    chunks = [c async for c in gr.async_post_call_streaming_iterator_hook(None, upstream(), data)]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "bomb" not in text_of(chunks[:-1])
    assert data["metadata"]["guardrail_decisions"][-1]["action"] == "block"


async def test_the_proxys_answer_keeps_the_users_placeholder_for_the_users_own_value() -> None:
    """The answer's hooks see only the masked request, so bob's address written out by the model was masked anew as
    <EMAIL_2> (a second person to the client, with <EMAIL_1> never used), whole and streamed; a request the proxy
    did not redact, or another request, gets nothing of it."""
    gr = proxy_guardrail(["pre_call", "post_call"])
    data = request("mail bob@example.com", litellm_call_id="call-bob")
    await gr.async_pre_call_hook(None, None, data, "acompletion")
    assert data["messages"] == user("mail <EMAIL_1>")
    said = "I wrote to bob@example.com and carol@x.io."
    answer = litellm.ModelResponse(choices=[litellm.Choices(message=litellm.Message(content=said))])
    out = await gr.async_post_call_success_hook(data, None, answer)
    assert out.choices[0].message.content == "I wrote to <EMAIL_1> and <EMAIL_2>."

    async def upstream() -> Any:
        for i in range(0, len(said), 4):
            yield ModelResponseStream(choices=[{"index": 0, "delta": {"content": said[i : i + 4]}}])

    chunks = [c async for c in gr.async_post_call_streaming_iterator_hook(None, upstream(), data)]
    assert text_of(chunks) == "I wrote to <EMAIL_1> and <EMAIL_2>."
    other = request("hello", litellm_call_id="call-other")
    out = await gr.async_post_call_success_hook(other, None, answer)
    assert out.choices[0].message.content == "I wrote to <EMAIL_1> and <EMAIL_2>."  # bob is no one's here
    assert out.choices[0].message.content.count("<EMAIL_1>") == 1


async def test_logging_only_checks_and_changes_nothing() -> None:
    log = DecisionLog()
    gr = GuardrailLiteLLM(guard=make_guard(log=log), guardrail_name="gr", event_hook="logging_only")
    response = litellm.ModelResponse(choices=[litellm.Choices(message=litellm.Message(content=HARMFUL))])
    kwargs = {"messages": user("a bomb")}
    assert await gr.async_logging_hook(kwargs, response, "acompletion") == (kwargs, response)
    assert gr.logging_hook(kwargs, response, "completion") == (kwargs, response)
    assert [(d.stage, d.action.value) for d in log] == [("input", "block"), ("output", "block")] * 2


def test_guardrail_from_litellm_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the proxy does with a config entry: dotted path, litellm_params as keyword arguments."""
    policy = {
        "version": 1,
        "name": "from-params",
        "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]},
    }
    gr = GuardrailLiteLLM(
        policy=policy,
        fake_rules={"bomb": {"unsafe": 0.99}},
        guardrail_name="g",
        event_hook="pre_call",
        default_on=True,
        unrelated_param=True,
    )
    assert gr.guard.policy.name == "from-params"
    assert gr.guard.check_input("bomb").blocked
    monkeypatch.setenv("GUARDRAIL_POLICY", "permissive")
    assert GuardrailLiteLLM(fake_rules={"x": {}}, guardrail_name="g").guard.policy.name == "permissive"


@pytest.mark.parametrize(("preset", "expected"), [(None, "True"), ("False", "False")])
def test_adapters_keep_litellm_offline_unless_told_otherwise(preset: str | None, expected: str) -> None:
    """Importing the LiteLLM adapter sets LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported (no
    price-map download at import); a value the user set is kept."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    if preset is not None:
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = preset
    init = str(ROOT / "adapters" / "__init__.py")
    code = (
        f"import sys, os; sys.path[:0] = [{str(ROOT)!r}]; "
        "import importlib.util, guardrail; "
        f"spec = importlib.util.spec_from_file_location('guardrail.adapters', {init!r}, "
        f"submodule_search_locations=[{str(ROOT / 'adapters')!r}]); "
        "m = importlib.util.module_from_spec(spec); sys.modules['guardrail.adapters'] = m; "
        "spec.loader.exec_module(m); "
        "assert 'litellm' not in sys.modules; import guardrail.adapters.litellm; "
        "print(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == expected


async def test_parallel_block_cancels_the_upstream_call(stub: StubServer) -> None:
    """input.parallel through real litellm: acompletion starts at once, the block cancels it mid-flight."""
    policy = make_policy()
    policy["input"]["parallel"] = True
    policy["timeout_ms"] = 30_000

    class AfterUpstream(FakeClassifier):
        def predict(self, texts: Any, *args: Any, **kwargs: Any) -> list[dict[str, float]]:
            stub.received.wait(10)  # the upstream call is in flight while the prompt is checked
            return super().predict(texts, *args, **kwargs)

    await litellm.acompletion(messages=user("hi"), **stub_kw(stub))  # litellm's lazy imports happen now
    stub.reset()
    stub.hold = 1
    llm = guardrail.wrap(Guard(policy, classifiers=AfterUpstream(rules=FAKE_RULES)), litellm)
    resp = await llm.acompletion(messages=user("a bomb"), **stub_kw(stub))
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == (REFUSAL, "content_filter")
    assert len(stub.completions()) == 1
    assert stub.gone_event.wait(10) and stub.gone == ["/v1/chat/completions"]


async def test_proxy_hooks_of_one_request_share_one_policy_snapshot(tmp_path: Any) -> None:
    """pre_call and post_call of one proxy request (one litellm_call_id) run under the policy the request
    started with, even when a hot reload lands between them; the next request gets the new policy."""
    import yaml

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**make_policy(), "name": "before"}))
    guard = Guard(path, classifiers=FakeClassifier(rules=FAKE_RULES), reload=True, reload_interval=0.0)
    gr = GuardrailLiteLLM(guard=guard, guardrail_name="gr", event_hook=["pre_call", "post_call"], default_on=True)
    data = request("story", litellm_call_id="call-1")
    await gr.async_pre_call_hook(None, None, data, "acompletion")
    path.write_text(yaml.safe_dump({**make_policy(), "name": "after"}))
    assert guard.policy.name == "after"
    answer = litellm.ModelResponse(choices=[litellm.Choices(message=litellm.Message(content="A calm answer."))])
    await gr.async_post_call_success_hook(data, None, answer)
    assert [e["policy"] for e in data["metadata"]["guardrail_decisions"]] == ["before", "before"]
    other = request("story", litellm_call_id="call-2")
    await gr.async_pre_call_hook(None, None, other, "acompletion")
    assert [e["policy"] for e in other["metadata"]["guardrail_decisions"]] == ["after"]


async def test_the_proxy_guardrail_refuses_text_endpoints_it_cannot_read_unless_told_to_pass_them() -> None:
    from fastapi import HTTPException
    from guardrail.adapters.litellm import GuardrailLiteLLM

    # /v1/completions (a text completion's prompt) is not read; /v1/messages is, since session 24 (test_proxy_messages)
    data = {"model": "m", "prompt": "how to build a bomb"}
    refusing = GuardrailLiteLLM(policy="default", guardrail_name="g", event_hook="pre_call")
    with pytest.raises(HTTPException, match="refused"):
        await refusing.async_pre_call_hook(None, None, dict(data), "text_completion")
    passing = GuardrailLiteLLM(policy="default", guardrail_name="g", event_hook="pre_call", unread_endpoints="pass")
    assert await passing.async_pre_call_hook(None, None, dict(data), "text_completion") == data
    with pytest.raises(ValueError, match="unread_endpoints"):
        GuardrailLiteLLM(policy="default", unread_endpoints="maybe")


async def test_a_raw_stream_the_proxy_guardrail_cannot_read_is_refused_or_passed_at_once() -> None:
    from fastapi import HTTPException
    from guardrail.adapters.litellm import GuardrailLiteLLM

    async def raw() -> Any:
        yield b"event: content_block_delta\ndata: {}\n\n"
        yield b"event: message_stop\ndata: {}\n\n"

    data = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    refusing = GuardrailLiteLLM(policy="default", guardrail_name="g", event_hook="post_call")
    with pytest.raises(HTTPException, match="refused"):
        [c async for c in refusing.async_post_call_streaming_iterator_hook(None, raw(), dict(data))]
    passing = GuardrailLiteLLM(policy="default", guardrail_name="g", event_hook="post_call", unread_endpoints="pass")
    got = [c async for c in passing.async_post_call_streaming_iterator_hook(None, raw(), dict(data))]
    assert got == [b"event: content_block_delta\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n"]


async def test_post_call_reads_dict_answers_and_refuses_the_ones_it_cannot_read() -> None:
    # a pass-through endpoint hands the hook the upstream's answer as a dict
    gr = proxy_guardrail("post_call")
    chat = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure, the bomb goes like this."}}]}
    out = await gr.async_post_call_success_hook(request("a story"), None, chat)
    assert out["choices"][0]["message"]["content"] == REFUSAL and out["choices"][0]["finish_reason"] == "content_filter"
    unread = {"object": "response", "output": [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}]}
    with pytest.raises(HTTPException) as http:
        await gr.async_post_call_success_hook(request("a story"), None, unread)
    assert http.value.status_code == 400 and "cannot read" in str(http.value.detail)
    passing = GuardrailLiteLLM(guard=make_guard(), guardrail_name="gr", event_hook="post_call", unread_endpoints="pass")
    assert await passing.async_post_call_success_hook(request("a story"), None, unread) is None
    assert await gr.async_post_call_success_hook(request("a story"), None, {"object": "list", "data": []}) is None


def test_an_attribute_that_only_says_it_is_a_class_is_read_not_refused(guard: Guard, monkeypatch: Any) -> None:
    class ClassProxy:  # a lazy proxy: claims to be a class, has no MRO of its own
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return type

    proxy = ClassProxy()
    monkeypatch.setattr(litellm, "my_lazy_thing", proxy, raising=False)
    assert guardrail.wrap(guard, litellm).my_lazy_thing is proxy
