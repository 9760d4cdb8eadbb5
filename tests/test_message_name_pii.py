"""Personal data in a chat message's ``name``: checked like the content, and masked in the request that goes
upstream with a stand-in a name may hold (``EMAIL_1``: OpenAI takes only ``^[a-zA-Z0-9_-]{1,64}$`` there).

End to end through the real openai client (sync and async) against the stub server, which records what reached
the network; then the reading and masking of a name on their own (``guardrail.names``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from conftest import FAKE_RULES, make_policy
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from stub_server import StubServer

import guardrail
from guardrail import Guard
from guardrail.messages import extract
from guardrail.names import NAME_PATTERN, masked_name, name_reading
from guardrail.serve import create_app
from guardrail.testing import DecisionLog, FakeClassifier


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def name_guard(decisions: DecisionLog) -> Iterator[Guard]:
    """The shared test policy (e-mail and phone redacted on input, scope last_user), scope widened by a test."""
    g = Guard(make_policy(), classifiers=FakeClassifier(rules=FAKE_RULES), on_decision=decisions.append)
    yield g
    g.close()


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


def client_for(guard: Guard, stub: StubServer, mode: str, **options: Any) -> Any:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw, **options)


async def run(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def collect(stream: Any) -> list[Any]:
    if hasattr(stream, "__aiter__"):
        return [item async for item in stream]
    return list(stream)


def sent_messages(stub: StubServer) -> list[dict[str, Any]]:
    (request,) = stub.completions()
    messages: list[dict[str, Any]] = request.body["messages"]
    return messages


# -- through the openai client ----------------------------------------------------------------------


async def test_an_email_used_as_a_name_is_masked_with_a_valid_name(
    name_guard: Guard, stub: StubServer, mode: str, decisions: DecisionLog
) -> None:
    client = client_for(name_guard, stub, mode)
    messages = [{"role": "user", "name": "jane.doe@example.com", "content": "what is the capital of France?"}]
    resp = await run(client.chat.completions.create(model="m", messages=messages))
    assert sent_messages(stub) == [{"role": "user", "name": "EMAIL_1", "content": "what is the capital of France?"}]
    assert NAME_PATTERN.fullmatch(sent_messages(stub)[0]["name"])
    assert resp.choices[0].message.content == "You said: what is the capital of France?"
    first = decisions[0]
    assert first.stage == "input" and first.action == "rewrite"
    assert [f.entities for f in first.findings] == [("email",)]
    assert first.redactions == {"<EMAIL_1>": "jane.doe@example.com"}
    assert messages[0]["name"] == "jane.doe@example.com"  # the caller's own list is untouched


async def test_one_value_has_one_number_in_the_name_and_in_the_text(
    name_guard: Guard, stub: StubServer, mode: str
) -> None:
    client = client_for(name_guard, stub, mode)
    messages = [
        {"role": "user", "name": "bob@example.com", "content": "write to carol@example.com and cc bob@example.com"}
    ]
    await run(client.chat.completions.create(model="m", messages=messages))
    (sent,) = sent_messages(stub)
    assert sent["content"] == "write to <EMAIL_1> and cc <EMAIL_2>"
    assert sent["name"] == "EMAIL_2"  # bob is <EMAIL_2> in the text: the model can tell it is the same person


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("jane_doe@example.com", "EMAIL_1"),  # whole: never "jane_EMAIL_1", which still says who it is
        ("first-last@my-company.com", "EMAIL_1"),
        ("call_555-123-4567", "call_PHONE_1"),  # separators read as spaces find the number, masked as written
        ("support-bot-7", "support-bot-7"),  # a handle: sent as it is
    ],
)
async def test_names_written_with_separators_are_masked_where_the_value_sits(
    name_guard: Guard, stub: StubServer, mode: str, name: str, masked: str
) -> None:
    client = client_for(name_guard, stub, mode)
    await run(client.chat.completions.create(model="m", messages=[{"role": "user", "name": name, "content": "hi"}]))
    assert sent_messages(stub) == [{"role": "user", "name": masked, "content": "hi"}]
    assert NAME_PATTERN.fullmatch(masked)


async def test_a_streamed_request_sends_the_masked_name_too(name_guard: Guard, stub: StubServer, mode: str) -> None:
    client = client_for(name_guard, stub, mode)
    messages = [{"role": "user", "name": "jane.doe@example.com", "content": "say hello"}]
    chunks = await collect(await run(client.chat.completions.create(model="m", messages=messages, stream=True)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: say hello"
    assert sent_messages(stub) == [{"role": "user", "name": "EMAIL_1", "content": "say hello"}]


async def test_every_name_the_scope_reads_is_masked(stub: StubServer, mode: str) -> None:
    policy = make_policy()
    policy["input"]["scope"] = "all_user"
    guard = Guard(policy, classifiers=FakeClassifier(rules=FAKE_RULES))
    client = client_for(guard, stub, mode)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "name": "ann@example.org", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "name": "555-123-4567", "content": "and again"},
    ]
    await run(client.chat.completions.create(model="m", messages=messages))
    assert [m.get("name") for m in sent_messages(stub)] == [None, "EMAIL_1", None, "PHONE_1"]
    guard.close()


async def test_a_name_without_personal_data_leaves_the_request_alone(
    name_guard: Guard, stub: StubServer, mode: str, decisions: DecisionLog
) -> None:
    client = client_for(name_guard, stub, mode)
    messages = [{"role": "user", "name": "Jane_Doe", "content": "hello there"}]
    await run(client.chat.completions.create(model="m", messages=messages))
    assert sent_messages(stub) == messages
    assert decisions.actions == ["allow", "allow"]


def test_the_check_service_returns_the_masked_name() -> None:
    guard = Guard(make_policy(), classifiers=FakeClassifier(rules=FAKE_RULES))
    with TestClient(create_app(guard=guard, tokens=[])) as c:
        body = c.post("/v1/check", json={"messages": [{"role": "user", "name": "a@b.example", "content": "x"}]}).json()
    guard.close()
    assert body["action"] == "rewrite" and body["messages"] == [{"role": "user", "name": "EMAIL_1", "content": "x"}]


# -- the reading and the mask, on their own ---------------------------------------------------------


def test_the_name_is_read_with_personal_data_kept_whole() -> None:
    assert name_reading("jane_doe@example.com") == "jane_doe@example.com"
    assert name_reading("sk_live_abcdefghijklmnopqrstuvwx1234") == "sk_live_abcdefghijklmnopqrstuvwx1234"
    assert name_reading("hitman_47") == "hitman 47"  # a handle's words, as keyword rules read them
    assert name_reading("call_555-123-4567_now") == "call 555-123-4567 now"  # found in its words, kept as written
    assert name_reading("call_555_123_4567_now") == "call 555 123 4567 now"  # found only with its "_" as spaces
    (name,) = extract([{"role": "user", "name": "jane_doe@example.com", "content": "hi"}]).extra
    assert name.text == "jane_doe@example.com" and name.name_of == 0 and not name.scored


def test_a_value_the_mask_cannot_reach_leaves_the_name_out() -> None:
    assert masked_name("jane.doe@example.com", {"<EMAIL_1>": "jane.doe@example.com"}) == "EMAIL_1"
    assert masked_name("x_JANE.DOE@EXAMPLE.COM", {"<EMAIL_1>": "jane.doe@example.com"}) == "x_EMAIL_1"
    assert masked_name("ann", {}) == "ann"
    # a valid name that a longer stand-in would push past 64 characters: left out, never sent invalid or unmasked
    long = "a" * 58 + "_e1234"
    assert masked_name(long, {"<EMPLOYEE_ID_1>": "e1234"}) is None
    # a name no one can fit to OpenAI's pattern anyway is masked, not dropped
    assert masked_name("Jane Doe <jane@x.org>", {"<EMAIL_1>": "jane@x.org"}) == "Jane Doe <EMAIL_1>"


_NAME_CHARS = st.sampled_from("abcxyz019_-")
_VALUES = st.sampled_from(["555-123-4567", "555 123 4567", "4111111111111111", "DE89370400440532013000"])


@given(st.text(_NAME_CHARS, max_size=20), _VALUES, st.text(_NAME_CHARS, max_size=20))
def test_a_masked_valid_name_is_valid_and_holds_no_value(before: str, value: str, after: str) -> None:
    name = f"{before}{value.replace(' ', '_')}{after}"
    masked = masked_name(name, {"<PII_1>": value})
    if masked is not None:
        assert NAME_PATTERN.fullmatch(masked) or not NAME_PATTERN.fullmatch(name)
        flat = masked.replace("_", "").replace("-", "").replace(" ", "")
        assert value.replace("-", "").replace(" ", "") not in flat
