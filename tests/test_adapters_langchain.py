"""guardrail.wrap(guard, chat_model): the real langchain-openai ChatOpenAI against the stub server, sync and async,
alone; in LCEL chains and the Runnable's own wrappers in test_adapters_langchain_runnables.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAKE_RULES, REFUSAL, make_policy
from guardrail.adapters.langchain import GuardedChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import OpenAIRefusalError
from pydantic import BaseModel
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard
from guardrail.testing import FakeClassifier

HARMFUL = "Sure. First you take the parts, then you build the bomb like this, and then you wait for it."
LEAD = "Here is a calm opening line about the weather and the sea. "  # released before the harmful part
CALM = "A calm answer about tea, kettles and the right temperature for green leaves."


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def every_turn() -> Iterator[Guard]:
    """The test policy reading every message, the system prompt included (``input.scope: all``)."""
    policy = make_policy()
    g = Guard({**policy, "input": {**policy["input"], "scope": "all"}}, classifiers=FakeClassifier(rules=FAKE_RULES))
    yield g
    g.close()


_NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)  # no connection outlives its answer (and its test's loop)


def model(stub: StubServer, url: str | None = None, **kw: Any) -> ChatOpenAI:
    """ChatOpenAI on the stub (or ``url``); an async HTTP client of its own (langchain-openai caches a shared one,
    which would outlive the event loop of the test that made it)."""
    return ChatOpenAI(  # type: ignore[call-arg]
        model="stub-model",
        base_url=url or stub.url,
        api_key="sk-test",
        max_retries=0,
        http_async_client=httpx.AsyncClient(limits=_NO_KEEPALIVE),
        **kw,
    )


async def invoke(runnable: Any, mode: str, value: Any, **kw: Any) -> Any:
    return runnable.invoke(value, **kw) if mode == "sync" else await runnable.ainvoke(value, **kw)


async def stream(runnable: Any, mode: str, value: Any, **kw: Any) -> list[Any]:
    if mode == "sync":
        return list(runnable.stream(value, **kw))
    return [c async for c in runnable.astream(value, **kw)]


def text(chunks: list[AIMessageChunk]) -> str:
    return "".join(c.content for c in chunks if isinstance(c.content, str))


def sent(stub: StubServer) -> list[dict[str, Any]]:
    [request] = stub.completions()
    return list(request.body["messages"])


def tool_answer(arguments: str, content: str | None = None) -> dict[str, Any]:
    call = {"id": "t1", "type": "function", "function": {"name": "send", "arguments": arguments}}
    message = {"role": "assistant", "content": content, "tool_calls": [call]}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}]}  # fmt: skip


def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
    return (None, {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})  # fmt: skip


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,aW1hZ2U="}}  # not read: passed as it is
SEND_TOOL = {
    "type": "function",
    "function": {"name": "send", "description": "send mail", "parameters": {"type": "object", "properties": {}}},
}


# ------------------------------------------------------------------------------------------ input


async def test_a_benign_call_passes_unchanged(guard: Guard, stub: StubServer, mode: str) -> None:
    guarded = guardrail.wrap(guard, model(stub))
    assert isinstance(guarded, GuardedChatModel) and guarded.unwrapped.model_name == "stub-model"
    answer = await invoke(guarded, mode, [SystemMessage("Be brief."), HumanMessage("hello")])
    assert isinstance(answer, AIMessage) and answer.content == "You said: hello"
    assert answer.response_metadata["finish_reason"] == "stop" and answer.usage_metadata is not None
    assert sent(stub) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


@pytest.mark.parametrize("value", ["a bomb", [("human", "a bomb")], [{"role": "user", "content": "a bomb"}]])
async def test_a_harmful_prompt_gets_the_refusal(guard: Guard, stub: StubServer, mode: str, value: Any) -> None:
    answer = await invoke(guardrail.wrap(guard, model(stub)), mode, value)
    assert isinstance(answer, AIMessage) and answer.content == REFUSAL
    assert answer.response_metadata["finish_reason"] == "content_filter" and not answer.tool_calls
    assert stub.completions() == []


async def test_a_harmful_prompt_raises_per_policy(raising_guard: Guard, stub: StubServer, mode: str) -> None:
    guarded = guardrail.wrap(raising_guard, model(stub))
    with pytest.raises(Blocked):
        await invoke(guarded, mode, "a bomb")
    with pytest.raises(Blocked):
        await stream(guarded, mode, "a bomb")
    assert stub.completions() == []


async def test_pii_in_a_human_and_a_system_message_is_redacted_where_it_sits(
    every_turn: Guard, stub: StubServer, mode: str
) -> None:
    messages = [
        SystemMessage("You answer for ops@corp.example."),
        HumanMessage(content=[{"type": "text", "text": "mail bob@example.com"}, IMAGE], id="h1"),
    ]
    answer = await invoke(guardrail.wrap(every_turn, model(stub)), mode, messages)
    body = sent(stub)
    assert "ops@corp.example" not in json.dumps(body) and "bob@example.com" not in json.dumps(body)
    assert body[0]["role"] == "system" and body[0]["content"].startswith("You answer for <EMAIL_")
    assert body[1]["content"][0]["text"].startswith("mail <EMAIL_") and body[1]["content"][1] == IMAGE
    assert messages[1].content == [{"type": "text", "text": "mail bob@example.com"}, IMAGE]  # the caller's own
    assert "<EMAIL_" in answer.content


async def test_a_tool_result_is_read_as_a_tool_message(stub: StubServer, mode: str) -> None:
    policy = make_policy()
    g = Guard(
        {**policy, "input": {**policy["input"], "scope": "untrusted"}}, classifiers=FakeClassifier(rules=FAKE_RULES)
    )
    turns = [
        HumanMessage("look it up"),
        AIMessage("", tool_calls=[{"name": "search", "args": {}, "id": "s1"}]),
        ToolMessage("write to leak@corp.example", tool_call_id="s1"),
    ]
    await invoke(guardrail.wrap(g, model(stub)), mode, turns)
    body = sent(stub)
    assert body[2]["role"] == "tool" and body[2]["content"].startswith("write to <EMAIL_")


async def test_restore_puts_the_users_values_back(guard: Guard, stub: StubServer, mode: str) -> None:
    answer = await invoke(guardrail.wrap(guard, model(stub), restore=True), mode, "mail bob@example.com")
    assert sent(stub)[0]["content"] == "mail <EMAIL_1>"
    assert answer.content == "You said: mail bob@example.com"


# ------------------------------------------------------------------------------------------ output


async def test_pii_in_the_answers_text_is_masked(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.reply = "Write to leak@corp.example today."
    answer = await invoke(guardrail.wrap(guard, model(stub)), mode, "who?")
    assert answer.content.startswith("Write to <EMAIL_") and "leak" not in answer.content


async def test_a_harmful_answer_is_refused(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.reply = HARMFUL
    answer = await invoke(guardrail.wrap(guard, model(stub)), mode, "story")
    assert answer.content == REFUSAL and answer.response_metadata["finish_reason"] == "content_filter"


async def test_tool_call_arguments_are_masked_and_restored(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.raw = tool_answer('{"to": "<EMAIL_1>", "cc": "leak@corp.example"}')
    guarded = guardrail.wrap(guard, model(stub), restore=True).bind_tools([SEND_TOOL])
    assert isinstance(guarded, GuardedChatModel)
    answer = await invoke(guarded, mode, "send it to bob@example.com")
    assert stub.completions()[0].body["tools"][0]["function"]["name"] == "send"  # the bound tools were sent
    [call] = answer.tool_calls
    assert call["args"]["to"] == "bob@example.com" and call["args"]["cc"].startswith("<EMAIL_")
    assert "leak" not in json.dumps(answer.additional_kwargs)


async def test_a_harmful_tool_call_is_refused_with_its_call(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.raw = tool_answer('{"body": "build the bomb"}')
    answer = await invoke(guardrail.wrap(guard, model(stub)).bind_tools([SEND_TOOL]), mode, "go")
    assert answer.content == REFUSAL and answer.tool_calls == []


# ------------------------------------------------------------------------------------------ streams


async def test_a_benign_stream_passes_unchanged(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.reply = CALM
    chunks = await stream(guardrail.wrap(guard, model(stub)), mode, "tea?")
    assert all(isinstance(c, AIMessageChunk) for c in chunks) and text(chunks) == CALM
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.content == CALM and merged.response_metadata["finish_reason"] == "stop"


async def test_a_harmful_stream_ends_with_the_refusal_and_nothing_after(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.reply = LEAD + HARMFUL
    chunks = await stream(guardrail.wrap(guard, model(stub)), mode, "story")
    last = chunks[-1]
    assert last.content == "\n\n" + REFUSAL and last.response_metadata == {"finish_reason": "content_filter"}
    assert last.chunk_position == "last"
    assert "bomb" not in text(chunks) and text(chunks).startswith("Here is a calm")


async def test_a_blocked_prompt_streams_only_the_refusal(guard: Guard, stub: StubServer, mode: str) -> None:
    chunks = await stream(guardrail.wrap(guard, model(stub)), mode, "a bomb")
    assert [c.content for c in chunks] == [REFUSAL] and stub.completions() == []


async def test_a_streams_pii_and_tool_call_arguments_are_masked(guard: Guard, stub: StubServer, mode: str) -> None:
    first = {"index": 0, "id": "t1", "type": "function", "function": {"name": "send", "arguments": '{"to": "<EMA'}}
    rest = {"index": 0, "function": {"arguments": 'IL_1>", "cc": "leak@co'}}
    last = {"index": 0, "function": {"arguments": 'rp.example"}'}}
    stub.raw = [chunk({"role": "assistant", "content": "Copy to spy@corp.example. "}), chunk({"tool_calls": [first]}),
                chunk({"tool_calls": [rest]}), chunk({"tool_calls": [last]}), chunk({}, "tool_calls"),
                (None, "[DONE]")]  # fmt: skip
    guarded = guardrail.wrap(guard, model(stub), restore=True).bind_tools([SEND_TOOL])
    chunks = await stream(guarded, mode, "send it to bob@example.com")
    assert "spy@" not in text(chunks) and "<EMAIL_" in text(chunks)
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    [call] = merged.tool_calls
    assert call["args"]["to"] == "bob@example.com" and call["args"]["cc"].startswith("<EMAIL_")


# ------------------------------------------------------------------------------------------ fail closed


async def test_a_model_that_does_not_stream_is_guarded_when_streamed(guard: Guard, stub: StubServer, mode: str) -> None:
    """``disable_streaming`` (and LangChain's fallback for a model without streaming) answers a stream with the
    whole message: it is checked and streamed as one answer, usage and tool calls kept."""
    chunks = await stream(guardrail.wrap(guard, model(stub, disable_streaming=True)), mode, "mail bob@example.com")
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.content == "You said: mail <EMAIL_1>" and merged.chunk_position == "last"
    assert merged.response_metadata["finish_reason"] == "stop" and merged.usage_metadata is not None
    stub.reset()
    stub.raw = tool_answer('{"to": "leak@corp.example"}', content="Sending.")
    tools = guardrail.wrap(guard, model(stub, disable_streaming="tool_calling")).bind_tools([SEND_TOOL])
    chunks = await stream(tools, mode, "send it")
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    [call] = merged.tool_calls
    assert call["args"]["to"].startswith("<EMAIL_") and "leak" not in repr(chunks)
    assert merged.content == "Sending." and merged.response_metadata["finish_reason"] == "tool_calls"
    stub.reset()
    stub.reply = HARMFUL
    chunks = await stream(guardrail.wrap(guard, model(stub, disable_streaming=True)), mode, "story")
    assert text(chunks) == REFUSAL


class Contact(BaseModel):
    name: str
    email: str


async def test_structured_output_is_checked_before_it_is_parsed(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.reply = '{"name": "Bob", "email": "leak@corp.example"}'
    structured = guardrail.wrap(guard, model(stub)).with_structured_output(Contact)
    contact = await invoke(structured, mode, "who?")
    assert isinstance(contact, Contact) and contact.name == "Bob" and contact.email.startswith("<EMAIL_")
    stub.reply = '{"name": "Bob", "email": "first build the bomb"}'
    with pytest.raises(OpenAIRefusalError, match="content filter"):  # the parser refuses a blocked answer
        await invoke(structured, mode, "story")
    with pytest.raises(NotImplementedError, match="include_raw"):
        guardrail.wrap(guard, model(stub)).with_structured_output(Contact, include_raw=True)


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")  # langchain-openai's own, streaming
async def test_every_structured_output_method_is_checked_invoked_or_streamed(
    guard: Guard, stub: StubServer, mode: str, method: str
) -> None:
    structured = guardrail.wrap(guard, model(stub)).with_structured_output(Contact, method=method)
    for call in (invoke, stream):
        stub.reset()
        answer = '{"name": "Bob", "email": "leak@corp.example"}'
        if method == "function_calling" and call is invoke:
            stub.raw = tool_answer(answer)
            stub.raw["choices"][0]["message"]["tool_calls"][0]["function"]["name"] = "Contact"
        elif method == "function_calling":
            first = {"index": 0, "id": "t1", "type": "function", "function": {"name": "Contact", "arguments": ""}}
            stub.raw = [chunk({"role": "assistant", "content": None}), chunk({"tool_calls": [first]}),
                        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": answer[i : i + 9]}}]})
                          for i in range(0, len(answer), 9)],
                        chunk({}, "tool_calls"), (None, "[DONE]")]  # fmt: skip
        else:
            stub.reply = answer
        result = await call(structured, mode, "who? answer in json")
        contact = result if call is invoke else result[-1]
        assert isinstance(contact, Contact) and contact.email.startswith("<EMAIL_")
    if method != "function_calling":
        stub.reply = '{"name": "Bob", "email": "first build the bomb"}'
        with pytest.raises(OpenAIRefusalError, match="content filter"):
            await stream(structured, mode, "story in json")


@pytest.mark.parametrize("name", ["client", "root_client", "generate", "predict", "agenerate_prompt", "_generate"])
def test_the_models_other_doors_are_closed(guard: Guard, stub: StubServer, name: str) -> None:
    guarded = guardrail.wrap(guard, model(stub))
    with pytest.raises(AttributeError):
        getattr(guarded, name)


async def test_what_cannot_be_read_is_refused_before_anything_is_sent(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    guarded = guardrail.wrap(guard, model(stub))
    with pytest.raises(TypeError, match="content block 0"):
        await invoke(guarded, mode, [HumanMessage(content=[{"type": "mystery", "payload": "a bomb"}])])
    with pytest.raises(TypeError, match="'messages'"):
        await invoke(guarded, mode, "hi", messages=[{"role": "user", "content": "a bomb"}])
    with pytest.raises(TypeError, match="extra_body"):
        await invoke(guarded, mode, "hi", extra_body={"messages": [{"role": "user", "content": "a bomb"}]})
    with pytest.raises(TypeError, match="model_kwargs"):
        guardrail.wrap(guard, model(stub, model_kwargs={"prediction": {"type": "content", "content": "x"}}))
    assert stub.completions() == []


async def test_an_answer_block_of_an_unknown_type_is_refused(guard: Guard, stub: StubServer, mode: str) -> None:
    stub.raw = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hi", "mystery": "x"}}]}  # fmt: skip
    answer = await invoke(guardrail.wrap(guard, model(stub)), mode, "hi")
    assert answer.content == "hi"  # a field the client does not read never reaches the answer
    from guardrail.adapters.langchain_shapes import completion_of

    with pytest.raises(TypeError, match="content block 0"):
        completion_of(AIMessage(content=[{"type": "mystery", "payload": "x"}]), "m")
    with pytest.raises(TypeError, match="additional_kwargs"):
        completion_of(AIMessage(content="hi", additional_kwargs={"secret": "leak@corp.example"}), "m")


def test_wrap_names_langchain_among_what_it_supports(guard: Guard) -> None:
    with pytest.raises(TypeError, match="LangChain chat model"):
        guardrail.wrap(guard, object())


def test_importing_guardrail_does_not_import_langchain() -> None:
    root = Path(__file__).resolve().parents[1]
    code = (
        f"import sys; sys.path[:0] = {[str(root), str(root / 'tests')]!r}; import conftest; import guardrail.adapters; "
        "print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


async def test_pii_in_a_text_file_block_is_masked_in_the_file_sent(
    every_turn: Guard, stub: StubServer, mode: str
) -> None:
    """The file's text is read (guardrail._parts); the LangChain adapter put the block back as the caller gave it,
    so the address went out unmasked while the check said rewrite (helper-145)."""
    import base64

    data = base64.b64encode(b"Minutes: reach the landlord at bob@example.com about the boiler.").decode()
    block = {"type": "file", "file": {"filename": "notes.txt", "file_data": f"data:text/plain;base64,{data}"}}
    messages = [HumanMessage(content=[{"type": "text", "text": "summarise the notes"}, block])]
    await invoke(guardrail.wrap(every_turn, model(stub)), mode, messages)
    sent_file = sent(stub)[0]["content"][1]["file"]["file_data"]
    _, _, payload = sent_file.partition(",")  # langchain-openai may restate the media type: the bytes are what count
    assert base64.b64decode(payload).decode().startswith("Minutes: reach the landlord at <EMAIL_")
    assert messages[0].content[1] == block  # the caller's own message is untouched
