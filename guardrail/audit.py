"""The audit event: one ``guardrail.decision`` per check, with stable flat keys.

The library logs through ``structlog.get_logger("guardrail")`` and never configures structlog: the
application decides where events go (see the README for a JSON-lines chain). Raw text appears only
when the policy says ``audit.log_text: full``; ``hash`` (the default) logs a SHA-256 so repeated
prompts can be correlated without storing them, and ``redacted`` logs the text with PII replaced.

No event is dropped silently: if emitting fails (a broken processor, a closed stream), the failure
is reported on the standard-library logger ``guardrail.audit`` with the decision id, and counted in
``AUDIT_FAILURES`` so a health check can alert on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Literal

import structlog

from guardrail.classifiers.patterns import find_entities, redact
from guardrail.decision import Action, Decision

__all__ = ["AUDIT_FAILURES", "EVENT", "audit_fields", "emit"]

EVENT = "guardrail.decision"
LogText = Literal["none", "hash", "redacted", "full"]

_logger = structlog.get_logger("guardrail")
_fallback = logging.getLogger("guardrail.audit")
_lock = threading.Lock()
AUDIT_FAILURES = [0]  # a mutable cell: the count of events that could not be emitted


def _text_fields(text: str, mode: LogText) -> dict[str, Any]:
    if mode == "none":
        return {}
    if mode == "hash":
        return {"text_sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
    if mode == "redacted":
        red, _ = redact(text, find_entities(text))
        return {"text": red}
    return {"text": text}


def audit_fields(
    decision: Decision, original: str, mode: LogText, *, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The flat key set of a decision event (documented in the README; keep it stable)."""
    enforced = [f for f in decision.findings if not f.shadow]
    shadow = [f for f in decision.findings if f.shadow]
    top = max(decision.scores.items(), key=lambda kv: kv[1], default=(None, None))
    fields: dict[str, Any] = {
        "decision_id": decision.id,
        "stage": decision.stage,
        "action": decision.action.value,
        "policy": decision.policy,
        "policy_hash": decision.policy_hash,
        "latency_ms": round(decision.latency_ms, 3),
        "categories": ",".join(f.category for f in enforced),
        "shadow_categories": ",".join(f.category for f in shadow),
        "shadow_action": max(
            (f.action.decision_action for f in shadow), key=lambda a: a.strength, default=Action.ALLOW
        ).value,
        "top_category": top[0],
        "top_score": None if top[1] is None else round(top[1], 4),
        "findings": [f.to_dict() for f in decision.findings],
        "error": decision.error,
        "error_kind": getattr(decision, "error_kind", None),
        "text_chars": len(original),
    }
    fields.update(_text_fields(original, mode))
    if extra:
        fields.update(extra)
    return fields


def emit(decision: Decision, original: str, mode: LogText, *, extra: dict[str, Any] | None = None) -> None:
    try:
        fields = audit_fields(decision, original, mode, extra=extra)
        level = "warning" if decision.action is Action.BLOCK or decision.error else "info"
        getattr(_logger, level)(EVENT, **fields)
    except Exception as exc:
        with _lock:
            AUDIT_FAILURES[0] += 1
        _fallback.error(
            "guardrail audit event %s (%s) could not be emitted: %r", decision.id, decision.action.value, exc
        )
