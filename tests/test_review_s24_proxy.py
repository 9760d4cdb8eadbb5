"""Review of 916cfa1 (the LiteLLM proxy on ``/v1/messages``), fixed with tests: the real proxy and the real
``anthropic`` client where the proxy matters, the guardrail's SSE reading directly where the bytes matter.

- a ``content_block_delta`` of a kind the stream's reader does not read (the beta API's ``compaction_delta``, whose
  ``content`` is a summary the model wrote) was relayed as it came: its text reached the client unchecked;
- SSE framing read only LF LF, CRLF CRLF and CR CR as an event's end, so a stream whose lines end one way and whose
  blank line another (LF then CRLF) was refused whole; a frame with empty data, or the ``[DONE]`` some streams end
  with, failed the stream too;
- a policy whose refusal message is empty let a blocked whole-answer request reach the model (litellm reads an empty
  ``mock_response`` as none);
- a stream that starts with the provider's ``error`` event (``overloaded_error``) was refused as a stream guardrail
  cannot read (a 400 the client does not retry) instead of reaching the client as the provider's error;
- ``MessagesCall.on_output`` left a stopped answer's ``stop_sequence`` in place when the answer is a dict (the proxy
  cleared it itself): one place now, for the SDK's ``Message`` and a dict alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REFUSAL
from stub_server import StubServer
from test_proxy import FAKE, OUTPUT, Proxy, _running_proxy, guardrail_entry, policy
from test_proxy_messages import INPUT_ALL, client_for, config, user

anthropic = pytest.importorskip("anthropic")

MESSAGE = {"id": "m", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None,
           "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
END = [
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {}},
    {"type": "message_stop"},
]
OUTPUT_PII = {**OUTPUT, "rules": [*OUTPUT["rules"], {"category": "pii", "action": "redact", "entities": ["email"]}]}


def text_events(*pieces: str, index: int = 0) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}} for p in pieces),
        {"type": "content_block_stop", "index": index},
    ]


def compaction(content: str | None, encrypted: str = "opaque") -> list[dict[str, Any]]:
    delta = {"type": "compaction_delta", "content": content, "encrypted_content": encrypted}
    return [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "compaction", "content": None}},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
    ]


def sse(events: list[dict[str, Any]], line: str = "\n", blank: str = "\n") -> bytes:
    return "".join(f"event: {e['type']}{line}data: {json.dumps(e)}{line}{blank}" for e in events).encode()


async def _chunks(*items: Any) -> Any:
    for item in items:
        yield item


def _plugin(output: dict[str, Any] = OUTPUT, **kwargs: Any) -> Any:
    from guardrail.adapters.litellm import GuardrailLiteLLM

    return GuardrailLiteLLM(policy=policy("s24", output=output), fake_rules=FAKE, guardrail_name="gr", **kwargs)


async def _read(plugin: Any, *chunks: Any) -> list[dict[str, Any]]:
    """The events the guardrail relays for these upstream chunks, parsed back from its SSE bytes."""
    data = {"model": "claude", "messages": user("hi"), "litellm_call_id": "s24", "litellm_metadata": {}}
    out = [item async for item in plugin.anthropic.stream(_chunks(*chunks), data)]
    assert all(isinstance(frame, bytes) and frame.endswith(b"\n\n") for frame in out)
    return [json.loads(frame.split(b"\ndata: ", 1)[1]) for frame in out]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta" and "text" in e["delta"])


# ----------------------------------------------------------------------------------------------- deltas it cannot read


@pytest.mark.parametrize("content", ["the bomb, step by step", "write to eve@corp.example"])
async def test_a_delta_of_a_kind_it_does_not_read_is_never_relayed_unread(content: str) -> None:
    from guardrail.adapters.litellm_proxy_messages import UnreadStream

    raw = sse([{"type": "message_start", "message": MESSAGE}, *compaction(content), *END])
    relayed: list[bytes] = []
    data = {"model": "claude", "messages": user("hi"), "litellm_call_id": "s24", "litellm_metadata": {}}
    with pytest.raises(UnreadStream):
        async for frame in _plugin(OUTPUT_PII).anthropic.stream(_chunks(raw), data):
            relayed.append(frame)
    assert not any(b"bomb" in f or b"corp.example" in f for f in relayed)


async def test_a_delta_of_another_kind_without_text_is_relayed() -> None:
    events = await _read(_plugin(), sse([{"type": "message_start", "message": MESSAGE}, *compaction(None), *END]))
    (delta,) = [e for e in events if e["type"] == "content_block_delta"]
    assert delta["delta"]["encrypted_content"] == "opaque" and events[-1]["type"] == "message_stop"


# ----------------------------------------------------------------------------------------------- SSE framing


@pytest.mark.parametrize(
    ("line", "blank"), [("\n", "\r\n"), ("\r\n", "\n"), ("\r", "\r"), ("\n", "\r"), ("\r\n", "\r")]
)
async def test_sse_whose_lines_end_in_mixed_ways_is_read_cut_at_every_byte(line: str, blank: str) -> None:
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Grüße, ", "café ☕"), *END], line, blank)
    for cuts in ([raw[i : i + 1] for i in range(len(raw))], [raw[:17], raw[17:]], [raw]):
        events = await _read(_plugin(), *cuts)
        assert _text(events) == "Grüße, café ☕" and events[-2]["delta"]["stop_reason"] == "end_turn"


async def test_comments_pings_empty_data_done_and_split_data_lines_carry_nothing_and_break_nothing() -> None:
    start = json.dumps({"type": "message_start", "message": MESSAGE}, indent=1).split("\n")
    raw = (
        b": keep-alive\n\n"
        + ("event: message_start\n" + "".join(f"data: {part}\n" for part in start) + "\n").encode()  # data lines
        + b'event: ping\ndata: {"type": "ping"}\n\n'
        + b"data:\n\n"  # an empty frame
        + sse(text_events("hello"))
        + b": ping\n\n"
        + sse(END)
        + b"data: [DONE]\n\n"
    )
    events = await _read(_plugin(), raw)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert _text(events) == "hello"


async def test_a_harmful_answer_is_stopped_however_its_frames_are_cut() -> None:
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Sure: the b", "o", "mb goes"), *END])
    events = await _read(_plugin(), *(raw[i : i + 1] for i in range(len(raw))), b"\r")
    assert "bomb" not in _text(events) and _text(events).endswith(REFUSAL)
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == ["refusal"]


# ----------------------------------------------------------------------------------------------- stop_sequence


def _stopped_at_a_sequence(text: str) -> dict[str, Any]:
    content = [{"type": "text", "text": text}]
    return {**MESSAGE, "content": content, "stop_reason": "stop_sequence", "stop_sequence": "##"}


@pytest.mark.parametrize("as_dict", [True, False])
async def test_a_stopped_answer_carries_no_stop_sequence_whether_a_message_or_a_dict(as_dict: bool) -> None:
    from guardrail.adapters._core import acheck_answer
    from guardrail.adapters.anthropic import MessagesCall

    from guardrail.call import Call

    answer: Any = _stopped_at_a_sequence("Sure, the bomb")
    if not as_dict:
        answer = anthropic.types.Message.model_validate(answer)
    gc = MessagesCall(Call(_plugin().guard), {"model": "claude", "max_tokens": 10, "messages": user("hi")})
    out = await acheck_answer(gc, answer)
    get = out.get if as_dict else lambda k: getattr(out, k)
    assert get("stop_reason") == "refusal" and get("stop_sequence") is None
    calm = await acheck_answer(gc, _stopped_at_a_sequence("tea") if as_dict else answer.model_copy())
    assert (calm["stop_sequence"] if as_dict else "##") == "##"  # an answer let through keeps its own


async def test_the_proxy_answer_stopped_carries_no_stop_sequence() -> None:
    data = {"model": "claude", "messages": user("hi"), "litellm_call_id": "s24w", "litellm_metadata": {}}
    out = await _plugin().anthropic.check_answer(data, _stopped_at_a_sequence("Sure, the bomb"))
    assert out["stop_reason"] == "refusal" and out["stop_sequence"] is None
    assert [b["text"] for b in out["content"]] == [REFUSAL]


# ----------------------------------------------------------------------------------------------- through the proxy


SILENT_FAKE = {"hush": {"unsafe": 0.99}}  # only gr-silent sees it as unsafe


@pytest.fixture(scope="module")
def proxy(stub_server: StubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    cfg = config(stub_server)
    silent = {**policy("msg-silent", input=INPUT_ALL), "on_block": {"respond": "refusal", "message": ""}}
    cfg["guardrails"].append(guardrail_entry("gr-silent", "pre_call", silent, default_on=False, fake=SILENT_FAKE))
    with _running_proxy(cfg, tmp_path_factory.mktemp("proxy-s24")) as running:
        yield running


def _raw(events: list[dict[str, Any]]) -> list[tuple[str | None, Any]]:
    return [(e["type"], e) for e in events]


@pytest.mark.slow
def test_through_the_proxy_a_compaction_summary_is_not_relayed_unchecked(proxy: Proxy, stub: StubServer) -> None:
    stub.raw = _raw([{"type": "message_start", "message": MESSAGE}, *compaction("the bomb, step by step"), *END])
    events: list[Any] = []
    with pytest.raises(anthropic.APIError), client_for(proxy, "sync") as client:
        events += client.messages.create(model="claude", max_tokens=50, messages=user("hi"), stream=True)
    assert "bomb" not in json.dumps([e.to_dict() for e in events])


@pytest.mark.slow
def test_through_the_proxy_the_providers_error_reaches_the_client_as_itself(proxy: Proxy, stub: StubServer) -> None:
    stub.raw = [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    with pytest.raises(anthropic.APIStatusError) as info, client_for(proxy, "sync") as client:
        list(client.messages.create(model="claude", max_tokens=50, messages=user("hi"), stream=True))
    assert "overloaded_error" in str(info.value) and "cannot read" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_through_the_proxy_a_request_refused_with_an_empty_message_never_reaches_the_model(
    proxy: Proxy, stub: StubServer, stream: bool
) -> None:
    # litellm reads an empty mock_response as none at all, and called the model
    with client_for(proxy, "sync") as client:
        hush = user("hush now")
        out = client.messages.create(
            model="claude", max_tokens=50, messages=hush, stream=stream, extra_body={"guardrails": ["gr-silent"]}
        )
        if stream:
            events = list(out)
            assert [e.delta.stop_reason for e in events if e.type == "message_delta"] == ["refusal"]
        else:
            assert out.stop_reason == "refusal" and [b.text for b in out.content] == [""]
    assert stub.messages() == []
