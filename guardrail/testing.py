"""Helpers for users' own tests: a classifier with fixed scores, and decision capture.

``FakeClassifier`` is a real ``Classifier`` (the protocol is all the engine knows), so a test of an
application's wiring runs the whole Guard (policy, rules, audit, adapters) with no model at all.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from guardrail.decision import Decision
from guardrail.taxonomy import ALL_CATEGORIES, Stage

__all__ = ["DecisionLog", "FakeClassifier"]


class FakeClassifier:
    """Scores from a fixed mapping, optionally per regex (``rules``: pattern -> scores; every matching
    pattern contributes, the highest score per label wins).

    ``delay`` (seconds) and ``error`` simulate a slow or failing model for fail-mode tests; ``scripts``
    declares the writing systems it supports and ``context_reading`` the (gate, threshold) of reading a text with
    its system prompt, as a model folder's labels.json does.
    """

    def __init__(
        self,
        scores: Mapping[str, float] | None = None,
        *,
        rules: Mapping[str, Mapping[str, float]] | None = None,
        labels: Iterable[str] | None = None,
        delay: float = 0.0,
        error: Exception | None = None,
        name: str = "fake",
        scorer: Callable[[str, Stage, str | None], Mapping[str, float]] | None = None,
        scripts: Iterable[str] | None = None,
        context_reading: tuple[float, float] | None = None,
    ) -> None:
        self.name = name
        self.context_reading = context_reading
        # the writing systems this fake "was measured on" (None: not stated, so no language check)
        self.scripts = frozenset(scripts) if scripts is not None else None
        self._default = dict(scores or {})
        self._rules = [(re.compile(p, re.I | re.S), dict(s)) for p, s in (rules or {}).items()]
        self._labels = frozenset(labels) if labels is not None else frozenset(c.id for c in ALL_CATEGORIES)
        self.delay = delay
        self.error = error
        self.scorer = scorer
        self.calls: list[tuple[Stage, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    @property
    def labels(self) -> frozenset[str]:
        return self._labels

    def predict(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        with self._lock:
            self.calls.append((stage, tuple(texts)))
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        out = []
        for i, t in enumerate(texts):
            if self.scorer is not None:
                out.append(dict(self.scorer(t, stage, prompts[i] if prompts else None)))
                continue
            scores = {k: 0.0 for k in self._labels}
            scores.update(self._default)
            for pattern, s in self._rules:
                if pattern.search(t):
                    for k, v in s.items():
                        scores[k] = max(v, scores.get(k, 0.0))
            out.append(scores)
        return out


class DecisionLog(list[Decision]):
    """Pass as ``Guard(on_decision=log.append)`` and assert on what the guard decided."""

    @property
    def actions(self) -> list[str]:
        return [d.action.value for d in self]
