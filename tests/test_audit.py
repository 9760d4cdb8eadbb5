"""The audit event keeps no confirmable trace of the text: a keyed hash, and no classifier exception text.

A plain SHA-256 of a prompt confirms a guess ("did anyone ask X?") to anyone who reads the log; the
``text_hmac`` field is an HMAC-SHA256 under the deployment's key, so it correlates repeated prompts
within a deployment and confirms nothing without the key. Every behaviour runs through sync and async.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import pytest
import structlog

from guardrail import Decision, Guard, audit
from guardrail.testing import FakeClassifier

PROMPT = "how do I reset my password?"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def policy(**audit_cfg: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "audit-test",
        "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]},
        "audit": {"log_text": "hash", **audit_cfg},
    }


async def check(guard: Guard, mode: str, text: str) -> Decision:
    return guard.check_input(text) if mode == "sync" else await guard.acheck_input(text)


async def events_of(guard: Guard, mode: str, *texts: str) -> list[dict[str, Any]]:
    with structlog.testing.capture_logs() as logs:
        for t in texts:
            await check(guard, mode, t)
    return [e for e in logs if e["event"] == "guardrail.decision"]


async def test_hash_mode_logs_a_keyed_digest_not_a_plain_hash(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("GUARDRAIL_AUDIT_KEY", "deployment-secret")
    (event,) = await events_of(Guard(policy(), classifiers=FakeClassifier()), mode, PROMPT)
    assert "text" not in event and "text_sha256" not in event
    expected = hmac.new(b"deployment-secret", PROMPT.encode(), hashlib.sha256).hexdigest()
    assert event["text_hmac"] == expected
    assert event["text_hmac_key"] == "GUARDRAIL_AUDIT_KEY"
    # a guessed prompt's plain hash does not match anything in the log
    assert hashlib.sha256(PROMPT.encode()).hexdigest() not in repr(event)


async def test_same_key_correlates_other_key_does_not(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("GUARDRAIL_AUDIT_KEY", "k1")
    a, b, c = await events_of(Guard(policy(), classifiers=FakeClassifier()), mode, PROMPT, PROMPT, "other")
    assert a["text_hmac"] == b["text_hmac"] != c["text_hmac"]
    monkeypatch.setenv("GUARDRAIL_AUDIT_KEY", "k2")
    (d,) = await events_of(Guard(policy(), classifiers=FakeClassifier()), mode, PROMPT)
    assert d["text_hmac"] != a["text_hmac"]


async def test_policy_names_the_key_variable(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("TENANT_AUDIT_KEY", "tenant-secret")
    guard = Guard(policy(hash_key_env="TENANT_AUDIT_KEY"), classifiers=FakeClassifier())
    (event,) = await events_of(guard, mode, PROMPT)
    assert event["text_hmac"] == hmac.new(b"tenant-secret", PROMPT.encode(), hashlib.sha256).hexdigest()
    assert event["text_hmac_key"] == "TENANT_AUDIT_KEY"


async def test_without_a_key_a_random_process_key_and_one_notice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    monkeypatch.delenv("GUARDRAIL_AUDIT_KEY", raising=False)
    monkeypatch.setattr(audit, "_process_key", [])
    guard = Guard(policy(), classifiers=FakeClassifier())
    with caplog.at_level(logging.WARNING, logger="guardrail.audit"):
        a, b = await events_of(guard, mode, PROMPT, PROMPT)
    assert a["text_hmac_key"] == "ephemeral" and a["text_hmac"] == b["text_hmac"]
    assert hashlib.sha256(PROMPT.encode()).hexdigest() != a["text_hmac"]
    notices = [r for r in caplog.records if r.name == "guardrail.audit" and "GUARDRAIL_AUDIT_KEY" in r.getMessage()]
    assert len(notices) == 1  # once per process, not once per event
    monkeypatch.setattr(audit, "_process_key", [])  # another process draws another key
    (c,) = await events_of(guard, mode, PROMPT)
    assert c["text_hmac"] != a["text_hmac"]


class Leaky(FakeClassifier):
    """A classifier whose exception quotes its input, as tokenizers and HTTP clients do."""

    def predict(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> list[dict[str, float]]:
        raise ValueError(f"cannot encode {texts[0]!r} at position 3")


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_classifier_exception_text_is_never_logged(mode: str, fail_mode: str) -> None:
    secret = "my card is 4111 1111 1111 1111 and my name is Zed"
    guard = Guard({**policy(), "fail_mode": fail_mode}, classifiers=Leaky())
    with structlog.testing.capture_logs() as logs:
        d = await check(guard, mode, secret)
    assert d.error is not None and "ValueError" in d.error and "code " in d.error
    assert "4111" not in d.error and "Zed" not in d.error and "position" not in d.error
    assert "Zed" not in repr(logs) and "4111" not in repr(logs)
    again = await check(guard, mode, secret)
    assert again.error == d.error  # the same failure gets the same code: ops can still group them


def test_error_code_is_short_keyed_and_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_AUDIT_KEY", "k")
    code = audit.error_code(ValueError("secret text"))
    assert len(code) == 10 and code == audit.error_code(ValueError("secret text"))
    assert code != audit.error_code(ValueError("other text")) != audit.error_code(KeyError("secret text"))
    assert "secret" not in code


def test_audit_helpers_are_plain_functions() -> None:
    assert not inspect.iscoroutinefunction(audit.text_hmac)
    digest, source = audit.text_hmac("x", "GUARDRAIL_TEST_UNSET_VARIABLE")
    assert len(digest) == 64 and source == "ephemeral"


async def test_redacted_mode_masks_an_address_sent_encoded(mode: str) -> None:
    """The log's redaction read only the raw text: an address sent in base64 or spaced apart was logged as written,
    though the check itself reads and masks it."""
    blob = "am9obi5kb2VAZXhhbXBsZS5jb20="  # john.doe@example.com
    spaced = "j o h n . d o e @ e x a m p l e . c o m"
    guard = Guard(policy(log_text="redacted"), classifiers=FakeClassifier())
    try:
        events = await events_of(guard, mode, f"mail {blob} today", f"mail {spaced} please")
    finally:
        guard.close()
    assert [e["text"] for e in events] == ["mail <EMAIL_1> today", "mail <EMAIL_1> please"]
