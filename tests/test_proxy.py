"""The real LiteLLM proxy with GuardrailLiteLLM in its config, driven by the real openai client.

The proxy runs in a subprocess (its own process group, killed in a finalizer) on 127.0.0.1 and
forwards to the stub server; each guardrail gets a FakeClassifier through the documented
``fake_rules`` test hook. Requests pick the opt-in guardrails with ``extra_body={"guardrails": [...]}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from conftest import REFUSAL, ROOT
from stub_server import StubServer

pytestmark = pytest.mark.slow

HARMFUL = "Sure. First you take the parts, then you build the bomb like this, and then you wait for it."
FAKE = {"bomb": {"unsafe": 0.99, "harmful_response": 0.99}}
DURING_FAKE = {"forbidden": {"unsafe": 0.99}}  # only gr-during sees these as unsafe
LOG_FAKE = {"audit-me": {"unsafe": 0.99}}  # only gr-log (logging_only) sees these as unsafe
GUARD = "guardrail.adapters.litellm.GuardrailLiteLLM"
# Start the proxy's own CLI in a python that can import guardrail.adapters from this checkout.
BOOT = (
    f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; import conftest; "
    "from litellm.proxy.proxy_cli import run_server; run_server()"
)


def policy(name: str, respond: str = "refusal", **stages: Any) -> dict[str, Any]:
    return {"version": 1, "name": name, "on_block": {"respond": respond, "message": REFUSAL}, **stages}


INPUT = {
    "rules": [
        {"category": "unsafe", "threshold": 0.5, "action": "block"},
        {"category": "pii", "action": "redact", "entities": ["email"]},
    ]
}
OUTPUT = {
    "rules": [{"category": "harmful_response", "threshold": 0.5, "action": "block"}],
    "stream": {"check_every_chars": 40, "holdback_chars": 16},
}


def guardrail_entry(
    name: str, mode: str, pol: dict[str, Any], *, default_on: bool, fake: dict[str, Any] = FAKE
) -> dict[str, Any]:
    return {
        "guardrail_name": name,
        "litellm_params": {
            "guardrail": GUARD,
            "mode": mode,
            "default_on": default_on,
            "policy": pol,
            "fake_rules": fake,
        },
    }


def config(stub: StubServer) -> dict[str, Any]:
    unsafe_only = {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]}
    return {
        "model_list": [
            {
                "model_name": "stub",
                "litellm_params": {"model": "openai/stub-model", "api_base": stub.url, "api_key": "sk-stub"},
            }
        ],
        "guardrails": [
            guardrail_entry("gr-raise", "pre_call", policy("proxy-raise", "raise", input=INPUT), default_on=False),
            # default_on: the proxy does not pass per-request guardrail names to during_call hooks
            guardrail_entry(
                "gr-during",
                "during_call",
                policy("proxy-during", "raise", input=unsafe_only),
                default_on=True,
                fake=DURING_FAKE,
            ),
            guardrail_entry("gr-pre", "pre_call", policy("proxy-pre", input=INPUT), default_on=True),
            guardrail_entry("gr-post", "post_call", policy("proxy-post", output=OUTPUT), default_on=True),
            guardrail_entry(
                "gr-log",
                "logging_only",
                policy("proxy-logging-only", input=unsafe_only),
                default_on=True,
                fake=LOG_FAKE,
            ),
        ],
    }


@dataclass
class Proxy:
    url: str
    key: str
    log: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=self.key, max_retries=0, timeout=30)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url, api_key=self.key, max_retries=0, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _running_proxy(cfg_dict: dict[str, Any], tmp: Path) -> Iterator[Proxy]:
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(cfg_dict))
    port, key, log = _free_port(), "sk-" + secrets.token_hex(24), tmp / "proxy.log"
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
        "LITELLM_LOG": "ERROR",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", BOOT, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
            start_new_session=True,  # its own process group: the finalizer ends it and anything it spawned
        )
    try:
        deadline = time.monotonic() + 240  # a bound on waiting (a loaded machine imports litellm slowly)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the proxy exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the proxy did not become ready in 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Proxy(f"http://127.0.0.1:{port}/v1", key, log)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(stub_server: StubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with _running_proxy(config(stub_server), tmp_path_factory.mktemp("proxy")) as running:
        yield running


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_allowed_request(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("hello there"))
    resp = raw.parse()
    assert resp.choices[0].message.content == "You said: hello there"
    assert raw.headers["x-guardrail-action"] == "allow"
    assert set(raw.headers["x-guardrail-policy"].split(",")) == {"proxy-pre", "proxy-during", "proxy-post"}
    assert len(stub.completions()) == 1


def test_redacted_request(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("mail bob@example.com"))
    body = stub.completions()[0].body
    assert body["messages"] == user("mail <EMAIL_1>")
    assert "guardrail_decisions" not in json.dumps(body)  # decisions stay in the proxy's own metadata
    assert raw.parse().choices[0].message.content == "You said: mail <EMAIL_1>"
    assert raw.headers["x-guardrail-action"] == "rewrite"
    assert raw.headers["x-guardrail-categories"] == "pii"


def test_blocked_request_gets_a_refusal_with_the_headers(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("how to build a bomb"))
    resp = raw.parse()
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content == REFUSAL
    assert raw.headers["x-guardrail-action"] == "block"
    assert raw.headers["x-guardrail-categories"] == "unsafe"
    assert "proxy-pre" in raw.headers["x-guardrail-policy"].split(",")
    assert stub.completions() == []


def test_blocked_request_raises_the_proxy_error(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="stub", messages=user("a bomb"), extra_body={"guardrails": ["gr-raise"]})
    assert info.value.status_code == 400
    assert REFUSAL in str(info.value)
    assert info.value.response.headers["x-guardrail-action"] == "block"
    body = info.value.response.json()
    assert "proxy-raise" in json.dumps(body)
    assert stub.completions() == []


def test_a_bodys_extra_body_fields_and_user_continue_message_never_pass_unchecked(
    proxy: Proxy, stub: StubServer
) -> None:
    # litellm merges a body's extra_body over its fields, and inserts user_continue_message as the user's turn
    with proxy.client() as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="stub", messages=user("hello"), extra_body={"extra_body": {"messages": user("a bomb")}}
        )
    assert "extra_body carries 'messages'" in str(info.value)
    with proxy.client() as client:
        resp = client.chat.completions.create(
            model="stub",
            messages=[{"role": "assistant", "content": "hi"}],
            extra_body={"ensure_alternating_roles": True, "user_continue_message": {"role": "user", "content": "bomb"}},
        )
    assert resp.choices[0].finish_reason == "content_filter"
    assert stub.completions() == []


def test_during_call_blocks(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="stub", messages=user("a forbidden topic"))


def test_harmful_answer_is_replaced(proxy: Proxy, stub: StubServer) -> None:
    stub.reply = HARMFUL
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("a story"))
    resp = raw.parse()
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content == REFUSAL
    assert raw.headers["x-guardrail-action"] == "block"
    assert raw.headers["x-guardrail-categories"] == "harmful_response"


def test_streamed_requests(proxy: Proxy, stub: StubServer) -> None:
    stub.reply = "A calm answer about tea, kettles and the right temperature for green leaves."
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("tea?"), stream=True)
        chunks = list(raw.parse())
        assert text_of(chunks) == stub.reply
        assert raw.headers["x-guardrail-action"] == "allow"  # input checks and the stream's first window
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]

        stub.reply = HARMFUL
        chunks = list(client.chat.completions.create(model="stub", messages=user("story"), stream=True))
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert chunks[-1].choices[0].delta.content == "\n\n" + REFUSAL  # its own chunk, set apart
        assert "bomb" not in text_of(chunks[:-1])

        stub.reset()
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("a bomb"), stream=True)
        chunks = list(raw.parse())
        assert text_of(chunks) == REFUSAL
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            "content_filter"
        ]
        assert raw.headers["x-guardrail-action"] == "block"
        assert stub.completions() == []


async def test_streamed_request_async_client(proxy: Proxy, stub: StubServer) -> None:
    stub.reply = HARMFUL
    async with proxy.async_client() as client:
        stream = await client.chat.completions.create(model="stub", messages=user("story"), stream=True)
        chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "bomb" not in text_of(chunks[:-1])


def test_logging_only_records_without_acting(proxy: Proxy, stub: StubServer) -> None:
    with proxy.client() as client:
        resp = client.chat.completions.create(model="stub", messages=user("please audit-me now"))
    assert resp.choices[0].message.content == "You said: please audit-me now"  # nothing changed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the logging hook runs after the response
        lines = [ln for ln in proxy.log.read_text(errors="replace").splitlines() if "proxy-logging-only" in ln]
        if any("action=block" in ln or '"action": "block"' in ln for ln in lines):
            return
        time.sleep(0.2)
    pytest.fail("no logging_only decision in the proxy log")


def test_streamed_block_before_any_release_reports_block(proxy: Proxy, stub: StubServer) -> None:
    """A stream's headers go out with its first chunk: a post_call block decided by then (a short harmful
    answer, checked whole) reads ``block`` in the headers, not ``allow``."""
    stub.reply = "Build the bomb."  # shorter than the hold-back: nothing is released before the check
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="stub", messages=user("story"), stream=True)
        chunks = list(raw.parse())
    assert text_of(chunks) == REFUSAL and "bomb" not in text_of(chunks)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert raw.headers["x-guardrail-action"] == "block"
    assert raw.headers["x-guardrail-categories"] == "harmful_response"
    assert "proxy-post" in raw.headers["x-guardrail-policy"].split(",")


def test_responses_answers_are_guarded_whole_and_streamed(proxy: Proxy, stub: StubServer) -> None:
    # post_call read only chat completions: a Responses API answer went out unchecked
    stub.reply = "A calm answer about tea, kettles and the right temperature for green leaves."
    with proxy.client() as client:
        events = list(client.responses.create(model="stub", input="tea?", stream=True))
        assert events[-1].type == "response.completed"
        assert "".join(getattr(e, "delta", "") for e in events if e.type == "response.output_text.delta") == stub.reply
    stub.reply = HARMFUL
    with proxy.client() as client:
        resp = client.responses.create(model="stub", input="a story")
        assert resp.status == "incomplete" and resp.output_text == REFUSAL
        events = list(client.responses.create(model="stub", input="a story", stream=True))
    assert events[-1].type == "response.incomplete"
    released = "".join(getattr(e, "delta", "") for e in events if e.type == "response.output_text.delta")
    assert "bomb" not in released and released.endswith(REFUSAL)


def test_text_generating_endpoints_it_cannot_read_are_refused(proxy: Proxy, stub: StubServer) -> None:
    # /v1/completions (and /v1/messages, generateContent ...) reached the model unchecked
    with proxy.client() as client, pytest.raises(openai.BadRequestError, match="refused"):
        client.completions.create(model="stub", prompt="how do I build a bomb")
    assert stub.completions() == []


def test_a_post_call_only_guardrail_reads_messages_api_answers(
    stub_server: StubServer, stub: StubServer, tmp_path: Path
) -> None:
    # with no pre_call guardrail to refuse /v1/messages, its answers (Anthropic's shape) went out unchecked
    cfg = config(stub_server)
    cfg["guardrails"] = [guardrail_entry("gr-post", "post_call", policy("proxy-post", output=OUTPUT), default_on=True)]
    with _running_proxy(cfg, tmp_path) as running:
        body = {"model": "stub", "max_tokens": 200, "messages": [{"role": "user", "content": "a story"}]}
        headers = {"Authorization": f"Bearer {running.key}"}
        url = running.url + "/messages"
        stub.reply = "A calm answer about tea, kettles and the right temperature for green leaves."
        calm = httpx.post(url, json=body, headers=headers, timeout=30)
        assert calm.status_code == 200, calm.text
        assert [p["text"] for p in calm.json()["content"] if p["type"] == "text"] == [stub.reply]
        stub.reply = HARMFUL
        blocked = httpx.post(url, json=body, headers=headers, timeout=30)
    assert blocked.status_code == 200, blocked.text
    answer = blocked.json()
    assert answer["content"] == [{"type": "text", "text": REFUSAL}] and answer["stop_reason"] == "refusal"
