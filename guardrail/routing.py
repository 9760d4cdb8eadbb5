"""Routing: a policy that hands a request to another policy by tenant, route, model, tier or script.

One deployment often serves several audiences: a children's tenant needs ``strict``, an internal
red-team route ``permissive``, Arabic traffic a policy measured on Arabic. Rather than one Guard per
audience (and adapters that must pick the right one), a policy declares ``routes:``, ordered
matches on the request's *context* (``guard.check_input(x, context={"tenant": "acme"})``), and the
first that matches selects another policy file or bundled name. The chosen policy decides the whole
check (scope, rules, fail mode), and its name is the Decision's and the audit event's ``policy``.

``match`` maps a context key to a value, a list of values (any of them), or a glob (``acme-*``);
every key must match. A context value is a string, or a boolean or number as JSON and YAML write them
(a request's ``{"kids": true}``, a key's metadata, ``match: {kids: true}`` in the policy): ``context_text``
is the one rule that turns either side into the text compared, so the same value written in a policy and
sent in a request always matches. The key ``script`` is filled in from the text (the dominant writing system,
e.g. ``Arabic``) when the caller does not give it. Targets load with the routing policy, so a missing
file or a loop (a -> b -> a) is a ``PolicyError`` at the route's file:line, reported by ``guardrail
policy validate``; and a hot reload watches the routed files too.
"""

from __future__ import annotations

import fnmatch
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrail import _yaml
from guardrail.errors import PolicyError
from guardrail.language import dominant_script

if TYPE_CHECKING:
    from guardrail.policy import Policy

__all__ = [
    "MAX_ROUTE_DEPTH",
    "ContextValue",
    "Route",
    "context_of",
    "context_text",
    "resolve_routes",
    "sample_text",
    "select",
]

MAX_ROUTE_DEPTH = 8

ContextValue = str | bool | int | float
"""What a routing context value may be: what JSON (a request body, LiteLLM key metadata) and YAML carry."""
RoutingContext = Mapping[str, ContextValue | None] | None
"""What a caller passes as ``context=``: values as :func:`context_text` reads them (None: not given)."""


def context_text(value: object) -> str:
    """The text a routing context value is compared as, on both sides of a match: a route's YAML value and a
    request's context value go through this one rule, so what a policy writes and what a caller sends agree.

    - a string is itself (never reinterpreted: ``"007"`` is not ``7``, ``"True"`` is not ``true``);
    - a boolean is ``true`` / ``false``, as YAML and JSON write it (``str(True)`` is ``"True"``, which no
      route written ``kids: true`` ever matched);
    - a whole number is its integer digits, an int or a float alike (JSON has one number type, and many
      encoders send ``2`` as ``2.0``): ``tier: 2`` matches ``2`` and ``2.0``;
    - any other number is its shortest repr (``0.5``, ``1e-07``, ``inf``), which round-trips.

    Anything else (None, a list, a mapping, bytes, an object) is a TypeError: ``str()`` of it would be a
    value no route was written with, and the request would silently take the parent policy.
    """
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass (a StrEnum) by its characters, not by its own __str__
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    raise TypeError(f"a routing context value is a string, number or boolean, not {type(value).__name__}")


def context_of(context: Mapping[str, ContextValue | None] | None) -> dict[str, str]:
    """A caller's routing context as the text routes match (``context_text``). A key whose value is None is
    left out (not given: a ``script`` route then reads the text); a key that is not a string, or a value
    ``context_text`` refuses, is a TypeError naming the key."""
    out: dict[str, str] = {}
    for key, value in (context or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"routing context keys are strings, not {type(key).__name__} ({key!r})")
        if value is None:
            continue
        try:
            out[key] = context_text(value)
        except TypeError as exc:
            raise TypeError(f"context[{key!r}]: {exc}") from None
    return out


class Route(BaseModel):
    """``match`` every context key (value, list of values, or glob) -> use ``policy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: dict[str, str | tuple[str, ...]] = Field(
        min_length=1,
        description="Context keys and the values that select this route (a list: any; globs allowed).",
        # what a policy file may write (the validator below reads booleans and numbers as context_text)
        json_schema_extra={
            "additionalProperties": {
                "anyOf": [
                    {"type": ["string", "boolean", "number"]},
                    {"type": "array", "items": {"type": ["string", "boolean", "number"]}},
                ]
            }
        },
    )
    policy: str = Field(min_length=1, description="A bundled policy name, or a path relative to this file.")

    @field_validator("match", mode="before")
    @classmethod
    def _scalars_as_text(cls, v: Any) -> Any:
        """``tier: 1`` or ``beta: true`` in YAML mean what a caller sending ``1`` or ``true`` means: both
        sides become text by ``context_text``. Other values are left for the type check to refuse by name."""
        if not isinstance(v, dict):
            return v

        def text(x: Any) -> Any:
            return context_text(x) if isinstance(x, (bool, int, float)) else x

        return {k: [text(x) for x in w] if isinstance(w, list) else text(w) for k, w in v.items()}

    @field_validator("match")
    @classmethod
    def _non_empty(cls, v: dict[str, str | tuple[str, ...]]) -> dict[str, str | tuple[str, ...]]:
        for key, want in v.items():
            if not key.strip() or (isinstance(want, tuple) and not want):
                raise ValueError(f"match.{key}: give a value or a non-empty list of values")
        return v

    def matches(self, context: Mapping[str, ContextValue | None]) -> bool:
        """Whether every key of ``match`` is in ``context`` with a value (as ``context_text``) one of its
        values or globs fits; a key whose value is None is not given."""
        for key, want in self.match.items():
            got = context.get(key)
            if got is None:
                return False
            options = (want,) if isinstance(want, str) else want
            text = context_text(got)
            if not any(fnmatch.fnmatchcase(text, o) for o in options):
                return False
        return True


def sample_text(payload: Any) -> str:
    """The text whose script a ``script`` route looks at: a string, or the newest user message of a chat
    (a long English system prompt must not decide the language of an Arabic question)."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", errors="replace")
    texts: list[tuple[bool, str]] = []
    for m in payload if isinstance(payload, Sequence) else ():
        get = m.get if isinstance(m, Mapping) else lambda k, m=m: getattr(m, k, None)
        content, role = get("content"), str(get("role") or "").lower()
        if isinstance(content, str):
            texts.append((role == "user", content))
        elif isinstance(content, Sequence):
            parts = [p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
            texts.append((role == "user", "\n".join(parts)))
    users = [t for is_user, t in texts if is_user and t.strip()]
    return users[-1] if users else "\n".join(t for _, t in texts)


def select(policy: Policy, context: Mapping[str, ContextValue | None] | None, payload: Any = None) -> Policy:
    """The policy that decides a request: the first matching route's (followed), else ``policy`` itself.
    ``context`` is read by ``context_of`` (a value no route could match is a TypeError, not a silent miss)."""
    ctx = context_of(context)
    current = policy
    for _ in range(MAX_ROUTE_DEPTH + 1):
        routes = current.routes
        if not routes:
            return current
        if "script" not in ctx and any("script" in r.match for r in routes):
            ctx["script"] = dominant_script(sample_text(payload)) or ""
        nxt = next((t for r, t in zip(routes, current.routed, strict=True) if r.matches(ctx)), None)
        if nxt is None:
            return current
        current = nxt
    return current  # unreachable: loops and depth are refused at load time


def resolve_routes(
    policy: Policy,
    locs: _yaml.Locations,
    origin: str,
    chain: tuple[Path, ...],
    load: Callable[[str | os.PathLike[str], tuple[Path, ...]], Policy],
) -> tuple[Policy, ...]:
    """Load every route's target (``load(ref, chain)``), naming the route's file:line on any failure."""
    out = []
    for i, route in enumerate(policy.routes):
        where = _yaml.where(locs, ("routes", i, "policy"), origin)
        ref: str | Path = route.policy
        if _yaml.is_path_like(route.policy):
            ref = _yaml.expand(route.policy)
            if not ref.is_absolute():
                ref = (Path(where[0]).parent if where[0] != "<dict>" else Path.cwd()) / ref
        elif route.policy not in _yaml.BUNDLED_POLICIES:
            hint = _yaml.closest(route.policy, _yaml.BUNDLED_POLICIES)
            msg = f"unknown bundled policy {route.policy!r} (a file path needs a '/' or .yaml)"
            raise PolicyError(msg, file=where[0], line=where[1], field=f"routes[{i}].policy", suggestion=hint)
        path = Path(ref) if isinstance(ref, Path) else _yaml.bundled_policy_dir() / f"{ref}.yaml"
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise PolicyError(f"cannot resolve {path}: {exc}", file=where[0], line=where[1]) from None
        if real in chain:
            loop = " -> ".join(str(p) for p in (*chain, real))
            raise PolicyError(f"route loop: {loop}", file=where[0], line=where[1], field=f"routes[{i}].policy")
        if len(chain) > MAX_ROUTE_DEPTH:
            raise PolicyError(f"routes nest deeper than {MAX_ROUTE_DEPTH} policies", file=where[0], line=where[1])
        if not _yaml.is_file(path):
            raise PolicyError(f"routed policy not found: {path}", file=where[0], line=where[1],
                              field=f"routes[{i}].policy")  # fmt: skip
        out.append(load(path, chain))  # the loader adds the target itself to the chain
    return tuple(out)
