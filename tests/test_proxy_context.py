"""The LiteLLM proxy plugin routes by context: a request header, the team's and the key's metadata.

The hooks are the real GuardrailLiteLLM methods the proxy calls, given request data shaped as the proxy
builds it (tests/test_proxy.py drives the whole proxy); the classifier is a FakeClassifier, since the
part under test is where the context comes from and which policy it selects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("litellm")

from guardrail.adapters.litellm import GuardrailLiteLLM, proxy_context


def data(headers: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    md: dict[str, Any] = dict(metadata)
    if headers is not None:
        md["headers"] = headers
    return {"model": "m", "messages": [{"role": "user", "content": "tell me about globex"}], "metadata": md,
            "litellm_call_id": None}  # fmt: skip


def test_context_from_header_team_and_key_with_admin_metadata_winning() -> None:
    d = data(
        {"X-Guardrail-Context": "tenant=free, route=/chat"},
        user_api_key_team_id="team-7",
        user_api_key_team_metadata={"guardrail_context": {"tier": "pro"}},
        user_api_key_alias="kids-key",
        user_api_key_metadata={"guardrail_context": {"tenant": "kids"}},
    )
    assert proxy_context(d) == {"tenant": "kids", "route": "/chat", "team": "team-7", "tier": "pro", "key": "kids-key"}
    assert proxy_context(data()) == {}
    assert proxy_context(data({"x-guardrail-context": "garbage, =x, y="})) == {}


@pytest.fixture
def plugin(tmp_path: Path) -> GuardrailLiteLLM:
    kids = tmp_path / "kids.yaml"
    kids.write_text(
        "version: 1\nname: kids\ninput:\n  rules:\n"
        "    - {category: competitors, keywords: [globex], action: block, message: not here}\n"
    )
    policy = {
        "version": 1,
        "name": "base",
        "routes": [{"match": {"tenant": "kids"}, "policy": str(kids)}],
        "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]},
    }
    return GuardrailLiteLLM(policy=policy, fake_rules={"bomb": {"unsafe": 0.99}}, guardrail_name="gr")


async def test_a_header_routes_the_request_to_the_tenant_policy(plugin: GuardrailLiteLLM) -> None:
    out = await plugin.async_pre_call_hook(None, None, data({"x-guardrail-context": "tenant=kids"}), "completion")
    assert "mock_response" in out  # refused by the routed policy's keyword rule, upstream never called
    (entry,) = out["metadata"]["guardrail_decisions"]
    assert entry["policy"] == "kids" and entry["action"] == "block"


async def test_without_context_the_base_policy_decides(plugin: GuardrailLiteLLM) -> None:
    out = await plugin.async_pre_call_hook(None, None, data(), "completion")
    assert "mock_response" not in out
    (entry,) = out["metadata"]["guardrail_decisions"]
    assert entry["policy"] == "base" and entry["action"] == "allow"
