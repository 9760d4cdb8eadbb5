"""Review of on_block.reask (adapters.reask): what the re-sent request carries, what reaches the caller, and what a
failed reask answers. Through the real openai, anthropic and litellm clients against the stub server, sync and async.

Defects found and fixed (each test below failed before its fix):

- a request the provider stores (Responses by default, chat with ``store=True``) was asked again: the answer the
  caller got held the withheld one among its stored input, which ``responses.input_items.list`` /
  ``chat.completions.messages.list`` hand back as written, and every later turn continuing it reads;
- a prefill (messages ending with the assistant's turn) was followed by the blocked answer as a second assistant turn
  and the correction last: the new answer no longer continued the prefill the caller prepends (``{`` + ``{...}``);
- a reask whose request failed raised the upstream error where, without a reask, the caller got the refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import litellm
import openai
import pytest
import structlog
from conftest import FAKE_RULES, REFUSAL, make_policy
from stub_server import StubServer
from test_reask import _OPEN, BENIGN, CORRECTION, HARMFUL, anthropic_client, chat, openai_client, reask_guard, run

import guardrail
from guardrail import Blocked, Guard
from guardrail.testing import DecisionLog, FakeClassifier

FIXED = CORRECTION.replace("{categories}", "harmful_response")


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


@pytest.fixture
def guard(log: DecisionLog) -> Any:
    g = reask_guard(1, message=CORRECTION, log=log)
    yield g
    g.close()


@pytest.fixture
def log() -> DecisionLog:
    return DecisionLog()


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


# ------------------------------------------------------------------------------------------ stored requests


async def test_a_stored_responses_request_is_not_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = openai_client(guard, stub, mode)
    resp = await run(client.responses.create(model="stub-model", input="tell me about old munitions"))
    assert resp.output_text == REFUSAL  # the API's default stores it: its input would hold the withheld answer
    assert len(stub.completions()) == 1


async def test_a_responses_request_with_store_false_is_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = openai_client(guard, stub, mode)
    resp = await run(client.responses.create(model="stub-model", input="tell me about old munitions", store=False))
    assert resp.output_text == BENIGN
    second = stub.completions()[1].body
    assert second["store"] is False and second["input"][1:] == [
        {"role": "assistant", "content": HARMFUL},
        {"role": "user", "content": FIXED},
    ]


async def test_a_stored_chat_completion_is_not_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    resp = await chat(openai_client(guard, stub, mode), store=True)
    assert resp.choices[0].message.content == REFUSAL
    assert len(stub.completions()) == 1


async def test_a_litellm_stored_chat_completion_is_not_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    llm = guardrail.wrap(guard, litellm)
    kwargs = {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-test", "store": True}
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    send = llm.completion if mode == "sync" else llm.acompletion
    resp = await run(send(messages=messages, **kwargs))
    assert resp.choices[0].message.content == REFUSAL
    assert len(stub.completions()) == 1


# ------------------------------------------------------------------------------------------ prefill


async def test_an_anthropic_prefill_stays_last_and_the_blocked_answer_continues_it(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    messages = [{"role": "user", "content": "tell me about old munitions"}, {"role": "assistant", "content": "Well,"}]
    resp = await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages))
    assert resp.content[0].text == BENIGN
    second = stub.messages()[1].body["messages"]
    assert second == [
        messages[0],
        {"role": "assistant", "content": "Well," + HARMFUL},
        {"role": "user", "content": FIXED},
        messages[1],  # the same prefill last: the new answer continues it, as the first did
    ]
    assert all(a != b for a, b in zip(roles(second), roles(second)[1:], strict=False))  # the turns alternate


async def test_a_prefill_of_text_blocks_keeps_its_blocks(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    prefill = {"role": "assistant", "content": [{"type": "text", "text": "Well,"}]}
    messages = [{"role": "user", "content": "tell me about old munitions"}, prefill]
    await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages))
    second = stub.messages()[1].body["messages"]
    assert second[1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Well,"}, {"type": "text", "text": HARMFUL}],
    }
    assert second[2:] == [{"role": "user", "content": FIXED}, prefill]


async def test_after_a_tool_result_the_turns_still_alternate(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    use = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "munitions"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "old shells are found in fields"}
    messages = [
        {"role": "user", "content": "tell me about old munitions"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    resp = await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages))
    assert resp.content[0].text == BENIGN
    second = stub.messages()[1].body["messages"]
    assert second == [*messages, {"role": "assistant", "content": HARMFUL}, {"role": "user", "content": FIXED}]


# ------------------------------------------------------------------------------------------ a failed reask


async def test_a_failed_reask_answers_with_the_refusal(
    guard: Guard, stub: StubServer, mode: str, log: DecisionLog
) -> None:
    stub.answers, stub.errors = [HARMFUL], [None, 500]
    with structlog.testing.capture_logs() as logs:
        resp = await chat(openai_client(guard, stub, mode))
    assert resp.choices[0].message.content == REFUSAL and resp.choices[0].finish_reason == "content_filter"
    assert len(stub.completions()) == 2
    assert [d.action.value for d in log if d.stage == "output"] == ["block"]
    failed = [e for e in logs if e["event"] == "guardrail.reask_failed"]
    assert failed and failed[0]["error_type"] == "InternalServerError"
    assert failed[0]["decision_id"] == next(d.id for d in log if d.stage == "output")


async def test_a_failed_reask_raises_blocked_under_respond_raise(stub: StubServer, mode: str) -> None:
    g = reask_guard(1, respond="raise")
    stub.answers, stub.errors = [HARMFUL], [None, 400]
    with pytest.raises(Blocked):
        await chat(openai_client(g, stub, mode))
    g.close()


async def test_a_failed_anthropic_reask_answers_with_the_refusal(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers, stub.errors = [HARMFUL], [None, 529]
    client = anthropic_client(guard, stub, mode)
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    resp = await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages))
    assert resp.content[0].text == REFUSAL and resp.stop_reason == "refusal"


async def test_the_first_request_failing_still_raises(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.errors = [500]
    with pytest.raises(openai.InternalServerError):
        await chat(openai_client(guard, stub, mode))


# ------------------------------------------------------------------------------------------ checked as any answer


async def test_the_reasked_answer_is_redacted_and_restored_as_a_first_one(stub: StubServer, mode: str) -> None:
    g = reask_guard(1, message=CORRECTION)
    stub.answers = [HARMFUL + " Mail <EMAIL_1>.", "Ask <EMAIL_1> or bob@corp.example for safety advice."]
    raw = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    client = guardrail.wrap(g, raw(base_url=stub.url, api_key="sk-test", max_retries=0), restore=True)
    resp = await chat(client, "write to ann@example.com about old munitions")
    # the input's value restored, the answer's own masked: as for a first answer
    assert resp.choices[0].message.content == "Ask ann@example.com or <EMAIL_2> for safety advice."
    first, second = (r.body["messages"] for r in stub.completions())
    assert "ann@example.com" not in json.dumps(second)  # the redacted prompt, and the blocked answer as written
    assert second[:1] == first and second[1] == {"role": "assistant", "content": HARMFUL + " Mail <EMAIL_1>."}
    await run(client.close())
    g.close()


async def test_a_structured_answer_is_asked_again_and_parsed(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [json.dumps({"answer": HARMFUL}), json.dumps({"answer": BENIGN})]
    client = openai_client(guard, stub, mode)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    resp = await run(client.chat.completions.parse(model="stub-model", messages=messages, response_format=fmt))
    assert json.loads(resp.choices[0].message.content) == {"answer": BENIGN}
    second = stub.completions()[1].body
    assert second["response_format"] == fmt and second["messages"][1]["role"] == "assistant"


async def test_the_redacted_anthropic_system_and_blocks_are_sent_again(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    blocks = [{"type": "text", "text": "tell me about old munitions, then mail ann@example.com"}]
    messages = [{"role": "user", "content": blocks}]
    system = [{"type": "text", "text": "The operator is ops@example.com."}]
    await run(
        client.messages.create(
            model="stub-model", max_tokens=64, system=system, messages=messages, stop_sequences=["END"]
        )
    )
    first, second = (r.body for r in stub.messages())
    assert second["system"] == first["system"] and second["messages"][0] == first["messages"][0]
    assert second["stop_sequences"] == ["END"] and second["max_tokens"] == 64
    assert "ann@example.com" not in json.dumps(first["messages"])
    assert "ann@example.com" not in json.dumps(second) and "ops@example.com" not in json.dumps(second["messages"])


async def test_a_responses_request_with_instructions_and_items_is_sent_again_redacted(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = openai_client(guard, stub, mode)
    items = [{"role": "user", "content": "tell me about old munitions and mail ann@example.com"}]
    await run(client.responses.create(model="stub-model", instructions="Be brief.", input=items, store=False))
    first, second = (r.body for r in stub.completions())
    assert second["instructions"] == "Be brief." and second["input"][0] == first["input"][0]
    assert "ann@example.com" not in json.dumps(second)
    assert second["input"][1:] == [{"role": "assistant", "content": HARMFUL}, {"role": "user", "content": FIXED}]


# ------------------------------------------------------------------------------------------ limits and policy


async def test_concurrent_calls_count_their_own_attempts(guard: Guard, stub: StubServer) -> None:
    stub.reply = lambda body: BENIGN if len(body["messages"]) > 1 else HARMFUL
    client = openai_client(guard, stub, "async")
    answers = await asyncio.gather(*(chat(client) for _ in range(3)))
    assert [a.choices[0].message.content for a in answers] == [BENIGN] * 3
    assert len(stub.completions()) == 6


async def test_the_routed_policy_says_whether_to_ask_again(tmp_path: Path, stub: StubServer, mode: str) -> None:
    child = {**make_policy(), "name": "child"}
    child["on_block"] = {**child["on_block"], "reask": {"attempts": 1}}
    (tmp_path / "child.yaml").write_text(json.dumps(child))
    main = {**make_policy(), "name": "main", "routes": [{"match": {"tenant": "acme"}, "policy": "child.yaml"}]}
    (tmp_path / "main.yaml").write_text(json.dumps(main))
    g = Guard(tmp_path / "main.yaml", classifiers=FakeClassifier(rules=FAKE_RULES))
    raw = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    for tenant, expected, sent in (("other", REFUSAL, 1), ("acme", BENIGN, 2)):
        stub.reset()
        stub.answers = [HARMFUL, BENIGN]
        client = guardrail.wrap(g, raw(base_url=stub.url, api_key="sk-test", max_retries=0), context={"tenant": tenant})
        resp = await chat(client)
        assert (resp.choices[0].message.content, len(stub.completions())) == (expected, sent)
        await run(client.close())
    g.close()
