"""A policy test suite: its schema and its loader (``guardrail policy test``, :mod:`guardrail.policytest`).

A suite is YAML (``cases:``) or JSONL (one case per line, optionally a ``{"policy": ...}`` header),
each case a text or chat messages, its stage, an optional routing context and what must hold. The
models are strict (``extra="forbid"``) and a malformed suite is a :class:`~guardrail.errors.PolicyError`
naming file:line, never a silently skipped case: a misspelt key would otherwise test nothing. A JSONL
suite is read by the one JSONL reader (:mod:`guardrail.jsonl`: lines end only at line ends, a key twice in
an object is refused, as YAML suites refuse it), strictly as UTF-8, and names one policy: a second header
line would silently replace the first. Apart from the runner so that reading a suite needs no engine;
:mod:`guardrail.policytest` re-exports it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from guardrail import _yaml
from guardrail.decision import Action
from guardrail.errors import PolicyError
from guardrail.jsonl import JsonlError, parse_jsonl, split_lines
from guardrail.messages import extract

__all__ = ["SUITE_SUFFIXES", "Case", "Expect", "Suite", "load_suite", "suite_files"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)
SUITE_SUFFIXES = (".yaml", ".yml", ".jsonl")
Name = Annotated[str, StringConstraints(min_length=1)]


class Expect(BaseModel):
    """What must hold for a case: at least one of the three."""

    model_config = _FROZEN
    action: Action | tuple[Action, ...] | None = Field(default=None, description="an action or a list of allowed ones")
    must_fire: tuple[Name, ...] = ()
    must_not_fire: tuple[Name, ...] = ()

    @field_validator("action")
    @classmethod
    def _some_action(cls, action: Action | tuple[Action, ...] | None) -> Action | tuple[Action, ...] | None:
        # `action: []` allows no action, so nothing was checked and every decision "held" (a pipe bomb too)
        if action == ():
            raise ValueError("an empty list of actions asserts nothing: name at least one, or leave `action` out")
        return action

    @model_validator(mode="after")
    def _something(self) -> Expect:
        if self.action is None and not self.must_fire and not self.must_not_fire:
            raise ValueError("expect needs action, must_fire or must_not_fire")
        if set(self.must_fire) & set(self.must_not_fire):
            raise ValueError("a category cannot be in both must_fire and must_not_fire")
        return self

    @property
    def actions(self) -> tuple[Action, ...]:
        return () if self.action is None else (self.action,) if isinstance(self.action, Action) else self.action


class Case(BaseModel):
    """One check and its expectation; ``line`` is where it starts in its file (set by the loader)."""

    model_config = _FROZEN
    id: Name
    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    stage: Literal["input", "output"] = "input"
    prompt: str | None = None
    context: dict[str, str] | None = None
    expect: Expect
    line: int | None = None

    @field_validator("messages")
    @classmethod
    def _readable(cls, messages: tuple[dict[str, Any], ...] | None) -> tuple[dict[str, Any], ...] | None:
        # Read by the core's own reader now, so a message it cannot read (an unknown role, content
        # of the wrong shape) is refused at this case's file:line rather than failing the run with no
        # place, or being left unread and "holding". Every message, as the output stage reads them:
        # which ones the input stage reads depends on the policy, and any policy may run this suite.
        if messages is not None:
            try:
                extract(list(messages), "all")
            except TypeError as exc:  # InvalidMessages (a TypeError) names the message and the problem
                raise ValueError(str(exc)) from None
        return messages

    @model_validator(mode="after")
    def _payload(self) -> Case:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of text or messages")
        if self.prompt is not None and self.stage != "output":
            raise ValueError("prompt is for stage: output (the prompt the response answers)")
        return self

    @property
    def payload(self) -> Any:
        return self.text if self.text is not None else [dict(m) for m in self.messages or ()]


class Suite(BaseModel):
    """A suite file's cases; ``file`` and ``policy_line`` (where ``policy`` is written) are set by the loader, so
    that a policy the suite cannot load is named at the suite's own line, as a bad ``extends`` is."""

    model_config = _FROZEN
    policy: Name | None = None
    description: str = ""
    cases: tuple[Case, ...] = Field(min_length=1)
    file: str = "<suite>"
    policy_line: int | None = None


def _located(exc: ValidationError, locs: _yaml.Locations, origin: str, *, jsonl: bool = False) -> PolicyError:
    err = exc.errors(include_url=False)[0]
    # keep keys and indexes; drop pydantic's union-member tags such as "str-enum[Action]"
    path: _yaml.PathKey = tuple(p for p in err["loc"] if isinstance(p, int) or str(p).isidentifier())
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        hint = _yaml.closest(err.get("input"), choices)
        return _yaml.located_error(f"unknown value {err.get('input')!r}; {msg}", locs, path, origin, hint)
    if err["type"] == "extra_forbidden":
        model = Expect if "expect" in path else Case if ("cases" in path or jsonl) else Suite
        valid = [v for v in model.model_fields if v not in ("line", "file", "policy_line")]
        return _yaml.located_error(f"unknown key {path[-1]!r}", locs, path, origin, _yaml.closest(path[-1], valid))
    return _yaml.located_error(msg, locs, path, origin)


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate one suite file; a problem is a PolicyError at file:line."""
    p = Path(path)
    origin = str(p)
    if p.suffix.lower() == ".jsonl":
        return _load_jsonl(p)
    data, locs = _yaml.parse_yaml(_yaml.read_text(p), origin)
    if not isinstance(data, dict) or "cases" not in data:
        raise PolicyError("a suite is a mapping with `cases:` (and optionally `policy:`)", file=origin, line=1)
    cases = data.get("cases")
    if isinstance(cases, list):
        data = {**data, "cases": [{**c, "line": locs.get(("cases", i), (origin, None))[1]} if isinstance(c, dict)
                                  else c for i, c in enumerate(cases)]}  # fmt: skip
    where = locs.get(("policy",), (origin, None))[1] if "policy" in data else None
    try:
        suite = Suite.model_validate({**data, "file": origin, "policy_line": where})
    except ValidationError as exc:
        raise _located(exc, locs, origin) from None
    _unique_ids(suite)
    return suite


def _load_jsonl(p: Path) -> Suite:
    # read strictly as UTF-8 (a corrupt byte would silently change a case's text), then split and parsed by the one
    # JSONL reader: lines end only at line ends (not at U+2028 inside a string), and a duplicated key is refused
    origin = str(p)
    policy: str | None = None
    policy_line: int | None = None
    cases: list[Case] = []
    try:
        for n, row in parse_jsonl(split_lines(_yaml.read_text(p)), origin):
            if isinstance(row, dict) and set(row) == {"policy"}:  # a header line naming the suite's policy
                if policy_line is not None:  # a later header would silently replace the first
                    msg = f"a second policy header (the first is line {policy_line}): a suite names one policy"
                    raise PolicyError(msg, file=origin, line=n, field="policy")
                policy, policy_line = row["policy"], n
                continue
            if not isinstance(row, dict):
                raise PolicyError("each line is a JSON object (a case)", file=origin, line=n)
            try:
                cases.append(Case.model_validate({**row, "line": n}))
            except ValidationError as exc:
                raise _located(exc, {(): (origin, n)}, origin, jsonl=True) from None
    except JsonlError as exc:
        raise PolicyError(exc.problem, file=origin, line=exc.line) from None
    if not cases:
        raise PolicyError("the suite has no cases", file=origin)
    try:
        suite = Suite(policy=policy, cases=tuple(cases), file=origin, policy_line=policy_line)
    except ValidationError as exc:
        raise _located(exc, {(): (origin, policy_line)}, origin) from None
    _unique_ids(suite)
    return suite


def _unique_ids(suite: Suite) -> None:
    seen: set[str] = set()
    for c in suite.cases:
        if c.id in seen:
            raise PolicyError(f"duplicate case id {c.id!r}", file=suite.file, line=c.line, field="id")
        seen.add(c.id)


def suite_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, and the suite files (``*.yaml``, ``*.yml``, ``*.jsonl``) in folders named, sorted."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in SUITE_SUFFIXES and f.is_file())
            if not found:
                raise PolicyError("no suite files (*.yaml, *.yml, *.jsonl) in this folder", file=str(p))
            out += found
        else:
            out.append(p)
    return out
