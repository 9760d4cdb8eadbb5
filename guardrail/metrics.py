"""Metrics and traces of what the guard does: Prometheus, and OpenTelemetry when it is installed.

Nothing is measured until an application asks (one call), and neither ``prometheus_client`` nor
``opentelemetry`` is imported before that, so ``import guardrail`` stays light::

    guardrail.metrics.enable_prometheus()          # registers on prometheus_client.REGISTRY
    guardrail.metrics.enable_opentelemetry()       # the global MeterProvider / TracerProvider

The core reports through a handful of plain functions (the *hook points*), each a no-op costing one
tuple check while no sink is enabled:

    observe_decision(decision)                     engine: every Decision, next to its audit event
    observe_classifier(name, stage, seconds, n)    around every ``Classifier.predict`` call (n texts)
    observe_reload(ok)                             the policy reloader: a reload, or a failed one
    observe_reask(policy)                          a blocked answer asked for again (on_block.reask)
    set_queue_depth(n)                             a scheduler: checks waiting for inference

A sink that raises never breaks a check: the failure goes to the stdlib logger ``guardrail.metrics``.
Labels are bounded (stage, action, policy name, category id, error kind, classifier name); no text,
hash or decision id is ever a label. Spans carry the decision id, policy and action, never text.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from guardrail.decision import Decision

__all__ = [
    "ERROR_KINDS",
    "MetricsSink",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
    "disable",
    "enable_opentelemetry",
    "enable_prometheus",
    "error_kind",
    "observe_classifier",
    "observe_decision",
    "observe_reask",
    "observe_reload",
    "set_queue_depth",
]

# Kinds of Decision.error. The engine names the kind first ("timeout: ..."); older messages are
# recognised by their wording. "too_long" is a text over the policy's max_chars.
ERROR_KINDS = ("timeout", "overloaded", "classifier_error", "invalid_scores", "too_long")
_KIND_HEAD = re.compile(r"^([a-z][a-z_]{2,31})\s*:")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

_log = logging.getLogger("guardrail.metrics")
_lock = threading.Lock()


class MetricsSink(Protocol):
    """What a metrics back-end implements; any object with these methods can be passed to ``_add``."""

    def decision(self, decision: Decision, kind: str | None) -> None: ...
    def classifier(self, name: str, stage: str, seconds: float, texts: int) -> None: ...
    def reload(self, ok: bool) -> None: ...
    def queue_depth(self, n: int) -> None: ...


_sinks: tuple[MetricsSink, ...] = ()


def error_kind(decision: Decision) -> str | None:
    """The kind of ``decision.error`` (one of ``ERROR_KINDS``, or another snake_case kind the engine
    names), ``None`` when the classifier decided."""
    if decision.error is None:
        return None
    kind = getattr(decision, "error_kind", None)  # should the Decision grow a field of its own
    if isinstance(kind, str) and kind:
        return kind
    text = decision.error.lower()
    m = _KIND_HEAD.match(text)
    if m:
        return m.group(1)
    if "timed out" in text or "timeout" in text or "deadline" in text:
        return "timeout"
    if "overload" in text or "queue is full" in text:
        return "overloaded"
    if "max_chars" in text:
        return "too_long"
    if "not a probability" in text or "invalid score" in text or "missing categor" in text:
        return "invalid_scores"
    return "classifier_error"


# -- hook points (called by the core) ------------------------------------------------------------


def _each(method: str, *args: Any) -> None:
    for sink in _sinks:
        _each_of(sink, method, *args)


def _each_of(sink: MetricsSink, method: str, *args: Any) -> None:
    try:
        getattr(sink, method)(*args)
    except Exception as exc:  # a metrics back-end must never change a decision
        _log.error("guardrail metrics sink %r failed in %s: %r", sink, method, exc)


def observe_decision(decision: Decision) -> None:
    if _sinks:
        _each("decision", decision, error_kind(decision))


def observe_classifier(name: str, stage: str, seconds: float, texts: int = 1) -> None:
    """One ``predict`` call of classifier ``name`` on ``texts`` texts (the batch) took ``seconds``."""
    if _sinks:
        _each("classifier", name, stage, seconds, texts)


def observe_reask(policy: str) -> None:
    """An answer the output check blocked was asked for again under ``policy`` (its decision is counted apart).
    A sink without a ``reask`` method (one written before reasks existed) is skipped, not reported as failing."""
    for sink in _sinks:
        if hasattr(sink, "reask"):
            _each_of(sink, "reask", policy)


def observe_reload(ok: bool) -> None:
    if _sinks:
        _each("reload", ok)


def set_queue_depth(n: int) -> None:
    """Checks waiting for inference now (for a scheduler that queues them)."""
    if _sinks:
        _each("queue_depth", n)


def _add(sink: MetricsSink) -> None:
    global _sinks
    with _lock:
        if sink not in _sinks:
            _sinks = (*_sinks, sink)


def disable(sink: MetricsSink | None = None) -> None:
    """Stop feeding ``sink`` (all sinks when ``None``). Its instruments stay registered."""
    global _sinks
    with _lock:
        _sinks = () if sink is None else tuple(s for s in _sinks if s is not sink)


def _findings(decision: Decision) -> Iterable[tuple[str, str, bool]]:
    for f in decision.findings:
        yield f.category, f.action.value, f.shadow


# -- Prometheus ------------------------------------------------------------------------------------


class PrometheusMetrics:
    """The guard's instruments on one ``prometheus_client`` registry (see :func:`enable_prometheus`)."""

    def __init__(self, registry: Any = None, *, namespace: str = "guardrail") -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.registry = REGISTRY if registry is None else registry
        r, ns = self.registry, namespace
        self.decisions = Counter(
            "decisions", "Decisions made, by stage, action and policy", ["stage", "action", "policy"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.findings = Counter(
            "findings", "Rules that fired, by stage, policy, category, rule action and shadow mode",
            ["stage", "policy", "category", "action", "shadow"], namespace=ns, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "errors", "Decisions taken by the fail mode, by kind (timeout, overloaded, classifier_error, "
            "invalid_scores, too_long)", ["stage", "policy", "kind"], namespace=ns, registry=r,
        )  # fmt: skip
        self.check_seconds = Histogram(
            "check_duration_seconds", "Time of one check, from the call to the Decision", ["stage", "policy"],
            namespace=ns, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.classifier_seconds = Histogram(
            "classifier_duration_seconds", "Time of one classifier predict call (one batch)",
            ["classifier", "stage"], namespace=ns, registry=r, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch_size = Histogram(
            "batch_size", "Texts per classifier predict call", ["classifier"], namespace=ns, registry=r,
            buckets=BATCH_BUCKETS,
        )  # fmt: skip
        self.queue = Gauge(
            "queue_depth", "Checks waiting for inference", namespace=ns, registry=r, multiprocess_mode="livesum"
        )
        self.reloads = Counter("policy_reloads", "Policy files reloaded after an edit", namespace=ns, registry=r)
        self.reasks = Counter(
            "reasks", "Blocked answers asked for again (on_block.reask)", ["policy"], namespace=ns, registry=r
        )
        self.reload_failures = Counter(
            "policy_reload_failures", "Policy edits rejected (the last good policy stayed)", namespace=ns, registry=r
        )

    def decision(self, decision: Decision, kind: str | None) -> None:
        stage, policy = decision.stage, decision.policy
        self.decisions.labels(stage, decision.action.value, policy).inc()
        for category, action, shadow in _findings(decision):
            self.findings.labels(stage, policy, category, action, "true" if shadow else "false").inc()
        if kind is not None:
            self.errors.labels(stage, policy, kind).inc()
        self.check_seconds.labels(stage, policy).observe(decision.latency_ms / 1000.0)

    def classifier(self, name: str, stage: str, seconds: float, texts: int) -> None:
        self.classifier_seconds.labels(name, stage).observe(seconds)
        self.batch_size.labels(name).observe(texts)

    def reload(self, ok: bool) -> None:
        (self.reloads if ok else self.reload_failures).inc()

    def reask(self, policy: str) -> None:
        self.reasks.labels(policy).inc()

    def queue_depth(self, n: int) -> None:
        self.queue.set(n)


_prometheus: dict[int, PrometheusMetrics] = {}


def enable_prometheus(registry: Any = None) -> PrometheusMetrics:
    """Count every decision of every Guard in this process on ``registry`` (default: the global
    ``prometheus_client.REGISTRY``, which ``prometheus_client.start_http_server`` serves).
    Calling it again with the same registry returns the same instruments."""
    with _lock:
        key = id(registry)
        sink = _prometheus.get(key)
        if sink is None:
            sink = _prometheus[key] = PrometheusMetrics(registry)
    _add(sink)
    return sink


# -- OpenTelemetry ---------------------------------------------------------------------------------


class OpenTelemetryMetrics:
    """The same instruments through the OpenTelemetry API, and one span per check.

    The span ``guardrail.check`` is recorded when the Decision exists, with its real start time, as a
    child of the caller's current span (the async path finishes a check in the caller's task).
    """

    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        from opentelemetry import metrics, trace

        from guardrail import __version__

        meter = metrics.get_meter("guardrail", __version__, meter_provider=meter_provider)
        self.tracer = trace.get_tracer("guardrail", __version__, tracer_provider=tracer_provider)
        self._status_error = trace.Status(trace.StatusCode.ERROR)
        self.decisions = meter.create_counter("guardrail.decisions", "{decision}", "Decisions made")
        self.findings = meter.create_counter("guardrail.findings", "{finding}", "Rules that fired")
        self.errors = meter.create_counter("guardrail.errors", "{decision}", "Decisions taken by the fail mode")
        self.check_seconds = meter.create_histogram("guardrail.check.duration", "s", "Time of one check")
        self.classifier_seconds = meter.create_histogram(
            "guardrail.classifier.duration", "s", "Time of one classifier predict call"
        )
        self.batch_size = meter.create_histogram("guardrail.batch.size", "{text}", "Texts per predict call")
        self.queue = meter.create_gauge("guardrail.queue.depth", "{check}", "Checks waiting for inference")
        self.reloads = meter.create_counter("guardrail.policy.reloads", "{reload}", "Policy files reloaded")
        self.reasks = meter.create_counter("guardrail.reasks", "{reask}", "Blocked answers asked for again")
        self.reload_failures = meter.create_counter(
            "guardrail.policy.reload_failures", "{reload}", "Policy edits rejected"
        )

    def decision(self, decision: Decision, kind: str | None) -> None:
        base = {"guardrail.stage": decision.stage, "guardrail.policy": decision.policy}
        self.decisions.add(1, {**base, "guardrail.action": decision.action.value})
        for category, action, shadow in _findings(decision):
            self.findings.add(
                1, {**base, "guardrail.category": category, "guardrail.rule_action": action, "guardrail.shadow": shadow}
            )
        if kind is not None:
            self.errors.add(1, {**base, "guardrail.error_kind": kind})
        seconds = decision.latency_ms / 1000.0
        self.check_seconds.record(seconds, base)
        end = time.time_ns()
        attributes: dict[str, Any] = {
            **base,
            "guardrail.decision_id": decision.id,
            "guardrail.policy_hash": decision.policy_hash,
            "guardrail.action": decision.action.value,
            "guardrail.categories": ",".join(f.category for f in decision.findings if not f.shadow),
        }
        if kind is not None:
            attributes["guardrail.error_kind"] = kind
        span = self.tracer.start_span("guardrail.check", start_time=end - int(seconds * 1e9), attributes=attributes)
        if kind is not None:
            span.set_status(self._status_error)
        span.end(end_time=end)

    def classifier(self, name: str, stage: str, seconds: float, texts: int) -> None:
        attrs = {"guardrail.classifier": name, "guardrail.stage": stage}
        self.classifier_seconds.record(seconds, attrs)
        self.batch_size.record(texts, {"guardrail.classifier": name})

    def reload(self, ok: bool) -> None:
        (self.reloads if ok else self.reload_failures).add(1)

    def reask(self, policy: str) -> None:
        self.reasks.add(1, {"guardrail.policy": policy})

    def queue_depth(self, n: int) -> None:
        self.queue.set(n)


def enable_opentelemetry(meter_provider: Any = None, tracer_provider: Any = None) -> OpenTelemetryMetrics:
    """Report metrics and spans through OpenTelemetry (the global providers unless given). Needs
    ``opentelemetry-api``; without an SDK configured the API's no-op providers make this free."""
    sink = OpenTelemetryMetrics(meter_provider, tracer_provider)
    _add(sink)
    return sink
