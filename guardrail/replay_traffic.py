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
so the format has one definition that needs no engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.jsonl import read_jsonl
from guardrail.messages import extract

__all__ = ["Row", "load_traffic"]


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
    stage = str(raw.get("stage", "input"))
    if stage not in ("input", "output"):
        raise ValueError(f"{p}:{n}: stage must be input or output, got {stage!r}")
    ctx = _context(raw.get("context"), n, p)
    rid = raw.get("id", raw.get("decision_id"))
    if "decision_id" in raw and "action" in raw:  # an audit event
        if not isinstance(raw.get("text"), str):
            mode = "hash" if ("text_sha256" in raw or "text_hmac" in raw) else "none"
            raise ValueError(
                f"{p}:{n}: this audit event holds no text (audit.log_text: {mode}), so it cannot be replayed; "
                "log with `audit: {log_text: redacted}` (or full) where replay is wanted"
            )
        return Row(n, stage, raw["text"], None, ctx, str(raw["action"]), raw["text"], rid)
    prompt = raw.get("prompt")
    if prompt is not None and (stage != "output" or not isinstance(prompt, str)):
        why = "must be a string" if stage == "output" else "is for stage: output (the prompt the response answers)"
        raise ValueError(f"{p}:{n}: prompt: {why}")
    if isinstance(raw.get("messages"), list):
        return Row(n, stage, _readable(raw["messages"], "messages", n, p), prompt, ctx, None, None, rid)
    if isinstance(raw.get("input"), (str, list)):  # an OpenAI Responses API request
        return Row(n, stage, _readable(raw["input"], "input", n, p), prompt, ctx, None, None, rid)
    if isinstance(raw.get("text"), str):
        return Row(n, stage, raw["text"], prompt, ctx, None, None, rid)
    raise ValueError(f"{p}:{n}: a row needs text, messages, or to be an audit event with text")


def _context(ctx: Any, n: int, p: Path) -> Mapping[str, str] | None:
    if ctx is None:
        return None
    if not isinstance(ctx, dict) or not all(isinstance(v, str) for v in ctx.values()):
        raise ValueError(f"{p}:{n}: context: must be an object of strings (routing keys such as tenant)")
    return ctx


def _readable(payload: Any, field: str, n: int, p: Path) -> Any:
    """``payload`` once the core's reader has read all of it (as the output stage does; which messages
    the input stage reads depends on each policy's scope), or a ValueError at file:line: field."""
    try:
        extract(payload, "all")
    except TypeError as exc:  # InvalidMessages (a TypeError) names the message and the problem
        raise ValueError(f"{p}:{n}: {field}: {exc}") from None
    return payload
