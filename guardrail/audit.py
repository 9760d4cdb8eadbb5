"""The audit event: one ``guardrail.decision`` per check, with stable flat keys.

The library logs through ``structlog.get_logger("guardrail")`` and never configures structlog: the
application decides where events go (see the README for a JSON-lines chain). Raw text appears only
when the policy says ``audit.log_text: full``; ``redacted`` logs the text with PII replaced (every kind found by its
format, and what the decision masked or its redact rules found: a name or an address where a rule lists ``person`` or
``address``, and each value the decision itself masked wherever it stands in the logged text); ``hash``
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

What the check read besides its main text goes with it (:mod:`guardrail._audit_read`): a chat's ``messages``, an
answer's ``prompt``, the ``system`` prompt a policy reads, the ``routing_context``; each text under ``log_text`` as
``text`` is, so a reader sees what was decided on and ``guardrail replay`` can decide again on the same request. A
200-message chat must not make a huge event by accident, so they are capped (:data:`MAX_TEXT_CHARS` per text,
:data:`MAX_READ_CHARS` in all); ``partial`` names what was cut, and replay counts such a row as not replayable.

No event is dropped silently: if emitting fails (a broken processor, a closed stream), the failure
is reported on the standard-library logger ``guardrail.audit`` with the decision id, and counted in
``AUDIT_FAILURES`` so a health check can alert on it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import structlog

from guardrail._audit_read import Checked, Read, Said, read_of
from guardrail.classifiers.patterns import Span, in_force, redact, redactable
from guardrail.decision import Action, Decision, RuleAction
from guardrail.revealed import entity_spans
from guardrail.taxonomy import CUED_PII_ENTITIES

__all__ = [
    "AUDIT_FAILURES",
    "DEFAULT_KEY_ENV",
    "EVENT",
    "MAX_READ_CHARS",
    "MAX_TEXT_CHARS",
    "audit_fields",
    "emit",
    "error_code",
    "events_discarded",
    "reasked",
    "recording",
    "redacted_text",
    "text_hmac",
    "unrecorded",
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
_unrecorded: ContextVar[bool] = ContextVar("guardrail_audit_unrecorded", default=False)
# (attempt, the id of the decision that blocked the answer before) while a reasked answer is checked
_reask: ContextVar[tuple[int, str | None] | None] = ContextVar("guardrail_audit_reask", default=None)


@contextmanager
def unrecorded() -> Iterator[None]:
    """For the checks an application makes of its own, not for traffic (``guardrail serve``'s warm-up, retried on
    each ``/readyz`` while it fails): no audit event and no decision metric (the engine asks :func:`recording`).
    Audited, a healthy start wrote a synthetic decision that ``guardrail replay`` then read as traffic, and a failing
    model a warning-level block per probe; counted, they raised the error rate of a replica that served no one.
    A mark in the checking task, so an application's own structlog chain and metrics sinks need nothing."""
    token = _unrecorded.set(True)
    try:
        with events_discarded():
            yield
    finally:
        _unrecorded.reset(token)


def recording() -> bool:
    """False inside :func:`unrecorded`: the check is not traffic."""
    return not _unrecorded.get()


@contextmanager
def reasked(attempt: int, blocked_id: str | None) -> Iterator[None]:
    """For the checks of an answer asked for again (``on_block.reask``): their events carry ``reask_attempt`` and
    ``reask_of``, so a reader sees which answers one request got and which decision each one answered."""
    token = _reask.set((attempt, blocked_id))
    try:
        yield
    finally:
        _reask.reset(token)


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


def _text_fields(text: str, mode: LogText, key_env: str, decision: Decision | None = None) -> dict[str, Any]:
    if mode == "none":
        return {}
    if mode == "hash":
        digest, source = text_hmac(text, key_env)
        return {"text_hmac": digest, "text_hmac_key": source}
    if mode == "redacted":
        return {"text": redacted_text(text, decision)}
    return {"text": text}


def redacted_text(text: str, decision: Decision | None = None) -> str:
    """``text`` as ``log_text: redacted`` writes it: with every kind found by its format masked (an address sent
    encoded too), and what ``decision`` masked: names and addresses where its redact rules found them (they are looked
    for only where a rule lists them, so a lookup of "all" would log them as written), and each value it masked
    wherever it stands (a block keeps no redactions, but its redact findings say what the rules found)."""
    cued = _cued_kinds(decision) if decision is not None else frozenset()
    spans = entity_spans(text, in_force() | cued) if cued else entity_spans(text)
    if decision is not None and decision.redactions:
        spans = _with_values(text, spans, decision.redactions)
    return redact(text, spans)[0] if spans else text


_WORD = re.compile(r"\w")


def _kind(placeholder: str) -> str:
    return placeholder[1:-1].rpartition("_")[0].lower()


def _cued_kinds(decision: Decision) -> frozenset[str]:
    kinds = {e for f in decision.findings if f.action is RuleAction.REDACT for e in f.entities}
    kinds.update(_kind(p) for p in decision.redactions)
    return frozenset(kinds & set(CUED_PII_ENTITIES))


def _with_values(text: str, spans: list[Span], redactions: Mapping[str, str]) -> list[Span]:
    """``spans`` and each further place a value the decision masked stands whole in ``text`` (a name the check read
    where a lookup of the logged text alone does not find it), longest values first, none overlapping."""
    taken = sorted((s.start, s.end) for s in spans)  # kept sorted and disjoint: one bisection per occurrence
    extra: list[Span] = []
    for placeholder, value in sorted(redactions.items(), key=lambda kv: -len(kv[1])):
        kind = _kind(placeholder)
        if not value.strip() or not redactable(kind):
            continue
        whole = (
            ("(?<!\\w)" if _WORD.match(value) else "")
            + re.escape(value)
            + ("(?!\\w)" if _WORD.match(value[-1]) else "")
        )
        for m in re.finditer(whole, text):  # whole words: "Jane" masked leaves "Janet" as written
            a, b = m.span()
            i = bisect_left(taken, (a, b))
            if (i == 0 or taken[i - 1][1] <= a) and (i == len(taken) or taken[i][0] >= b):
                taken.insert(i, (a, b))
                extra.append(Span(kind, a, b, value))
    return sorted([*spans, *extra], key=lambda s: s.start) if extra else spans


MAX_TEXT_CHARS = 8_000  # of each text besides the event's `text` (a message, the prompt, the system prompt)
MAX_READ_CHARS = 32_000  # of all of them together, each message counted with _ENTRY_CHARS more for its keys
_ENTRY_CHARS = 32


def _read_fields(
    read: Read, stage: str, mode: LogText, key_env: str, decision: Decision
) -> tuple[dict[str, Any], list[str]]:
    """The keys of what the check read besides its main text, and notes on what was cut (``none``: nothing). Each
    text as ``text`` is written (``hash``: ``<key>_hmac`` of the whole text; ``redacted``: masked with the decision's
    redactions, then cut, so no half value shows), with its length as ``<key>_chars`` (replay's rule for telling a
    placeholder the log put there from one the text had). ``prompt`` (output) and ``routing_context`` are written
    wherever text is, null or empty when there was none: a missing key marks an event written before they were."""
    if mode == "none":
        return {}, []
    out: dict[str, Any] = {}
    partial: list[str] = []
    notes: list[str] = []
    for key, text in (("prompt", read.prompt), ("system", read.system)):
        if text is not None:
            fields, cut = _shown(key, text, mode, key_env, decision)
            out.update(fields)
            if cut:
                partial.append(key)
                notes.append(f"audit: {key} cut to {MAX_TEXT_CHARS} of {len(text)} characters")
        elif key == "prompt" and stage == "output" and mode != "hash":
            out["prompt"] = None
    if mode != "hash":  # routing keys and values: where text is logged, masked as text is
        context: dict[str, str] = {}
        for name, value in read.context.items():
            value = redacted_text(value, decision) if mode == "redacted" else value
            if sum(len(k) + len(v) for k, v in context.items()) + len(name) + len(value) > MAX_TEXT_CHARS:
                partial.append("routing_context")
                notes.append(f"audit: routing_context cut to {MAX_TEXT_CHARS} characters")
                break
            context[name] = value
        out["routing_context"] = context
    if read.messages is not None:
        left = MAX_READ_CHARS - sum(len(v) for v in out.values() if isinstance(v, str))
        entries: list[dict[str, Any]] = []
        cut_texts = 0
        for k, said in enumerate(reversed(read.messages)):  # the newest first: when the limit is hit, older go
            fields, cut = (
                ({}, False)
                if said.text is None
                else _shown("name" if said.name else "text", said.text, mode, key_env, decision)
            )
            cost = _ENTRY_CHARS + sum(len(v) for v in fields.values() if isinstance(v, str))
            if cost > left:
                partial.append("messages")
                notes.append(
                    f"audit: messages: the {len(read.messages) - k} oldest of {len(read.messages)} texts are not "
                    f"logged ({MAX_READ_CHARS} characters in all)"
                )
                break
            left -= cost
            cut_texts += cut
            entries.append(_entry(said, fields))
        if cut_texts:
            partial.append("messages")
            notes.append(f"audit: messages: {cut_texts} texts cut to {MAX_TEXT_CHARS} characters")
        out["messages"] = entries[::-1]
    if read.actions:
        partial.append("actions")
        notes.append("audit: the answer's tool calls (or refusal, transcript) were read too and are not logged")
    if partial:
        out["partial"] = sorted(set(partial))
    return out, notes


def _shown(key: str, text: str, mode: LogText, key_env: str, decision: Decision) -> tuple[dict[str, Any], bool]:
    """``text`` under ``key`` as ``mode`` writes it, with its length; and whether it was cut to the limit."""
    if mode == "hash":
        return {f"{key}_hmac": text_hmac(text, key_env)[0], f"{key}_chars": len(text)}, False
    value = redacted_text(text, decision) if mode == "redacted" else text
    return {key: value[:MAX_TEXT_CHARS], f"{key}_chars": len(text)}, len(value) > MAX_TEXT_CHARS


def _entry(said: Said, fields: dict[str, Any]) -> dict[str, Any]:
    part = {} if said.part is None else {"part": said.part}
    return {"index": said.index, "role": said.role, **part, **fields}


def audit_fields(
    decision: Decision,
    original: str,
    mode: LogText,
    *,
    extra: dict[str, Any] | None = None,
    key_env: str = DEFAULT_KEY_ENV,
    checked: Checked | None = None,
) -> dict[str, Any]:
    """The flat key set of a decision event (documented in the README; keep it stable). ``checked``: the check's
    state, for what it read besides ``original`` (:mod:`guardrail._audit_read`)."""
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
    fields.update(_text_fields(original, mode, key_env, decision))
    notes: list[str] = []
    if checked is not None and mode != "none":
        try:
            more, notes = _read_fields(read_of(checked), decision.stage, mode, key_env, decision)
        except Exception as exc:  # never lose the decision over what it read: say so, and replay will not trust it
            why = f"{type(exc).__name__} {error_code(exc, key_env)}"  # its message may quote the text: never logged
            more, notes = {"partial": ["read"]}, [f"audit: what the check read could not be logged ({why})"]
        fields.update(more)
    if (reask := _reask.get()) is not None:
        fields["reask_attempt"], fields["reask_of"] = reask
    if extra:
        fields.update(extra)
    if notes:
        fields["notes"] = [*fields.get("notes", ()), *notes]
    return fields


def emit(
    decision: Decision,
    original: str,
    mode: LogText,
    *,
    extra: dict[str, Any] | None = None,
    key_env: str = DEFAULT_KEY_ENV,
    checked: Checked | None = None,
) -> None:
    if _unrecorded.get():
        return
    try:
        fields = audit_fields(decision, original, mode, extra=extra, key_env=key_env, checked=checked)
        level = "warning" if decision.action is Action.BLOCK or decision.error else "info"
        getattr(_logger, level)(EVENT, **fields)
    except Exception as exc:
        with _lock:
            AUDIT_FAILURES[0] += 1
        _fallback.error(
            "guardrail audit event %s (%s) could not be emitted: %r", decision.id, decision.action.value, exc
        )
