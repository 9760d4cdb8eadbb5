"""Review of e3017a6 (a message's name masked in the request; ``serve --port 0``), each defect found with a test.

- a value beside other words in a name (``key_sk_live_..._x``, ``jane_doe@example.com_support``): the ``_`` next to
  it is a word character, so no detector saw its edges; the key went out unmasked, and of the address only
  ``doe@example.com`` was masked (``jane_EMAIL_1_support`` still said who it was);
- a name's words were counted after values were kept whole, so ``sk_live_..._build_a_bomb`` (six words written, four
  read) was no longer scored, and was sent on;
- the name of a message without text (an image sent with a name) was never read, so it went out unmasked;
- LangChain: only the content of a rewritten message was copied back, so the caller's own name (and one held in
  ``additional_kwargs``, which langchain-openai sends too) reached the model unmasked;
- ``serve``: a SIGTERM during start-up was still announced as "listening" just before the server shut down.

And one decision pinned: ``restore=True`` puts back placeholders (``<EMAIL_1>``), never the bare stand-in a name
holds (``EMAIL_1``), which is also what any text may say.
"""

from __future__ import annotations

import inspect
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import httpx
import openai
import pytest
from conftest import FAKE_RULES, REPLACED, make_policy
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from starlette.applications import Starlette
from stub_server import StubServer

import guardrail
from guardrail import Guard
from guardrail.names import NAME_PATTERN
from guardrail.serve import launch
from guardrail.testing import FakeClassifier

KEY = "sk_live_abcdefghijklmnopqrstuvwx1234"
GHP = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def key_guard() -> Iterator[Guard]:
    """The shared test policy, redacting API keys on input too."""
    policy = make_policy()
    policy["input"]["rules"][2]["entities"] = ["email", "phone", "api_key"]
    g = Guard(policy, classifiers=FakeClassifier(rules=FAKE_RULES))
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


def client_for(guard: Guard, stub: StubServer, mode: str, **options: Any) -> Any:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw, **options)


def sent_messages(stub: StubServer) -> list[dict[str, Any]]:
    (request,) = stub.completions()
    messages: list[dict[str, Any]] = request.body["messages"]
    return messages


# -- a value beside other words ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        (f"key_{KEY}_x", "key_API_KEY_1_x"),  # was sent as it is: no detector saw where the key starts
        (f"my_{GHP}", "my_API_KEY_1"),
        (f"token-{KEY}-2", "token-API_KEY_1-2"),
        ("jane_doe@example.com_support", "EMAIL_1_support"),  # was jane_EMAIL_1_support
        ("call_555_123_4567_now", "call_PHONE_1_now"),  # found with its "_" as spaces, as before
    ],
)
async def test_a_value_beside_other_words_in_a_name_is_masked_whole(
    key_guard: Guard, stub: StubServer, mode: str, name: str, masked: str
) -> None:
    client = client_for(key_guard, stub, mode)
    await run(client.chat.completions.create(model="m", messages=[{"role": "user", "name": name, "content": "hi"}]))
    assert sent_messages(stub) == [{"role": "user", "name": masked, "content": "hi"}]
    assert NAME_PATTERN.fullmatch(masked)


async def test_a_sentence_written_as_a_name_around_a_value_is_scored(
    key_guard: Guard, stub: StubServer, mode: str
) -> None:
    """Six words as written: scored (the count no longer drops when a value in it is kept whole)."""
    client = client_for(key_guard, stub, mode)
    messages = [{"role": "user", "name": f"{KEY}_build_a_bomb", "content": "go on"}]
    resp = await run(client.chat.completions.create(model="m", messages=messages))
    assert resp.choices[0].finish_reason == "content_filter"
    assert stub.completions() == []


# -- a message without text ---------------------------------------------------------------------------


async def test_the_name_of_a_message_without_text_is_read_and_masked(
    key_guard: Guard, stub: StubServer, mode: str
) -> None:
    client = client_for(key_guard, stub, mode)
    messages = [{"role": "user", "name": "555-123-4567", "content": [IMAGE]}]
    await run(client.chat.completions.create(model="m", messages=messages))
    assert sent_messages(stub) == [{"role": "user", "name": "PHONE_1", "content": [IMAGE]}]
    assert messages[0]["name"] == "555-123-4567"  # the caller's own list is untouched


async def test_a_rule_message_replaces_a_turn_read_by_its_name_alone(key_guard: Guard, mode: str) -> None:
    """A rewrite rule's message where the turn had no text: it becomes the turn's text (it failed: no place for it)."""
    messages = [{"role": "user", "name": "i_want_to_hurt_myself_right_now", "content": [IMAGE]}]
    d = key_guard.check_input(messages) if mode == "sync" else await key_guard.acheck_input(messages)
    assert d.action == "rewrite" and d.text == REPLACED
    assert d.messages is not None and d.messages[0]["content"] == REPLACED


# -- LangChain -----------------------------------------------------------------------------------------


def lc_model(stub: StubServer) -> ChatOpenAI:
    return ChatOpenAI(  # type: ignore[call-arg]
        model="stub-model",
        base_url=stub.url,
        api_key="sk-test",
        max_retries=0,
        http_async_client=httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)),
    )


async def lc_invoke(runnable: Any, mode: str, value: Any) -> Any:
    return runnable.invoke(value) if mode == "sync" else await runnable.ainvoke(value)


@pytest.mark.parametrize(
    ("message", "content"),
    [
        (HumanMessage(content="hi", name="555-123-4567"), "hi"),  # only the name changed: was sent as it was
        (HumanMessage(content="mail bob@example.com", name="555-123-4567"), "mail <EMAIL_1>"),  # content only
        (HumanMessage(content="hi", additional_kwargs={"name": "555-123-4567"}), "hi"),  # sent by langchain-openai
    ],
)
async def test_langchain_sends_the_masked_name(
    key_guard: Guard, stub: StubServer, mode: str, message: HumanMessage, content: str
) -> None:
    before = message.model_dump()
    await lc_invoke(guardrail.wrap(key_guard, lc_model(stub)), mode, [message])
    assert sent_messages(stub) == [{"role": "user", "name": "PHONE_1", "content": content}]
    assert message.model_dump() == before  # the caller's message is untouched


async def test_langchain_leaves_a_plain_name_alone(key_guard: Guard, stub: StubServer, mode: str) -> None:
    await lc_invoke(guardrail.wrap(key_guard, lc_model(stub)), mode, [HumanMessage(content="hi", name="Jane_Doe")])
    assert sent_messages(stub) == [{"role": "user", "name": "Jane_Doe", "content": "hi"}]


# -- restore=True and the bare stand-in -----------------------------------------------------------------


async def test_restore_puts_back_placeholders_never_a_names_bare_stand_in(
    key_guard: Guard, stub: StubServer, mode: str
) -> None:
    """The model echoes the masked request (the stub says "You said: ..."): ``<PHONE_1>`` comes back as the number;
    ``PHONE_1`` as written in a name (or anywhere) stays, since bare it is also an ordinary word of any text."""
    client = client_for(key_guard, stub, mode, restore=True)
    messages = [{"role": "user", "name": "555-123-4567", "content": "PHONE_1 is me, call 555-123-4567"}]
    resp = await run(client.chat.completions.create(model="m", messages=messages))
    assert sent_messages(stub)[0]["name"] == "PHONE_1"
    assert sent_messages(stub)[0]["content"] == "PHONE_1 is me, call <PHONE_1>"
    assert resp.choices[0].message.content == "You said: PHONE_1 is me, call 555-123-4567"


# -- serve: a SIGTERM during start-up ---------------------------------------------------------------------


def test_a_sigterm_during_start_up_is_not_announced(capsys: pytest.CaptureFixture[str]) -> None:
    """The server stops as soon as its start-up is done: saying it listens would send a harness to a dead port."""
    received: list[int] = []

    def record(sig: int, frame: FrameType | None) -> None:  # uvicorn raises a caught signal again once it is done
        received.append(sig)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        os.kill(os.getpid(), signal.SIGTERM)  # caught by uvicorn's handler: it shuts down after start-up
        yield

    previous = signal.signal(signal.SIGTERM, record)
    sock = launch.bind("127.0.0.1", 0)
    try:
        assert launch.serve(Starlette(lifespan=lifespan), sock, log_level="critical") == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    assert "listening on" not in capsys.readouterr().err
    assert sock.fileno() == -1  # closed once served
