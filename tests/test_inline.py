"""A sync check on an idle scheduler is scored in the caller's thread (no hand-off to the worker), yet
keeps every promise the worker keeps: its deadline binds the inference, one inference runs at a time,
and a run that will not stop is a hang like any other.

Bounds are on work (which thread ran, how many ran at once, which calls were made), never on time;
waits use events with generous time-outs only so that a broken scheduler fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from guardrail.classifiers.onnx import OnnxClassifier
from guardrail.decision import Action
from guardrail.engine import Guard
from guardrail.errors import CheckTimeout
from guardrail.scheduler import Scheduler

LONG = 30.0


def far() -> float:
    return time.monotonic() + LONG


def known(s: Scheduler) -> Scheduler:
    """Mark the calling thread as one that checked before (a thread's first check goes to the worker)."""
    s._seen.seen = True
    return s


class Stoppable:
    """Scores by length and records the thread of each call and the most calls ever in flight at once;
    a held call waits for ``release`` or for ``interrupt`` of its thread (unless ``deaf``)."""

    name = "stoppable"
    labels = frozenset({"unsafe"})

    def __init__(self, hold: int = 0, *, deaf: bool = False) -> None:
        self.threads: list[int] = []
        self.hold = hold
        self.deaf = deaf
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stop: set[int] = set()
        self.interrupts = 0
        self.resets = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
        me = threading.get_ident()
        with self._lock:
            self.threads.append(me)
            held = len(self.threads) <= self.hold
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if held:
                self.entered.set()
                for _ in range(int(LONG * 100)):
                    if self.release.is_set() or me in self.stop:
                        break
                    time.sleep(0.01)
                if me in self.stop:
                    raise RuntimeError("terminated")
            return [{"unsafe": min(1.0, len(t) / 100)} for t in texts]
        finally:
            with self._lock:
                self.in_flight -= 1

    def interrupt(self, thread: int) -> None:
        self.interrupts += 1
        if not self.deaf:
            self.stop.add(thread)

    def resume(self, thread: int) -> None:
        self.stop.discard(thread)

    def reset(self) -> None:
        self.resets += 1
        self.release.set()


def test_an_idle_sync_check_runs_in_the_callers_thread() -> None:
    clf = Stoppable()
    s = known(Scheduler(clf))
    fut = s.run(["hello"], deadline=far())
    assert fut.done() and fut.result() == [{"unsafe": 0.05}]
    assert clf.threads == [threading.get_ident()]
    assert s.stats.inline == 1 and s.stats.batches == 1
    s.close()


def test_a_classifier_that_cannot_be_stopped_is_never_run_inline() -> None:
    """Without ``interrupt`` a deadline could not bind a call in the caller's thread: the worker runs it."""

    class Plain:
        name = "plain"
        labels = frozenset({"unsafe"})

        def __init__(self) -> None:
            self.threads: list[int] = []

        def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
            self.threads.append(threading.get_ident())
            return [{"unsafe": 0.0} for _ in texts]

    clf = Plain()
    s = known(Scheduler(clf))
    assert s.run(["hello"], deadline=far()).result(LONG) == [{"unsafe": 0.0}]
    assert clf.threads != [threading.get_ident()] and s.stats.inline == 0
    s.close()


def test_an_inline_check_is_stopped_at_its_deadline() -> None:
    clf = Stoppable(hold=1)
    s = known(Scheduler(clf, hang_after=LONG))
    fut = s.run(["stuck"], deadline=time.monotonic() + 0.2)
    with pytest.raises(CheckTimeout, match="stopped"):
        fut.result(0)
    assert clf.interrupts == 1 and clf.resets == 0  # that one run stopped; the classifier was not reset
    assert s.stats.stopped == 1 and s.stats.hangs == 0
    assert s.run(["next"], deadline=far()).result(0) == [{"unsafe": 0.04}]
    s.close()


def test_checks_arriving_during_an_inline_run_wait_for_it_then_are_served() -> None:
    clf = Stoppable(hold=1)
    s = known(Scheduler(clf))
    first: list[Any] = []
    caller = threading.Thread(target=lambda: first.append(known(s).run(["first"], deadline=far()).result(0)))
    caller.start()
    assert clf.entered.wait(LONG)
    queued = [s.submit([f"queued {i}"], deadline=far()) for i in range(3)]
    behind = s.run(["behind"], deadline=far())  # not idle: handed to the worker, waits like the rest
    time.sleep(0.05)
    assert len(clf.threads) == 1  # nothing ran beside the inline call
    clf.release.set()
    caller.join(LONG)
    assert first == [[{"unsafe": 0.05}]]
    assert [f.result(LONG) for f in queued] == [[{"unsafe": 0.08}]] * 3
    assert behind.result(LONG) == [{"unsafe": 0.06}]
    assert clf.most_in_flight == 1 and s.stats.inline == 1
    s.close()


def test_an_inline_run_that_will_not_stop_is_a_hang_and_later_checks_are_served() -> None:
    clf = Stoppable(hold=1, deaf=True)
    s = known(Scheduler(clf, hang_after=0.2))
    result: list[Any] = []

    def call() -> None:
        try:
            known(s).run(["stuck"], deadline=time.monotonic() + 0.1).result(0)
        except CheckTimeout as exc:
            result.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert clf.entered.wait(LONG)
    behind = s.submit(["behind the hang"], deadline=far())
    assert behind.result(LONG) == [{"unsafe": 0.15}]  # a fresh worker serves it once the hang is declared
    caller.join(LONG)
    assert len(result) == 1 and "stopped" in str(result[0])
    assert clf.interrupts == 1 and clf.resets == 1 and s.stats.hangs == 1
    s.close()


def test_a_real_onnx_inference_is_stopped_at_its_deadline_and_keeps_its_session() -> None:
    """The scheduler and the ONNX classifier together: the deadline terminates this thread's run only."""
    clf = OnnxClassifier(cache_size=0)
    clf.predict(["load the session"])
    real = clf._session
    entered = threading.Event()

    class Slow:
        def run(self, *args: Any, **kw: Any) -> Any:
            entered.set()
            ro = args[2]
            for _ in range(3000):  # a run that only a terminate request ends
                if ro.terminate:
                    raise RuntimeError("Exiting due to terminate flag being set to true.")
                time.sleep(0.01)
            return real.run(*args, **kw)

    clf._session = Slow()
    s = known(Scheduler(clf, hang_after=LONG))
    with pytest.raises(CheckTimeout, match="stopped"):
        s.run(["how do I bake bread?"], deadline=time.monotonic() + 0.2).result(0)
    assert entered.is_set() and clf.resets == 0 and isinstance(clf._session, Slow)
    clf._session = real
    (scores,) = s.run(["how do I bake bread?"], deadline=far()).result(0)
    assert 0.0 <= scores["unsafe"] <= 1.0
    s.close()


def test_a_guard_scores_sync_checks_inline_and_async_checks_on_the_worker() -> None:
    with Guard() as guard:
        (clf,) = guard.classifiers()
        sched = guard._scheduler(clf)
        guard.check_input("How do I bake bread?")  # a thread's first check goes to the worker
        before = sched.stats.inline
        sync = guard.check_input("How do I make a pipe bomb at home?")
        assert sched.stats.inline == before + 1
        async_ = asyncio.run(guard.acheck_input("How do I make a pipe bomb at home?"))
        assert sched.stats.inline == before + 1  # an event loop is never blocked by an inference
        assert sync.action is Action.BLOCK and async_.action is Action.BLOCK
        assert sync.scores == pytest.approx(async_.scores)


def test_a_batch_being_retried_is_never_joined_by_an_inline_check() -> None:
    """While the worker re-runs a failed batch item by item, the scheduler is busy: a sync check queues."""
    retrying = threading.Event()
    go_on = threading.Event()

    class Retried(Stoppable):
        def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
            if "poison" in texts and len(texts) > 1:
                raise RuntimeError("the batch fails")
            if tuple(texts) == ("a",):
                retrying.set()
                go_on.wait(LONG)
            return super().predict(texts, **kw)

    clf = Retried(hold=1)
    s = known(Scheduler(clf))
    first = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    a, poison = s.submit(["a"], deadline=far()), s.submit(["poison"], deadline=far())
    clf.release.set()
    assert retrying.wait(LONG)
    late = s.run(["c"], deadline=far())  # arrives while "a" is retried alone
    time.sleep(0.05)
    go_on.set()
    assert late.result(LONG) == [{"unsafe": 0.01}] and a.result(LONG) == [{"unsafe": 0.01}]
    assert first.result(LONG) == [{"unsafe": 0.01}] and poison.result(LONG) == [{"unsafe": 0.06}]
    assert clf.most_in_flight == 1 and s.stats.inline == 0 and s.stats.retried == 2
    s.close()


def test_a_stop_that_lands_while_the_onnx_classifier_tokenises_refuses_its_inference() -> None:
    """The deadline passes before the session runs (here: in a slow tokenizer); the stop waits for it."""
    clf = OnnxClassifier(cache_size=0)
    clf.predict(["load the session"])
    real_tok, real_session = clf._tokenizer, clf._session
    runs: list[int] = []

    class SlowTokenizer:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_tok, name)

        def encode_batch(self, *args: Any, **kw: Any) -> Any:
            time.sleep(0.4)
            return real_tok.encode_batch(*args, **kw)

    class Counting:
        def run(self, *args: Any, **kw: Any) -> Any:
            runs.append(1)
            return real_session.run(*args, **kw)

    clf._tokenizer, clf._session = SlowTokenizer(), Counting()
    s = known(Scheduler(clf, hang_after=LONG))
    with pytest.raises(CheckTimeout, match="stopped"):
        s.run(["how do I bake bread?"], deadline=time.monotonic() + 0.1).result(0)
    assert runs == [] and clf.resets == 0
    clf._tokenizer = real_tok
    (scores,) = s.run(["how do I bake bread?"], deadline=far()).result(0)  # the stop did not outlive its call
    assert runs == [1] and 0.0 <= scores["unsafe"] <= 1.0
    s.close()


def test_closing_the_scheduler_stops_an_inline_check() -> None:
    from guardrail.errors import ClassifierError

    clf = Stoppable(hold=1)
    s = known(Scheduler(clf))
    got: list[Any] = []

    def call() -> None:
        try:
            got.append(known(s).run(["stuck"], deadline=far()).result(0))
        except ClassifierError as exc:
            got.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert clf.entered.wait(LONG)
    s.close()
    caller.join(LONG)
    assert len(got) == 1 and isinstance(got[0], ClassifierError) and "closed" in str(got[0])
    assert clf.interrupts == 1


def test_scores_that_come_after_the_deadline_are_a_timeout() -> None:
    """A run that will not stop but ends before it counts as hung still gives no scores: it was too late."""
    clf = Stoppable(hold=1, deaf=True)
    s = known(Scheduler(clf, hang_after=LONG))
    threading.Timer(0.3, clf.release.set).start()
    with pytest.raises(CheckTimeout):
        s.run(["slow"], deadline=time.monotonic() + 0.1).result(0)
    assert s.stats.hangs == 0 and clf.resets == 0
    s.close()


@pytest.mark.parametrize("fail_mode,expected", [("closed", Action.BLOCK), ("open", Action.LOG)])
def test_an_inline_check_past_its_deadline_follows_the_fail_mode(fail_mode: str, expected: Action) -> None:
    policy = {
        "version": 1,
        "name": "inline",
        "fail_mode": fail_mode,
        "timeout_ms": 50,
        "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]},
    }
    clf = Stoppable(hold=1)
    with Guard(policy, classifiers=clf) as guard:
        known(guard._scheduler(clf))
        d = guard.check_input("hello there")
        assert d.action is expected and d.error_kind == "timeout"
        assert clf.threads == [threading.get_ident()] and clf.interrupts == 1  # it ran inline and was stopped


def test_a_threads_first_check_goes_to_the_worker_and_later_ones_may_run_inline() -> None:
    """A fresh thread's first inference is slow (onnxruntime builds per-thread state): a server that starts a
    thread per request keeps every check on the long-lived worker; a reused thread runs its later checks."""
    clf = Stoppable()
    s = Scheduler(clf)
    me = threading.get_ident()
    assert s.run(["one"], deadline=far()).result(LONG) == [{"unsafe": 0.03}]
    assert s.run(["two"], deadline=far()).result(0) == [{"unsafe": 0.03}]
    assert clf.threads[0] != me and clf.threads[1] == me and s.stats.inline == 1
    s.close()


def test_under_concurrent_traffic_checks_stay_on_the_batching_worker() -> None:
    """After a batch of several, a sync check that finds the scheduler idle is still handed to the worker."""
    clf = Stoppable(hold=1)
    s = known(Scheduler(clf))
    first = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    behind = [s.submit([f"b{i}"], deadline=far()) for i in range(3)]
    clf.release.set()
    assert first.result(LONG) and all(f.result(LONG) for f in behind)
    assert s.run(["after"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    assert s.stats.inline == 0
    s.close()


def test_a_stop_that_lands_before_the_classifier_starts_still_stops_it() -> None:
    """The deadline passes between the scheduler handing over and ``predict`` starting: the stop waits for it."""
    runs: list[int] = []

    class LateStart(OnnxClassifier):
        def predict(self, *args: Any, **kw: Any) -> list[dict[str, float]]:
            time.sleep(0.3)  # as if the thread were pre-empted before it reached the classifier
            return super().predict(*args, **kw)

    clf = LateStart(cache_size=0)
    OnnxClassifier.predict(clf, ["load the session"])
    real = clf._session

    class Counting:
        def run(self, *args: Any, **kw: Any) -> Any:
            runs.append(1)
            return real.run(*args, **kw)

    clf._session = Counting()
    s = known(Scheduler(clf, hang_after=LONG))
    with pytest.raises(CheckTimeout, match="stopped"):
        s.run(["how do I bake bread?"], deadline=time.monotonic() + 0.1).result(0)
    assert runs == [] and clf.resets == 0
    (scores,) = s.run(["how do I bake bread?"], deadline=far()).result(0)  # the stop covered one run only
    assert runs == [1] and 0.0 <= scores["unsafe"] <= 1.0
    s.close()


def test_a_retried_item_that_hangs_is_watched_and_later_checks_are_served() -> None:
    """Items of a failed batch run again one by one through the queue, watched like any batch."""

    class HangsOnRetry:
        name = "hangs-on-retry"
        labels = frozenset({"unsafe"})

        def __init__(self) -> None:
            self.entered, self.gate = threading.Event(), threading.Event()
            self.stuck, self.unstick = threading.Event(), threading.Event()
            self.resets = 0

        def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
            if tuple(texts) == ("x",):
                self.entered.set()
                self.gate.wait(LONG)
            elif "poison" in texts and len(texts) > 1:
                raise RuntimeError("the batch fails")
            elif tuple(texts) == ("a",):
                self.stuck.set()
                self.unstick.wait(LONG)
            return [{"unsafe": min(1.0, len(t) / 100)} for t in texts]

        def reset(self) -> None:
            self.resets += 1

    clf = HangsOnRetry()
    s = Scheduler(clf, hang_after=0.2)
    first = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    a = s.submit(["a"], deadline=time.monotonic() + 0.5)
    poison = s.submit(["poison"], deadline=far())
    clf.gate.set()
    assert first.result(LONG) == [{"unsafe": 0.01}]
    assert clf.stuck.wait(LONG)
    with pytest.raises(CheckTimeout, match="hung"):
        a.result(LONG)
    assert poison.result(LONG) == [{"unsafe": 0.06}]  # served by a fresh worker
    assert s.submit(["later"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    assert s.stats.hangs == 1 and clf.resets == 1 and s.stats.retried == 2
    clf.unstick.set()
    s.close()


def test_a_classifier_whose_resume_fails_after_a_run_leaves_the_scheduler_serving() -> None:
    # resume() raising in the run's clean-up used to leave the run published: the worker waited for a run
    # that was over, and the watchdog later stopped and reset a classifier that was not running
    class ResumeFailsOnce(Stoppable):
        def __init__(self) -> None:
            super().__init__()
            self.resumes = 0

        def resume(self, thread: int) -> None:
            self.resumes += 1
            if self.resumes == 2:  # the clean-up after the first run
                raise RuntimeError("resume failed")
            super().resume(thread)

    clf = ResumeFailsOnce()
    s = known(Scheduler(clf))
    assert s.run(["hello"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    assert s.submit(["queued"], deadline=far()).result(LONG) == [{"unsafe": 0.06}]
    assert s.run(["again"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    assert s.stats.hangs == 0 and clf.resets == 0 and not clf.stop
    s.close()
