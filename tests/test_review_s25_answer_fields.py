"""Review h137 ("nothing slips through"), chat answers: every field that carries text the model wrote is read by the
check, masked where it sits, or never passed on. Through the real ``openai`` and ``litellm`` clients against the stub
server, sync and async.

- ``reasoning`` (OpenRouter, Groq, newer vLLM, Ollama) and OpenRouter's ``reasoning_details`` were never read: a
  harmful text and an address there reached the application with ``finish_reason: stop``. litellm keeps them as
  ``provider_specific_fields``, unread too. Streamed, a reasoning delta that rode with the role, the finish reason or
  usage was delivered as it came;
- content parts whose text is not under ``text`` (Mistral's ``thinking`` part, a ``reasoning`` part) were unread;
- a stream with a second choice (``n`` not asked for) was spliced into choice 0.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

import litellm
import openai
import pytest
from conftest import make_guard
from stub_server import StubServer

import guardrail
from guardrail import Guard

HARMFUL = "First you take the parts, then you build the bomb like this."
LEAK = "leak.victim@corp.example"
CALM = "A grey cat slept on the warm flour sacks all morning."


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


def openai_client(guard: Guard, stub: StubServer, mode: str, **options: Any) -> Any:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw, **options)


async def run(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def collect(stream: Any) -> list[Any]:
    return [c async for c in stream] if hasattr(stream, "__aiter__") else list(stream)


async def ask(client: Any, *, stream: bool = False, prompt: str = "tell me about cats") -> Any:
    """A chat completion through the guarded openai client (a stream's chunks, collected)."""
    made = await run(client.chat.completions.create(model="m", messages=user(prompt), stream=stream))
    return await collect(made) if stream else made


async def ask_litellm(guard: Guard, stub: StubServer, mode: str, *, stream: bool = False) -> Any:
    llm = guardrail.wrap(guard, litellm)
    kw = {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-test", "stream": stream}
    made = (
        llm.completion(messages=user("cats"), **kw)
        if mode == "sync"
        else await llm.acompletion(messages=user("cats"), **kw)
    )
    return await collect(made) if stream else made


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def answer(message: dict[str, Any]) -> dict[str, Any]:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}


def chunk(delta: dict[str, Any], finish: str | None = None, *, index: int = 0) -> tuple[None, dict[str, Any]]:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return None, {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}


def dumped(result: Any) -> str:
    items = result if isinstance(result, list) else [result]
    return json.dumps([i.model_dump(warnings=False) for i in items], default=str)


REASONING = {
    "reasoning": lambda text: {"reasoning": text},
    "reasoning_details": lambda text: {"reasoning_details": [{"type": "reasoning.text", "text": text}]},
    "reasoning_summary": lambda text: {"reasoning_details": [{"type": "reasoning.summary", "summary": text}]},
}


# --------------------------------------------------------------------------------------------- reasoning, whole


@pytest.mark.parametrize("field", REASONING)
async def test_harmful_reasoning_stops_the_answer(stub: StubServer, mode: str, field: str) -> None:
    stub.raw = answer({"content": CALM, **REASONING[field](HARMFUL)})
    resp = await ask(openai_client(make_guard(), stub, mode))
    assert resp.choices[0].finish_reason == "content_filter" and "bomb" not in dumped(resp)


@pytest.mark.parametrize("field", REASONING)
async def test_an_address_in_reasoning_is_masked_where_it_sits(stub: StubServer, mode: str, field: str) -> None:
    stub.raw = answer({"content": CALM, **REASONING[field](f"I will write to {LEAK} now.")})
    resp = await ask(openai_client(make_guard(), stub, mode))
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.content == CALM
    assert LEAK not in dumped(resp) and "I will write to <EMAIL_1> now." in dumped(resp)


async def test_restore_never_changes_signed_reasoning_details(stub: StubServer, mode: str) -> None:
    details = [
        {"type": "reasoning.text", "text": "They gave <EMAIL_1>.", "signature": "sig"},
        {"type": "reasoning.summary", "summary": "Reply to <EMAIL_1>."},
        {"type": "reasoning.encrypted", "data": "b3BhcXVl"},
    ]
    stub.raw = answer({"content": "Noted.", "reasoning_details": details})
    resp = await ask(openai_client(make_guard(), stub, mode, restore=True), prompt="I am bob@example.com")
    got = resp.choices[0].message.model_extra["reasoning_details"]
    assert got == [details[0], {**details[1], "summary": "Reply to bob@example.com."}, details[2]]


@pytest.mark.parametrize("field", ["reasoning", "reasoning_details"])
async def test_litellm_reads_the_provider_fields_it_keeps_reasoning_in(stub: StubServer, mode: str, field: str) -> None:
    # litellm keeps fields it has no name for in provider_specific_fields: the blocked reasoning stayed there
    stub.raw = answer({"content": CALM, **REASONING[field](HARMFUL)})
    resp = await ask_litellm(make_guard(), stub, mode)
    assert resp.choices[0].finish_reason == "content_filter" and "bomb" not in dumped(resp)
    stub.raw = answer({"content": CALM, **REASONING[field](f"I will write to {LEAK}.")})
    resp = await ask_litellm(make_guard(), stub, mode)
    assert resp.choices[0].finish_reason == "stop" and LEAK not in dumped(resp) and "<EMAIL_1>" in dumped(resp)


# ------------------------------------------------------------------------------------------ reasoning, streamed


@pytest.mark.parametrize("field", ["reasoning", "reasoning_details", "reasoning_content"])
@pytest.mark.parametrize("rides_with", ["role", "finish_reason", "alone"])
async def test_streamed_reasoning_is_read_and_never_passed_on(
    stub: StubServer, mode: str, field: str, rides_with: str
) -> None:
    said = {"reasoning_content": lambda t: {"reasoning_content": t}, **REASONING}[field]
    first = {"role": "assistant", "content": ""}
    if rides_with == "role":
        events = [chunk({**first, **said(HARMFUL)}), chunk({"content": CALM}), chunk({}, "stop")]
    elif rides_with == "finish_reason":
        events = [chunk(first), chunk({"content": CALM}), chunk(said(HARMFUL), "stop")]
    else:
        events = [chunk(first), chunk(said(HARMFUL)), chunk({"content": CALM}), chunk({}, "stop")]
    stub.raw = [*events, (None, "[DONE]")]
    chunks = await ask(openai_client(make_guard(), stub, mode), stream=True)
    assert chunks[-1].choices[0].finish_reason == "content_filter" and "bomb" not in dumped(chunks)
    # a calm one is read too, and still not passed on: no field of a delta reaches the application unread
    stub.raw = [chunk({**first, **said(f"Mail {LEAK}."), "novel_field": f"Also {LEAK}"}), chunk({"content": CALM}),
                chunk({}, "stop"), (None, "[DONE]")]  # fmt: skip
    chunks = await ask(openai_client(make_guard(), stub, mode), stream=True)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant" and LEAK not in dumped(chunks)


async def test_litellm_streamed_reasoning_details_are_read(stub: StubServer, mode: str) -> None:
    stub.raw = [chunk({"role": "assistant", "content": "", **REASONING["reasoning_details"](HARMFUL)}),
                chunk({"content": CALM}), chunk({}, "stop"), (None, "[DONE]")]  # fmt: skip
    chunks = await ask_litellm(make_guard(), stub, mode, stream=True)
    assert chunks[-1].choices[0].finish_reason == "content_filter" and "bomb" not in dumped(chunks)


# ------------------------------------------------------------------------------------------------ content parts

PARTS = {
    "mistral_thinking": lambda text: {"type": "thinking", "thinking": [{"type": "text", "text": text}]},
    "reasoning_part": lambda text: {"type": "reasoning", "reasoning": text},
}


@pytest.mark.parametrize("kind", PARTS)
async def test_a_part_whose_text_is_not_under_text_is_read(stub: StubServer, mode: str, kind: str) -> None:
    stub.raw = answer({"content": [PARTS[kind](HARMFUL), {"type": "text", "text": CALM}]})
    resp = await ask(openai_client(make_guard(), stub, mode))
    assert resp.choices[0].finish_reason == "content_filter" and "bomb" not in dumped(resp)
    # masked where it sits, the answer's own text and its shape kept
    stub.raw = answer({"content": [PARTS[kind](f"Mail {LEAK}."), {"type": "text", "text": CALM}]})
    resp = await ask(openai_client(make_guard(), stub, mode))
    content = resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop" and content == [PARTS[kind]("Mail <EMAIL_1>."), answer_part()]


def answer_part() -> dict[str, Any]:
    return {"type": "text", "text": CALM}


@pytest.mark.parametrize("kind", PARTS)
async def test_a_streamed_part_whose_text_is_not_under_text_is_read_and_not_passed_on(
    stub: StubServer, mode: str, kind: str
) -> None:
    stub.raw = [chunk({"role": "assistant", "content": ""}), chunk({"content": [PARTS[kind](HARMFUL)]}),
                chunk({"content": CALM}), chunk({}, "stop"), (None, "[DONE]")]  # fmt: skip
    chunks = await ask(openai_client(make_guard(), stub, mode), stream=True)
    assert chunks[-1].choices[0].finish_reason == "content_filter" and "bomb" not in dumped(chunks)


# ------------------------------------------------------------------------------------------------------ choices


async def test_a_stream_with_a_choice_not_asked_for_is_refused(stub: StubServer, mode: str) -> None:
    # n was not asked for: the second choice's deltas were joined into the first choice's text
    stub.raw = [chunk({"role": "assistant", "content": ""}), chunk({"role": "assistant", "content": ""}, index=1),
                chunk({"content": "Once upon a time "}), chunk({"content": "Sure! The bomb: "}, index=1),
                chunk({}, "stop"), chunk({}, "stop", index=1), (None, "[DONE]")]  # fmt: skip
    got: list[Any] = []
    with pytest.raises(TypeError, match="one choice"):
        stream = await run(openai_client(make_guard(), stub, mode).chat.completions.create(
            model="m", messages=user("a story"), stream=True
        ))  # fmt: skip
        got += await collect(stream)
    assert "bomb" not in dumped(got)


async def test_a_stream_that_asks_for_several_choices_is_refused_as_before(stub: StubServer, mode: str) -> None:
    client = openai_client(make_guard(), stub, mode)
    with pytest.raises(TypeError, match="one choice"):
        await run(client.chat.completions.create(model="m", messages=user("a story"), stream=True, n=2))
    assert stub.completions() == []
