"""The units of work the scheduler (guardrail.scheduler) queues and runs, and the counters it keeps.

Kept apart so that the scheduler module holds only the concurrency: who runs what, when, and what
happens at a deadline.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from guardrail.audit import error_code
from guardrail.classifiers.base import Classifier
from guardrail.errors import ClassifierError, InvalidScores
from guardrail.taxonomy import Stage

__all__ = [
    "Running",
    "SchedulerStats",
    "WorkItem",
    "estimate_tokens",
    "fail_item",
    "score_items",
    "warm_scale",
    "warm_seconds_per_token",
]

Scores = list[dict[str, float]]


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate (UTF-8 bytes / 3, plus the special tokens):
    English word pieces average about 4 bytes, CJK characters are 3 bytes and about one token."""
    return len(text.encode("utf-8", "surrogatepass")) // 3 + 2


@dataclass(eq=False, slots=True)
class WorkItem:
    """One check's texts for one classifier, due by ``deadline`` (``time.monotonic()``)."""

    texts: tuple[str, ...]
    prompts: tuple[str | None, ...] | None
    stage: Stage
    deadline: float
    tokens: int
    enqueued: float
    future: cf.Future[Scores] = field(default_factory=cf.Future)
    alone: bool = False  # its batch failed: it runs again in a batch of its own

    @classmethod
    def new(cls, texts: Sequence[str], prompts: Sequence[str | None] | None, stage: Stage, deadline: float) -> WorkItem:
        tokens = sum(estimate_tokens(t) for t in texts)
        return cls(tuple(texts), None if prompts is None else tuple(prompts), stage, deadline, tokens, time.monotonic())


@dataclass(slots=True)
class Running:
    """The inference in progress. ``inline`` is the ident of the caller's thread when the check runs
    there rather than on the worker; ``stopped`` once the watchdog asked the classifier to stop it."""

    items: list[WorkItem]
    started: float
    hang_at: float
    generation: int
    inline: int | None = None
    stopped: bool = False


@dataclass(slots=True)
class SchedulerStats:
    """Counters for benchmarks and tests (bounds on work, never on time)."""

    batches: int = 0
    items: int = 0
    texts: int = 0
    largest_batch: int = 0
    dropped: int = 0  # deadline passed in the queue: never run
    shed: int = 0  # refused at submit: overloaded
    hangs: int = 0  # inferences abandoned by the watchdog
    retried: int = 0  # items re-run alone after their batch failed
    inline: int = 0  # checks scored in their caller's thread (the scheduler was idle)
    stopped: int = 0  # inline checks stopped at their deadline

    def record(self, batch: list[WorkItem]) -> int:
        """Count a batch that ran; the number of its texts."""
        n = sum(len(it.texts) for it in batch)
        self.batches += 1
        self.items += len(batch)
        self.texts += n
        self.largest_batch = max(self.largest_batch, n)
        return n


def warm_scale(clf: object) -> float:
    """The classifier's warm-up speed factor; for an ensemble, its slowest expert's."""
    scale = getattr(clf, "speed_scale", None)
    if isinstance(scale, (int, float)):
        return max(1.0, float(scale))
    experts = getattr(clf, "experts", ())
    return max((warm_scale(e) for e in experts), default=1.0) if isinstance(experts, tuple) else 1.0


def warm_seconds_per_token(clf: object) -> float | None:
    """Seconds per token from the classifier's warm-up measure of one 64-token check (66 with the special
    tokens); None before a warm-up."""
    check_ms = getattr(clf, "check_ms", None)
    return check_ms / 1000.0 / 66 if isinstance(check_ms, (int, float)) and check_ms > 0 else None


def claim(item: WorkItem) -> bool:
    """Mark ``item``'s future running; False if it was cancelled or already completed (by its caller)."""
    fut = item.future
    if fut.running():
        return True
    try:
        return fut.set_running_or_notify_cancel()
    except RuntimeError:  # completed by someone else: nothing to run for it
        return False


def fail_item(item: WorkItem, exc: BaseException) -> None:
    """Fail ``item``'s future with ``exc`` unless it already holds an outcome."""
    fut = item.future
    if fut.done():
        return
    if fut.running() or fut.set_running_or_notify_cancel():
        with contextlib.suppress(cf.InvalidStateError):
            fut.set_exception(exc)


def score_items(clf: Classifier, batch: list[WorkItem]) -> Scores | BaseException:
    """One ``predict`` call for every text of ``batch``: the scores, or the error it ended in. An error
    never carries the classifier's own message (it may quote the input): its type and a keyed code."""
    texts = [t for it in batch for t in it.texts]
    prompts: list[str | None] | None = None
    if any(it.prompts is not None for it in batch):
        prompts = []
        for it in batch:
            prompts += list(it.prompts) if it.prompts is not None else [None] * len(it.texts)
    try:
        out = clf.predict(texts, stage=batch[0].stage, prompts=prompts)
    except ClassifierError as exc:
        return exc
    except Exception as exc:
        return ClassifierError(f"raised {type(exc).__name__} (code {error_code(exc)})", classifier=clf.name)
    if not isinstance(out, list) or len(out) != len(texts):
        got = len(out) if isinstance(out, list) else type(out).__name__
        return InvalidScores(f"returned {got} results for {len(texts)} texts", classifier=clf.name)
    return out
