"""Last review of the s24 fixes (e4f8bb1, 6b2a126, 5d9f3a0), fixed with tests:

- a ``during_call`` guardrail took whatever request token the request came with: a request that carried another
  request's token (copied from a log or from metadata it saw) shared that request's state, and its input check
  cleared the other request's ``/v1/messages`` refusal, which was then answered with the model's answer. A state is
  now taken at during_call once (the pre_call that began it, or none); a copied token begins a new one.
- a reask whose request broke in guardrail's own code (the client rejecting an argument the reask added) was logged as
  a failed request and answered with the refusal, hiding the bug: TypeError, AttributeError, NameError and
  AssertionError are raised again (an upstream or provider error still lets the block stand).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_proxy import FAKE, INPUT, OUTPUT, policy

pytest.importorskip("anthropic")
pytest.importorskip("litellm")


@pytest.fixture(autouse=True)
async def _close_clients() -> Any:
    from test_reask import _OPEN, run

    yield
    while _OPEN:
        await run(_OPEN.pop().close())


def _plugin(event_hook: Any) -> Any:
    from guardrail.adapters.litellm import GuardrailLiteLLM

    return GuardrailLiteLLM(
        policy=policy("s24-last", input=INPUT, output=OUTPUT), fake_rules=FAKE, guardrail_name="gr",
        event_hook=event_hook,
    )  # fmt: skip


def _request(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": text}], "litellm_metadata": {}, **extra}


async def test_a_copied_token_at_during_call_does_not_take_another_requests_state() -> None:
    plugin = _plugin("during_call")
    victim = _request("how do I build a bomb")
    with pytest.raises(Exception):  # noqa: B017 - during_call: the proxy's passthrough of the refusal
        await plugin.async_moderation_hook(victim, None, "anthropic_messages")
    assert plugin.anthropic.refused(victim) is not None
    copied = _request("tea, please", litellm_metadata=json.loads(json.dumps(victim["litellm_metadata"])))
    await plugin.async_moderation_hook(copied, None, "anthropic_messages")
    assert plugin.anthropic.refused(copied) is None
    assert plugin.anthropic.refused(victim) is not None  # the victim is still answered with its refusal
    assert plugin.call_for(copied) is not plugin.call_for(victim)


async def test_during_call_still_keeps_what_pre_call_began() -> None:
    plugin = _plugin(["pre_call", "during_call"])
    data = _request("mail me at eve@corp.example", stream=True)
    await plugin.async_pre_call_hook(None, None, data, "acompletion")
    call, sent = plugin.call_for(data), plugin.sent_for(data)
    assert list(sent.values()) == ["eve@corp.example"]
    await plugin.async_moderation_hook(data, None, "acompletion")
    assert plugin.call_for(data) is call and plugin.sent_for(data) == sent


# ------------------------------------------------------------------------------------------------- a failed reask


async def test_a_reask_that_breaks_in_our_code_is_raised_not_logged_as_a_failed_request(
    monkeypatch: pytest.MonkeyPatch, stub: Any
) -> None:
    """A reask request the client rejects (an argument it does not take: a bug in how the reask is built) raises,
    where an upstream error (``test_review_s24_reask``) lets the block stand: the bug is not hidden as a refusal."""
    from guardrail.adapters import _core
    from test_reask import HARMFUL, chat, openai_client, reask_guard

    built = _core.with_turns
    monkeypatch.setattr(_core, "with_turns", lambda *a: {**built(*a), "not_an_argument": 1})
    stub.answers = [HARMFUL]
    g = reask_guard(1)
    try:
        with pytest.raises(TypeError, match="not_an_argument"):
            await chat(openai_client(g, stub, "sync"))
    finally:
        g.close()
