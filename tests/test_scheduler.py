"""The scheduler: one inference owner per classifier, batches, deadlines on the work, load shedding, hangs.

Every bound here is on work (calls, batch sizes, which texts ran), never on elapsed time: waits use
events with generous time-outs only so that a broken scheduler fails the test instead of hanging it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from guardrail.errors import CheckTimeout, ClassifierError, InvalidScores, Overloaded
from guardrail.scheduler import Scheduler, estimate_tokens

LONG = 30.0  # a wait that only a broken scheduler reaches


class Gated:
    """Scores each text by its length; the first ``hold`` calls block until ``release`` is set."""

    name = "gated"
    labels = frozenset({"unsafe"})

    def __init__(self, hold: int = 1, *, fail_on: str | None = None, hang: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.fail_on = fail_on
        self.hang = hang
        self.resets = 0
        self._lock = threading.Lock()

    def predict(
        self, texts: Sequence[str], *, stage: str = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        with self._lock:
            self.calls.append(tuple(texts))
            held = len(self.calls) <= self.hold
        if held:
            self.entered.set()
            self.release.wait(LONG)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"cannot score {self.fail_on!r}")  # text an error must not carry on
        return [{"unsafe": min(1.0, len(t) / 100)} for t in texts]

    def reset(self) -> None:
        self.resets += 1


def far() -> float:
    return time.monotonic() + LONG


def wait_queued(s: Scheduler, n: int) -> None:
    for _ in range(3000):
        with s._cond:
            if len(s._queue) >= n:
                return
        time.sleep(0.001)
    raise AssertionError("items never queued")


def test_concurrent_checks_coalesce_into_one_batch_and_get_their_own_scores() -> None:
    clf = Gated()
    s = Scheduler(clf)
    first = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    texts = [["a" * i] for i in range(1, 21)]
    futures = [s.submit(t, deadline=far()) for t in texts]
    wait_queued(s, 20)
    clf.release.set()
    assert first.result(LONG) == [{"unsafe": 0.01}]
    for t, f in zip(texts, futures, strict=True):
        assert f.result(LONG) == [{"unsafe": len(t[0]) / 100}]  # no cross-talk
    assert len(clf.calls) == 2 and len(clf.calls[1]) == 20  # the 20 waiting checks ran as one batch
    s.close()


def test_batches_are_bounded_in_texts_and_tokens() -> None:
    clf = Gated()
    s = Scheduler(clf, max_batch=4, max_batch_tokens=10_000)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    futures = [s.submit([f"text {i}"], deadline=far()) for i in range(10)]
    wait_queued(s, 10)
    clf.release.set()
    for f in futures:
        f.result(LONG)
    assert max(len(c) for c in clf.calls[1:]) == 4 and sum(len(c) for c in clf.calls[1:]) == 10
    s.close()
    clf2 = Gated()
    s2 = Scheduler(clf2, max_batch=64, max_batch_tokens=3 * estimate_tokens("y" * 300))
    s2.submit(["x"], deadline=far())
    assert clf2.entered.wait(LONG)
    futures = [s2.submit(["y" * 300], deadline=far()) for _ in range(7)]
    wait_queued(s2, 7)
    clf2.release.set()
    for f in futures:
        f.result(LONG)
    assert max(len(c) for c in clf2.calls[1:]) == 3
    s2.close()


def test_work_past_its_deadline_is_dropped_before_it_runs() -> None:
    clf = Gated()
    s = Scheduler(clf)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    late = s.submit(["never scored"], deadline=time.monotonic() + 0.05)
    kept = s.submit(["scored"], deadline=far())
    time.sleep(0.1)  # let the short deadline pass while the worker is busy
    clf.release.set()
    with pytest.raises(CheckTimeout, match="not run"):
        late.result(LONG)
    assert kept.result(LONG) == [{"unsafe": 0.06}]
    assert all("never scored" not in c for c in clf.calls)
    assert s.stats.dropped == 1
    s.close()


def test_a_cancelled_check_is_never_run() -> None:
    clf = Gated()
    s = Scheduler(clf)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    gone = s.submit(["caller gave up"], deadline=far())
    assert gone.cancel()
    done = s.submit(["ok"], deadline=far())
    clf.release.set()
    done.result(LONG)
    assert all("caller gave up" not in c for c in clf.calls)
    s.close()


def test_a_full_queue_sheds_load_explicitly() -> None:
    clf = Gated()
    s = Scheduler(clf, max_queue=2)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    queued = [s.submit([f"q{i}"], deadline=far()) for i in range(2)]
    shed = s.submit(["one too many"], deadline=far())
    with pytest.raises(Overloaded, match="max_queue 2"):
        shed.result(0)  # refused at once: already done
    clf.release.set()
    for f in queued:
        f.result(LONG)
    assert s.stats.shed == 1 and all("one too many" not in c for c in clf.calls)
    s.close()


def test_work_that_cannot_finish_before_its_deadline_is_refused_at_once() -> None:
    clf = Gated()
    clf.check_ms = 66_000.0  # type: ignore[attr-defined]  # measured speed: 1 s per token
    s = Scheduler(clf)
    s.submit(["x"], deadline=far())  # an idle scheduler admits whatever the estimate says
    assert clf.entered.wait(LONG)
    shed = s.submit(["behind a busy worker"], deadline=time.monotonic() + 5)
    with pytest.raises(Overloaded, match="past the check's deadline"):
        shed.result(0)
    clf.release.set()
    s.close()


def test_a_hung_inference_is_abandoned_the_classifier_reset_and_later_checks_served() -> None:
    """Hung: past its expected time (``hang_after``) and past the deadline of every check in it."""
    clf = Gated()
    s = Scheduler(clf, hang_after=0.2)
    hung = s.submit(["stuck"], deadline=time.monotonic() + 0.5)  # a hang is declared past every deadline in it
    assert clf.entered.wait(LONG)
    behind = s.submit(["behind the hang"], deadline=far())
    with pytest.raises(CheckTimeout, match="hung"):
        hung.result(LONG)
    assert behind.result(LONG) == [{"unsafe": 0.15}]  # served by a fresh worker while the old call hangs
    assert clf.resets == 1 and s.stats.hangs == 1
    assert s.submit(["later"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    clf.release.set()
    s.close()


def test_one_input_that_crashes_the_classifier_fails_only_its_own_check() -> None:
    clf = Gated(fail_on="poison")
    s = Scheduler(clf)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    good1 = s.submit(["fine"], deadline=far())
    bad = s.submit(["poison"], deadline=far())
    good2 = s.submit(["also fine"], deadline=far())
    wait_queued(s, 3)
    clf.release.set()
    assert good1.result(LONG) == [{"unsafe": 0.04}] and good2.result(LONG) == [{"unsafe": 0.09}]
    with pytest.raises(ClassifierError) as info:
        bad.result(LONG)
    assert "RuntimeError" in str(info.value) and "poison" not in str(info.value)  # no input text in errors
    assert s.stats.retried == 3
    s.close()


def test_a_wrong_number_of_results_is_invalid_scores() -> None:
    class Short:
        name = "short"
        labels = frozenset({"unsafe"})

        def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
            return []

    s = Scheduler(Short())
    with pytest.raises(InvalidScores, match="0 results for 1 texts"):
        s.submit(["a"], deadline=far()).result(LONG)
    s.close()


def test_threads_and_event_loops_share_one_worker() -> None:
    import asyncio

    clf = Gated(hold=0)
    s = Scheduler(clf)

    async def many() -> list[Any]:
        return await asyncio.gather(*(asyncio.wrap_future(s.submit([f"a{i}"], deadline=far())) for i in range(30)))

    with cf.ThreadPoolExecutor(8) as pool:
        threaded = [pool.submit(lambda i=i: s.submit([f"t{i}"], deadline=far()).result(LONG)) for i in range(30)]
        got = asyncio.run(many())
        for f in threaded:
            f.result(LONG)
    assert len(got) == 30
    assert sum(len(c) for c in clf.calls) == 60  # every text scored exactly once
    assert sum(t.name == "guardrail-infer-gated" for t in threading.enumerate()) <= 1  # one inference owner
    s.close()


def test_close_fails_queued_checks() -> None:
    clf = Gated()
    s = Scheduler(clf)
    s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    queued = s.submit(["queued"], deadline=far())
    s.close()
    with pytest.raises(ClassifierError, match="closed"):
        queued.result(LONG)
    clf.release.set()


def test_onnx_reset_replaces_the_session_and_scores_stay_the_same() -> None:
    from guardrail.classifiers.onnx import OnnxClassifier

    clf = OnnxClassifier(cache_size=0)
    before = clf.predict(["how do I bake bread?"])
    session = clf._session
    clf.reset()
    after = clf.predict(["how do I bake bread?"])
    assert clf._session is not None and clf._session is not session and clf.resets == 1
    assert after[0] == pytest.approx(before[0])


def test_speed_scale_follows_a_slowed_machine_up_to_a_bound() -> None:
    from guardrail.scheduler import MAX_STRETCH

    class Measured(Gated):
        check_ms = 3.0  # warm-up: the reference speed
        speed_scale = 1.0

    clf = Measured(hold=0)
    s = Scheduler(clf)
    assert s.speed_scale() == 1.0
    s._spt = s._ref_spt * 4  # type: ignore[operator]  # batches now run 4 times slower
    assert s.speed_scale() == 4.0
    s._spt = s._ref_spt * 1000  # type: ignore[operator]
    assert s.speed_scale() == MAX_STRETCH
    assert Scheduler(Gated()).speed_scale() == 1.0  # no warm-up measure: no stretching
    s.close()


def test_a_hung_onnx_inference_is_terminated_and_its_session_replaced() -> None:
    """The watchdog and the ONNX classifier together: the first session hangs, the watchdog resets the
    classifier (terminating the run, dropping the session) and a fresh session serves the next check."""
    from guardrail.classifiers.onnx import OnnxClassifier

    clf = OnnxClassifier(cache_size=0)
    clf.predict(["load the session"])
    real = clf._session
    entered = threading.Event()

    class Hanging:
        def run(self, *args: Any, **kw: Any) -> Any:
            entered.set()
            ro = args[2]
            for _ in range(3000):  # a hang that only a terminate request ends
                if ro.terminate:
                    raise RuntimeError("Exiting due to terminate flag being set to true.")
                time.sleep(0.01)
            return real.run(*args, **kw)

    clf._session = Hanging()
    s = Scheduler(clf, hang_after=0.3)
    hung = s.submit(["how do I bake bread?"], deadline=time.monotonic() + 0.5)
    assert entered.wait(LONG)
    with pytest.raises(CheckTimeout, match="hung"):
        hung.result(LONG)
    # the watchdog fails the checks first, then resets the classifier (loading the next session can take a while)
    give_up = time.monotonic() + LONG  # a hang guard, not a timing
    while clf.resets == 0 and time.monotonic() < give_up:
        time.sleep(0.01)
    assert clf.resets == 1 and s.stats.hangs == 1
    (scores,) = s.submit(["how do I bake bread?"], deadline=far()).result(LONG)
    assert 0.0 <= scores["unsafe"] <= 1.0
    assert clf._session is not None and not isinstance(clf._session, Hanging)
    s.close()


def test_a_slow_call_is_not_a_hang_while_its_checks_still_have_time() -> None:
    """An expert such as an LLM judge may take the whole budget its policy gives it."""
    clf = Gated()
    s = Scheduler(clf, hang_after=0.05)
    slow = s.submit(["slow but in time"], deadline=far())
    assert clf.entered.wait(LONG)
    time.sleep(0.3)  # well past hang_after, well before the deadline
    assert s.stats.hangs == 0 and not slow.done()
    clf.release.set()
    assert slow.result(LONG) == [{"unsafe": 0.16}]
    assert clf.resets == 0
    s.close()


def test_an_ensemble_budget_scales_with_its_slowest_expert() -> None:
    class Expert(Gated):
        def __init__(self, scale: float) -> None:
            super().__init__(hold=0)
            self.speed_scale = scale

    class Ensemble:
        name = "ens"
        labels = frozenset({"unsafe"})
        experts = (Expert(1.0), Expert(5.0))

        def predict(self, texts: Sequence[str], **kw: Any) -> list[dict[str, float]]:
            return [{"unsafe": 0.0} for _ in texts]

    assert Scheduler(Ensemble()).speed_scale() == 5.0


def test_a_queue_holding_only_cancelled_or_expired_checks_never_stops_the_worker() -> None:
    """A caller that gave up cancels its queued check; the worker skips it and serves the next one."""
    clf = Gated()
    s = Scheduler(clf)
    running = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    gave_up = s.submit(["given up"], deadline=far())
    expired = s.submit(["expired"], deadline=time.monotonic() + 0.01)
    assert gave_up.cancel()
    time.sleep(0.05)
    clf.release.set()
    assert running.result(LONG) == [{"unsafe": 0.01}]
    with pytest.raises(CheckTimeout):
        expired.result(LONG)
    assert s.submit(["next"], deadline=far()).result(LONG) == [{"unsafe": 0.04}]
    s.close()


def test_close_during_a_batch_fails_its_checks_when_the_batch_returns() -> None:
    # the batch's futures were left unresolved: a plain submit().result() waited for ever
    clf = Gated()
    s = Scheduler(clf)
    fut = s.submit(["in flight"], deadline=far())
    assert clf.entered.wait(LONG)
    s.close()
    clf.release.set()
    with pytest.raises(ClassifierError, match="closed"):
        fut.result(LONG)


class HangsOn(Gated):
    """Hangs on the text "hang" until the scheduler resets it; other texts score at once."""

    def __init__(self) -> None:
        super().__init__(hold=1)
        self.stuck = threading.Event()
        self.unstick = threading.Event()

    def predict(
        self, texts: Sequence[str], *, stage: str = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        if "hang" in texts:
            self.stuck.set()
            self.unstick.wait(LONG)
        return super().predict(texts, stage=stage, prompts=prompts)

    def reset(self) -> None:
        super().reset()
        self.unstick.set()


def test_a_batch_gathered_after_the_watchdog_went_idle_is_still_watched() -> None:
    # while the worker waited for companions, the idle watchdog exited; the batch then ran unwatched, its hang
    # was never declared and, with nothing else arriving, its check never finished
    clf = HangsOn()
    s = Scheduler(clf, max_wait_ms=600, idle_exit=0.05, hang_after=0.05)
    first = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    pair = [s.submit([t], deadline=far()) for t in ("a", "b")]
    wait_queued(s, 2)
    clf.release.set()
    for f in [first, *pair]:
        f.result(LONG)
    assert s._last_batch == 2  # so the next batch waits for companions (max_wait_ms)
    hung = s.submit(["hang"], deadline=time.monotonic() + 1.0)
    assert clf.stuck.wait(LONG)
    with pytest.raises(CheckTimeout):
        hung.result(LONG)
    assert s.stats.hangs == 1 and clf.resets == 1
    assert s.submit(["later"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    s.close()


class ResetKillsRuns:
    """Like the ONNX classifier: reset() (slow here) terminates every inference in flight."""

    name = "reset-kills"
    labels = frozenset({"unsafe"})

    def __init__(self) -> None:
        self.active: list[threading.Event] = []
        self.first = threading.Event()
        self.resetting = threading.Event()
        self._lock = threading.Lock()

    def predict(
        self, texts: Sequence[str], *, stage: str = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        stop = threading.Event()
        with self._lock:
            self.active.append(stop)
            hang = not self.first.is_set()
            self.first.set()
        if stop.wait(LONG if hang else 0.6):  # a run longer than the reset: one started during it is killed
            raise RuntimeError("terminated by reset")
        return [{"unsafe": 0.0} for _ in texts]

    def reset(self) -> None:
        self.resetting.set()
        time.sleep(0.3)  # as onnxruntime's reset waits for its session lock
        with self._lock:
            for stop in self.active:
                stop.set()
            self.active.clear()


def test_a_check_that_arrives_during_a_reset_waits_for_it_instead_of_being_killed_by_it() -> None:
    clf = ResetKillsRuns()
    s = Scheduler(clf, hang_after=0.05)
    victim = s.submit(["stuck"], deadline=time.monotonic() + 0.1)
    with pytest.raises(CheckTimeout):
        victim.result(LONG)
    assert clf.resetting.wait(LONG)
    assert s.submit(["arrives during the reset"], deadline=far()).result(LONG) == [{"unsafe": 0.0}]
    s.close()


def test_a_worker_thread_that_cannot_start_fails_that_check_and_the_next_check_starts_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # thread exhaustion left _worker pointing at a thread that never ran: no check was ever served again
    clf = Gated(hold=0)
    s = Scheduler(clf)
    real_start = threading.Thread.start

    def no_threads(self: threading.Thread) -> None:
        if self.name.startswith("guardrail-infer"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    with pytest.raises(ClassifierError, match="could not start"):
        s.submit(["first"], deadline=far()).result(LONG)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert s.submit(["second"], deadline=far()).result(LONG) == [{"unsafe": 0.06}]
    s.close()


def test_a_caller_that_completes_its_own_future_does_not_stop_the_worker() -> None:
    clf = Gated()
    s = Scheduler(clf)
    mine = s.submit(["x"], deadline=far())
    assert clf.entered.wait(LONG)
    mine.set_exception(TimeoutError("the caller gave up"))
    clf.release.set()
    assert s.submit(["later"], deadline=far()).result(LONG) == [{"unsafe": 0.05}]
    s.close()
