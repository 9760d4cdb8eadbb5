"""One inference owner per classifier: concurrent checks coalesce into batches, deadlines bind the work.

Why this exists: a pool of threads each calling ``predict`` on its own text makes N callers fight
over two cores, charges every caller the queue wait, and keeps running work whose caller gave up
(measured before: 10,000 concurrent checks, 97.5% blocked by time-outs; four long prompts held the
guard for 30 s). Here every check becomes an item in one bounded queue; one worker thread takes
the items waiting (up to ``max_batch`` texts and ``max_batch_tokens`` estimated tokens, waiting at
most ``max_wait_ms`` for companions when traffic is concurrent) and calls ``predict`` once for all
of them. Threads and event loops alike get a ``concurrent.futures.Future``.

Budgets mean what they say:

- an item whose deadline has passed is dropped before it runs (``CheckTimeout``), so abandoned
  work never delays the checks behind it;
- ``speed_scale()`` is the classifier's warm-up speed, stretched (up to 8 times) while batches run
  slower than at warm-up, because other processes compete for the CPU: budgets scale with it;
- a check is refused at once (``Overloaded``) when the queue is full or already holds more work
  than its deadline leaves time for (estimated from the measured seconds per token), instead of
  waiting to time out: load is shed explicitly;
- a watchdog notices an inference running far past its expected time and past every deadline in
  its batch (a hang), fails its items,
  asks the classifier to ``reset()`` (the ONNX classifier terminates the run and replaces its
  session) and starts a fresh worker, so later checks never queue behind a hung call.

A failing batch is retried item by item, so one input that crashes the classifier fails only its
own check. Threads are daemons and exit after ``idle_exit`` seconds without work.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardrail import metrics
from guardrail.audit import error_code
from guardrail.classifiers.base import Classifier
from guardrail.errors import CheckTimeout, ClassifierError, InvalidScores, Overloaded
from guardrail.taxonomy import Stage

__all__ = ["MAX_STRETCH", "Scheduler", "SchedulerStats", "estimate_tokens"]

Scores = list[dict[str, float]]
MAX_STRETCH = 8.0  # budgets follow a machine slowed by competing work up to this factor, no further


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate (UTF-8 bytes / 3, plus the special tokens):
    English word pieces average about 4 bytes, CJK characters are 3 bytes and about one token."""
    return len(text.encode("utf-8", "surrogatepass")) // 3 + 2


@dataclass(eq=False, slots=True)
class _Item:
    texts: tuple[str, ...]
    prompts: tuple[str | None, ...] | None
    stage: Stage
    deadline: float  # time.monotonic()
    tokens: int
    enqueued: float
    future: cf.Future[Scores] = field(default_factory=cf.Future)


@dataclass(slots=True)
class _Running:
    items: list[_Item]
    started: float
    hang_at: float
    generation: int


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


class Scheduler:
    """Batches ``predict`` calls of one classifier; see the module docstring."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_batch: int = 64,
        max_batch_tokens: int = 4096,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        hang_after: float | None = None,
        idle_exit: float = 2.0,
    ) -> None:
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.idle_exit = idle_exit
        scale = _warm_scale(classifier)
        self._hang_floor = hang_after if hang_after is not None else 2.0 * max(1.0, scale)
        check_ms = getattr(classifier, "check_ms", None)  # measured at warm-up: one 64-token check
        self._spt: float | None = (
            check_ms / 1000.0 / 66 if isinstance(check_ms, (int, float)) and check_ms > 0 else None
        )
        self._ref_spt = self._spt  # seconds per token at warm-up
        self._queue: deque[_Item] = deque()
        self._queued_tokens = 0
        self._cond = threading.Condition()
        self._gen = 0
        self._worker: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._running: _Running | None = None
        self._last_batch = 1
        self._closed = False
        self.stats = SchedulerStats()

    # -- the caller's side ------------------------------------------------------------------------

    def submit(
        self,
        texts: Sequence[str],
        *,
        stage: Stage = "input",
        prompts: Sequence[str | None] | None = None,
        deadline: float,
    ) -> cf.Future[Scores]:
        """Queue ``texts`` for scoring by ``deadline`` (a ``time.monotonic()`` value). The future holds
        one score dict per text, or ``CheckTimeout``/``Overloaded``/``ClassifierError``."""
        now = time.monotonic()
        item = _Item(tuple(texts), None if prompts is None else tuple(prompts), stage, deadline,
                     sum(estimate_tokens(t) for t in texts), now)  # fmt: skip
        with self._cond:
            if self._closed:
                item.future.set_exception(ClassifierError("the guard was closed", classifier=self.classifier.name))
                return item.future
            depth = len(self._queue)
            why = self._refusal(item.tokens, deadline, now)
            if why is not None:
                self.stats.shed += 1
                item.future.set_exception(Overloaded(why, classifier=self.classifier.name))
                return item.future
            self._queue.append(item)
            self._queued_tokens += item.tokens
            self._ensure_threads()
            self._cond.notify_all()
            depth += 1
        metrics.set_queue_depth(depth)
        return item.future

    def admits(self, tokens: int, deadline: float) -> Overloaded | None:
        """``Overloaded`` when a check of about ``tokens`` tokens would be refused now: the engine asks
        before preparing a check, so shedding under a flood costs next to nothing."""
        with self._cond:
            why = self._refusal(tokens, deadline, time.monotonic())
            if why is None:
                return None
            self.stats.shed += 1
        return Overloaded(why, classifier=self.classifier.name)

    def _refusal(self, tokens: int, deadline: float, now: float) -> str | None:  # under self._cond
        depth = len(self._queue)
        if depth >= self.max_queue:
            return f"{depth} checks already wait for inference (max_queue {self.max_queue})"
        if self._spt is None:
            return None
        # an idle scheduler always admits (so a stale estimate corrects itself on the next batch)
        running = self._running
        busy = self._queued_tokens + (sum(it.tokens for it in running.items) if running is not None else 0)
        ahead = (busy + tokens) * self._spt
        if busy and now + ahead > deadline:
            return (
                f"about {ahead * 1000:.0f} ms of inference is queued ahead, past the check's deadline "
                f"({max(0.0, deadline - now) * 1000:.0f} ms left)"
            )
        return None

    def speed_scale(self) -> float:
        """How much slower than the reference machine inference runs: the classifier's warm-up
        measure, stretched (at most ``MAX_STRETCH`` times) when batches now run slower than at
        warm-up, because other work competes for the CPU. Budgets are multiplied by it."""
        warm = _warm_scale(self.classifier)
        if self._spt is None or self._ref_spt is None:
            return warm
        return min(max(warm, warm * self._spt / self._ref_spt), warm * MAX_STRETCH)

    def close(self) -> None:
        """Stop the threads; checks still queued fail with a ``ClassifierError``."""
        with self._cond:
            self._closed = True
            self._gen += 1
            left = list(self._queue)
            self._queue.clear()
            self._queued_tokens = 0
            self._cond.notify_all()
        for it in left:
            _fail(it, ClassifierError("the guard was closed", classifier=self.classifier.name))

    # -- threads ------------------------------------------------------------------------------------

    def _ensure_threads(self) -> None:  # under self._cond
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, args=(self._gen,), name=f"guardrail-infer-{self.classifier.name}", daemon=True
            )
            self._worker.start()
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="guardrail-watchdog", daemon=True)
            self._watchdog.start()

    def _take(self, gen: int) -> tuple[list[_Item], list[_Item]]:
        """Under the lock: the next batch (same stage, bounded), and the items whose deadline passed."""
        expired: list[_Item] = []
        batch: list[_Item] = []
        texts = tokens = 0
        wait_until = time.monotonic() + (self.max_wait if self._last_batch > 1 else 0.0)
        while True:
            now = time.monotonic()
            kept: deque[_Item] = deque()
            while self._queue:
                it = self._queue.popleft()
                if it.future.cancelled():
                    self._queued_tokens -= it.tokens
                    continue
                if it.deadline <= now:
                    self._queued_tokens -= it.tokens
                    expired.append(it)
                    continue
                fits = not batch or (
                    it.stage == batch[0].stage
                    and texts + len(it.texts) <= self.max_batch
                    and tokens + it.tokens <= self.max_batch_tokens
                )
                if fits:
                    self._queued_tokens -= it.tokens
                    batch.append(it)
                    texts += len(it.texts)
                    tokens += it.tokens
                else:
                    kept.append(it)
            self._queue = kept
            full = texts >= self.max_batch or tokens >= self.max_batch_tokens or bool(kept)
            if not batch or full or now >= wait_until or gen != self._gen:
                return batch, expired
            self._cond.wait(wait_until - now)

    def _work(self, gen: int) -> None:
        while True:
            with self._cond:
                while not self._queue and gen == self._gen:
                    if not self._cond.wait(self.idle_exit) and not self._queue:
                        break
                if gen != self._gen or not self._queue:
                    if gen == self._gen:
                        self._worker = None
                    return
                batch, expired = self._take(gen)
                orphans: list[_Item] = []
                if gen != self._gen:  # closed while it gathered companions
                    orphans, batch = batch, []
                self.stats.dropped += len(expired)
                live = [it for it in batch if it.future.set_running_or_notify_cancel()]
                started = time.monotonic()
                if live:
                    tokens = sum(it.tokens for it in live)
                    expected = tokens * self._spt if self._spt is not None else 0.0
                    # hung: far past its expected time, and past every deadline in it (a slow expert such as
                    # an LLM judge may legitimately take the whole budget the policy gives it)
                    hang_at = max(started + max(self._hang_floor, 10 * expected), max(it.deadline for it in live))
                    self._running = _Running(live, started, hang_at, gen)
                    self._cond.notify_all()
                depth = len(self._queue)
            for it in orphans:
                _fail(it, ClassifierError("the guard was closed", classifier=self.classifier.name))
            for it in expired:
                waited = (time.monotonic() - it.enqueued) * 1000
                _fail(it, CheckTimeout(f"deadline passed after {waited:.0f} ms in the queue; not run"))
            metrics.set_queue_depth(depth)
            if live:
                self._run_batch(live, gen, started)

    def _run_batch(self, batch: list[_Item], gen: int, started: float) -> None:
        outcome = self._predict(batch)
        with self._cond:
            if gen != self._gen:
                return  # the watchdog gave up on this call and failed its items already
            self._running = None
            elapsed = time.monotonic() - started
            self._last_batch = len(batch)
            s = self.stats
            s.batches += 1
            s.items += len(batch)
            n = sum(len(it.texts) for it in batch)
            s.texts += n
            s.largest_batch = max(s.largest_batch, n)
            if not isinstance(outcome, BaseException):
                # a slow batch counts at once (shed early when the machine slows), a fast one slowly
                spt = elapsed / max(1, sum(it.tokens for it in batch))
                self._spt = spt if self._spt is None or spt > self._spt else 0.9 * self._spt + 0.1 * spt
        metrics.observe_classifier(self.classifier.name, batch[0].stage, elapsed, n)
        if not isinstance(outcome, BaseException):
            at = 0
            for it in batch:
                k = len(it.texts)
                it.future.set_result(outcome[at : at + k])
                at += k
            return
        if len(batch) == 1:
            _fail(batch[0], outcome)
            return
        for it in batch:  # isolate the input that failed: every other check still gets its scores
            if time.monotonic() >= it.deadline:
                _fail(it, CheckTimeout("deadline passed while its batch was retried"))
                continue
            self.stats.retried += 1
            one = self._predict([it])
            if isinstance(one, BaseException):
                _fail(it, one)
            else:
                it.future.set_result(one)

    def _predict(self, batch: list[_Item]) -> Scores | BaseException:
        texts = [t for it in batch for t in it.texts]
        prompts: list[str | None] | None = None
        if any(it.prompts is not None for it in batch):
            prompts = []
            for it in batch:
                prompts += list(it.prompts) if it.prompts is not None else [None] * len(it.texts)
        clf = self.classifier
        try:
            out = clf.predict(texts, stage=batch[0].stage, prompts=prompts)
        except ClassifierError as exc:
            return exc
        except Exception as exc:  # the exception's text may quote the input: its type and a keyed code travel
            return ClassifierError(f"raised {type(exc).__name__} (code {error_code(exc)})", classifier=clf.name)
        if not isinstance(out, list) or len(out) != len(texts):
            got = len(out) if isinstance(out, list) else type(out).__name__
            return InvalidScores(f"returned {got} results for {len(texts)} texts", classifier=clf.name)
        return out

    def _watch(self) -> None:
        while True:
            with self._cond:
                r = self._running
                if self._closed:
                    self._watchdog = None
                    return
                if r is None or r.generation != self._gen:
                    if not self._cond.wait(self.idle_exit) and self._running is None:
                        self._watchdog = None
                        return
                    continue
                now = time.monotonic()
                if now < r.hang_at:
                    self._cond.wait(r.hang_at - now)
                    continue
                # hung: abandon the call, fail its items, and let a fresh worker serve the queue
                self._gen += 1
                self._running = None
                self._worker = None
                self.stats.hangs += 1
                victims = r.items
                stuck = now - r.started
            for it in victims:
                _fail(it, CheckTimeout(f"inference hung for {stuck:.1f} s; the classifier was reset"))
            reset: Any = getattr(self.classifier, "reset", None)
            if callable(reset):
                with contextlib.suppress(Exception):  # a failed reset shows up as errors on the next checks
                    reset()
            with self._cond:
                if self._queue and not self._closed:
                    self._ensure_threads()
                    self._cond.notify_all()


def _warm_scale(clf: object) -> float:
    """The classifier's warm-up speed factor; for an ensemble, its slowest expert's."""
    scale = getattr(clf, "speed_scale", None)
    if isinstance(scale, (int, float)):
        return max(1.0, float(scale))
    experts = getattr(clf, "experts", ())
    return max((_warm_scale(e) for e in experts), default=1.0) if isinstance(experts, tuple) else 1.0


def _fail(item: _Item, exc: BaseException) -> None:
    fut = item.future
    if fut.done():
        return
    if fut.running() or fut.set_running_or_notify_cancel():
        with contextlib.suppress(cf.InvalidStateError):
            fut.set_exception(exc)
