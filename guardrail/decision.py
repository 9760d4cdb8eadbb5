"""Decision, Finding and Action: the plain data every check returns.

They are frozen and JSON-serialisable (``to_dict``) because a decision travels: into the audit log,
through ``guardrail check --json``, into the proxy's response headers, and into users' own
assertions. Nothing here knows how a decision was reached; that is ``engine`` and ``rules``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guardrail.taxonomy import Stage

__all__ = ["Action", "Decision", "Finding", "RuleAction"]


class Action(str, enum.Enum):
    """What happens to the traffic, ordered by strength (``block`` wins over everything)."""

    ALLOW = "allow"
    LOG = "log"
    REWRITE = "rewrite"
    BLOCK = "block"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]

    def __str__(self) -> str:
        return self.value


_STRENGTH = {Action.ALLOW: 0, Action.LOG: 1, Action.REWRITE: 2, Action.BLOCK: 3}


class RuleAction(str, enum.Enum):
    """What a policy rule asks for; ``redact`` and ``rewrite`` both yield ``Action.REWRITE``."""

    LOG = "log"
    REDACT = "redact"
    REWRITE = "rewrite"
    BLOCK = "block"

    @property
    def decision_action(self) -> Action:
        return Action.REWRITE if self is RuleAction.REDACT else Action(self.value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired: every crossing is recorded, even when a stronger action won."""

    category: str
    score: float
    threshold: float
    action: RuleAction
    shadow: bool = False
    entities: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "category": self.category,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "action": self.action.value,
            "shadow": self.shadow,
        }
        if self.entities:
            d["entities"] = list(self.entities)
        return d


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check.

    ``text`` is what should travel on: the original text when allowed or logged, the redacted or
    replaced text when rewritten, the refusal message when blocked. ``error`` is set when the
    policy's fail mode, not the classifier, decided: a readable reason, with ``error_kind`` its stable
    kind (``timeout``, ``overloaded``, ``classifier_error``, ``invalid_scores``, ``too_long``; see
    ``guardrail.errors.ERROR_KINDS``) for code, metrics and alerts to match on.
    """

    id: str
    action: Action
    stage: Stage
    text: str
    scores: Mapping[str, float]
    findings: tuple[Finding, ...]
    policy: str
    policy_hash: str
    latency_ms: float
    error: str | None = None
    message: str | None = None
    redactions: Mapping[str, str] = field(default_factory=dict)
    messages: tuple[dict[str, Any], ...] | None = None  # the rewritten chat messages, when messages were checked
    error_kind: str | None = None  # set exactly when ``error`` is

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def allowed(self) -> bool:
        """True when the traffic may pass unchanged (allowed or only logged)."""
        return self.action in (Action.ALLOW, Action.LOG)

    def to_dict(self, *, include_text: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "action": self.action.value,
            "stage": self.stage,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "findings": [f.to_dict() for f in self.findings],
            "policy": self.policy,
            "policy_hash": self.policy_hash,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error,
            "error_kind": self.error_kind,
        }
        if self.message is not None:
            d["message"] = self.message
        if self.redactions:
            d["redacted_entities"] = sorted(self.redactions)
        if include_text:
            d["text"] = self.text
            if self.messages is not None:
                d["messages"] = [dict(m) for m in self.messages]
        return d
