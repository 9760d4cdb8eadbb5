"""Metrics and spans for library users: one call turns them on, counters match the checks made,
errors are counted by kind, spans carry ids and never text, and nothing heavy is imported until asked."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from guardrail import Action, Decision, Guard, metrics
from guardrail.testing import FakeClassifier

SECRET = "my neighbour's bomb recipe 7731"
POLICY: dict[str, Any] = {
    "version": 1,
    "name": "metered",
    "input": {
        "rules": [
            {"category": "unsafe", "threshold": 0.5, "action": "block"},
            {"category": "profanity", "threshold": 0.5, "action": "log", "mode": "shadow"},
            {"category": "pii", "action": "redact", "entities": ["email"]},
        ]
    },
    "output": {"rules": [{"category": "harmful_response", "threshold": 0.5, "action": "block"}]},
    "audit": {"log_text": "none"},
}
RULES = {"bomb": {"unsafe": 0.99, "harmful_response": 0.99}, "damn": {"profanity": 0.9}}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's text exposition, parsed by prometheus_client's own parser."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(
        v for (n, ls), v in samples(registry).items() if n == name and set(labels.items()) <= set(dict(ls).items())
    )


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    reg = CollectorRegistry()
    sink = metrics.enable_prometheus(reg)
    yield reg
    metrics.disable(sink)


@pytest.fixture
def guard() -> Iterator[Guard]:
    g = Guard(POLICY, classifiers=FakeClassifier(rules=RULES))
    yield g
    g.close()


def test_importing_guardrail_and_metrics_imports_neither_backend() -> None:
    code = textwrap.dedent(
        """
        import sys
        import guardrail, guardrail.metrics
        from guardrail import Guard
        from guardrail.engine import Guard as G
        print(",".join(m for m in ("prometheus_client", "opentelemetry", "starlette", "uvicorn") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_counters_match_the_checks_made_sync_and_async(registry: CollectorRegistry, guard: Guard) -> None:
    made: list[Decision] = [guard.check_input(t) for t in ("hello", "build a bomb", "damn it", "mail a@b.example")]
    made.append(guard.check_output("here is the bomb", prompt="how?"))
    made.append(guard.check_output("hello there"))

    async def more() -> list[Decision]:
        return list(await asyncio.gather(guard.acheck_input("bomb"), guard.acheck_input("hi"), guard.acheck_input("")))

    made += asyncio.run(more())

    assert value(registry, "guardrail_decisions_total") == len(made) == 9
    for stage in ("input", "output"):
        for action in Action:
            expected = sum(d.stage == stage and d.action is action for d in made)
            got = value(registry, "guardrail_decisions_total", stage=stage, action=action.value, policy="metered")
            assert got == expected, (stage, action)
    assert value(registry, "guardrail_findings_total", category="unsafe", action="block", shadow="false") == 2
    assert value(registry, "guardrail_findings_total", category="profanity", shadow="true") == 1
    assert value(registry, "guardrail_findings_total", category="pii", action="redact") == 1
    assert value(registry, "guardrail_findings_total", category="harmful_response", stage="output") == 1
    assert value(registry, "guardrail_check_duration_seconds_count") == 9
    assert value(registry, "guardrail_check_duration_seconds_count", stage="output") == 2
    # the empty prompt is allowed without scoring: 8 texts scored, the two concurrent async ones may
    # share one batch (one classifier call)
    assert value(registry, "guardrail_classifier_duration_seconds_count", classifier="fake") in (7, 8)
    assert value(registry, "guardrail_batch_size_sum", classifier="fake") == 8
    assert value(registry, "guardrail_errors_total") == 0


def test_enabling_twice_on_one_registry_counts_once(registry: CollectorRegistry, guard: Guard) -> None:
    again = metrics.enable_prometheus(registry)
    assert metrics.enable_prometheus(registry) is again
    guard.check_input("hello")
    assert value(registry, "guardrail_decisions_total") == 1


def test_errors_are_counted_by_kind(registry: CollectorRegistry) -> None:
    def guard_with(clf: FakeClassifier, **policy: Any) -> Guard:
        return Guard({**POLICY, **policy}, classifiers=clf)

    failing = guard_with(FakeClassifier(error=RuntimeError("boom")))
    invalid = guard_with(FakeClassifier({"unsafe": 1.5}))
    slow = guard_with(FakeClassifier(delay=1.0), timeout_ms=20)
    short = guard_with(FakeClassifier(), max_chars=10)
    try:
        kinds = [
            metrics.error_kind(failing.check_input("hi")),
            metrics.error_kind(invalid.check_input("hi")),
            metrics.error_kind(slow.check_input("hi")),
            metrics.error_kind(short.check_input("x" * 11)),
        ]
    finally:
        for g in (failing, invalid, slow, short):
            g.close()
    assert kinds == ["classifier_error", "invalid_scores", "timeout", "too_long"]
    for kind in kinds:
        assert kind is not None
        assert value(registry, "guardrail_errors_total", kind=kind, policy="metered", stage="input") == 1
    assert value(registry, "guardrail_decisions_total", action="block") == 4  # fail closed


def test_error_kind_reads_the_kind_the_engine_names(guard: Guard) -> None:
    d = guard.check_input("hello")
    assert metrics.error_kind(d) is None
    assert metrics.error_kind(dataclasses.replace(d, error="overloaded: the check queue is full")) == "overloaded"
    assert metrics.error_kind(dataclasses.replace(d, error="invalid_scores: missing unsafe")) == "invalid_scores"
    assert metrics.error_kind(dataclasses.replace(d, error="timeout: deadline passed in the queue")) == "timeout"


def test_queue_depth_and_batch_size_have_a_call_for_the_scheduler(registry: CollectorRegistry) -> None:
    metrics.set_queue_depth(7)
    metrics.observe_classifier("onnx", "input", 0.004, 16)
    assert value(registry, "guardrail_queue_depth") == 7
    assert value(registry, "guardrail_batch_size_bucket", classifier="onnx", le="16.0") == 1
    assert value(registry, "guardrail_batch_size_bucket", classifier="onnx", le="8.0") == 0
    metrics.set_queue_depth(0)
    assert value(registry, "guardrail_queue_depth") == 0


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # visible even on filesystems with coarse mtimes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _wait_for(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


POLICY_FILE = (
    "version: 1\nname: reloadable\ninput:\n  rules:\n    - {{category: unsafe, threshold: {t}, action: block}}\n"
)


def test_reloads_and_reload_failures_are_counted(registry: CollectorRegistry, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    _write(path, POLICY_FILE.format(t=0.9))
    guard = Guard(path, classifiers=FakeClassifier({"unsafe": 0.6}), reload=True, reload_interval=0.05)
    try:
        _write(path, POLICY_FILE.format(t=0.5))
        assert _wait_for(lambda: guard.check_input("x").action is Action.BLOCK)
        assert value(registry, "guardrail_policy_reloads_total") == 1
        _write(path, "version: 1\nname: reloadable\ninput: {rules: [{category: unsafe, acton: block}]}\n")
        assert _wait_for(lambda: (guard.check_input("x"), value(registry, "guardrail_policy_reload_failures_total"))[1])
        assert value(registry, "guardrail_policy_reload_failures_total") == 1
        assert value(registry, "guardrail_policy_reloads_total") == 1
    finally:
        guard.close()


def test_a_failing_sink_never_changes_a_decision(guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def decision(self, decision: Decision, kind: str | None) -> None:
            raise RuntimeError("sink down")

        def classifier(self, name: str, stage: str, seconds: float, texts: int) -> None:
            raise RuntimeError("sink down")

        def reload(self, ok: bool) -> None: ...
        def queue_depth(self, n: int) -> None: ...

    broken = Broken()
    metrics._add(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="guardrail.metrics"):
            d = guard.check_input("build a bomb")
    finally:
        metrics.disable(broken)
    assert d.action is Action.BLOCK
    assert "sink down" in caplog.text


def test_disabled_metrics_count_nothing(guard: Guard) -> None:
    reg = CollectorRegistry()
    sink = metrics.enable_prometheus(reg)
    metrics.disable(sink)
    guard.check_input("hello")
    assert value(reg, "guardrail_decisions_total") == 0


# -- OpenTelemetry -------------------------------------------------------------------------------


@pytest.fixture
def otel() -> Iterator[tuple[Any, Any, Any]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    sink = metrics.enable_opentelemetry(meter_provider=meter_provider, tracer_provider=tracer_provider)
    yield exporter, reader, tracer_provider
    metrics.disable(sink)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def _otel_points(reader: Any, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_spans_carry_ids_policy_and_action_never_text(otel: tuple[Any, Any, Any], guard: Guard) -> None:
    exporter, reader, tracer_provider = otel
    tracer = tracer_provider.get_tracer("app")

    async def request() -> Decision:
        with tracer.start_as_current_span("http request"):
            return await guard.acheck_input(SECRET)

    blocked = asyncio.run(request())
    allowed = guard.check_input("hello there")

    spans = {s.name: s for s in exporter.get_finished_spans() if s.name == "http request"}
    checks = [s for s in exporter.get_finished_spans() if s.name == "guardrail.check"]
    assert len(checks) == 2
    by_id = {s.attributes["guardrail.decision_id"]: s for s in checks}
    assert set(by_id) == {blocked.id, allowed.id}
    span = by_id[blocked.id]
    assert span.attributes["guardrail.action"] == "block"
    assert span.attributes["guardrail.policy"] == "metered"
    assert span.attributes["guardrail.policy_hash"] == blocked.policy_hash
    assert span.attributes["guardrail.categories"] == "unsafe"
    assert span.parent is not None and span.parent.span_id == spans["http request"].context.span_id
    assert span.start_time <= span.end_time
    for s in checks:
        assert all(SECRET not in str(v) and "hello there" not in str(v) for v in s.attributes.values())

    decisions = _otel_points(reader, "guardrail.decisions")
    assert sum(p.value for p in decisions) == 2
    assert {p.attributes["guardrail.action"]: p.value for p in decisions} == {"block": 1, "allow": 1}
    assert sum(p.count for p in _otel_points(reader, "guardrail.check.duration")) == 2
    assert sum(p.count for p in _otel_points(reader, "guardrail.classifier.duration")) == 2


def test_error_spans_are_marked_and_counted(otel: tuple[Any, Any, Any]) -> None:
    from opentelemetry.trace import StatusCode

    exporter, reader, _ = otel
    g = Guard(POLICY, classifiers=FakeClassifier(error=RuntimeError("boom")))
    try:
        d = g.check_input("hi")
    finally:
        g.close()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "guardrail.check"]
    assert span.attributes["guardrail.decision_id"] == d.id
    assert span.attributes["guardrail.error_kind"] == "classifier_error"
    assert span.status.status_code is StatusCode.ERROR
    (point,) = _otel_points(reader, "guardrail.errors")
    assert point.value == 1 and point.attributes["guardrail.error_kind"] == "classifier_error"
