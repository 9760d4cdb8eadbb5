"""A guarded stream closed before it is read closes the provider's response too (the OpenAI wrapper).

Closed unread, the guarding generator had never started, so closing it alone left the connection open and the
model writing, and billing, an answer nobody would read. ``with`` and ``close()``, sync and async.
"""

from __future__ import annotations

import asyncio

import openai
from conftest import make_guard
from stub_server import StubServer

import guardrail

MESSAGES = [{"role": "user", "content": "tell me a story"}]


def test_a_sync_stream_closed_unread_closes_the_upstream_response(stub: StubServer) -> None:
    stub.reply = "word " * 60
    with make_guard() as g, openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
        client = guardrail.wrap(g, raw)
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        stream.close()
        assert stream.response.is_closed
        with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
            pass
        assert stream.response.is_closed


def test_an_async_stream_closed_unread_closes_the_upstream_response(stub: StubServer) -> None:
    stub.reply = "word " * 60

    async def run() -> None:
        with make_guard() as g:
            async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
                client = guardrail.wrap(g, raw)
                stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
                await stream.close()
                assert stream.response.is_closed
                async with await client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as s2:
                    pass
                assert s2.response.is_closed

    asyncio.run(run())
