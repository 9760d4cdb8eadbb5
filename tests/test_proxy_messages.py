"""The Anthropic-format endpoint ``/v1/messages`` of the real LiteLLM proxy with GuardrailLiteLLM, driven by the real
``anthropic`` client, sync and async.

The proxy runs in a subprocess (``test_proxy._running_proxy``) and forwards to the stub server: ``claude`` is an
``anthropic/`` deployment (the proxy relays the provider's own SSE bytes, as for Claude Code), ``stub`` an OpenAI one
(LiteLLM translates its answer into Anthropic events). What the stub received is what reached the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REFUSAL
from stub_server import StubServer
from test_proxy import DURING_FAKE, FAKE, HARMFUL, OUTPUT, Proxy, _running_proxy, guardrail_entry, policy

anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.slow

RAISE_FAKE = {"sabotage": {"unsafe": 0.99}}  # only gr-raise sees it as unsafe
CALM = "A calm answer about tea, kettles and the right temperature for green leaves."
INPUT_ALL = {  # the system prompt and tool results are read too
    "scope": "all",
    "rules": [
        {"category": "unsafe", "threshold": 0.5, "action": "block"},
        {"category": "pii", "action": "redact", "entities": ["email"]},
    ],
}


def config(stub: StubServer) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-stub",
                    "api_base": f"http://127.0.0.1:{stub.port}",
                    "api_key": "sk-stub",
                },
            },
            {
                "model_name": "stub",
                "litellm_params": {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-stub"},
            },
        ],
        "guardrails": [
            guardrail_entry("gr-pre", "pre_call", policy("msg-pre", input=INPUT_ALL), default_on=True),
            guardrail_entry(  # its own unsafe word: the first guardrail to block a request answers it
                "gr-raise", "pre_call", policy("msg-raise", "raise", input=INPUT_ALL), default_on=False, fake=RAISE_FAKE
            ),
            guardrail_entry(
                "gr-during",
                "during_call",
                policy("msg-during", input={"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]}),
                default_on=True,
                fake=DURING_FAKE,
            ),
            guardrail_entry("gr-post", "post_call", policy("msg-post", output=OUTPUT), default_on=True),
        ],
    }


@pytest.fixture(scope="module")
def proxy(stub_server: StubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with _running_proxy(config(stub_server), tmp_path_factory.mktemp("proxy-messages")) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def client_for(proxy: Proxy, mode: str) -> Any:
    base = proxy.url.removesuffix("/v1")
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    return cls(base_url=base, api_key=proxy.key, max_retries=0, timeout=30)


async def create(proxy: Proxy, mode: str, model: str = "claude", **kwargs: Any) -> Any:
    """``messages.create`` through the proxy; a stream is read whole into its list of events."""
    kwargs.setdefault("max_tokens", 200)
    stream = bool(kwargs.get("stream"))
    if mode == "sync":
        with client_for(proxy, mode) as client:
            out = client.messages.create(model=model, **kwargs)
            return list(out) if stream else out
    async with client_for(proxy, mode) as client:
        out = await client.messages.create(model=model, **kwargs)
        return [e async for e in out] if stream else out


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def text_of(events: list[Any]) -> str:
    return "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")


def stop_reason(events: list[Any]) -> str:
    return str(next(e.delta.stop_reason for e in events if e.type == "message_delta"))


def well_formed(events: list[Any]) -> None:
    """One message, blocks started in index order, each delta and stop for an open block, nothing after the stop."""
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    started, open_ = 0, set()
    for e in events[1:-1]:
        if e.type == "content_block_start":
            assert e.index == started and not open_
            started += 1
            open_.add(e.index)
        elif e.type == "content_block_delta":
            assert e.index in open_
        elif e.type == "content_block_stop":
            open_.remove(e.index)
        else:
            assert e.type == "message_delta" and not open_


# ----------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("stream", [False, True])
async def test_a_benign_request_is_answered_as_it_came(proxy: Proxy, stub: StubServer, mode: str, stream: bool) -> None:
    out = await create(proxy, mode, messages=user("hello there"), system="Be brief.", stream=stream)
    if stream:
        well_formed(out)
        assert text_of(out) == "You said: hello there" and stop_reason(out) == "end_turn"
    else:
        assert out.content[0].text == "You said: hello there" and out.stop_reason == "end_turn"
    (sent,) = stub.messages()
    assert sent.body["messages"] == user("hello there") and sent.body["system"] == "Be brief."


@pytest.mark.parametrize("stream", [False, True])
async def test_a_harmful_prompt_gets_a_refusal_and_never_reaches_the_model(
    proxy: Proxy, stub: StubServer, mode: str, stream: bool
) -> None:
    out = await create(proxy, mode, messages=user("how do I build a bomb"), stream=stream)
    if stream:
        well_formed(out)
        assert text_of(out) == REFUSAL and stop_reason(out) == "refusal"
    else:
        assert isinstance(out, anthropic.types.Message)
        assert [b.text for b in out.content] == [REFUSAL] and out.stop_reason == "refusal"
    assert stub.messages() == []


def test_a_blocked_request_carries_the_guardrail_headers(proxy: Proxy, stub: StubServer) -> None:
    with client_for(proxy, "sync") as client:
        raw = client.messages.with_raw_response.create(model="claude", max_tokens=200, messages=user("a bomb"))
    assert raw.parse().stop_reason == "refusal"
    assert raw.headers["x-guardrail-action"] == "block" and raw.headers["x-guardrail-categories"] == "unsafe"
    assert "msg-pre" in raw.headers["x-guardrail-policy"].split(",")


async def test_personal_data_is_redacted_where_it_sits_before_it_reaches_the_model(
    proxy: Proxy, stub: StubServer, mode: str
) -> None:
    messages = [
        {"role": "user", "content": "look the customer up"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "c"}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "eve@corp.example"}]},
                {"type": "text", "text": "and write to bob@example.com"},
            ],
        },
    ]
    system = [{"type": "text", "text": "Escalate to ops@corp.example."}]
    out = await create(proxy, mode, messages=messages, system=system)
    assert out.stop_reason == "end_turn"
    (sent,) = stub.messages()
    body = json.dumps(sent.body)
    assert "corp.example" not in body and "bob@example.com" not in body
    assert sent.body["messages"][:2] == messages[:2]  # the model's own call is plumbing: sent as it was
    assert sent.body["messages"][2]["content"][0]["content"] == [{"type": "text", "text": "<EMAIL_2>"}]
    assert sent.body["messages"][2]["content"][1] == {"type": "text", "text": "and write to <EMAIL_3>"}
    assert sent.body["system"] == [{"type": "text", "text": "Escalate to <EMAIL_1>."}]
    assert "guardrail_decisions" not in body  # decisions stay in the proxy's own metadata


async def test_a_harmful_tool_result_is_blocked(proxy: Proxy, stub: StubServer, mode: str) -> None:
    messages = [
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "build a bomb"}]},
    ]
    out = await create(proxy, mode, messages=messages)
    assert out.stop_reason == "refusal" and stub.messages() == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_blocked_request_raises_the_proxy_error_under_raise(
    proxy: Proxy, stub: StubServer, mode: str, stream: bool
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await create(proxy, mode, messages=user("sabotage"), stream=stream, extra_body={"guardrails": ["gr-raise"]})
    assert info.value.status_code == 400 and REFUSAL in str(info.value)
    assert stub.messages() == []


async def test_a_during_call_block_ends_a_stream_as_a_refusal(proxy: Proxy, stub: StubServer, mode: str) -> None:
    events = await create(proxy, mode, messages=user("a forbidden topic"), stream=True)
    well_formed(events)
    assert text_of(events) == REFUSAL and stop_reason(events) == "refusal"
    whole = await create(proxy, mode, messages=user("a forbidden topic"))  # the proxy's own passthrough answer
    assert [b.text for b in whole.content] == [REFUSAL]


# ----------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("model", ["claude", "stub"])
async def test_a_harmful_answer_is_replaced_by_the_refusal(
    proxy: Proxy, stub: StubServer, mode: str, model: str
) -> None:
    stub.reply = CALM
    calm = await create(proxy, mode, model, messages=user("a story"))
    assert calm.content[0].text == CALM and calm.stop_reason == "end_turn"
    stub.reply = HARMFUL
    out = await create(proxy, mode, model, messages=user("a story"))
    assert [b.text for b in out.content] == [REFUSAL] and out.stop_reason == "refusal"


@pytest.mark.parametrize("model", ["claude", "stub"])
async def test_a_streamed_answer_is_guarded_and_a_harmful_one_ends_as_a_refusal(
    proxy: Proxy, stub: StubServer, mode: str, model: str
) -> None:
    stub.reply = CALM
    events = await create(proxy, mode, model, messages=user("a story"), stream=True)
    well_formed(events)
    assert text_of(events) == CALM and stop_reason(events) == "end_turn"
    stub.reply = HARMFUL
    events = await create(proxy, mode, model, messages=user("a story"), stream=True)
    well_formed(events)
    released = text_of(events)
    assert "bomb" not in released and released.endswith(REFUSAL) and stop_reason(events) == "refusal"


def test_a_stream_whose_events_cannot_be_read_is_not_passed_on(proxy: Proxy, stub: StubServer) -> None:
    stub.raw = [("message_start", {"type": "message_start", "message": {"id": "m", "type": "message",
                "role": "assistant", "model": "m", "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1}}}),
                ("content_block_start", "not json: the bomb")]  # fmt: skip
    events: list[Any] = []
    with pytest.raises(anthropic.APIError):  # an error event (or the proxy's 400): never the unread event
        events += client_for(proxy, "sync").messages.create(
            model="claude", max_tokens=50, messages=user("hi"), stream=True
        )
    assert all(e.type == "message_start" for e in events)


# ----------------------------------------------------------------------------------------------- the SSE reading


async def _chunks(*items: Any) -> Any:
    for item in items:
        yield item


async def _read(plugin: Any, *chunks: Any) -> list[Any]:
    data = {"model": "claude", "messages": user("hi"), "litellm_call_id": "c1", "litellm_metadata": {}}
    return [item async for item in plugin.anthropic.stream(_chunks(*chunks), data)]


def _plugin(**kwargs: Any) -> Any:
    from guardrail.adapters.litellm import GuardrailLiteLLM

    return GuardrailLiteLLM(policy=policy("unit", output=OUTPUT), fake_rules=FAKE, guardrail_name="gr", **kwargs)


def _frames(text: str) -> bytes:
    message = {"id": "m", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
    events = [
        {"type": "message_start", "message": message},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in text),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {}},
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\r\ndata: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events).encode()


async def test_sse_cut_anywhere_even_inside_a_character_is_read_whole() -> None:
    raw = _frames("Grüße, café ☕")
    for size in (1, 3, 7, len(raw)):
        out = await _read(_plugin(), *(raw[i : i + size] for i in range(0, len(raw), size)))
        events = [json.loads(frame.split(b"data: ", 1)[1]) for frame in out]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        assert text == "Grüße, café ☕" and all(frame.startswith(b"event: ") for frame in out)


async def test_a_byte_stream_of_another_shape_is_refused_or_passed_as_it_came() -> None:
    from fastapi import HTTPException

    other = [b'data: {"candidates": [{"content": "the bo', b'mb"}]}\n\n', b"data: [DONE]\n\n"]
    with pytest.raises(HTTPException) as info:
        await _read(_plugin(), *other)
    assert info.value.status_code == 400 and "cannot read this stream" in str(info.value.detail)
    assert await _read(_plugin(unread_endpoints="pass"), *other) == other
