"""The call object every integration drives: one policy snapshot per request, one meaning of a decision.

Through the real openai client against the stub server, sync and async.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from conftest import FAKE_RULES, REFUSAL, make_guard, make_policy
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard
from guardrail.call import CONTENT_FILTER, Call, headers, summary
from guardrail.testing import DecisionLog, FakeClassifier


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def stream_texts(guard: Guard, stub: StubServer, mode: str, prompt: str, on_chunk: Any = None) -> list[str]:
    """Stream one answer through the guarded client; ``on_chunk(i)`` runs after each chunk is received."""
    out: list[str] = []
    if mode == "sync":
        with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
            for i, chunk in enumerate(
                guardrail.wrap(guard, raw).chat.completions.create(model="m", messages=user(prompt), stream=True)
            ):
                out.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
                if on_chunk:
                    on_chunk(i)
        return out
    async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as araw:
        stream = await guardrail.wrap(guard, araw).chat.completions.create(
            model="m", messages=user(prompt), stream=True
        )
        i = 0
        async for chunk in stream:
            out.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
            if on_chunk:
                on_chunk(i)
            i += 1
    return out


async def test_one_policy_snapshot_for_the_whole_request(tmp_path: Path, stub: StubServer, mode: str) -> None:
    """A hot reload that lands while a stream is being checked changes nothing in that stream: every
    check of one request is made under the policy it started with; the next request gets the new one."""
    path = tmp_path / "policy.yaml"
    old = make_policy(check_every=10, holdback=4)
    path.write_text(yaml.safe_dump({**old, "name": "before"}))
    log = DecisionLog()
    guard = Guard(
        path, classifiers=FakeClassifier(rules=FAKE_RULES), reload=True, reload_interval=0.0, on_decision=log.append
    )
    new = make_policy(check_every=10, holdback=4)
    new["output"]["rules"][0]["threshold"] = 0.0  # after the reload every answer is "harmful"
    stub.reply = "A calm and long answer about the garden, the roses, the tea and the quiet afternoon."

    def reload_midway(i: int) -> None:
        if i == 2:
            path.write_text(yaml.safe_dump({**new, "name": "after"}))
            assert guard.policy.name == "after"  # the Guard has the new policy now

    texts = await stream_texts(guard, stub, mode, "garden?", reload_midway)
    assert "".join(texts) == stub.reply  # released whole: the old policy allowed it
    assert {d.policy for d in log} == {"before"} and len(log) > 3
    log.clear()
    texts = await stream_texts(guard, stub, mode, "garden?")
    assert texts[-1] == REFUSAL and {d.policy for d in log} == {"after"}
    guard.close()


async def test_the_outcome_of_each_action(mode: str) -> None:
    log = DecisionLog()
    guard = make_guard(log=log)
    call = Call(guard)

    async def check_in(text: str) -> Any:
        return call.check_input(text) if mode == "sync" else await call.acheck_input(text)

    allow = call.outcome(await check_in("hello"))
    assert (allow.stop, allow.text, allow.finish_reason) == (False, None, None)
    redact = call.outcome(await check_in("mail bob@example.com"))
    assert (redact.stop, redact.text) == (False, "mail <EMAIL_1>")
    replaced = await check_in("I want to hurt myself")
    assert call.outcome(replaced).stop is False  # a whole request goes on, rewritten
    assert call.outcome(replaced, stream=True).stop is True  # a stream cannot unsay released text
    block = call.outcome(await check_in("a bomb"))
    assert (block.stop, block.text, block.finish_reason) == (True, REFUSAL, CONTENT_FILTER)
    assert call.decisions == list(log)  # the call records every decision it made
    h = call.headers()
    assert h["x-guardrail-action"] == "block"
    assert h["x-guardrail-decision-ids"].split(",") == [d.id for d in log]
    assert h["x-guardrail-categories"] == "pii,self_harm,unsafe"

    raising = Call(make_guard(respond="raise"))
    with pytest.raises(Blocked):
        raising.outcome(raising.check_input("a bomb"))
    custom = Call(make_guard(respond="raise"), raise_as=lambda d, message: ValueError(message))
    with pytest.raises(ValueError, match="help with that"):
        custom.outcome(custom.check_input("a bomb"))


def test_headers_of_no_decision_are_empty_and_never_carry_scores() -> None:
    assert headers([]) == {}
    d = make_guard().check_input("a bomb")
    assert set(summary(d)) == {"id", "action", "stage", "categories", "policy"}
    assert "0.99" not in repr(headers([summary(d)]))


def test_context_needs_a_guard_that_routes() -> None:
    guard = make_guard()
    if "context" in inspect.signature(guard.check_input).parameters:
        assert Call(guard, context={"tenant": "a"}).context == {"tenant": "a"}
    else:
        with pytest.raises(TypeError, match="does not route by context"):
            Call(guard, context={"tenant": "a"})


async def test_guard_wrap_and_protect_are_deprecated_aliases(stub: StubServer) -> None:
    guard = make_guard()
    with pytest.warns(DeprecationWarning, match=r"guardrail\.wrap\(guard, client\)"):
        client = guard.wrap(openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0))
    resp = client.chat.completions.create(model="m", messages=user("a bomb"))
    assert resp.choices[0].finish_reason == "content_filter"
    client.unwrapped.close()
    with pytest.warns(DeprecationWarning, match=r"guardrail\.protect\(guard\)"):
        fn = guard.protect(lambda prompt: "ok: " + prompt)
    assert fn("a bomb") == REFUSAL
    await asyncio.sleep(0)


def test_the_guard_comes_first(stub: StubServer) -> None:
    """``@guardrail.protect`` used bare, or wrap's arguments swapped, fail at once and say the right form."""
    with pytest.raises(TypeError, match=r"@guardrail\.protect\(guard\)"):

        @guardrail.protect  # type: ignore[arg-type]
        def answer(prompt: str) -> str:
            return prompt

    raw = openai.OpenAI(base_url=stub.url, api_key="x")
    with pytest.raises(TypeError, match=r"guardrail\.wrap\(guard, client\)"):
        guardrail.wrap(raw, make_guard())  # type: ignore[arg-type]
    raw.close()
