"""Replay's input: a traffic file read into rows, each a check to make (``guardrail replay``).

Traffic is JSONL: texts (``{"text": ...}``, optionally ``stage``, ``prompt``, ``context``, ``id``),
chat requests (``{"messages": [...], ...}``, or the Responses API's ``{"input": ...}``), or the
audit log itself when it was written with ``audit.log_text: redacted`` or ``full``. A row that cannot
be replayed (a ``hash`` audit log holds no text) is an error naming file:line, never a skipped row:
a silently shorter replay would understate what a policy change does. Apart from
:mod:`guardrail.replay` so the format has one definition that needs no engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.jsonl import read_jsonl

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
    ctx = raw.get("context") if isinstance(raw.get("context"), dict) else None
    rid = raw.get("id", raw.get("decision_id"))
    if "decision_id" in raw and "action" in raw:  # an audit event
        if not isinstance(raw.get("text"), str):
            mode = "hash" if ("text_sha256" in raw or "text_hmac" in raw) else "none"
            raise ValueError(
                f"{p}:{n}: this audit event holds no text (audit.log_text: {mode}), so it cannot be replayed; "
                "log with `audit: {log_text: redacted}` (or full) where replay is wanted"
            )
        return Row(n, stage, raw["text"], None, ctx, str(raw["action"]), raw["text"], rid)
    if isinstance(raw.get("messages"), list):
        return Row(n, stage, raw["messages"], raw.get("prompt"), ctx, None, None, rid)
    if isinstance(raw.get("input"), (str, list)):  # an OpenAI Responses API request
        return Row(n, stage, raw["input"], raw.get("prompt"), ctx, None, None, rid)
    if isinstance(raw.get("text"), str):
        return Row(n, stage, raw["text"], raw.get("prompt"), ctx, None, None, rid)
    raise ValueError(f"{p}:{n}: a row needs text, messages, or to be an audit event with text")
