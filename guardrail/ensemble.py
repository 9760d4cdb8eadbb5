"""An online ensemble of safety experts with no-regret weights (Aegis, Ghosh et al. 2024).

Each expert (the bundled model, an LLM judge, a user's own model) scores every category; the
ensemble's score is the weighted mean of the experts that score it. Weights start equal and are
updated from feedback (a reviewed label) with the exponentially weighted forecaster (Hedge):
``w_i <- w_i * exp(-eta * loss_i)``, where ``loss_i`` is the expert's absolute error. With
``eta = sqrt(8 ln N / T)`` the ensemble's cumulative loss is within ``sqrt(T ln N / 2)`` of the best
expert in hindsight, whatever the traffic: it adapts in deployment to whichever expert is right
about *this* application's traffic, per category.

An *escalation band* keeps the common case fast: the slow expert (say an LLM judge) is asked only
about texts on which the fast experts are uncertain (a watched category's combined score inside
``band``); elsewhere their answer stands. Feedback then updates only the experts that scored.

The ensemble is itself a ``Classifier``, so ``Guard(policy, classifiers=Ensemble(...))`` just works;
a policy can also name it (``classifiers:``, see :mod:`guardrail.ensemble_policy`). With a
:mod:`store <guardrail.ensemble_store>` the weights, running losses and the experts' scores of
recent decisions persist and are shared by processes and replicas; ``save``/``load`` write the
weights as plain JSON so ops can review and roll them out like a policy.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.classifiers.base import Classifier
from guardrail.taxonomy import Stage

if TYPE_CHECKING:
    from guardrail.ensemble_store import State, Store

__all__ = ["Ensemble", "Escalation", "hedge_step"]

PerExpert = Mapping[str, Mapping[str, float]]  # expert name -> {label: score}, for one text
FLOOR = 1e-6  # a floor keeps a recovering expert reachable


@dataclass(frozen=True, slots=True)
class Escalation:
    """Ask ``expert`` only when a watched category's combined score of the others is within ``band``."""

    expert: str
    band: tuple[float, float] = (0.2, 0.8)
    categories: tuple[str, ...] | None = None  # None: every category the other experts score


def hedge_step(state: State, per_expert: PerExpert, truth: Mapping[str, float], eta: float,
               experts: Sequence[str]) -> State:  # fmt: skip
    """One Hedge update of ``state`` (weights, cumulative losses, counts) from one reviewed example.

    Pure (returns the new state), so a store can apply it inside its transaction. The ensemble's
    own loss is recorded beside the experts' (its prediction with the weights before the update),
    so ``guardrail ensemble show`` and the benchmark can report regret."""
    weights: dict[str, dict[str, float]] = {k: dict(v) for k, v in state.get("weights", {}).items()}
    loss: dict[str, float] = dict(state.get("loss", {}))
    count: dict[str, int] = dict(state.get("count", {}))
    for lab, y in truth.items():
        w = weights.setdefault(lab, {n: 1.0 / len(experts) for n in experts})
        scored = {n: float(s[lab]) for n, s in per_expert.items() if lab in s and n in w}
        if not scored:
            continue
        den = sum(w[n] for n in scored)
        ens = sum(w[n] * p for n, p in scored.items()) / den if den > 0 else 0.0
        for name, p in (*scored.items(), ("ensemble", ens)):
            loss[name] = loss.get(name, 0.0) + abs(p - float(y))
            count[name] = count.get(name, 0) + 1
        for name, p in scored.items():
            w[name] *= math.exp(-eta * abs(p - float(y)))
        total = sum(w.values())
        if total > 0:
            for name in w:
                w[name] = max(w[name] / total, FLOOR)
    return {**state, "weights": weights, "loss": loss, "count": count, "updates": int(state.get("updates", 0)) + 1}


class Ensemble:
    def __init__(
        self,
        experts: Sequence[Classifier],
        *,
        eta: float = 0.5,
        name: str = "ensemble",
        escalate: Escalation | None = None,
        store: Store | None = None,
        refresh_s: float = 5.0,
        recent: int = 4096,
    ) -> None:
        if not experts:
            raise ValueError("an ensemble needs at least one expert")
        names = [e.name for e in experts]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        if escalate is not None and (escalate.expert not in names or len(names) < 2):
            raise ValueError(f"escalate names {escalate.expert!r}, which must be one of at least two experts {names}")
        self.experts = tuple(experts)
        self.eta = eta
        self.name = name
        self.escalate = escalate
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        # weights[label][expert name], created on first use so custom labels work too
        self.weights: dict[str, dict[str, float]] = {}
        self.updates = 0
        self.escalations = 0
        self._loaded_at = -math.inf
        self._recent: OrderedDict[tuple[str, str], dict[str, dict[str, float]]] = OrderedDict()
        self._recent_max = recent

    @property
    def labels(self) -> frozenset[str]:
        out: set[str] = set()
        for e in self.experts:
            out |= set(e.labels)
        return frozenset(out)

    @property
    def context_reading(self) -> tuple[float, float] | None:
        """The strictest (gate, threshold) its experts state for reading a text with its system prompt (the
        ensemble's score is a mean of theirs, so no looser gate was shown to be safe); None when none states one."""
        from guardrail._context import context_reading

        stated = [context_reading(e) for e in self.experts if getattr(e, "context_reading", None) is not None]
        if not stated:
            return None
        return max(c[0] for c in stated), max(c[1] for c in stated)

    def stage_labels(self, stage: Stage) -> frozenset[str]:
        out: set[str] = set()
        for e in self.experts:
            per = getattr(e, "stage_labels", None)
            out |= set(per(stage)) if callable(per) else set(e.labels)
        return frozenset(out)

    def warmup(self) -> None:
        for e in self.experts:
            warm = getattr(e, "warmup", None)
            if callable(warm):
                warm()

    def _w(self, label: str) -> dict[str, float]:
        w = self.weights.get(label)
        if w is None:
            scorers = [e.name for e in self.experts if label in e.labels]
            w = self.weights[label] = {n: 1.0 / len(scorers) for n in scorers}
        return w

    def _refresh(self) -> None:
        """Replicas learn from each other: re-read the shared weights at most every ``refresh_s``."""
        if self.store is None or time.monotonic() - self._loaded_at < self.refresh_s:
            return
        state = self.store.read_state()
        with self._lock:
            self._loaded_at = time.monotonic()
            if state:
                self.weights = {k: dict(v) for k, v in state.get("weights", {}).items()}
                self.updates = int(state.get("updates", 0))

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
        self._refresh()
        esc = self.escalate
        fast = [e for e in self.experts if esc is None or e.name != esc.expert]
        per: dict[str, list[dict[str, float]]] = {e.name: e.predict(texts, stage=stage, prompts=prompts) for e in fast}
        combined = self.combine(per, len(texts))
        if esc is not None:
            slow = next(e for e in self.experts if e.name == esc.expert)
            lo, hi = esc.band
            watched = esc.categories
            unsure = [
                i
                for i, s in enumerate(combined)
                if any(lo <= v <= hi for k, v in s.items() if watched is None or k in watched)
            ]
            per[slow.name] = [{} for _ in texts]
            if unsure:
                got = slow.predict([texts[i] for i in unsure], stage=stage,
                                   prompts=[prompts[i] for i in unsure] if prompts else None)  # fmt: skip
                for i, s in zip(unsure, got, strict=True):
                    per[slow.name][i] = s
                with self._lock:
                    self.escalations += len(unsure)
                combined = self.combine(per, len(texts))
        # the scores feedback learns from are the ones that decided: an input read with its system prompt (the
        # engine's second reading, which counts only for jailbreak) is not kept over the text's own reading; per
        # text, as a batch may hold one check's second reading beside another check's texts read alone
        with self._lock:
            for i, t in enumerate(texts):
                if stage == "input" and prompts is not None and prompts[i] is not None:
                    continue
                self._recent[(stage, t)] = {n: per[n][i] for n in per if per[n][i]}
                self._recent.move_to_end((stage, t))
            while len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
        return combined

    def recall(self, stage: Stage, texts: Sequence[str]) -> dict[str, dict[str, float]]:
        """The experts' scores of recently predicted ``texts`` (max per label over them); {} if forgotten."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for t in texts:
                for name, scores in self._recent.get((stage, t), {}).items():
                    mine = out.setdefault(name, {})
                    for k, v in scores.items():
                        mine[k] = max(v, mine.get(k, 0.0))
        return out

    def learn(self, per_expert: PerExpert, truth: Mapping[str, float]) -> dict[str, float]:
        """Apply one reviewed example (through the store when there is one); returns each expert's loss."""
        names = [e.name for e in self.experts]
        losses = {n: sum(abs(float(s[k]) - float(y)) for k, y in truth.items() if k in s) / max(1, len(truth))
                  for n, s in per_expert.items()}  # fmt: skip
        if self.store is not None:
            state = self.store.update_state(lambda st: hedge_step(st, per_expert, truth, self.eta, names))
            with self._lock:
                self.weights = {k: dict(v) for k, v in state["weights"].items()}
                self.updates = int(state["updates"])
                self._loaded_at = time.monotonic()
            return losses
        with self._lock:
            for lab in truth:
                self._w(lab)  # equal weights among the experts that score the label
            state = hedge_step({"weights": self.weights, "updates": self.updates}, per_expert, truth, self.eta, names)
            self.weights = state["weights"]
            self.updates = state["updates"]
        return losses

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
        return self.learn({n: s[0] for n, s in scores.items()}, truth)

    def state(self) -> dict[str, Any]:
        """Weights, running losses and counts (from the store when there is one)."""
        if self.store is not None:
            return self.store.read_state()
        with self._lock:
            return {"weights": json.loads(json.dumps(self.weights)), "updates": self.updates}

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
