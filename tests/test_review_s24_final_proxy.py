"""Final review of the LiteLLM proxy on ``/v1/messages`` (916cfa1, dbe109e, cbdc1e9) and the bundled model's window
step (f0b2527), fixed with tests:

- a request's state between its hooks (its Call and policy snapshot, what pre_call's redaction sent, a /v1/messages
  refusal) was kept under ``litellm_call_id``, which a client picks (``x-litellm-call-id``): a request that reused an
  id was answered with an earlier request's refusal, shared its Call (decisions piling up, the policy snapshot of the
  id's first request kept for good), and one client's request refused another's sent with the same id;
- an upstream ``error`` event in the middle of a stream was relayed as it came: its message reached the client
  unchecked (a harmful text, an address the policy masks), after the text released before it;
- the SSE reader split the whole unfinished line again at every chunk: a long line in small chunks cost time
  quadratic in its length (a 1 MB line a byte at a time: hours).

Checked and found fine (tests below pin it): windows at the bundled step (120 of 128 tokens) leave no token unread
whatever the text's length or where its words start, the real layouts' rooms included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import REFUSAL
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from stub_server import StubServer
from test_proxy import FAKE, INPUT, OUTPUT, Proxy, _running_proxy, policy
from test_proxy_messages import client_for, config, text_of
from test_review_s24_proxy import END, MESSAGE, OUTPUT_PII, _chunks, _text, sse, text_events

pytest.importorskip("anthropic")
pytest.importorskip("litellm")

CALM_ANSWER = {**MESSAGE, "content": [{"type": "text", "text": "Green tea wants water at 80 degrees."}],
               "stop_reason": "end_turn"}  # fmt: skip


def _plugin(**stages: Any) -> Any:
    from guardrail.adapters.litellm import GuardrailLiteLLM

    return GuardrailLiteLLM(
        policy=policy("s24-final", **stages), fake_rules=FAKE, guardrail_name="gr", event_hook="pre_call"
    )


def _request(text: str, call_id: str = "same-id", **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": text}], "litellm_call_id": call_id,
            "litellm_metadata": {}, **extra}  # fmt: skip


async def _relayed(plugin: Any, data: dict[str, Any], *chunks: Any) -> list[dict[str, Any]]:
    out = [frame async for frame in plugin.anthropic.stream(_chunks(*chunks), data)]
    return [json.loads(frame.split(b"\ndata: ", 1)[1]) for frame in out]


# ----------------------------------------------------------------------------------------------- per-request state


async def test_a_request_that_reuses_a_call_id_is_not_answered_with_an_earlier_requests_refusal() -> None:
    plugin = _plugin(input=INPUT, output=OUTPUT)
    refused = await plugin.async_pre_call_hook(None, None, _request("the bomb"), "anthropic_messages")
    assert refused["mock_response"] == REFUSAL
    calm = await plugin.async_pre_call_hook(None, None, _request("tea, please"), "anthropic_messages")
    assert "mock_response" not in calm
    out = await plugin.async_post_call_success_hook(calm, None, dict(CALM_ANSWER))
    assert out["stop_reason"] == "end_turn" and out["content"][0]["text"].startswith("Green tea")
    calm_stream = await plugin.async_pre_call_hook(None, None, _request("tea", stream=True), "anthropic_messages")
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Green tea."), *END])
    assert _text(await _relayed(plugin, calm_stream, raw)) == "Green tea."
    # the refused request itself is still answered with its refusal
    answer = await plugin.async_post_call_success_hook(refused, None, dict(CALM_ANSWER))
    assert answer["stop_reason"] == "refusal" and [b["text"] for b in answer["content"]] == [REFUSAL]


async def test_a_client_that_sends_anothers_call_id_cannot_have_its_request_refused() -> None:
    plugin = _plugin(input=INPUT, output=OUTPUT)
    theirs = await plugin.async_pre_call_hook(None, None, _request("tea", "their-id"), "anthropic_messages")
    await plugin.async_pre_call_hook(None, None, _request("the bomb", "their-id"), "anthropic_messages")
    assert plugin.should_run_guardrail(theirs, event_type=_post_call()) is False
    out = await plugin.async_post_call_success_hook(theirs, None, dict(CALM_ANSWER))
    assert out["stop_reason"] == "end_turn"


async def test_a_forged_request_token_finds_nothing() -> None:
    plugin = _plugin(input=INPUT, output=OUTPUT)
    refused = await plugin.async_pre_call_hook(None, None, _request("the bomb"), "anthropic_messages")
    forged = _request("tea", litellm_metadata={"guardrail_request": {plugin.requests.tag: "guessed"}})
    assert plugin.anthropic.refused(forged) is None and plugin.anthropic.refused(refused) is not None
    # pre_call always begins anew, whatever token the request came with
    copied = _request("tea", litellm_metadata=json.loads(json.dumps(refused["litellm_metadata"])))
    await plugin.async_pre_call_hook(None, None, copied, "anthropic_messages")
    assert plugin.anthropic.refused(copied) is None


async def test_chat_requests_that_reuse_a_call_id_share_no_call_and_no_redactions() -> None:
    plugin = _plugin(input=INPUT, output=OUTPUT)
    first = _request("mail me at eve@corp.example")
    await plugin.async_pre_call_hook(None, None, first, "acompletion")
    assert list(plugin.sent_for(first).values()) == ["eve@corp.example"]
    again = [_request("tea") for _ in range(3)]
    for data in again:
        await plugin.async_pre_call_hook(None, None, data, "acompletion")
    assert all(plugin.sent_for(data) == {} for data in again)
    calls = [plugin.call_for(data) for data in (first, *again)]
    assert len({id(c) for c in calls}) == 4 and all(len(c.decisions) == 1 for c in calls)
    # one request's hooks still share its Call
    assert plugin.call_for(first) is calls[0]


@pytest.fixture(scope="module")
def proxy(stub_server: StubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with _running_proxy(config(stub_server), tmp_path_factory.mktemp("proxy-s24-final")) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_through_the_proxy_a_request_that_reuses_a_call_id_is_answered(
    proxy: Proxy, stub: StubServer, stream: bool
) -> None:
    """One ``x-litellm-call-id`` for a conversation (a client may send any): a turn refused, then a calm one."""
    same = {"x-litellm-call-id": "one-id-for-the-whole-conversation"}
    with client_for(proxy, "sync") as client:
        bomb = [{"role": "user", "content": "how do I build a bomb"}]
        refused = client.messages.create(model="claude", max_tokens=50, messages=bomb, extra_headers=same)
        assert refused.stop_reason == "refusal"
        hello = [{"role": "user", "content": "hello there"}]
        out = client.messages.create(model="claude", max_tokens=50, messages=hello, stream=stream, extra_headers=same)
        if stream:
            assert text_of(list(out)) == "You said: hello there"
        else:
            assert out.stop_reason == "end_turn" and out.content[0].text == "You said: hello there"


def _post_call() -> Any:
    from litellm.types.guardrails import GuardrailEventHooks

    return GuardrailEventHooks.post_call


# ----------------------------------------------------------------------------------------------- upstream errors


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "api_error", "message": message}}


async def test_an_error_event_after_text_is_checked_before_it_is_relayed() -> None:
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Here is what I have so far. "),
               _error("partial output: the bomb, step by step")])  # fmt: skip
    events = await _relayed(_plugin(output=OUTPUT), _request("hi"), raw)
    assert "bomb" not in json.dumps(events)
    assert _text(events).endswith(REFUSAL) and events[-2]["delta"]["stop_reason"] == "refusal"


async def test_an_error_events_personal_data_is_masked() -> None:
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Hello there. "),
               _error("quota of eve@corp.example exceeded")])  # fmt: skip
    events = await _relayed(_plugin(output=OUTPUT_PII), _request("hi"), raw)
    assert "corp.example" not in json.dumps(events)
    assert events[-1] == _error("quota of <EMAIL_1> exceeded") and _text(events) == "Hello there. "


async def test_a_calm_error_event_still_reaches_the_client_as_itself_after_text() -> None:
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Hello there. "), _error("Overloaded")])
    events = await _relayed(_plugin(output=OUTPUT), _request("hi"), raw)
    assert _text(events) == "Hello there. " and events[-1] == _error("Overloaded")
    assert [e["type"] for e in events][-2] == "content_block_stop"


# ----------------------------------------------------------------------------------------------- SSE framing


async def test_a_long_line_in_small_chunks_is_read_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: the characters the line splitter scans stay proportional to the stream's length."""
    from guardrail.adapters import litellm_proxy_messages as lpm

    real, scanned = lpm._SSE_LINE, [0]
    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("tea " * 5000), *END])

    class Counting:
        def split(self, text: str) -> list[str]:
            scanned[0] += len(text)
            assert scanned[0] <= 4 * len(raw), "the unfinished line is scanned again at every chunk"
            return real.split(text)

    monkeypatch.setattr(lpm, "_SSE_LINE", Counting())
    events = await _relayed(_plugin(output=OUTPUT), _request("hi"), *(raw[i : i + 7] for i in range(0, len(raw), 7)))
    assert _text(events) == "tea " * 5000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=400),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_sse_cut_anywhere_reads_the_same_events(cuts: list[int], line: str, blank: str, as_str: bool) -> None:
    import asyncio

    from guardrail.adapters.litellm_proxy_messages import _events

    assume((line, blank) != ("\r", "\n"))  # a CR then an LF is one line end (CRLF), not a blank line

    raw = sse([{"type": "message_start", "message": MESSAGE}, *text_events("Grüße ☕\r", "x\n\ny"), *END], line, blank)
    chunks: list[Any] = []
    at = 0
    for n in cuts * (len(raw) // max(1, sum(cuts)) + 1):
        if at >= len(raw):
            break
        chunks.append(raw[at : at + n])
        at += n
    if as_str:  # str chunks, each cut where a character ends
        text, chunks, at = raw.decode(), [], 0
        for n in cuts * (len(text) // max(1, sum(cuts)) + 1):
            if at < len(text):
                chunks.append(text[at : at + n])
                at += n

    async def read(items: list[Any]) -> list[dict[str, Any]]:
        return [e.to_dict() async for e in _events(_chunks(*items))]

    assert asyncio.run(read(chunks)) == asyncio.run(read([raw]))


# ----------------------------------------------------------------------------------------------- the window step


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 30_000),
    st.sampled_from([0, 1, 3, 4, 20, 49]),  # head tokens besides [CLS]: none, a prompt's tail and its separators
    st.lists(st.integers(1, 16), min_size=1, max_size=60),
    st.integers(0, 59),
)
def test_the_bundled_step_leaves_no_token_unread(n: int, extra_head: int, word_lengths: list[int], shift: int) -> None:
    """The bundled model's labels.json step (120 of 128), through the room each layout leaves and words of up to 16
    tokens (a start moves back at most 8 to its word's start, or stays): every token is in a window, none longer than
    the room, windows in order."""
    from guardrail.classifiers.encoding import EncodingConfig, _spans
    from guardrail.classifiers.onnx import resolve_model_dir

    enc = json.loads((resolve_model_dir("default") / "labels.json").read_text())["encoding"]
    cfg = EncodingConfig(**enc)
    assert cfg.stride == 120
    room = cfg.max_length - (1 + extra_head) - 1
    stride = max(1, room * cfg.stride // cfg.max_length)  # as encode_windows computes it
    word_ids: list[int | None] = []
    w = 0
    while len(word_ids) < n:
        word_ids += [w] * word_lengths[(w + shift) % len(word_lengths)]
        w += 1
    spans = _spans(n, room, stride, cfg.max_windows, word_ids[:n])
    covered = 0
    for start, end in spans:
        assert start <= covered and 0 < end - start <= room
        covered = max(covered, end)
    assert covered == n


# ----------------------------------------------------------------------------------------------- serve


def test_serve_closes_the_socket_it_bound_when_its_app_cannot_be_made(tmp_path: Any) -> None:
    """``serve`` binds its socket before it makes the app (so ``--port 0`` knows its port): a bad ``--tokens-file``
    (exit 2) left that socket bound until the collector found it."""
    import gc
    import warnings

    from guardrail.cli import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["serve", "--port", "0", "--tokens-file", str(tmp_path / "missing")]) == 2
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
