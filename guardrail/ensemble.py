"""An online ensemble of safety experts with no-regret weights (Aegis, Ghosh et al. 2024).

Each expert (the bundled model, an LLM judge, a user's own model) scores every category; the
ensemble's score is the weighted mean of the experts that score it. Weights start equal and are
updated from feedback (a reviewed label) with the exponentially weighted forecaster (Hedge):
``w_i <- w_i * exp(-eta * loss_i)``, where ``loss_i`` is the expert's absolute error. With
``eta = sqrt(8 ln N / T)`` the ensemble's cumulative loss is within ``sqrt(T ln N / 2)`` of the best
expert in hindsight, whatever the traffic: it adapts in deployment to whichever expert is right
about *this* application's traffic, per category.

The ensemble is itself a ``Classifier``, so ``Guard(policy, classifiers=Ensemble(...))`` just works;
its weights are plain JSON (``save``/``load``) so ops can review and roll them out like a policy.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from guardrail.classifiers.base import Classifier
from guardrail.taxonomy import Stage

__all__ = ["Ensemble"]


class Ensemble:
    def __init__(self, experts: Sequence[Classifier], *, eta: float = 0.5, name: str = "ensemble") -> None:
        if not experts:
            raise ValueError("an ensemble needs at least one expert")
        names = [e.name for e in experts]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        self.experts = tuple(experts)
        self.eta = eta
        self.name = name
        self._lock = threading.Lock()
        # weights[label][expert name], created on first use so custom labels work too
        self.weights: dict[str, dict[str, float]] = {}
        self.updates = 0

    @property
    def labels(self) -> frozenset[str]:
        out: set[str] = set()
        for e in self.experts:
            out |= set(e.labels)
        return frozenset(out)

    def _w(self, label: str) -> dict[str, float]:
        w = self.weights.get(label)
        if w is None:
            scorers = [e.name for e in self.experts if label in e.labels]
            w = self.weights[label] = {n: 1.0 / len(scorers) for n in scorers}
        return w

    def expert_scores(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> dict[str, list[dict[str, float]]]:
        return {e.name: e.predict(texts, stage=stage, prompts=prompts) for e in self.experts}

    def combine(self, per_expert: Mapping[str, Sequence[Mapping[str, float]]], n: int) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in range(n)]
        with self._lock:
            for i in range(n):
                labels = {lab for scores in per_expert.values() for lab in scores[i]}
                for lab in labels:
                    w = self._w(lab)
                    num = den = 0.0
                    for name, scores in per_expert.items():
                        if lab in scores[i] and name in w:
                            num += w[name] * scores[i][lab]
                            den += w[name]
                    if den > 0:
                        out[i][lab] = min(1.0, max(0.0, num / den))
        return out

    def predict(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        return self.combine(self.expert_scores(texts, stage=stage, prompts=prompts), len(texts))

    def update(
        self,
        text: str,
        truth: Mapping[str, float],
        *,
        stage: Stage = "input",
        prompt: str | None = None,
        per_expert: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    ) -> dict[str, float]:
        """Learn from one reviewed example (``truth``: label -> 0/1); returns each expert's mean loss."""
        scores = per_expert or self.expert_scores([text], stage=stage, prompts=[prompt] if prompt else None)
        losses: dict[str, list[float]] = {}
        with self._lock:
            for lab, y in truth.items():
                w = self._w(lab)
                for name in list(w):
                    p = scores[name][0].get(lab)
                    if p is None:
                        continue
                    loss = abs(p - float(y))
                    losses.setdefault(name, []).append(loss)
                    w[name] *= math.exp(-self.eta * loss)
                total = sum(w.values())
                if total > 0:
                    for name in w:
                        w[name] = max(w[name] / total, 1e-6)  # a floor keeps a recovering expert reachable
            self.updates += 1
        return {n: sum(v) / len(v) for n, v in losses.items()}

    def save(self, path: str | Path) -> None:
        with self._lock:
            data = {"eta": self.eta, "updates": self.updates, "weights": self.weights}
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))

    def load(self, path: str | Path) -> None:
        data = json.loads(Path(path).read_text())
        known = {e.name for e in self.experts}
        with self._lock:
            self.eta = float(data.get("eta", self.eta))
            self.updates = int(data.get("updates", 0))
            self.weights = {
                lab: {n: float(v) for n, v in w.items() if n in known} for lab, w in data.get("weights", {}).items()
            }
