"""The audit event: one ``guardrail.decision`` per check, with stable flat keys.

The library logs through ``structlog.get_logger("guardrail")`` and never configures structlog: the
application decides where events go (see the README for a JSON-lines chain). Raw text appears only
when the policy says ``audit.log_text: full``; ``redacted`` logs the text with PII replaced; ``hash``
(the default) logs ``text_hmac``, an HMAC-SHA256 of the text under the deployment's secret key.

Why keyed: a plain SHA-256 of a prompt lets anyone holding the log confirm a guess ("did someone ask
X?" is one hash away), and short prompts are easy to guess. With a key, repeated prompts still
correlate inside a deployment, but a digest confirms nothing without the key. The key comes from the
environment variable the policy names (``audit.hash_key_env``, default ``GUARDRAIL_AUDIT_KEY``);
without one, each process draws a random key (digests then correlate within that process only) and
says so once on the ``guardrail.audit`` logger (not while the application says, with
:func:`events_discarded`, that it writes no audit events: then no digest reaches a log, and the notice
would be noise on every run of a one-shot command such as ``guardrail check``). ``text_hmac_key`` names the key's source
(the variable, or ``ephemeral``) so a reader knows which digests are comparable.

:func:`error_code` gives the same treatment to exception messages: a classifier's exception may
quote its input, so code that reports one logs its type and this short keyed code, never its text.

No event is dropped silently: if emitting fails (a broken processor, a closed stream), the failure
is reported on the standard-library logger ``guardrail.audit`` with the decision id, and counted in
``AUDIT_FAILURES`` so a health check can alert on it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import structlog

from guardrail.classifiers.patterns import redact
from guardrail.decision import Action, Decision
from guardrail.revealed import entity_spans

__all__ = [
    "AUDIT_FAILURES",
    "DEFAULT_KEY_ENV",
    "EVENT",
    "audit_fields",
    "emit",
    "error_code",
    "events_discarded",
    "text_hmac",
]

EVENT = "guardrail.decision"
LogText = Literal["none", "hash", "redacted", "full"]

_logger = structlog.get_logger("guardrail")
_fallback = logging.getLogger("guardrail.audit")
_lock = threading.Lock()
AUDIT_FAILURES = [0]  # a mutable cell: the count of events that could not be emitted


DEFAULT_KEY_ENV = "GUARDRAIL_AUDIT_KEY"
EPHEMERAL = "ephemeral"
_process_key: list[bytes] = []  # drawn on first use without a configured key
_unannounced = [False]  # that key is drawn but not yet announced (it was drawn while events were discarded)
_discarding: ContextVar[bool] = ContextVar("guardrail_audit_discarding", default=False)


@contextmanager
def events_discarded() -> Iterator[None]:
    """For an application that drops the audit events of the checks made inside (``guardrail check``
    without ``--audit``): no digest reaches a log, so nothing is compared across processes and the
    ephemeral-key notice would be noise; it is deferred to the first digest made outside such a block.
    Hashing is unchanged (keyed, random per process without a key). An application that writes events
    (``--audit FILE``, ``guardrail serve``) does not use this."""
    token = _discarding.set(True)
    try:
        yield
    finally:
        _discarding.reset(token)


def _key(env: str) -> tuple[bytes, str]:
    """The HMAC key and the name of its source: the environment variable ``env``, else this process's
    random key (with a one-time notice: its digests cannot be compared across processes)."""
    value = os.environ.get(env)
    if value:
        return value.encode("utf-8", "surrogatepass"), env
    if not _process_key or _unannounced[0]:
        with _lock:
            if not _process_key:
                _process_key.append(secrets.token_bytes(32))
                _unannounced[0] = True
            if _unannounced[0] and not _discarding.get():
                _unannounced[0] = False
                _fallback.warning(
                    "guardrail audit: $%s is not set; text_hmac uses a random per-process key, so digests "
                    "correlate only within this process (set a deployment-wide secret to compare them)",
                    env,
                )
    return _process_key[0], EPHEMERAL


def text_hmac(text: str, key_env: str = DEFAULT_KEY_ENV) -> tuple[str, str]:
    """``(hex HMAC-SHA256 of text, key source)`` under the deployment key named by ``key_env``."""
    key, source = _key(key_env)
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest(), source


def error_code(exc: BaseException, key_env: str = DEFAULT_KEY_ENV) -> str:
    """A short code for an exception's message (keyed, so it reveals nothing of the text): equal
    messages get equal codes, so ops can group failures without the log holding what they quoted."""
    return text_hmac(f"{type(exc).__name__}: {exc}", key_env)[0][:10]


def _text_fields(text: str, mode: LogText, key_env: str) -> dict[str, Any]:
    if mode == "none":
        return {}
    if mode == "hash":
        digest, source = text_hmac(text, key_env)
        return {"text_hmac": digest, "text_hmac_key": source}
    if mode == "redacted":
        red, _ = redact(text, entity_spans(text))  # an address sent encoded is masked in the log too
        return {"text": red}
    return {"text": text}


def audit_fields(
    decision: Decision,
    original: str,
    mode: LogText,
    *,
    extra: dict[str, Any] | None = None,
    key_env: str = DEFAULT_KEY_ENV,
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
    fields.update(_text_fields(original, mode, key_env))
    if extra:
        fields.update(extra)
    return fields


def emit(
    decision: Decision,
    original: str,
    mode: LogText,
    *,
    extra: dict[str, Any] | None = None,
    key_env: str = DEFAULT_KEY_ENV,
) -> None:
    try:
        fields = audit_fields(decision, original, mode, extra=extra, key_env=key_env)
        level = "warning" if decision.action is Action.BLOCK or decision.error else "info"
        getattr(_logger, level)(EVENT, **fields)
    except Exception as exc:
        with _lock:
            AUDIT_FAILURES[0] += 1
        _fallback.error(
            "guardrail audit event %s (%s) could not be emitted: %r", decision.id, decision.action.value, exc
        )
