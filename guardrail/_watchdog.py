"""The scheduler's watchdog: the one thread that notices an inference running past its time.

Why a thread of its own: the worker (or the caller, for an inline check) is inside ``predict`` and cannot
notice its own hang. The watchdog sleeps until the running inference's ``hang_at``; then an inline check
past its deadline is stopped (``interrupt``, the session stays), and any other overrun is a hang: its
items fail, the classifier is ``reset()`` and a fresh worker serves the queue. The state it reads and
writes is the scheduler's, under the scheduler's lock (see guardrail/scheduler.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from typing import Any

from guardrail._work_items import Running, SchedulerStats, WorkItem, fail_item
from guardrail.classifiers.base import Classifier
from guardrail.errors import CheckTimeout

_LONGEST_WAIT = 60.0  # seconds: the watchdog looks again at least this often, whatever a budget asks

__all__ = ["Watchdog"]


class Watchdog:
    """The watchdog half of :class:`guardrail.scheduler.Scheduler` (a base class: it shares its state)."""

    classifier: Classifier
    idle_exit: float
    stats: SchedulerStats
    _cond: threading.Condition
    _wd: threading.Condition
    _queue: deque[WorkItem]
    _running: Running | None
    _worker: threading.Thread | None
    _watchdog: threading.Thread | None
    _hang_floor: float
    _gen: int
    _busy: bool
    _resetting: bool
    _closed: bool

    def _ensure_threads(self, *, worker: bool = True) -> bool:  # pragma: no cover - the scheduler's
        raise NotImplementedError

    def _stop_inline(self, r: Running, why: Exception) -> None:  # under self._cond
        for it in r.items:
            fail_item(it, why)
        interrupt: Any = getattr(self.classifier, "interrupt", None)
        with contextlib.suppress(Exception):  # a failed stop becomes a hang, handled as one
            interrupt(r.inline)

    def _watch(self) -> None:
        while True:
            with self._cond:
                r = self._running
                if self._closed:
                    self._watchdog = None
                    return
                if r is None or r.generation != self._gen:
                    if not self._wd.wait(self.idle_exit) and self._running is None:
                        self._watchdog = None
                        return
                    continue
                now = time.monotonic()
                if now < r.hang_at:
                    # a policy's budget can ask for more than a wait may take (OverflowError killed this thread)
                    self._wd.wait(min(r.hang_at - now, _LONGEST_WAIT))
                    continue
                if r.inline is not None and not r.stopped:
                    # a check in its caller's thread reached its deadline: stop that one inference (the
                    # session stays); should it not stop, it is a hang like any other
                    r.stopped = True
                    r.hang_at = now + self._hang_floor
                    self.stats.stopped += 1
                    why = f"deadline passed after {(now - r.started) * 1000:.0f} ms of inference; it was stopped"
                    self._stop_inline(r, CheckTimeout(why))
                    continue
                # hung: abandon the call, fail its items, and let a fresh worker serve the queue
                self._gen += 1
                self._running = None
                self._worker = None
                self._busy = False  # the abandoned worker's batch is over
                self._resetting = True
                self.stats.hangs += 1
                victims = r.items
                stuck = now - r.started
            for it in victims:
                fail_item(it, CheckTimeout(f"inference hung for {stuck:.1f} s; the classifier was reset"))
            reset: Any = getattr(self.classifier, "reset", None)
            if callable(reset):
                with contextlib.suppress(Exception):  # a failed reset shows up as errors on the next checks
                    reset()
            with self._cond:
                self._resetting = False
                if self._queue and not self._closed:
                    self._ensure_threads()
                    self._cond.notify_all()
