"""One inference owner per classifier: concurrent checks coalesce into batches, deadlines bind the work.

Why this exists: a pool of threads each calling ``predict`` on its own text makes N callers fight
over two cores, charges every caller the queue wait, and keeps running work whose caller gave up
(measured before: 10,000 concurrent checks, 97.5% blocked by time-outs; four long prompts held the
guard for 30 s). Here every check becomes an item in one bounded queue; one worker thread takes
the items waiting (up to ``max_batch`` texts and ``max_batch_tokens`` estimated tokens, waiting at
most ``max_wait_ms`` for companions when traffic is concurrent) and calls ``predict`` once for all
of them (the ONNX classifier still runs each text's windows apart from the others', so a check's
scores never depend on its batch-mates: see ``OnnxClassifier._runs``). Threads and event loops alike
get a ``concurrent.futures.Future``. A sync check that finds
the scheduler idle after a lone inference is scored in the caller's thread (``run``) if the classifier
can stop one thread's inference (``interrupt``/``resume``) and the thread has checked before: no hand-off to the
worker and back (measured per process: p99 of a 64-token check 9.6 ms against 11.6 ms). The worker
waits meanwhile: one inference runs at a time either way.

Budgets mean what they say:

- an item whose deadline has passed is dropped before it runs (``CheckTimeout``), so abandoned
  work never delays the checks behind it; an inline run is stopped at its deadline;
- ``speed_scale()`` is the classifier's warm-up speed, stretched (up to 8 times) while batches run
  slower than at warm-up, because other processes compete for the CPU: budgets scale with it;
- a check is refused at once (``Overloaded``) when the queue is full or already holds more work
  than its deadline leaves time for (estimated from the measured seconds per token), instead of
  waiting to time out: load is shed explicitly;
- a watchdog notices an inference running far past its expected time and past every deadline in
  its batch (a hang), fails its items, asks the classifier to ``reset()`` (the ONNX classifier
  terminates the run and replaces its session) and starts a fresh worker, so later checks never
  queue behind a hung call.

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
from typing import Any

from guardrail import metrics
from guardrail._watchdog import Watchdog
from guardrail._work_items import (
    Running,
    SchedulerStats,
    WorkItem,
    claim,
    estimate_tokens,
    fail_item,
    score_items,
    warm_scale,
    warm_seconds_per_token,
)
from guardrail.classifiers.base import Classifier
from guardrail.errors import CheckTimeout, ClassifierError, Overloaded
from guardrail.taxonomy import Stage

__all__ = ["MAX_STRETCH", "Scheduler", "SchedulerStats", "estimate_tokens"]

Scores = list[dict[str, float]]
MAX_STRETCH = 8.0  # budgets follow a machine slowed by competing work up to this factor, no further


class Scheduler(Watchdog):
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
        scale = warm_scale(classifier)
        self._hang_floor = hang_after if hang_after is not None else 2.0 * max(1.0, scale)
        self._spt = self._ref_spt = warm_seconds_per_token(classifier)
        self._queue: deque[WorkItem] = deque()
        self._queued_tokens = 0
        lock = threading.RLock()  # futures complete under it: a done-callback may call back in
        self._cond = threading.Condition(lock)  # the worker waits on it (and callers, for companions)
        self._wd = threading.Condition(lock)  # the watchdog waits on it: a lone inline check wakes no worker
        self._seen = threading.local()  # threads that checked before: only their checks may run inline
        self._busy = False  # the worker holds a batch: gathering, running or retrying it
        self._resetting = False  # the watchdog resets the classifier: that terminates every run
        self._gen = 0
        self._worker: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._running: Running | None = None
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
        return self._enqueue(WorkItem.new(texts, prompts, stage, deadline))

    def _enqueue(self, item: WorkItem) -> cf.Future[Scores]:
        now, deadline = item.enqueued, item.deadline
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
            if not self._ensure_threads():
                item.future.set_exception(
                    ClassifierError("could not start the inference thread", classifier=self.classifier.name)
                )
                return item.future
            self._queue.append(item)
            self._queued_tokens += item.tokens
            self._cond.notify_all()
            depth += 1
        metrics.set_queue_depth(depth)
        return item.future

    def run(
        self,
        texts: Sequence[str],
        *,
        stage: Stage = "input",
        prompts: Sequence[str | None] | None = None,
        deadline: float,
    ) -> cf.Future[Scores]:
        """``submit`` for a caller that blocks on the result anyway (a sync check). When the scheduler is
        idle, its last inference ran alone, this thread has checked before and the classifier can stop this
        thread's inference, score here, in the caller's thread, and return a finished future; the watchdog
        stops the inference at ``deadline`` (``CheckTimeout``)."""
        resume: Any = getattr(self.classifier, "resume", None)
        stoppable = callable(resume) and callable(getattr(self.classifier, "interrupt", None))
        item = WorkItem.new(texts, prompts, stage, deadline)
        if not stoppable or not self._seen.__dict__.get("seen"):
            self._seen.seen = True  # onnxruntime's first run on a fresh thread is slow: a thread per request
            return self._enqueue(item)
        now, me = item.enqueued, threading.get_ident()
        running: Running | None = None
        outcome: Scores | BaseException = CheckTimeout("the caller was interrupted")
        try:  # opened before _running is published: an exception anywhere after it still unpublishes it
            with self._cond:
                # after a batch of several (concurrent traffic) the worker batches better than a caller's thread
                idle = self._last_batch <= 1 and not (
                    self._closed or self._queue or self._running or self._busy or self._resetting
                )
                if idle and deadline > now:
                    self._ensure_threads(worker=False)
                    item.future.set_running_or_notify_cancel()
                    resume(me)  # a stop aimed at an earlier run of this thread never reaches this one
                    running = self._running = Running([item], now, deadline, self._gen, me)
                    self._wd.notify_all()
            if running is None:
                return self._enqueue(item)
            outcome = score_items(self.classifier, [item])
        finally:  # even on KeyboardInterrupt: the worker must not wait for a run that is over
            if running is not None:
                with self._cond:
                    if self._running is running:
                        self._running = None
                        self.stats.inline += 1
                        self._last_batch = 1
                        self.stats.record([item])
                        if not isinstance(outcome, BaseException) and not running.stopped:
                            self._learn_speed(time.monotonic() - now, item.tokens)
                    with contextlib.suppress(Exception):
                        resume(me)  # a stop issued for this run (under this lock) never outlives it
                    self._cond.notify_all()  # a worker may wait for this run to end
        done = time.monotonic()
        metrics.observe_classifier(self.classifier.name, stage, done - now, len(item.texts))
        if done > deadline and not isinstance(outcome, BaseException):  # late: as if waited for with a time-out
            outcome = CheckTimeout(f"scores came {(done - deadline) * 1000:.0f} ms after the deadline")
        if isinstance(outcome, BaseException):
            fail_item(item, outcome)
        elif not item.future.done():
            item.future.set_result(outcome)
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
        warm = warm_scale(self.classifier)
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
            r = self._running
            if r is not None and r.inline is not None and not r.stopped:
                r.stopped = True  # nobody watches it once closed: stop it now
                self._stop_inline(r, ClassifierError("the guard was closed", classifier=self.classifier.name))
            self._cond.notify_all()
            self._wd.notify_all()
        metrics.set_queue_depth(0)
        for it in left:
            fail_item(it, ClassifierError("the guard was closed", classifier=self.classifier.name))

    # -- threads ------------------------------------------------------------------------------------

    def _ensure_threads(self, *, worker: bool = True) -> bool:  # under self._cond
        """Start the worker (unless ``worker`` is False) and the watchdog if they are not running; False when
        the worker is wanted and could not be started (thread exhaustion): its attribute stays None, so a
        later check tries again, and the caller fails its item instead of leaving it unserved."""
        started = True
        # no worker while the watchdog resets the classifier: a run started then would be killed by the
        # reset; the watchdog starts one itself when the reset is over
        if worker and self._worker is None and not self._resetting:
            thread = threading.Thread(
                target=self._work, args=(self._gen,), name=f"guardrail-infer-{self.classifier.name}", daemon=True
            )
            try:
                thread.start()
                self._worker = thread
            except RuntimeError:
                started = False
        if self._watchdog is None:
            watchdog = threading.Thread(target=self._watch, name="guardrail-watchdog", daemon=True)
            with contextlib.suppress(RuntimeError):  # unwatched until a later check starts one
                watchdog.start()
                self._watchdog = watchdog
        return started

    def _take(self, gen: int) -> tuple[list[WorkItem], list[WorkItem]]:
        """Under the lock: the next batch (same stage, bounded), and the items whose deadline passed."""
        expired: list[WorkItem] = []
        batch: list[WorkItem] = []
        texts = tokens = 0
        wait_until = time.monotonic() + (self.max_wait if self._last_batch > 1 else 0.0)
        while True:
            now = time.monotonic()
            kept: deque[WorkItem] = deque()
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
                    not (it.alone or batch[0].alone)
                    and it.stage == batch[0].stage
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
            if not batch:  # nothing to run (what was queued was cancelled or expired)
                return batch, expired
            full = texts >= self.max_batch or tokens >= self.max_batch_tokens or bool(kept) or batch[0].alone
            if full or now >= wait_until or gen != self._gen:
                return batch, expired
            self._cond.wait(wait_until - now)

    def _work(self, gen: int) -> None:
        while True:
            with self._cond:
                while (not self._queue or (self._running and self._running.inline is not None)) and gen == self._gen:
                    if not self._cond.wait(self.idle_exit) and not self._queue:
                        break
                if gen != self._gen or not self._queue:
                    if gen == self._gen:
                        self._worker = None
                    return
                self._busy = True
                batch, expired = self._take(gen)
                orphans: list[WorkItem] = []
                if gen != self._gen:  # closed while it gathered companions
                    orphans, batch = batch, []
                self.stats.dropped += len(expired)
                live = [it for it in batch if claim(it)]
                started = time.monotonic()
                if live:
                    tokens = sum(it.tokens for it in live)
                    expected = tokens * self._spt if self._spt is not None else 0.0
                    # hung: far past its expected time, and past every deadline in it (a slow expert such as
                    # an LLM judge may legitimately take the whole budget the policy gives it)
                    hang_at = max(started + max(self._hang_floor, 10 * expected), max(it.deadline for it in live))
                    self._running = Running(live, started, hang_at, gen)
                    self._ensure_threads(worker=False)  # the watchdog may have idled out while it gathered
                    self._wd.notify_all()
                depth = len(self._queue)
            for it in orphans:
                fail_item(it, ClassifierError("the guard was closed", classifier=self.classifier.name))
            for it in expired:
                waited = (time.monotonic() - it.enqueued) * 1000
                fail_item(it, CheckTimeout(f"deadline passed after {waited:.0f} ms in the queue; not run"))
            metrics.set_queue_depth(depth)
            if live:
                self._run_batch(live, gen, started)
            with self._cond:
                if gen == self._gen:
                    self._busy = False

    def _run_batch(self, batch: list[WorkItem], gen: int, started: float) -> None:
        outcome = score_items(self.classifier, batch)
        with self._cond:
            if gen != self._gen:  # the watchdog failed its items already, or close() came during it
                closed = ClassifierError("the guard was closed", classifier=self.classifier.name)
                for it in batch:
                    fail_item(it, closed)  # a no-op for a hang's victims
                return
            self._running = None
            elapsed = time.monotonic() - started
            self._last_batch = len(batch)
            n = self.stats.record(batch)
            if not isinstance(outcome, BaseException):
                self._learn_speed(elapsed, sum(it.tokens for it in batch))
        metrics.observe_classifier(self.classifier.name, batch[0].stage, elapsed, n)
        if not isinstance(outcome, BaseException):
            at = 0
            for it in batch:
                k = len(it.texts)
                with contextlib.suppress(cf.InvalidStateError):  # its caller completed it: keep serving
                    it.future.set_result(outcome[at : at + k])
                at += k
            return
        if len(batch) == 1:
            fail_item(batch[0], outcome)
            return
        with self._cond:  # isolate the input that failed: each item runs again alone, watched like any batch
            if not self._closed:
                for it in reversed(batch):
                    it.alone = True
                    self._queue.appendleft(it)
                    self._queued_tokens += it.tokens
                self.stats.retried += len(batch)
                return
        for it in batch:
            fail_item(it, ClassifierError("the guard was closed", classifier=self.classifier.name))

    def _learn_speed(self, elapsed: float, tokens: int) -> None:  # under self._cond
        """A slow inference counts at once (shed early when the machine slows), a fast one slowly."""
        spt = elapsed / max(1, tokens)
        self._spt = spt if self._spt is None or spt > self._spt else 0.9 * self._spt + 0.1 * spt
