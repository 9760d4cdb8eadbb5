"""Routing: a policy that hands a request to another policy by tenant, route, model, tier or script.

One deployment often serves several audiences: a children's tenant needs ``strict``, an internal
red-team route ``permissive``, Arabic traffic a policy measured on Arabic. Rather than one Guard per
audience (and adapters that must pick the right one), a policy declares ``routes:``, ordered
matches on the request's *context* (``guard.check_input(x, context={"tenant": "acme"})``), and the
first that matches selects another policy file or bundled name. The chosen policy decides the whole
check (scope, rules, fail mode), and its name is the Decision's and the audit event's ``policy``.

``match`` maps a context key to a value, a list of values (any of them), or a glob (``acme-*``);
every key must match. The key ``script`` is filled in from the text (the dominant writing system,
e.g. ``Arabic``) when the caller does not give it. Targets load with the routing policy, so a missing
file or a loop (a -> b -> a) is a ``PolicyError`` at the route's file:line, reported by ``guardrail
policy validate``; and a hot reload watches the routed files too.
"""

from __future__ import annotations

import fnmatch
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

__all__ = ["MAX_ROUTE_DEPTH", "Route", "resolve_routes", "sample_text", "select"]

MAX_ROUTE_DEPTH = 8


class Route(BaseModel):
    """``match`` every context key (value, list of values, or glob) -> use ``policy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: dict[str, str | tuple[str, ...]] = Field(
        min_length=1, description="Context keys and the values that select this route (a list: any; globs allowed)."
    )
    policy: str = Field(min_length=1, description="A bundled policy name, or a path relative to this file.")

    @field_validator("match", mode="before")
    @classmethod
    def _scalars_as_text(cls, v: Any) -> Any:
        """``tier: 1`` or ``beta: true`` in YAML mean the context strings "1" and "true"."""
        if not isinstance(v, dict):
            return v

        def text(x: Any) -> Any:
            return str(x).lower() if isinstance(x, bool) else str(x) if isinstance(x, (int, float)) else x

        return {k: [text(x) for x in w] if isinstance(w, list) else text(w) for k, w in v.items()}

    @field_validator("match")
    @classmethod
    def _non_empty(cls, v: dict[str, str | tuple[str, ...]]) -> dict[str, str | tuple[str, ...]]:
        for key, want in v.items():
            if not key.strip() or (isinstance(want, tuple) and not want):
                raise ValueError(f"match.{key}: give a value or a non-empty list of values")
        return v

    def matches(self, context: Mapping[str, str]) -> bool:
        for key, want in self.match.items():
            got = context.get(key)
            if got is None:
                return False
            options = (want,) if isinstance(want, str) else want
            if not any(fnmatch.fnmatchcase(str(got), o) for o in options):
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


def select(policy: Policy, context: Mapping[str, str] | None, payload: Any = None) -> Policy:
    """The policy that decides a request: the first matching route's (followed), else ``policy`` itself."""
    ctx: dict[str, str] = dict(context or {})
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
