"""How a checked text is read with its system prompt (``input.system_context``): the rules the engine's second
reading follows. A classifier states ``context_reading`` (gate, threshold), a model folder in its labels.json; the
reading counts only for ``jailbreak``, only when the text alone reached the gate and the reading the threshold.
The plans that schedule the reading are ``guardrail._decide``'s (``context_plan``, ``with_context``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from guardrail.classifiers.base import Classifier
from guardrail.errors import InvalidScores
from guardrail.policy import Policy

__all__ = ["JAILBREAK", "NOT_ASKED", "context_counts", "context_reading", "jailbreak_of", "warn_if_context_unread"]

JAILBREAK = "jailbreak"  # the one head a reading of a text with its system prompt feeds (context_counts)


class _NotAsked:
    def __repr__(self) -> str:
        return "NOT_ASKED"


# a second reading's row for a classifier whose gate the text did not reach: it was never asked (aligned). Not
# None: a classifier that was asked and answered None has failed, and must never read as "not asked"
NOT_ASKED: Any = _NotAsked()


def _never_reads(clf: Classifier) -> bool:
    try:
        return math.isinf(context_reading(clf)[0])
    except InvalidScores:
        return False  # malformed: each check's fail mode says so


def context_reading(clf: Classifier) -> tuple[float, float]:
    """A classifier's (gate, threshold) for reading a text with its system prompt; (0, 0) when it states none.
    A stated value that is not two numbers is the classifier's error (the fail mode decides), never "no gate"."""
    stated = getattr(clf, "context_reading", None)
    if stated is None:
        return 0.0, 0.0
    try:
        gate, threshold = stated
        return float(gate), float(threshold)
    except (TypeError, ValueError) as exc:
        raise InvalidScores(f"context_reading {stated!r} is not (gate, threshold)", classifier=clf.name) from exc


def jailbreak_of(row: Any) -> float:
    v = row.get(JAILBREAK) if isinstance(row, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else -1.0


def context_counts(clf: Classifier, cat: str, v: float, alone: Any) -> bool:
    """Whether a score from reading a text with its system prompt counts. Only ``jailbreak`` does: the reading
    exists to catch a request that breaks only the system prompt's rules, and on other heads it lowers recall and
    raises false positives (bundled model, dev: ordinary prompts behind an unseen system prompt flagged as unsafe
    0.068 against 0.047 alone). And only when the model's ``context_reading`` gate allows it: the text alone
    scores at least ``gate`` and the reading at least ``threshold`` (chosen on dev, model card: ordinary prompts
    flagged as jailbreaks behind an unseen system prompt 0.033 ungated, 0.007 gated, 0.003 alone).
    A classifier that states no gate counts the reading ungated, at the rule's own threshold."""
    if cat != JAILBREAK:
        return False
    gate, threshold = context_reading(clf)
    return v >= threshold and jailbreak_of(alone) >= gate


def warn_if_context_unread(policy: Policy, clfs: Sequence[Classifier]) -> None:
    """``system_context: true`` with classifiers that never read the system prompt (a model whose labels.json says
    ``context_reading: {enabled: false}``, or an ensemble with such an expert): said once at load, not silently."""
    off = [c.name for c in clfs if _never_reads(c)]
    if off and len(off) == len(clfs):
        import structlog

        structlog.get_logger("guardrail").warning(
            "system_context_not_read",
            policy=policy.name,
            classifiers=off,
            why="the policy reads the system prompt as context, but its model says the reading was not shown to be "
            "safe on its dev rows (labels.json context_reading: enabled false), so the system prompt is never read",
        )
