"""The Classifier protocol: the only thing the engine knows about a classifier.

A classifier has a ``name``, the ``labels`` it can score, and ``predict``, which maps a batch of texts
to raw probabilities per label: a plain ``dict`` per text, never a positional tuple or a sentinel
score. Stage-aware classifiers take ``stage`` and, for the output stage, the prompts that the
responses answer. Anything with this shape works (tests use ``guardrail.testing.FakeClassifier``).

Optional methods the scheduler (guardrail.scheduler) looks for, none required:
- ``reset()``: drop whatever is stuck; called when an inference hangs;
- ``interrupt(thread)`` and ``resume(thread)``: stop the inference a given thread is in, and let that thread
  run again. With both, a sync check on an idle scheduler may run in its caller's thread, and is stopped
  there at its deadline; without them every check runs on the scheduler's worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from guardrail.taxonomy import Stage

__all__ = ["Classifier"]


@runtime_checkable
class Classifier(Protocol):
    name: str

    @property
    def labels(self) -> frozenset[str]: ...

    def predict(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]: ...
