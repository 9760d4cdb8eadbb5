"""The service's own checks (the start-up warm-up and its retries on ``/readyz``) are not traffic: no audit event,
no count in ``guardrail_decisions_total`` / ``guardrail_errors_total``. Readiness itself is unchanged: one real check
through the whole path, retried on each probe while it fails."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from conftest import FAKE_RULES, make_policy
from starlette.testclient import TestClient
from test_serve import _samples, _sum
from test_serve_port0 import Served

from guardrail import Guard
from guardrail.serve import create_app
from guardrail.testing import DecisionLog, FakeClassifier

POLICY = "version: 1\nname: probed\ninput:\n  rules:\n    - {category: pii, action: redact, entities: [email]}\n"


@pytest.fixture
def audit_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """The audit events an application gets that serves ``create_app`` under a structlog chain of its own, with
    nothing added for the probes (``guardrail serve``'s own chain is tested below)."""
    events: list[MutableMapping[str, Any]] = []

    def keep(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        events.append(event)
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[keep], cache_logger_on_first_use=False)
    try:
        yield events
    finally:
        structlog.configure(**saved)


def _decisions(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == "guardrail.decision"]


def test_failing_warm_up_probes_are_neither_audited_nor_counted(
    audit_events: list[MutableMapping[str, Any]],
) -> None:
    """A model that fails made every /readyz probe a warning-level audited block, counted as a decision and an
    error: an error-rate alert fired for a replica no client had called."""
    log = DecisionLog()
    clf = FakeClassifier(rules=FAKE_RULES, error=RuntimeError("model not loaded"))
    guard = Guard(make_policy(), classifiers=clf, on_decision=log.append)
    with TestClient(create_app(guard=guard, tokens=[])) as c:
        for _ in range(4):
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "warm-up failed"
        assert len(log) == 5  # the start-up warm-up and four retries: each a real check through the whole path
        samples = _samples(c.get("/metrics").text)
        assert _sum(samples, "guardrail_decisions_total") == 0
        assert _sum(samples, "guardrail_errors_total") == 0
        assert _sum(samples, "guardrail_check_duration_seconds_count") == 0
        assert _decisions(audit_events) == []
        assert any(e["event"] == "guardrail.serve_warmup_failed" for e in audit_events)  # ops still hear of it

        client = c.post("/v1/check", json={"text": "hello"}).json()  # client traffic is audited and counted
        assert client["action"] == "block" and client["error"].startswith("classifier_error")
        samples = _samples(c.get("/metrics").text)
        assert _sum(samples, "guardrail_decisions_total", action="block") == 1
        assert _sum(samples, "guardrail_errors_total", kind="classifier_error") == 1
        assert [e["decision_id"] for e in _decisions(audit_events)] == [client["id"]]

        clf.error = None  # the model recovers: readiness follows, and that probe is not traffic either
        assert c.get("/readyz").status_code == 200
        assert _sum(_samples(c.get("/metrics").text), "guardrail_decisions_total") == 1
        assert len(_decisions(audit_events)) == 1
    guard.close()


def test_a_healthy_start_audits_and_counts_nothing(audit_events: list[MutableMapping[str, Any]]) -> None:
    guard = Guard(make_policy(), classifiers=FakeClassifier(rules=FAKE_RULES))
    with TestClient(create_app(guard=guard, tokens=[])) as c:
        assert c.get("/readyz").status_code == 200
        assert _sum(_samples(c.get("/metrics").text), "guardrail_decisions_total") == 0
    guard.close()
    assert _decisions(audit_events) == []


@pytest.mark.slow
def test_the_command_writes_no_audit_event_for_its_warm_up(tmp_path: Path) -> None:
    """``guardrail serve``'s log is the audit log ``guardrail replay`` reads: its warm-up check's decision was in it,
    read back as a request someone had made."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    srv = Served("--policy", str(path), "--port", "0", tmp_path=tmp_path)
    try:
        url, _ = srv.address()
        assert httpx.get(url + "/readyz", timeout=30).status_code == 200
        r = httpx.post(url + "/v1/check", json={"text": "mail me at jane@example.com"}, timeout=30)
        assert r.json()["action"] == "rewrite"
    finally:
        srv.stop()
    events = srv.events()
    assert "guardrail.serve_started" in [e["event"] for e in events]
    assert [e["decision_id"] for e in events if e["event"] == "guardrail.decision"] == [r.json()["id"]]


async def test_a_check_made_unrecorded_is_neither_audited_nor_counted_in_any_sink(
    audit_events: list[MutableMapping[str, Any]],
) -> None:
    """The mark lives in the core (``audit.unrecorded``): an application's own sinks and chain need nothing."""
    from prometheus_client import CollectorRegistry

    from guardrail import audit, metrics

    registry = CollectorRegistry()
    sink = metrics.enable_prometheus(registry)
    guard = Guard(make_policy(), classifiers=FakeClassifier(rules=FAKE_RULES))
    try:
        with audit.unrecorded():
            guard.check_input("hello")
            await guard.acheck_input("hello")
        assert _decisions(audit_events) == []
        assert _counted(registry) == 0
        guard.check_input("hello")  # outside the mark: traffic again
        assert len(_decisions(audit_events)) == 1 and _counted(registry) == 1
    finally:
        metrics.disable(sink)
        guard.close()


def _counted(registry: Any) -> float:
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == "guardrail_decisions_total")
