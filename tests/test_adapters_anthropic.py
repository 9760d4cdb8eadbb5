"""guardrail.wrap(guard, anthropic.Anthropic / AsyncAnthropic): the real client against the local stub server.

Every behaviour runs through the sync and the async client (the ``mode`` fixture); the stub speaks the Messages API
(JSON, and SSE events for streams) and records what reached the network.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message
from conftest import FAKE_RULES, REFUSAL, REPLACED, ROOT, make_guard, make_policy
from guardrail.adapters.request_shapes import UncheckedField
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard
from guardrail.testing import DecisionLog, FakeClassifier

HARMFUL = "Sure. First you take the parts, then you build the bomb like this, and then you wait for it."
LEAD = "Here is a calm opening line about the weather and the sea. "  # released before the harmful part


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_OPEN: list[Any] = []


def client_for(guard: Guard, stub: StubServer, mode: str, **options: Any) -> Any:
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    raw = cls(base_url=f"http://127.0.0.1:{stub.port}", api_key="sk-ant-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw, **options)


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client a test made, in the test's own event loop (no unclosed sockets)."""
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


@pytest.fixture
def client(guard: Guard, stub: StubServer, mode: str) -> Any:
    return client_for(guard, stub, mode)


async def run(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def collect(stream: Any) -> list[Any]:
    if hasattr(stream, "__aiter__"):
        return [item async for item in stream]
    return list(stream)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def scoped(scope: str) -> Guard:
    """The test policy reading the turns of ``scope`` (``all``: the system prompt and tool results too)."""
    pol = make_policy()
    return Guard({**pol, "input": {**pol["input"], "scope": scope}}, classifiers=FakeClassifier(rules=FAKE_RULES))


async def create(client: Any, **kwargs: Any) -> Any:
    return await run(client.messages.create(model="claude-test", max_tokens=64, **kwargs))


def text_of(events: list[Any]) -> str:
    return "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")


def assembled(events: list[Any]) -> list[dict[str, Any]]:
    """The blocks a client assembles from ``events``, checking the stream is well formed: one message, blocks
    started in index order, each delta and stop for an open block, nothing after message_stop."""
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    blocks: list[dict[str, Any]] = []
    open_: set[int] = set()
    for e in events[1:-1]:
        if e.type == "content_block_start":
            assert e.index == len(blocks) and not open_, "a block starts at the next index, after the last one stops"
            blocks.append({"type": e.content_block.type, "text": "", "json": ""})
            open_.add(e.index)
        elif e.type == "content_block_delta":
            assert e.index in open_
            blocks[e.index]["text"] += getattr(e.delta, "text", None) or getattr(e.delta, "thinking", None) or ""
            blocks[e.index]["json"] += getattr(e.delta, "partial_json", None) or ""
        elif e.type == "content_block_stop":
            open_.remove(e.index)
        else:
            assert e.type == "message_delta" and not open_
    return blocks


def stop_reason(events: list[Any]) -> str:
    return str(next(e.delta.stop_reason for e in events if e.type == "message_delta"))


# ------------------------------------------------------------------------------------ whole answers


async def test_a_benign_request_passes_unchanged(client: Any, stub: StubServer, decisions: DecisionLog) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    resp = await create(client, messages=messages, system="You are helpful.")
    assert isinstance(resp, Message)
    assert resp.content[0].text == "You said: hello there" and resp.stop_reason == "end_turn"
    body = stub.messages()[0].body
    assert body["messages"] == messages and body["system"] == "You are helpful."
    assert decisions.actions == ["allow", "allow"]


async def test_a_harmful_prompt_gets_a_refusal_message_and_never_reaches_the_network(
    client: Any, stub: StubServer, decisions: DecisionLog
) -> None:
    resp = await create(client, messages=user("how do I build a bomb"))
    assert isinstance(resp, Message)
    assert resp.stop_reason == "refusal" and [b.text for b in resp.content] == [REFUSAL]
    assert resp.id == f"msg-guardrail-{decisions[0].id}" and resp.model == "claude-test"
    assert stub.messages() == []


async def test_a_harmful_prompt_raises_when_the_policy_says_raise(
    raising_guard: Guard, stub: StubServer, mode: str
) -> None:
    client = client_for(raising_guard, stub, mode)
    with pytest.raises(Blocked) as info:
        await create(client, messages=user("how do I build a bomb"))
    assert info.value.decision.stage == "input"
    assert stub.messages() == []


async def test_pii_in_a_user_message_is_redacted_where_it_sits(client: Any, stub: StubServer) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    content = [image, {"type": "text", "text": "what is this? mail bob@example.com"}]
    resp = await create(client, messages=[{"role": "user", "content": content}])
    sent = stub.messages()[0].body["messages"][0]["content"]
    assert sent == [image, {"type": "text", "text": "what is this? mail <EMAIL_1>"}]  # the image passes untouched
    assert resp.content[0].text.endswith("what is this? mail <EMAIL_1>")


@pytest.mark.parametrize("form", ["string", "blocks"])
async def test_pii_in_the_system_prompt_is_redacted_when_the_scope_reads_it(
    stub: StubServer, mode: str, form: str
) -> None:
    system: Any = "Escalate to ops@corp.example."
    if form == "blocks":
        system = [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Escalate to ops@corp.example."}]
    await create(client_for(scoped("all"), stub, mode), system=system, messages=user("hi"))
    sent = stub.messages()[0].body["system"]
    expected = "Escalate to <EMAIL_1>."
    assert sent == (expected if form == "string" else [system[0], {"type": "text", "text": expected}])
    stub.reset()  # the scope that reads only the user's turn leaves the system prompt as it is
    await create(client_for(scoped("last_user"), stub, mode), system=system, messages=user("hi"))
    assert stub.messages()[0].body["system"] == system


async def test_a_tool_results_text_is_checked_and_redacted_in_the_block(stub: StubServer, mode: str) -> None:
    client = client_for(scoped("all"), stub, mode)
    messages = [
        {"role": "user", "content": "look the customer up"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "c"}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "eve@corp.example"}]},
                {"type": "text", "text": "and write to them"},
            ],
        },
    ]
    await create(client, messages=messages)
    sent = stub.messages()[0].body["messages"]
    assert sent[:2] == messages[:2]  # the model's own call is its plumbing: sent as it was
    assert sent[2]["content"][0]["content"] == [{"type": "text", "text": "<EMAIL_1>"}]
    assert sent[2]["content"][1] == {"type": "text", "text": "and write to them"}
    stub.reset()
    harmful = [*messages[:2], {"role": "user", "content": [{**messages[2]["content"][0], "content": "a bomb"}]}]
    resp = await create(client, messages=harmful)
    assert resp.stop_reason == "refusal" and stub.messages() == []


async def test_a_rewrite_rule_replaces_the_prompt(client: Any, stub: StubServer) -> None:
    await create(client, messages=[{"role": "user", "content": [{"type": "text", "text": "I want to hurt myself"}]}])
    assert stub.messages()[0].body["messages"][0]["content"] == [{"type": "text", "text": REPLACED}]


async def test_restore_maps_placeholders_in_the_answer_back(guard: Guard, stub: StubServer, mode: str) -> None:
    client = client_for(guard, stub, mode, restore=True)
    resp = await create(client, messages=user("mail me at bob@example.com"))
    assert stub.messages()[0].body["messages"] == user("mail me at <EMAIL_1>")
    assert resp.content[0].text == "You said: mail me at bob@example.com"
    stub.chunk_chars = 3  # in a stream too, a placeholder cut across events
    prompt = "please forward this long message to bob@example.com and to nobody else at all, thanks"
    events = await collect(await create(client, messages=user(prompt), stream=True))
    assert text_of(events) == "You said: " + prompt


def tool_answer(text: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "text", "text": text},
            {"type": "tool_use", "id": "toolu_1", "name": "send_mail", "input": tool_input},
        ],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 9},
    }  # fmt: skip


async def test_pii_in_an_answers_text_and_tool_input_is_masked(client: Any, stub: StubServer) -> None:
    stub.raw = tool_answer("I will write to leaked@corp.example now.", {"to": "leaked@corp.example", "n": 2})
    resp = await create(client, messages=user("send it"))
    assert resp.content[0].text == "I will write to <EMAIL_1> now."
    assert resp.content[1].type == "tool_use" and resp.content[1].input == {"to": "<EMAIL_1>", "n": 2}
    assert resp.stop_reason == "tool_use"


async def test_restore_puts_the_users_value_back_into_a_tool_input(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.raw = tool_answer("Sending.", {"to": "<EMAIL_1>"})
    resp = await create(client_for(guard, stub, mode, restore=True), messages=user("mail bob@example.com"))
    assert stub.messages()[0].body["messages"] == user("mail <EMAIL_1>")
    assert resp.content[1].input == {"to": "bob@example.com"}


async def test_a_harmful_answer_is_replaced_by_the_refusal(client: Any, stub: StubServer) -> None:
    stub.reply = HARMFUL
    resp = await create(client, messages=user("x"))
    assert resp.stop_reason == "refusal" and [b.text for b in resp.content] == [REFUSAL]
    stub.raw = tool_answer("Fine.", {"plan": "build the bomb"})  # its call blocks it, and never reaches the caller
    resp = await create(client, messages=user("x"))
    assert resp.stop_reason == "refusal" and [b.type for b in resp.content] == ["text"]


async def test_a_harmful_answer_raises_when_the_policy_says_raise(
    raising_guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.reply = HARMFUL
    with pytest.raises(Blocked) as info:
        await create(client_for(raising_guard, stub, mode), messages=user("x"))
    assert info.value.decision.stage == "output"


# ------------------------------------------------------------------------------------------ streams


async def test_a_stream_is_reemitted_as_the_sdks_events(client: Any, stub: StubServer) -> None:
    stub.reply = "A calm and entirely harmless answer about gardening, watering and the weather."
    events = await collect(await create(client, messages=user("garden?"), stream=True))
    kinds = (anthropic.types.RawMessageStartEvent, anthropic.types.RawContentBlockStartEvent,
             anthropic.types.RawContentBlockDeltaEvent, anthropic.types.RawContentBlockStopEvent,
             anthropic.types.RawMessageDeltaEvent, anthropic.types.RawMessageStopEvent)  # fmt: skip
    assert all(isinstance(e, kinds) for e in events)
    assert assembled(events) == [{"type": "text", "text": stub.reply, "json": ""}]
    assert stop_reason(events) == "end_turn"


async def test_a_stream_block_ends_with_the_refusal_and_nothing_past_the_block(client: Any, stub: StubServer) -> None:
    stub.reply = LEAD + HARMFUL
    events = await collect(await create(client, messages=user("x"), stream=True))
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    released = "".join(deltas[:-1])
    assert released and stub.reply.startswith(released) and "bomb" not in released  # the hold-back kept it
    assert deltas[-1] == "\n\n" + REFUSAL  # its own delta, set apart
    assert stop_reason(events) == "refusal"
    assert assembled(events) == [{"type": "text", "text": released + "\n\n" + REFUSAL, "json": ""}]


async def test_the_stream_holds_back_what_the_next_check_has_not_read(stub: StubServer, mode: str) -> None:
    # checks every 40 characters, holding back 16: "bomb" arrives last, and what went out before never reaches it
    client = client_for(make_guard(check_every=40, holdback=16), stub, mode)
    stub.pieces = ["a" * 30 + " ", "b" * 30 + " ", "c" * 30 + " ", "now the bomb"]
    events = await collect(await create(client, messages=user("x"), stream=True))
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    released, whole = "".join(deltas[:-1]), "".join(stub.pieces)
    assert released and whole.startswith(released) and len(released) <= len(whole) - 16
    assert deltas[-1].endswith(REFUSAL) and stop_reason(events) == "refusal"


async def test_a_stream_block_raises_when_the_policy_says_raise(
    raising_guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.reply = HARMFUL
    stream = await create(client_for(raising_guard, stub, mode), messages=user("x"), stream=True)
    seen: list[Any] = []
    with pytest.raises(Blocked):
        if hasattr(stream, "__aiter__"):
            async for e in stream:
                seen.append(e)
        else:
            seen.extend(stream)
    assert "bomb" not in text_of(seen)


async def test_a_harmful_prompt_with_stream_gets_a_refusal_stream(client: Any, stub: StubServer) -> None:
    events = await collect(await create(client, messages=user("a bomb please"), stream=True))
    assert assembled(events) == [{"type": "text", "text": REFUSAL, "json": ""}]
    assert stop_reason(events) == "refusal" and stub.messages() == []


def sse(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def streamed_answer(text: str, tool_input: str, *, thinking: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """A stream of an optional thinking block, a text block, and a tool call whose input arrives in pieces."""
    message = {"id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5}}  # fmt: skip
    events = [sse("message_start", message=message)]
    at = 0
    if thinking is not None:
        events += [
            sse("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
            sse("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": thinking}),
            sse("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2ln"}),
            sse("content_block_stop", index=0),
        ]
        at = 1
    events.append(sse("content_block_start", index=at, content_block={"type": "text", "text": ""}))
    events += [
        sse("content_block_delta", index=at, delta={"type": "text_delta", "text": text[i : i + 7]})
        for i in range(0, len(text), 7)
    ]
    events.append(sse("content_block_stop", index=at))
    tool = {"type": "tool_use", "id": "toolu_1", "name": "send_mail", "input": {}}
    events.append(sse("content_block_start", index=at + 1, content_block=tool))
    events += [
        sse(
            "content_block_delta",
            index=at + 1,
            delta={"type": "input_json_delta", "partial_json": tool_input[i : i + 5]},
        )
        for i in range(0, len(tool_input), 5)
    ]
    events.append(sse("content_block_stop", index=at + 1))
    events.append(
        sse("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 9})
    )
    events.append(sse("message_stop"))
    return events  # type: ignore[return-value]


async def test_a_streamed_tool_input_is_masked_whole_and_the_blocks_keep_their_order(
    client: Any, stub: StubServer
) -> None:
    tool_input = json.dumps({"to": "leaked@corp.example", "body": "hello"})
    stub.raw = streamed_answer("I will send the mail now, as you asked me to.", tool_input, thinking="Plan a mail.")
    events = await collect(await create(client, messages=user("send it"), stream=True))
    blocks = assembled(events)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert blocks[0]["text"] == "Plan a mail." and blocks[1]["text"] == "I will send the mail now, as you asked me to."
    assert json.loads(blocks[2]["json"]) == {"to": "<EMAIL_1>", "body": "hello"}
    assert stop_reason(events) == "tool_use"


async def test_a_blocked_stream_never_sends_its_tool_call(client: Any, stub: StubServer) -> None:
    stub.raw = streamed_answer("Fine, here it is.", json.dumps({"plan": "build the bomb"}))
    events = await collect(await create(client, messages=user("x"), stream=True))
    blocks = assembled(events)
    assert [b["type"] for b in blocks] == ["text"] and blocks[0]["text"].endswith(REFUSAL)
    assert "bomb" not in json.dumps([b for b in blocks]) and stop_reason(events) == "refusal"


async def test_a_stream_supports_close_and_the_context_manager(client: Any, stub: StubServer, mode: str) -> None:
    stub.reply = "word " * 60
    stream = await create(client, messages=user("x"), stream=True)
    if mode == "sync":
        with stream as s:
            first = next(iter(s))
    else:
        async with stream as s:
            first = await s.__anext__()
    assert first.type == "message_start"
    assert stream.response.status_code == 200  # the upstream Stream's attributes pass through
    stream = await create(client, messages=user("x"), stream=True)
    await run(stream.close())


# --------------------------------------------------------------------------- server tools' results

LEAK = "leak@corp.example"
# what a server tool brings back, per kind (its text holds {v}: personal data, or harmful words), and where it sits
SERVER_RESULTS: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {
    "web_search": (
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://x.example/", "title": "Write to {v}",
             "encrypted_content": "ZW5j", "page_age": None}]},
        ("content", 0, "title"),
    ),
    "web_fetch": (
        {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "web_fetch_result", "url": "https://x.example/", "retrieved_at": "2026-01-01T00:00:00Z",
            "content": {"type": "document", "title": "A page", "citations": None,
                        "source": {"type": "text", "media_type": "text/plain", "data": "The page says {v}."}}}},
        ("content", "content", "source", "data"),
    ),
    "code_execution": (
        {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "code_execution_result", "stdout": "printed {v}\n", "stderr": "", "return_code": 0,
            "content": []}},
        ("content", "stdout"),
    ),
    "bash_code_execution": (
        {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "bash_code_execution_result", "stdout": "", "stderr": "warning: {v}", "return_code": 1,
            "content": []}},
        ("content", "stderr"),
    ),
    "text_editor_view": (
        {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "text_editor_code_execution_view_result", "content": "line one\n{v}\n", "file_type": "text",
            "num_lines": 2, "start_line": 1, "total_lines": 2}},
        ("content", "content"),
    ),
    "text_editor_str_replace": (
        {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "text_editor_code_execution_str_replace_result", "lines": ["owner = '{v}'"], "new_lines": 1,
            "new_start": 1, "old_lines": 1, "old_start": 1}},
        ("content", "lines", 0),
    ),
}  # fmt: skip


def server_result(kind: str, value: str) -> dict[str, Any]:
    block, _ = SERVER_RESULTS[kind]
    return json.loads(json.dumps(block).replace("{v}", json.dumps(value)[1:-1]))  # type: ignore[no-any-return]


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in a block given as an SDK model or a dict."""
    for key in path:
        obj = obj[key] if isinstance(key, int) or isinstance(obj, dict) else getattr(obj, key)
    return obj


def searched(result: dict[str, Any], text: str = "Here is what I found.") -> dict[str, Any]:
    """A whole answer: a server tool's call, its result, then the model's text (which cites the result)."""
    call = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "contact"}}
    return {
        "id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [call, result, {"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 9},
    }  # fmt: skip


def searched_events(result: dict[str, Any], text: str = "Here is what I found for you, all of it.") -> list[Any]:
    """The same answer as the API streams it: the call's input in deltas, the result whole in its start event."""
    message = {"id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5}}  # fmt: skip
    call = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    return [
        sse("message_start", message=message),
        sse("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me look that up."}),
        sse("content_block_stop", index=0),
        sse("content_block_start", index=1, content_block=call),
        sse("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
        sse("content_block_stop", index=1),
        sse("content_block_start", index=2, content_block=result),
        sse("content_block_stop", index=2),
        sse("content_block_start", index=3, content_block={"type": "text", "text": ""}),
        *(sse("content_block_delta", index=3, delta={"type": "text_delta", "text": text[i : i + 6]})
          for i in range(0, len(text), 6)),
        sse("content_block_stop", index=3),
        sse("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 9}),
        sse("message_stop"),
    ]  # fmt: skip


def final_message(events: list[Any]) -> Any:
    """The message the SDK's own stream helper (``MessageStream.get_final_message``) builds from ``events``."""
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assembled(events)  # and well formed: blocks in index order, each closed before the next
    return Message.model_validate(snapshot.model_dump())


def result_block(message: Any) -> Any:
    return next(b for b in message.content if b.type.endswith("_tool_result"))


@pytest.mark.parametrize("kind", sorted(SERVER_RESULTS))
async def test_personal_data_in_a_server_tools_result_is_masked_where_it_sits(
    client: Any, stub: StubServer, kind: str
) -> None:
    stub.raw = searched(server_result(kind, LEAK))
    resp = await create(client, messages=user("look it up"))
    block, path = result_block(resp), SERVER_RESULTS[kind][1]
    assert LEAK not in resp.model_dump_json() and "<EMAIL_1>" in at(block, path)
    assert resp.stop_reason == "end_turn" and resp.content[2].text == "Here is what I found."
    if kind == "web_search":  # its plumbing (what the API reads back next turn) is sent as it came
        assert block.content[0].encrypted_content == "ZW5j" and block.tool_use_id == "srvtoolu_1"


@pytest.mark.parametrize("kind", sorted(SERVER_RESULTS))
async def test_a_streamed_server_tools_result_is_masked_before_it_is_sent(
    client: Any, stub: StubServer, kind: str
) -> None:
    stub.raw = searched_events(server_result(kind, LEAK))
    events = await collect(await create(client, messages=user("look it up"), stream=True))
    message = final_message(events)
    assert [b.type for b in message.content] == ["text", "server_tool_use", SERVER_RESULTS[kind][0]["type"], "text"]
    assert LEAK not in json.dumps([e.model_dump() for e in events], default=str)
    assert "<EMAIL_1>" in at(result_block(message), SERVER_RESULTS[kind][1])
    assert message.content[3].text == "Here is what I found for you, all of it."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 9


@pytest.mark.parametrize("kind", ["web_fetch", "code_execution", "text_editor_view"])
async def test_harmful_text_in_a_server_tools_result_stops_the_answer(client: Any, stub: StubServer, kind: str) -> None:
    stub.raw = searched(server_result(kind, "how to build the bomb"))
    resp = await create(client, messages=user("look it up"))
    assert resp.stop_reason == "refusal" and [b.text for b in resp.content] == [REFUSAL]
    stub.raw = searched_events(server_result(kind, "how to build the bomb"))
    events = await collect(await create(client, messages=user("look it up"), stream=True))
    message = final_message(events)
    assert message.stop_reason == "refusal" and [b.type for b in message.content] == ["text"]
    assert message.content[0].text.endswith(REFUSAL) and "bomb" not in json.dumps([e.model_dump() for e in events])


async def test_a_value_a_server_result_hides_from_masking_stops_the_answer_rather_than_leak(
    client: Any, stub: StubServer
) -> None:
    escaped = LEAK.replace("@", "\\u0040")  # written escaped in plain output: read decoded, not found to replace
    stub.raw = searched(server_result("code_execution", escaped))
    resp = await create(client, messages=user("run it"))
    assert resp.stop_reason == "refusal" and escaped not in resp.model_dump_json()
    stub.raw = searched_events(server_result("code_execution", escaped))
    message = final_message(await collect(await create(client, messages=user("run it"), stream=True)))
    assert message.stop_reason == "refusal" and escaped not in message.model_dump_json()


async def test_a_citation_quoting_personal_data_is_masked(client: Any, stub: StubServer) -> None:
    answer = searched(server_result("web_search", "a page"))
    citation = {"type": "web_search_result_location", "cited_text": f"write to {LEAK} today", "url": "https://x/",
                "title": "Contact", "encrypted_index": "aW5k"}  # fmt: skip
    answer["content"][2]["citations"] = [citation]
    stub.raw = answer
    resp = await create(client, messages=user("look it up"))
    assert resp.content[2].citations[0].cited_text == "write to <EMAIL_1> today"
    assert resp.content[2].citations[0].encrypted_index == "aW5k" and LEAK not in resp.model_dump_json()


async def test_restore_puts_the_users_value_back_into_a_server_result(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.raw = searched(server_result("code_execution", "<EMAIL_1>"))
    resp = await create(client_for(guard, stub, mode, restore=True), messages=user("mail bob@example.com"))
    assert stub.messages()[0].body["messages"] == user("mail <EMAIL_1>")
    assert result_block(resp).content.stdout == "printed bob@example.com\n"


async def test_streamed_thinking_is_masked_and_numbered_with_the_text(client: Any, stub: StubServer) -> None:
    tool_input = json.dumps({"to": "other@corp.example", "body": "hi"})
    stub.raw = streamed_answer(
        f"I will write to {LEAK} and to nobody else, as you asked.", tool_input, thinking=f"Is it {LEAK} or not?"
    )
    message = final_message(await collect(await create(client, messages=user("send it"), stream=True)))
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "Is it <EMAIL_1> or not?" and message.content[0].signature == "c2ln"
    assert message.content[1].text == "I will write to <EMAIL_1> and to nobody else, as you asked."
    assert message.content[2].input == {"to": "<EMAIL_2>", "body": "hi"}


# ------------------------------------------------------------------------------ answers' envelopes


async def test_a_refusal_is_a_valid_message_and_its_stream_builds_one(client: Any, stub: StubServer) -> None:
    resp = await create(client, messages=user("a bomb"))
    again = Message.model_validate(resp.model_dump())
    assert again.stop_reason == "refusal" and again.stop_sequence is None and again.role == "assistant"
    message = final_message(await collect(await create(client, messages=user("a bomb"), stream=True)))
    assert message.stop_reason == "refusal" and [b.text for b in message.content] == [REFUSAL]
    stub.reply = LEAD + HARMFUL  # stopped mid-stream: the SDK's accumulation still ends in one refused message
    message = final_message(await collect(await create(client, messages=user("x"), stream=True)))
    assert message.stop_reason == "refusal" and message.content[0].text.endswith(REFUSAL)


async def test_a_blocked_answer_carries_no_stop_sequence(client: Any, stub: StubServer) -> None:
    stub.raw = {**tool_answer(HARMFUL, {}), "stop_reason": "stop_sequence", "stop_sequence": "###"}
    resp = await create(client, messages=user("x"), stop_sequences=["###"])
    assert resp.stop_reason == "refusal" and resp.stop_sequence is None
    assert [b.type for b in resp.content] == ["text"]


async def test_closing_a_stream_before_reading_it_closes_the_upstream_response(
    client: Any, stub: StubServer, mode: str
) -> None:
    stub.reply = "word " * 60
    stream = await create(client, messages=user("x"), stream=True)
    await run(stream.close())
    assert stream.response.is_closed
    stream = await create(client, messages=user("x"), stream=True)
    if mode == "sync":
        with stream:
            pass
    else:
        async with stream:
            pass
    assert stream.response.is_closed


async def test_an_upstream_error_mid_stream_reaches_the_caller_as_the_sdks_error(client: Any, stub: StubServer) -> None:
    events = streamed_answer("A calm answer about the garden and the weather, nothing more.", "{}")
    stub.raw = [*events[:4], ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]
    with pytest.raises(anthropic.APIStatusError, match="busy"):
        await collect(await create(client, messages=user("x"), stream=True))


async def test_structured_output_is_restored_value_by_value(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.raw = {**tool_answer('{"to": "<EMAIL_1>", "n": 2}', {}), "stop_reason": "end_turn"}
    stub.raw["content"] = stub.raw["content"][:1]
    fmt = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    client = client_for(guard, stub, mode, restore=True)
    resp = await create(client, messages=user("mail bob@example.com"), output_config=fmt)
    assert json.loads(resp.content[0].text) == {"to": "bob@example.com", "n": 2}


# ------------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    "extra",
    [
        {"extra_body": {"messages": user("a bomb")}},
        {"extra_body": {"system": "a bomb"}},
        {"messages": [{"role": "user", "content": [{"type": "made_up", "text": "a bomb"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "odd"}}]}]},
        {"system": [{"type": "image", "source": {}}]},
    ],
)
async def test_a_request_guardrail_cannot_read_whole_is_refused_before_the_network(
    client: Any, stub: StubServer, extra: dict[str, Any]
) -> None:
    kwargs: dict[str, Any] = {"messages": user("hello"), **extra}
    with pytest.raises(UncheckedField):
        await create(client, **kwargs)
    assert stub.messages() == []
    await create(client, messages=user("hello"), extra_body={"top_k": 3})  # fields it does not read still travel
    assert stub.messages()[0].body["top_k"] == 3


async def test_a_plain_text_documents_words_are_read_as_the_users(client: Any, stub: StubServer) -> None:
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "how to build a bomb"}}
    resp = await create(client, messages=[{"role": "user", "content": [doc, {"type": "text", "text": "sum up"}]}])
    assert resp.stop_reason == "refusal" and stub.messages() == []


@pytest.mark.parametrize(
    ("path", "name"),
    [("messages", n) for n in ("stream", "parse", "with_raw_response", "with_streaming_response", "batches",
                                "count_tokens")]
    + [("client", n) for n in ("with_raw_response", "with_streaming_response", "beta", "completions", "post", "get",
                               "put", "patch", "delete", "request", "get_api_list")],
)  # fmt: skip
def test_the_unguarded_doors_are_closed(client: Any, path: str, name: str) -> None:
    with pytest.raises(AttributeError, match="bypass the guard"):
        getattr(client.messages if path == "messages" else client, name)


def test_everything_else_passes_through(client: Any) -> None:
    assert client.models is client.unwrapped.models
    assert client.base_url == client.unwrapped.base_url


async def test_with_options_and_copy_stay_guarded(client: Any, stub: StubServer) -> None:
    for derived in (client.with_options(timeout=5.0), client.copy(max_retries=1)):
        assert type(derived) is type(client)
        resp = await create(derived, messages=user("bomb"))
        assert resp.stop_reason == "refusal"
    assert stub.messages() == []


def test_create_keeps_its_sync_or_async_nature(client: Any, mode: str) -> None:
    assert inspect.iscoroutinefunction(client.messages.create) is (mode == "async")


def test_context_managers(guard: Guard, stub: StubServer) -> None:
    with guardrail.wrap(guard, anthropic.Anthropic(base_url=f"http://127.0.0.1:{stub.port}", api_key="x")) as c:
        assert c.messages.create(model="m", max_tokens=8, messages=user("hi")).content[0].text == "You said: hi"


async def test_the_async_client_is_guarded_in_async_with(guard: Guard, stub: StubServer) -> None:
    raw = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{stub.port}", api_key="x", max_retries=0)
    async with guardrail.wrap(guard, raw) as c:
        resp = await c.messages.create(model="m", max_tokens=8, messages=user("a bomb"))
        assert resp.stop_reason == "refusal" and stub.messages() == []
        derived = c.with_options(timeout=5.0)
        assert (await derived.messages.create(model="m", max_tokens=8, messages=user("hi"))).content[0].text == (
            "You said: hi"
        )
    assert raw.is_closed()


async def test_sync_and_async_give_identical_decisions(stub: StubServer) -> None:
    prompts = ["hello", "a bomb", "mail bob@example.com", "I want to hurt myself", "fine"]
    logs = {"sync": DecisionLog(), "async": DecisionLog()}
    for mode, log in logs.items():
        client = client_for(make_guard(log=log), stub, mode)
        for p in prompts:
            await create(client, messages=user(p))
            await collect(await create(client, messages=user(p), stream=True))

    def summary(log: DecisionLog) -> list[tuple[str, str, tuple[str, ...], str]]:
        return [(d.stage, d.action.value, tuple(f.category for f in d.findings), d.text) for d in log]

    assert summary(logs["sync"]) == summary(logs["async"])


def test_wrapping_is_lazy_and_importing_stays_light() -> None:
    paths = [str(ROOT), str(ROOT / "tests")]
    code = (
        f"import sys; sys.path[:0] = {paths!r}; import conftest; import guardrail.adapters; "
        "print([m for m in ('anthropic', 'guardrail.adapters.anthropic') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# A review of the proxy (session 24) found that the stream reader it shares with this wrapper
# (anthropic_stream.MessagesStream) passed any content_block_delta of a kind it did not know as it came: the beta
# API's compaction_delta carries a summary the model wrote, and a harmful one, or one holding an address, reached the
# caller unchecked. Such a delta now ends the stream with an error, as a message_start that carries content does;
# one that carries only opaque data (encrypted_content) passes as it came.
COMPACTION_MESSAGE = {"id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5}}  # fmt: skip


def compaction_stream(content: str | None) -> list[tuple[str, dict[str, Any]]]:
    delta = {"type": "compaction_delta", "content": content, "encrypted_content": "b3BhcXVl"}
    return [
        sse("message_start", message=COMPACTION_MESSAGE),
        sse("content_block_start", index=0, content_block={"type": "compaction", "content": None}),
        sse("content_block_delta", index=0, delta=delta),
        sse("content_block_stop", index=0),
        sse("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        sse("content_block_delta", index=1, delta={"type": "text_delta", "text": "All done."}),
        sse("content_block_stop", index=1),
        sse("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 3}),
        sse("message_stop"),
    ]


@pytest.mark.parametrize("content", ["Summary: the user asked how to build the bomb.", "Mail jane.doe@example.com"])
async def test_a_delta_it_does_not_read_that_carries_text_is_never_relayed(
    client: Any, stub: StubServer, content: str
) -> None:
    stub.raw = compaction_stream(content)
    seen: list[Any] = []
    with pytest.raises(TypeError, match="compaction_delta"):
        stream = await create(client, messages=user("go on"), stream=True)
        if hasattr(stream, "__aiter__"):
            async for event in stream:
                seen.append(event)
        else:
            seen.extend(stream)
    assert content not in repr(seen)


async def test_a_delta_carrying_only_opaque_data_passes(client: Any, stub: StubServer) -> None:
    stub.raw = compaction_stream(None)
    events = await collect(await create(client, messages=user("go on"), stream=True))
    assert any(getattr(getattr(e, "delta", None), "type", "") == "compaction_delta" for e in events)
    assert events[-1].type == "message_stop"
