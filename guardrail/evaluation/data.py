"""Labelled evaluation data: reading JSONL/CSV rows and what each row says is true.

A row has ``text``; a ``prompt`` makes it a response (output stage) unless ``stage`` says otherwise.
Ground truth comes in three shapes, which may be mixed:

- ``label``: binary "harmful" (1) or not (0). It supervises the stage's overall head (``unsafe`` for
  prompts, ``harmful_response`` for responses); a 0 also makes every harm head negative;
- ``labels``: the list of categories that apply. A list means *fully labelled*: every other harm head
  of the stage is negative (``unsafe`` follows from any harm category but profanity);
- a column named after a category id with 0/1 (``weapons: 1``): only that head; empty means unknown.

A column wins over the list, the list over ``label``. ``benign`` (truthy) marks over-refusal probes
(benign look-alikes); when ``label`` is absent it also means ``label: 0``. Heads with no statement
are *unknown* for the row and left out of that head's metrics, never counted as negatives.

``guardrail check --file`` reads the same rows (:func:`read_checks`): what is checked is the row's
``text`` (or its ``messages``), on the row's stage, with its ``prompt``; labels are not needed there, and
a row's ``context`` (an object of strings) routes its check. A row the check would misread (no ``text``,
a ``prompt`` on an input row, messages the core cannot read) is refused with its ``file:line``, never
checked as an empty text.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from guardrail.jsonl import read_jsonl
from guardrail.taxonomy import BY_ID, HARM_IDS, RESPONSE_CLASS_IDS, Stage, stage_ids

__all__ = [
    "CheckRow",
    "EvalRow",
    "Progress",
    "load_rows",
    "parse_check",
    "parse_row",
    "read_checks",
    "read_records",
    "row_stage",
]

_TRUE = {"1", "1.0", "true", "yes", "y", "t", "unsafe", "harmful"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", "safe", "harmless", "benign", ""}
# heads a benign row is negative on (refusal and the response classes describe form, not harm)
_HARM_HEADS = (*HARM_IDS, "unsafe", "jailbreak", "harmful_response")


@dataclass(slots=True)
class EvalRow:
    """One row: the text to check and what is known to be true about it."""

    text: str
    stage: Stage
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    label: int | None = None  # harmful overall
    truth: dict[str, int] = field(default_factory=dict)  # category -> 0/1, only where known
    benign: bool = False
    id: str = ""


def _flag(value: Any, where: str) -> int | None:
    """0/1 from JSON booleans, numbers and common strings; None for null/empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return int(value)
        raise ValueError(f"{where}: expected 0 or 1, got {value!r}")
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ValueError(f"{where}: expected 0/1 or true/false, got {value!r}")


def _categories(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # CSV: "weapons;violence", "weapons,violence" or a JSON list
        value = value.strip()
        if value.startswith("["):
            value = json.loads(value)
        else:
            value = [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: `labels` must be a list of category ids")
    unknown = [v for v in value if v not in BY_ID]
    if unknown:
        raise ValueError(f"{where}: unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} in `labels`")
    return value


def _subject(raw: Mapping[str, Any], where: str, default_stage: Stage = "input") -> tuple[str, Stage, Any, Any]:
    """``(text, stage, prompt, messages)`` of a row: the part of the format every reader shares."""
    messages = raw.get("messages")
    text = raw.get("text")
    stage, prompt = row_stage(raw, where, default_stage)
    if isinstance(messages, list) and (text is None or stage == "input"):  # read here: checked, or the text's source
        readable(messages, where, "messages")
    if text is None and isinstance(messages, list):
        text = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(text, str):
        raise ValueError(f"{where}: needs a `text` string")
    return text, stage, prompt, messages


def row_stage(raw: Mapping[str, Any], where: str, default_stage: Stage = "input") -> tuple[Stage, Any]:
    """``(stage, prompt)`` of a row, the rule of every row reader (``eval``, ``check --file``, ``replay``): a
    ``prompt`` (an empty one is none: a sheet's blank cell) makes the row a response unless ``stage`` says
    otherwise; a row with neither is on ``default_stage``. The prompt is returned as written (its type is the
    caller's to check, on ``raw["prompt"]``: a falsy non-string, 0, false or [], reads as none here)."""
    prompt = raw.get("prompt") or None
    stage_raw = raw.get("stage") or ("output" if prompt is not None else default_stage)
    if stage_raw not in ("input", "output"):
        raise ValueError(f"{where}: stage must be input or output, got {stage_raw!r}")
    return ("output" if stage_raw == "output" else "input"), prompt


def parse_row(raw: Mapping[str, Any], where: str = "row") -> EvalRow:
    """One record (a JSONL object or a CSV row) as an :class:`EvalRow`; raises ValueError naming ``where``."""
    text, stage, prompt, messages = _subject(raw, where)
    if stage == "output" and not isinstance(raw.get("text"), str):  # not the last user turn read as the answer
        raise ValueError(f"{where}: needs a `text` string (the response to check)")
    heads = stage_ids(stage)
    label = _flag(raw.get("label"), f"{where}: label")
    mark = raw.get("benign")
    benign = str(mark).strip().lower() == "benign" or bool(_flag(mark, f"{where}: benign"))
    if label is None and benign:
        label = 0
    overall = "unsafe" if stage == "input" else "harmful_response"
    truth: dict[str, int] = {}
    if label == 0:
        truth.update(dict.fromkeys((h for h in _HARM_HEADS if h in heads), 0))
    elif label == 1:
        truth[overall] = 1
    if raw.get("labels") not in (None, ""):
        listed = _categories(raw.get("labels"), where)
        for h in heads:
            if h not in RESPONSE_CLASS_IDS and h != "refusal":
                truth[h] = int(h in listed)
        for h in listed:
            truth[h] = 1
        if any(h in HARM_IDS and h != "profanity" for h in listed):
            truth["unsafe"] = 1
            if label is None:
                label = 1
        if label == 1:
            truth[overall] = 1
        elif label is None:
            label = truth.get(overall)
    for key, value in raw.items():
        if key in BY_ID:
            flag = _flag(value, f"{where}: {key}")
            if flag is not None:
                truth[key] = flag
    if label is None and overall in truth:
        label = truth[overall]
    row_id = raw.get("id")
    return EvalRow(
        text=text,
        stage=stage,
        prompt=prompt if isinstance(prompt, str) else None,
        messages=messages if isinstance(messages, list) and stage == "input" else None,
        label=label,
        truth={k: v for k, v in truth.items() if k in heads},
        benign=benign,
        id=str(row_id) if row_id not in (None, "") else "",
    )


def read_records(path: Path, *, strings: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:line``, record) for each row of a JSONL or CSV file; with ``strings``, a JSONL line that is
    a JSON string is the row ``{"text": ...}``."""
    if path.suffix.lower() == ".csv":
        raw = path.read_bytes().decode("utf-8-sig", errors="replace")  # Excel writes a BOM
        for n, rec in enumerate(csv.DictReader(io.StringIO(raw)), 2):
            yield f"{path}:{n}", dict(rec)
        return
    for n, rec in read_jsonl(path):
        if strings and isinstance(rec, str):
            rec = {"text": rec}
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object {'or string ' if strings else ''}per line")
        yield f"{path}:{n}", rec


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One row of ``guardrail check --file``: what to check, on which stage, in which routing context."""

    text: str
    stage: Stage
    prompt: str | None = None
    messages: list[Any] | None = None  # input stage: the chat, read by the policy's scope
    context: dict[str, str] | None = None
    id: Any = None  # as written (echoed back as ``input_id``)


def _cell(value: Any, where: str, field: str) -> Any:
    """A CSV cell may hold JSON (``[...]`` or ``{...}``) for a field that is a list or an object."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: {field}: not valid JSON ({exc.msg})") from None
    return None if value == "" else value


def parse_check(raw: Mapping[str, Any], where: str = "row", default_stage: Stage = "input") -> CheckRow:
    """A record as a :class:`CheckRow`, with the stage and prompt rules of :func:`parse_row` (a ``prompt``
    makes the row a response unless ``stage`` says otherwise; otherwise ``default_stage``). Stricter where
    a check would misread the row: a ValueError naming ``where`` and the field."""
    messages = _cell(raw.get("messages"), where, "messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise ValueError(f"{where}: messages: must be a list of chat messages")
        readable(messages, where, "messages")
    text = raw.get("text")
    if not isinstance(text, str) and not messages:  # say what the row has instead (a typo, another column)
        fields = ", ".join(str(k) for k, v in raw.items() if k is not None and v is not None) or "nothing"
        has = f"not {type(text).__name__}" if text is not None else f"the row has: {fields}"
        raise ValueError(f"{where}: needs a `text` string ({has})")
    prompt = raw.get("prompt")
    if prompt not in (None, "") and not isinstance(prompt, str):
        raise ValueError(f"{where}: prompt: must be a string (the prompt the response answers)")
    text, stage, prompt, _ = _subject({**raw, "messages": messages}, where, default_stage)
    if stage == "output" and not isinstance(raw.get("text"), str):
        raise ValueError(f"{where}: needs a `text` string (the response to check)")
    if prompt is not None and stage == "input":
        raise ValueError(f"{where}: prompt: is for stage: output (the prompt the response answers)")
    if messages and stage == "output":
        raise ValueError(f"{where}: messages: are for stage: input (a response is checked as its `text`)")
    context = row_context(_cell(raw.get("context"), where, "context"), where)
    return CheckRow(text, stage, prompt, messages or None, context, raw.get("id"))


def readable(payload: Any, where: str, field: str) -> Any:
    """``payload`` once the core's reader (:func:`guardrail.messages.extract`) has read all of it, or a
    ValueError at ``where``: ``field`` (a bad message fails with its line, not at the check with none)."""
    from guardrail.messages import extract

    try:
        extract(payload, "all")
    except TypeError as exc:  # InvalidMessages (a TypeError) names the message and the problem
        raise ValueError(f"{where}: {field}: {exc}") from None
    return payload


def row_context(value: Any, where: str) -> dict[str, str] | None:
    """A row's ``context`` (what routes match on): None, or an object of strings; else a ValueError at ``where``."""
    if value is not None and (
        not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ValueError(f"{where}: context: must be an object of strings (routing keys such as tenant)")
    return value


def read_checks(path: str | Path, default_stage: Stage = "input") -> list[tuple[str, CheckRow]]:
    """(``file:line``, row) for every row of a JSONL or CSV file, all read before any is checked: a bad row
    is a ValueError naming its ``file:line`` and field. A JSONL line may also be a bare JSON string."""
    return [(where, parse_check(rec, where, default_stage)) for where, rec in read_records(Path(path), strings=True)]


def load_rows(path: str | Path) -> list[EvalRow]:
    path = Path(path)
    rows = []
    for n, (where, rec) in enumerate(read_records(path)):
        row = parse_row(rec, where)
        row.id = row.id or str(n + 1)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


class Progress:
    """A progress bar with rate and time left on stderr; silent unless the stream is a terminal."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, *, force: bool = False) -> None:
        self.total, self.label, self.n = total, label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.on = force or self.stream.isatty()
        self._start = time.monotonic()
        self._last = 0.0

    def step(self, k: int = 1) -> None:
        self.n += k
        if not self.on:
            return
        now = time.monotonic()
        if self.n < self.total and now - self._last < 0.1:
            return
        self._last = now
        rate = self.n / max(now - self._start, 1e-9)
        left = (self.total - self.n) / rate if rate else 0.0
        width = 28
        done = int(width * self.n / max(1, self.total))
        self.stream.write(
            f"\r{self.label}[{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} {rate:6.1f}/s {left:5.0f}s left"
        )
        if self.n >= self.total:
            self.stream.write("\n")
        self.stream.flush()
