"""A name or an address one turn of a request says is masked wherever it stands whole in the others.

A final review (session 24) found "My name is Jane Doe" masked in one user turn and "Is Jane Doe a nice name?" sent
upstream as written in the next, while the audit log showed it masked: each text was searched for its own cues only.
The texts of a request are redacted as one (``rules._redact_all``), and the values found through a cue are now looked
for, whole and as written, in every text of it (``patterns.masked_repeats``). Through the real openai client against
the stub, sync and async.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from stub_server import StubServer

import guardrail
from guardrail import Guard
from guardrail.policy import load_policy
from guardrail.testing import FakeClassifier

CONVERSATION = [
    {"role": "user", "content": "My name is Jane Doe and I live at 42 Elm Street, Springfield, IL 62704."},
    {"role": "assistant", "content": "Thanks, noted."},
    {"role": "user", "content": "Is Jane Doe a nice name? And is 42 Elm Street, Springfield, IL 62704 a good area?"},
]
_OPEN: list[Any] = []


def guard() -> Guard:
    rule = {"category": "pii", "action": "redact", "entities": ["person", "address"]}
    policy = load_policy({"version": 1, "name": "turns", "input": {"scope": "all_user", "rules": [rule]}})
    return Guard(policy, classifiers=FakeClassifier())


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        closed = _OPEN.pop().close()
        if inspect.isawaitable(closed):
            await closed


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_name_and_an_address_said_in_one_turn_are_masked_in_the_next(stub: StubServer, mode: str) -> None:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    with guard() as g:
        client = guardrail.wrap(g, raw)
        answer = client.chat.completions.create(model="m", messages=CONVERSATION)
        if inspect.isawaitable(answer):
            await answer
    (request,) = stub.completions()
    sent = [m["content"] for m in request.body["messages"]]
    assert sent[0] == "My name is <PERSON_1> and I live at <ADDRESS_1>."
    assert sent[2] == "Is <PERSON_1> a nice name? And is <ADDRESS_1> a good area?"
    assert "Jane" not in str(sent) and "Elm" not in str(sent)


def test_a_different_name_in_the_next_turn_is_left_alone() -> None:
    with guard() as g:
        d = g.check_input([CONVERSATION[0], {"role": "user", "content": "Is Jane Doester a nice name?"}])
    assert d.messages is not None
    assert d.messages[1]["content"] == "Is Jane Doester a nice name?"
