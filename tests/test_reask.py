"""on_block.reask: an answer the output check blocks is asked for again, through the real openai, anthropic and
litellm clients against the stub server (its ``answers`` queue gives a harmful answer first, a benign one second).

Every behaviour runs sync and async (the ``mode`` fixture). What the stub received is the proof of what was sent.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import litellm
import openai
import pytest
import structlog
from conftest import FAKE_RULES, REFUSAL, make_policy
from prometheus_client import CollectorRegistry
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard, PolicyError, load_policy, metrics
from guardrail.policy_models import REASK_MESSAGE
from guardrail.testing import DecisionLog, FakeClassifier

litellm.suppress_debug_info = True
HARMFUL = "Sure. First you take the parts, then you build the bomb like this, and then you wait for it."
BENIGN = "I can't help with building that, but here is how to stay safe around old munitions: call the police."
CORRECTION = "Withheld as {categories}. Answer the original request again without that content."


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def reask_guard(attempts: int = 1, *, respond: str = "refusal", log: DecisionLog | None = None, **reask: Any) -> Guard:
    policy = make_policy(respond=respond)
    if attempts or reask:
        policy["on_block"] = {**policy["on_block"], "reask": {"attempts": attempts, **reask}}
    on_decision = log.append if log is not None else None
    return Guard(policy, classifiers=FakeClassifier(rules=FAKE_RULES), on_decision=on_decision)


@pytest.fixture
def log() -> DecisionLog:
    return DecisionLog()


@pytest.fixture
def guard(log: DecisionLog) -> Iterator[Guard]:
    g = reask_guard(1, message=CORRECTION, log=log)
    yield g
    g.close()


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


async def run(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def openai_client(guard: Guard, stub: StubServer, mode: str) -> Any:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw)


def anthropic_client(guard: Guard, stub: StubServer, mode: str) -> Any:
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    raw = cls(base_url=f"http://127.0.0.1:{stub.port}", api_key="sk-ant-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw)


async def chat(client: Any, text: str = "tell me about old munitions", **kwargs: Any) -> Any:
    messages = [{"role": "user", "content": text}]
    return await run(client.chat.completions.create(model="stub-model", messages=messages, **kwargs))


def output_actions(log: DecisionLog) -> list[str]:
    return [d.action.value for d in log if d.stage == "output"]


# ------------------------------------------------------------------------------------------ chat completions


async def test_reask_is_off_by_default(stub: StubServer, mode: str, log: DecisionLog) -> None:
    g = reask_guard(0, log=log)
    stub.answers = [HARMFUL, BENIGN]
    resp = await chat(openai_client(g, stub, mode))
    assert resp.choices[0].message.content == REFUSAL and resp.choices[0].finish_reason == "content_filter"
    assert len(stub.completions()) == 1
    assert output_actions(log) == ["block"]
    g.close()


async def test_a_blocked_answer_is_asked_again_and_the_benign_one_returned(
    guard: Guard, stub: StubServer, mode: str, log: DecisionLog
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    resp = await chat(openai_client(guard, stub, mode))
    assert resp.choices[0].message.content == BENIGN and resp.choices[0].finish_reason == "stop"
    first, second = (r.body["messages"] for r in stub.completions())
    assert first == [{"role": "user", "content": "tell me about old munitions"}]
    assert second == [
        *first,
        {"role": "assistant", "content": HARMFUL},
        {"role": "user", "content": CORRECTION.replace("{categories}", "harmful_response")},
    ]
    assert [(d.stage, d.action.value) for d in log] == [("input", "allow"), ("output", "block"), ("output", "allow")]


async def test_the_input_is_checked_once_and_its_redactions_are_sent_again(
    guard: Guard, stub: StubServer, mode: str, log: DecisionLog
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    await chat(openai_client(guard, stub, mode), "mail ann@example.com about old munitions")
    first, second = (r.body["messages"] for r in stub.completions())
    assert first[0]["content"] == "mail <EMAIL_1> about old munitions"
    assert second[: len(first)] == first  # the redacted request as it was sent, unchanged
    assert [d.stage for d in log].count("input") == 1


async def test_attempts_exhausted_answer_with_the_refusal(stub: StubServer, mode: str, log: DecisionLog) -> None:
    g = reask_guard(2, log=log)
    stub.answers = [HARMFUL, HARMFUL, HARMFUL, BENIGN]
    resp = await chat(openai_client(g, stub, mode))
    assert resp.choices[0].message.content == REFUSAL and resp.choices[0].finish_reason == "content_filter"
    requests = stub.completions()
    assert len(requests) == 3  # the answer and two reasks; the benign fourth is never asked for
    assert len(requests[2].body["messages"]) == 3  # each reask extends the request as first sent, not the last one
    assert requests[2].body["messages"][2]["content"] == REASK_MESSAGE.replace("{categories}", "harmful_response")
    assert output_actions(log) == ["block", "block", "block"]
    g.close()


async def test_attempts_exhausted_raise_blocked_under_respond_raise(stub: StubServer, mode: str) -> None:
    g = reask_guard(1, respond="raise")
    stub.answers = [HARMFUL, HARMFUL]
    with pytest.raises(Blocked) as caught:
        await chat(openai_client(g, stub, mode))
    assert caught.value.decision.stage == "output"
    assert len(stub.completions()) == 2
    g.close()


async def test_under_respond_raise_a_benign_reask_is_returned(stub: StubServer, mode: str) -> None:
    g = reask_guard(1, respond="raise")
    stub.answers = [HARMFUL, BENIGN]
    resp = await chat(openai_client(g, stub, mode))
    assert resp.choices[0].message.content == BENIGN
    g.close()


async def test_a_stream_is_never_asked_again(guard: Guard, stub: StubServer, mode: str, log: DecisionLog) -> None:
    stub.answers = [HARMFUL, BENIGN]
    stream = await chat(openai_client(guard, stub, mode), stream=True)
    chunks = [c async for c in stream] if hasattr(stream, "__aiter__") else list(stream)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert len(stub.completions()) == 1


async def test_an_input_block_is_never_asked_again(guard: Guard, stub: StubServer, mode: str, log: DecisionLog) -> None:
    stub.answers = [BENIGN]
    resp = await chat(openai_client(guard, stub, mode), "how do I build a bomb")
    assert resp.choices[0].message.content == REFUSAL
    assert stub.completions() == []
    assert [(d.stage, d.action.value) for d in log] == [("input", "block")]


async def test_an_answer_of_several_choices_is_not_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": HARMFUL}}
    stub.raw = {"id": "c", "object": "chat.completion", "created": 0, "model": "stub-model",
                "choices": [choice, {**choice, "index": 1}]}  # fmt: skip
    resp = await chat(openai_client(guard, stub, mode), n=2)
    assert [c.message.content for c in resp.choices] == [REFUSAL, REFUSAL]
    assert len(stub.completions()) == 1


async def test_a_tool_call_answer_is_not_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "build", "arguments": '{"what": "a bomb"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    stub.raw = {"id": "c", "object": "chat.completion", "created": 0, "model": "stub-model",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}]}  # fmt: skip
    resp = await chat(openai_client(guard, stub, mode))
    assert resp.choices[0].finish_reason == "content_filter"
    assert len(stub.completions()) == 1


async def test_a_fail_mode_block_is_not_asked_again(stub: StubServer, mode: str, log: DecisionLog) -> None:
    def scorer(text: str, stage: str, prompt: str | None) -> dict[str, float]:
        if stage == "output":
            raise RuntimeError("the model is down")
        return dict.fromkeys(("unsafe", "self_harm", "pii", "harmful_response"), 0.0)

    policy = make_policy()
    policy["on_block"] = {**policy["on_block"], "reask": {"attempts": 2}}
    g = Guard(policy, classifiers=FakeClassifier(scorer=scorer), on_decision=log.append)
    stub.answers = [BENIGN, BENIGN]
    resp = await chat(openai_client(g, stub, mode))
    assert resp.choices[0].message.content == REFUSAL
    assert len(stub.completions()) == 1
    assert [d.action.value for d in log if d.stage == "output"] == ["block"]
    assert all(d.error is not None for d in log if d.stage == "output")
    g.close()


async def test_the_audit_log_records_each_attempt(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    with structlog.testing.capture_logs() as logs:
        await chat(openai_client(guard, stub, mode))
    events = [e for e in logs if e["event"] == "guardrail.decision" and e["stage"] == "output"]
    assert [(e["action"], e["categories"]) for e in events] == [("block", "harmful_response"), ("allow", "")]
    assert len({e["decision_id"] for e in events}) == 2


async def test_a_reasked_answers_events_say_which_attempt_and_which_block_it_answers(
    stub: StubServer, mode: str
) -> None:
    g = reask_guard(2, message=CORRECTION)
    stub.answers = [HARMFUL, HARMFUL, BENIGN]
    with structlog.testing.capture_logs() as logs:
        await chat(openai_client(g, stub, mode))
    events = [e for e in logs if e["event"] == "guardrail.decision"]
    first, again, last = (e for e in events if e["stage"] == "output")
    assert "reask_attempt" not in first and "reask_of" not in first
    assert (again["reask_attempt"], again["reask_of"]) == (1, first["decision_id"])
    assert (last["reask_attempt"], last["reask_of"], last["action"]) == (2, again["decision_id"], "allow")
    assert all("reask_attempt" not in e for e in events if e["stage"] == "input")
    with structlog.testing.capture_logs() as logs:  # nothing is left bound after the call
        g.check_output("a plain answer", prompt="hi")
    assert all("reask_attempt" not in e for e in logs)
    g.close()


async def test_each_reask_gets_its_own_idempotency_key(guard: Guard, stub: StubServer, mode: str) -> None:
    """A provider that honours Idempotency-Key answers a repeated key with the first answer: the blocked one."""
    stub.answers = [HARMFUL, BENIGN]
    await chat(openai_client(guard, stub, mode), extra_headers={"Idempotency-Key": "order-77"})
    keys = [r.headers.get("idempotency-key") for r in stub.completions()]
    assert keys == ["order-77", "order-77-reask-1"]


async def test_reasks_are_counted(guard: Guard, stub: StubServer, mode: str) -> None:
    registry = CollectorRegistry()
    sink = metrics.enable_prometheus(registry)
    try:
        stub.answers = [HARMFUL, BENIGN]
        await chat(openai_client(guard, stub, mode))
        assert registry.get_sample_value("guardrail_reasks_total", {"policy": guard.policy.name}) == 1
    finally:
        metrics.disable(sink)


# ------------------------------------------------------------------------------------------ Responses API


async def test_a_responses_answer_is_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = openai_client(guard, stub, mode)
    # store=False: a stored request is not asked again (its input would hold the withheld answer: adapters.reask)
    resp = await run(client.responses.create(model="stub-model", input="tell me about old munitions", store=False))
    assert resp.output_text == BENIGN
    first, second = (r.body for r in stub.completions())
    assert first["input"] == "tell me about old munitions"
    assert second["input"] == [
        {"role": "user", "content": "tell me about old munitions"},
        {"role": "assistant", "content": HARMFUL},
        {"role": "user", "content": CORRECTION.replace("{categories}", "harmful_response")},
    ]


async def test_a_responses_answer_on_a_server_side_conversation_is_not_asked_again(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = openai_client(guard, stub, mode)
    resp = await run(client.responses.create(model="stub-model", input="tell me", conversation="conv_1"))
    assert resp.output_text == REFUSAL
    assert len(stub.completions()) == 1


# ------------------------------------------------------------------------------------------ Anthropic messages


async def test_an_anthropic_answer_is_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    resp = await run(client.messages.create(model="stub-model", max_tokens=64, system="Be brief.", messages=messages))
    assert resp.content[0].text == BENIGN and resp.stop_reason == "end_turn"
    first, second = (r.body for r in stub.messages())
    assert second["system"] == first["system"] == "Be brief."
    assert second["messages"] == [
        *messages,
        {"role": "assistant", "content": HARMFUL},
        {"role": "user", "content": CORRECTION.replace("{categories}", "harmful_response")},
    ]


async def test_an_anthropic_answer_blocked_every_time_is_refused(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, HARMFUL]
    client = anthropic_client(guard, stub, mode)
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    resp = await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages))
    assert resp.content[0].text == REFUSAL and resp.stop_reason == "refusal"
    assert len(stub.messages()) == 2


async def test_an_anthropic_stream_is_never_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    client = anthropic_client(guard, stub, mode)
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    stream = await run(client.messages.create(model="stub-model", max_tokens=64, messages=messages, stream=True))
    events = [e async for e in stream] if hasattr(stream, "__aiter__") else list(stream)
    assert any(getattr(getattr(e, "delta", None), "stop_reason", None) == "refusal" for e in events)
    assert len(stub.messages()) == 1


# ------------------------------------------------------------------------------------------ litellm


async def test_a_litellm_answer_is_asked_again(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.answers = [HARMFUL, BENIGN]
    llm = guardrail.wrap(guard, litellm)
    kwargs = {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-test"}
    messages = [{"role": "user", "content": "tell me about old munitions"}]
    resp = (
        llm.completion(messages=messages, **kwargs)
        if mode == "sync"
        else await llm.acompletion(messages=messages, **kwargs)
    )
    assert resp.choices[0].message.content == BENIGN
    second = stub.completions()[1].body["messages"]
    assert second[1:] == [
        {"role": "assistant", "content": HARMFUL},
        {"role": "user", "content": CORRECTION.replace("{categories}", "harmful_response")},
    ]


# ------------------------------------------------------------------------------------------ policy


def test_a_policy_without_reask_keeps_its_hash() -> None:
    base = {"version": 1, "name": "t"}
    assert load_policy(base).hash == load_policy({**base, "on_block": {"reask": {"attempts": 0}}}).hash
    assert load_policy(base).hash != load_policy({**base, "on_block": {"reask": {"attempts": 1}}}).hash
    assert load_policy(base).on_block.reask.attempts == 0 and load_policy(base).on_block.reask.message == REASK_MESSAGE


@pytest.mark.parametrize(
    ("reask", "field"),
    [
        ("{attempts: 5}", "on_block.reask.attempts"),
        ("{attempts: -1}", "on_block.reask.attempts"),
        ("{attempts: '1'}", "on_block.reask.attempts"),
        ("{attempts: 1, mesage: hi}", "on_block.reask.mesage"),
        ("{attempts: 1, message: ''}", "on_block.reask.message"),
    ],
)
def test_a_bad_reask_names_the_file_line_and_field(tmp_path: Path, reask: str, field: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nname: t\non_block:\n  respond: refusal\n  reask: {reask}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.field == field
    assert f"{path}:5" in str(caught.value)


def test_the_json_schema_documents_reask() -> None:
    from guardrail.policy import policy_json_schema

    reask = policy_json_schema()["$defs"]["Reask"]["properties"]
    assert reask["attempts"]["maximum"] == 3 and reask["attempts"]["minimum"] == 0
    assert "{categories}" in reask["message"]["description"]
