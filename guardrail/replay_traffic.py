"""Replay's input: a traffic file read into rows, each a check to make (``guardrail replay``).

Traffic is JSONL: texts (``{"text": ...}``, optionally ``stage``, ``prompt``, ``context``, ``id``),
chat requests (``{"messages": [...], ...}``, or the Responses API's ``{"input": ...}``), or the
audit log itself when it was written with ``audit.log_text: redacted`` or ``full``. A row that cannot
be replayed (a ``hash`` audit log holds no text) is an error naming file:line, never a skipped row:
a silently shorter replay would understate what a policy change does. Likewise a field that would be
dropped or misread is refused, as a policy-test suite refuses it: a ``prompt`` on an input row (only
an answer has one), a ``context`` that is not an object of strings (the routing would silently not
happen), and messages the core's reader (:func:`guardrail.messages.extract`) cannot read, which
would otherwise stop the whole replay at the check with no line. Apart from :mod:`guardrail.replay`
so the format has one definition that needs no engine; the rules it shares with ``guardrail eval`` and
``check --file`` (a row's stage and prompt, its context, readable messages) are
:mod:`guardrail.evaluation.data`'s, which owns the row format.

An audit event brings its baseline with it: the recorded ``action`` and ``categories`` (the enforced
findings, as :mod:`guardrail.audit` writes them). Its text, when logged ``redacted``, has lost its
personal data: each value is a placeholder (``<EMAIL_1>``), and no ``redact`` rule can fire on a
placeholder. So each placeholder the log's redaction put there is replaced by a *stand-in*, a sample
value of the same kind (``user1@example.com``, ``Alex Morgan``, ``12 Sample Street, Springfield, IL 62704``) that
the detectors find as that kind: the engine then
decides on the row as on the original, with every rule the new policy has (its entities, shadow mode,
routing), and a policy that no longer redacts e-mail addresses shows as a change. The scores are those
of the original text too, since classifiers are shown personal data masked either way. A text whose
length is the event's ``text_chars`` was not changed by redaction, so its placeholder-like strings were
in the original (an answer quoting the prompt's ``<EMAIL_1>``) and are left as they are. (A masked
value exactly as long as its placeholder, ``ab@cd.com``, then goes unseen: the row shows as a change,
never hides one.)

An audit event also carries what its check read besides that text (:mod:`guardrail.audit`), and the row is that
check again: a chat rebuilt from ``messages`` (each message in its place relative to the others, so turns read
joined are joined again, with the ``system`` prompt the policy read), an answer with its ``prompt``, a routed request
with its ``routing_context``; each text by the same stand-in rule, under its own ``<key>_chars``. What the event
does not hold it cannot be checked on, and such a row is marked (``Row.missing``, one of :data:`REASONS`) for replay
to count apart, never to compare: an answer's event without ``prompt`` (written before it was logged: the output
classifier judges an answer with its prompt) and an event cut to the audit size limits (``partial``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from guardrail.classifiers import custom_entity_samples
from guardrail.classifiers.patterns import placeholders, restore
from guardrail.decision import Action
from guardrail.evaluation.data import readable, row_context, row_stage
from guardrail.jsonl import read_jsonl
from guardrail.taxonomy import BUILTIN_PII_ENTITIES

__all__ = ["REASONS", "Row", "load_traffic", "stand_in", "with_stand_ins"]

_ACTIONS = frozenset(a.value for a in Action)


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    stage: str
    payload: Any
    prompt: str | None = None
    context: Mapping[str, str] | None = None
    recorded: str | None = None  # the action in the audit log, when the row is an audit event
    shown: str | None = None  # the text as the audit log recorded it
    id: str | None = None
    recorded_categories: tuple[str, ...] = ()  # the audit event's enforced categories
    redacted: bool = False  # an audit event's redacted text: ``payload`` has stand-ins for its placeholders
    # why an audit event cannot be checked as it was (one of REASONS), or None: replay counts it, never compares it
    missing: str | None = None
    policy: str | None = None  # the policy the audit event names (a route's, when the request was routed)
    context_logged: bool = False  # the event carries its routing context (written since guardrail logs it)


# why an audit event cannot be replayed as it was checked, and what the report says of it
REASONS = {
    "prompt": "output events without their prompt (logged before guardrail wrote it)",
    "context": "routed events without their routing context (logged before guardrail wrote it)",
    "partial": "events cut to the audit size limits (they hold only part of what the check read)",
}


def load_traffic(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Rows of a traffic file; a row that cannot be replayed is a ValueError naming file:line."""
    p = Path(path)
    for n, raw in read_jsonl(p):
        yield _row(raw, n, p)


def _row(raw: Any, n: int, p: Path) -> Row:
    if isinstance(raw, str):
        return Row(n, "input", raw)
    if not isinstance(raw, dict):
        raise ValueError(f"{p}:{n}: expected a JSON object or string")
    # a prompt makes the row a response unless its stage says otherwise: the rule of every row reader, owned by
    # guardrail.evaluation.data (which `guardrail eval` and `guardrail check --file` read with)
    stage, prompt = row_stage(raw, f"{p}:{n}")
    ctx = row_context(raw.get("context"), f"{p}:{n}")
    rid = raw.get("id", raw.get("decision_id"))
    if "decision_id" in raw and "action" in raw:  # an audit event
        return _audit_row(raw, n, f"{p}:{n}", stage, ctx, rid)
    if raw.get("prompt") not in (None, "") and not isinstance(raw.get("prompt"), str):  # 0, false, []: not "none"
        raise ValueError(f"{p}:{n}: prompt: must be a string (the prompt the response answers)")
    if prompt is not None and stage != "output":
        raise ValueError(f"{p}:{n}: prompt: is for stage: output (the prompt the response answers)")
    # a chat request (or an OpenAI Responses API request's input) is the prompt side: a prompt beside it makes it
    # no response (a response with its prompt is `text` and `prompt`); one recorded as a response says stage: output
    chat = (
        "messages"
        if isinstance(raw.get("messages"), list)
        else "input"
        if isinstance(raw.get("input"), (str, list))
        else ""
    )
    if chat and prompt is not None and not raw.get("stage"):
        raise ValueError(
            f"{p}:{n}: prompt: a chat request ({chat}) is checked as a prompt; a response with its prompt is `text` "
            "and `prompt` (or say stage: output)"
        )
    if chat:
        return Row(n, stage, readable(raw[chat], f"{p}:{n}", chat), prompt, ctx, None, None, rid)
    if isinstance(raw.get("text"), str):
        return Row(n, stage, raw["text"], prompt, ctx, None, None, rid)
    raise ValueError(f"{p}:{n}: a row needs text, messages, or to be an audit event with text")


# ------------------------------------------------------------------------------------------ audit events


def _audit_row(raw: dict[str, Any], n: int, where: str, stage: str, ctx: Mapping[str, str] | None, rid: Any) -> Row:
    """An audit event as the check it records: its text, or the chat rebuilt from its ``messages`` (with the
    ``system`` prompt the policy read), an answer's ``prompt``, its ``routing_context``; each redacted text with
    stand-ins for the placeholders the log put there. What the event lacks for that is ``Row.missing``."""
    if not isinstance(raw.get("text"), str):
        mode = "hash" if ("text_sha256" in raw or "text_hmac" in raw) else "none"
        raise ValueError(
            f"{where}: this audit event holds no text (audit.log_text: {mode}), so it cannot be replayed; "
            "log with `audit: {log_text: redacted}` (or full) where replay is wanted"
        )
    if not isinstance(raw["action"], str) or raw["action"] not in _ACTIONS:
        raise ValueError(f"{where}: action: expected one of {', '.join(sorted(_ACTIONS))}, got {raw['action']!r}")
    cats = raw.get("categories", "")
    if isinstance(cats, list) and all(isinstance(c, str) for c in cats):
        cats = ",".join(cats)
    if not isinstance(cats, str):
        raise ValueError(f"{where}: categories: expected the audit event's comma-separated string")
    masked: list[bool] = []

    def checked(text: str, chars: Any) -> str:
        """The text the check read, as near as the log allows: a text whose length is the one logged was not
        changed by redaction (its placeholder-like strings were in it); another gets stand-ins."""
        value = text if isinstance(chars, int) and chars == len(text) else with_stand_ins(text)
        masked.append(value != text)
        return value

    text = raw["text"]
    payload: Any = checked(text, raw.get("text_chars"))
    if "messages" in raw:
        payload = readable(_rebuilt(raw, where, checked), where, "messages")
    prompt = None
    missing = None
    if stage == "output":
        if "prompt" not in raw:
            missing = "prompt"
        elif raw["prompt"] is not None:
            if not isinstance(raw["prompt"], str):
                raise ValueError(f"{where}: prompt: expected the audit event's prompt text or null")
            prompt = checked(raw["prompt"], raw.get("prompt_chars"))
    if "routing_context" in raw:
        ctx = _routing(raw["routing_context"], where, checked)
    if raw.get("partial"):
        missing = "partial"
    found = tuple(c for c in cats.split(",") if c)
    policy = raw.get("policy") if isinstance(raw.get("policy"), str) else None
    return Row(
        n, stage, payload, prompt, ctx, raw["action"], text, rid, found, any(masked), missing, policy,
        "routing_context" in raw,
    )  # fmt: skip


def _rebuilt(raw: Mapping[str, Any], where: str, checked: Callable[[str, Any], str]) -> list[dict[str, Any]]:
    """The chat the check read, from the event's ``messages`` (one entry per text or name, with its message's place
    ``index``): each message at its place relative to the others, so turns that were consecutive (read joined) are
    again and turns with another between them are not (one turn the check did not read stands in for any number of
    them); a message of several parts has them as text parts; and the ``system`` prompt first, when the policy read
    it and the messages do not hold it."""
    entries = raw["messages"]
    if not isinstance(entries, list):
        raise ValueError(f"{where}: messages: expected the audit event's list of the texts the check read")
    by: dict[int, dict[str, Any]] = {}
    for k, e in enumerate(entries):
        at = f"{where}: messages[{k}]"
        fields = e if isinstance(e, dict) else {}
        i, part = fields.get("index"), fields.get("part")
        if not _place(i) or not isinstance(e.get("role"), str) or (part is not None and not _place(part)):
            raise ValueError(f"{at}: expected an object with index (0 or more), role and, for a part, part")
        msg = by.setdefault(i, {"role": e["role"], "texts": []})
        if isinstance(e.get("name"), str):
            msg["name"] = checked(e["name"], e.get("name_chars"))
        elif isinstance(e.get("text"), str):
            msg["texts"].append((-1 if part is None else part, checked(e["text"], e.get("text_chars"))))
        elif "text_hmac" in e or "name_hmac" in e:
            raise ValueError(f"{at}: holds a digest, not the text (a hash audit log cannot be replayed)")
        # else: the newest user turn, with nothing to read (an image alone): its place alone is logged
    out: list[dict[str, Any]] = []
    for i in sorted(by):
        if out and i - 1 not in by:
            out.append({"role": "assistant", "content": None})  # the place of turns the check did not read
        msg = by[i]
        parts = sorted(msg.pop("texts"), key=lambda pt: pt[0])
        texts = [t for _, t in parts]
        plain = [j for j, _ in parts] == [-1]  # the message's content was one string, not a list of parts
        content: Any = texts[0] if plain else [{"type": "text", "text": t} for t in texts] if texts else None
        out.append({**msg, "content": content})
    system = raw.get("system")
    if isinstance(system, str) and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": checked(system, raw.get("system_chars"))})
    return out


def _place(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _routing(value: Any, where: str, checked: Callable[[str, Any], str]) -> dict[str, str]:
    """The event's routing context, as routes read it; a value the log masked gets a stand-in (as a text does)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{where}: routing_context: expected the audit event's object of strings")
    return {k: checked(v, None) if placeholders(v) else v for k, v in value.items()}


# ------------------------------------------------------------------------------------------ stand-ins


def _luhn(digits: str) -> str:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _iban(bban: str, country: str = "DE") -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


# made-up names: 20 first names, 20 surnames and, from the 401st on, a middle initial (10,400 people)
_FIRST = (
    "Alex", "Sam", "Jordan", "Taylor", "Casey", "Robin", "Jamie", "Morgan", "Riley", "Avery", "Quinn", "Drew",
    "Hayden", "Kendall", "Reese", "Rowan", "Sasha", "Toni", "Emery", "Logan",
)  # fmt: skip
_SURNAMES = (
    "Morgan", "Ellis", "Parker", "Reed", "Hayes", "Brooks", "Carter", "Foster", "Gray", "Bennett", "Harper", "Lane",
    "Sutton", "Porter", "Fleming", "Walsh", "Barker", "Holt", "Keller", "Nash",
)  # fmt: skip


def _person(n: int) -> str:
    i = (n - 1) % 10400
    first, last = _FIRST[i % 20], _SURNAMES[i // 20 % 20]
    return f"{first} {chr(64 + i // 400)}. {last}" if i >= 400 else f"{first} {last}"


def stand_in(entity: str, n: int) -> str:
    """A sample value of ``entity`` that the detectors find as that entity; distinct for each ``n``
    (below 10,000), so two placeholders stay two values. A name (``Alex Morgan``) is found as one where the words
    before its placeholder say a name stands there, as they did for the original; an address (``12 Sample Street,
    Springfield, IL 62704``) carries its city and postcode, so it is one whatever follows it."""
    if entity == "person":
        return _person(n)
    if entity == "address":
        return f"{n % 100000 + 11} Sample Street, Springfield, IL 62704"
    if entity == "email":
        return f"user{n}@example.com"
    if entity == "phone":
        return f"+1 415 555 {n % 10000:04d}"
    if entity == "credit_card":
        body = f"4000{n % 10**11:011d}"
        return body + _luhn(body)
    if entity == "iban":
        return _iban(f"{n % 10**18:018d}")
    if entity == "ip_address":
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    if entity == "us_ssn":
        return f"123-45-{n % 9999 + 1:04d}"
    if entity == "api_key":
        return f"sk-Rpl4yStandIn9kLm2nOp5qRs8tUv1wX{n % 10**8:08d}"
    if entity == "private_key":
        return (
            f"-----BEGIN PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4Jd9s0Qm1Vt7rB{n % 10**8:08d}\n"
            "Y2k9Pq0w3Lz8Jd6Rt5Vb8Yc1Hs4Jd6GeAb3dEf6hIj9kLm2n==\n-----END PRIVATE KEY-----"
        )
    raise ValueError(f"unknown PII entity {entity!r}")


def with_stand_ins(text: str) -> str:
    """``text`` with a :func:`stand_in` for each redaction placeholder (``<EMAIL_1>``) of a known entity."""
    mapping = {}
    for held in placeholders(text):
        kind, _, number = held[1:-1].rpartition("_")
        if kind.lower() in BUILTIN_PII_ENTITIES:  # names and addresses too (a policy that lists them masked them)
            mapping[held] = stand_in(kind.lower(), int(number))
        elif (value := custom_entity_samples.sample(kind.lower(), int(number))) is not None:  # a policy's pii_entities
            mapping[held] = value
    return restore(text, mapping)
