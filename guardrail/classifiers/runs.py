"""How a classifier call is cut into onnxruntime runs, and how several runs share the two cores.

Why never two texts in one run: the int8 graph quantises its activations with one range per run (the range of
the whole batch, padding included), so a batch-mate moves a text's scores. Measured on the bundled model over
1,500 dev prompts scored in batches against one at a time: unsafe probabilities up to 0.40 apart and 32
decisions flipped. A text's scores must not depend on the traffic beside it (a concurrent request, or the rows
scored with it when thresholds are calibrated), so texts that the scheduler coalesces still run one by one. A
long text's own windows share runs, so its scores depend on itself and on ``max_batch_tokens`` (which packs
them; calibration and every measurement use the default 1,024), never on another text. Quantising per text
inside the graph instead kept batching but cost 1.6x on every check (no fused int8 kernel takes a per-row
activation scale).

Why a call with several texts fans out: one text per run, one after another, gave up the throughput that mixed
batches had (200 concurrent 64-token checks, ``benchmarks/load.py --quick``, medians of three runs on an AMD EPYC
Zen 3: 77 against 94 checks/s); fanned out, 106. Small runs use two
intra-op threads poorly; two single-threaded runs side by side use both cores (measured on 30 texts of 40-70
tokens: 151 texts/s, against 139 one after another on two threads and 129 in one mixed batch). A call with one
text (a lone check, or one long text's runs, which are uneven: 1,024 tokens in runs of 8 and 2 windows took 255 ms
on one thread each against 167 ms one after another on two) keeps the two-thread session and its latency. Both
sessions are built when the model loads, from the same bytes (the same weights, and no first-use pause); the second
costs memory: peak RSS 286 MB with the model loaded, against 208 (``benchmarks/latency.py``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from guardrail.classifiers.encoding import Window

__all__ = ["Helper", "fan_out", "new_session", "plan_runs", "run_tokens", "sharing_pair", "worth_fanning_out"]

T = TypeVar("T")


def worth_fanning_out(runs: Sequence[Sequence[int]], windows: Sequence[Window]) -> bool:
    """Whether two single-threaded runners beat one two-threaded one: several texts, and no run holding 60% of the
    tokens (an uneven split leaves one thread with most of the work at half the speed: one long text's 1,024
    tokens in runs of 8 and 2 windows took 255 ms so, against 167 ms on the two-thread session)."""
    if len(runs) < 2 or len({windows[r[0]].item for r in runs}) < 2:
        return False
    sizes = [run_tokens(r, windows) for r in runs]
    return max(sizes) <= 0.6 * sum(sizes)  # one thread runs at about 0.6 of two: past that, fanning out loses


def run_tokens(run: Sequence[int], windows: Sequence[Window]) -> int:
    """The tokens a run computes: its windows, each padded to the longest."""
    return len(run) * max(len(windows[i].ids) for i in run)


def plan_runs(windows: Sequence[Window], max_batch_tokens: int) -> list[list[int]]:
    """The runs for ``windows``: each holds windows of one text only, sorted by length and packed up to
    ``max_batch_tokens`` (a window longer than that runs alone)."""
    by_text: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_text.setdefault(w.item, []).append(i)
    runs: list[list[int]] = []
    for members in by_text.values():
        order = sorted(members, key=lambda i: len(windows[i].ids))
        start = 0
        while start < len(order):
            end = start + 1
            longest = len(windows[order[start]].ids)
            while end < len(order):
                longest = max(longest, len(windows[order[end]].ids))
                if longest * (end - start + 1) > max_batch_tokens:
                    break
                end += 1
            runs.append(order[start:end])
            start = end
    return runs


class Helper:
    """One long-lived daemon thread that takes a share of each call's runs. Long-lived because onnxruntime's first
    run on a fresh thread is slow (measured for the scheduler: p90 12.8 against 8.4 ms); a daemon because a run that
    never returns must not hold the interpreter open. ``close()`` lets it exit after the job it is on."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="guardrail-onnx-helper", daemon=True)
        self._thread.start()  # RuntimeError when no thread can be started: the caller runs alone

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            with contextlib.suppress(BaseException):  # a job's error is its caller's (fan_out); the thread lives on
                job()
            job = None  # not kept while waiting: the job's closure holds its classifier and sessions

    def submit(self, job: Callable[[], None]) -> threading.Event | None:
        """Run ``job`` on the helper; the event is set when it has returned. None once closed (a reset landed
        after the caller picked this helper): the caller then runs alone rather than wait for a thread that left."""
        done = threading.Event()

        def wrapped() -> None:
            try:
                job()
            finally:
                done.set()

        with self._lock:  # a job queued before close() runs before the thread leaves
            if self._closed:
                return None
            self._jobs.put(wrapped)
        return done

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._jobs.put(None)


_END = object()


def fan_out(runs: Sequence[T], work: Callable[[T], None], helper: Helper | None) -> None:
    """``work`` on every run, by the calling thread and ``helper`` taking runs in turn (the caller alone without
    one). The first error stops both from starting another run and is raised here, after the run the other has
    begun has ended; nothing is left running when this returns or raises."""
    lock = threading.Lock()
    pending = iter(runs)
    errors: list[BaseException] = []
    stop = False

    def take_and_work() -> None:
        while True:
            with lock:
                run = _END if stop or errors else next(pending, _END)
            if run is _END:
                return
            try:
                work(run)  # type: ignore[arg-type]
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return

    started = False

    def helper_share() -> None:
        nonlocal started
        with lock:
            if stop:  # the caller finished before the helper was free (it serves one call at a time)
                return
            started = True
        take_and_work()

    done = helper.submit(helper_share) if helper is not None else None
    try:
        take_and_work()
    finally:
        with lock:
            stop = True  # the helper takes no more runs (after an interruption outside ``work``, say)
            wait = started
        if done is not None and wait:  # only for a run it has begun: never for a job still queued
            done.wait()
    if errors:
        raise errors[0]


def new_session(model: bytes, threads: int, spinning: bool) -> Any:
    """An onnxruntime session of ``model`` with ``threads`` intra-op threads; every other option is the same for the
    main session and the sharing one (the tests check that a text scores the same bits on either)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def sharing_pair(model: bytes, spinning: bool, where: str) -> tuple[Any, Helper | None]:
    """The single-threaded session and the helper thread that texts of one call share out; (None, None), logged,
    when either cannot be had (no thread to start, no memory): texts then run one after another."""
    try:
        return new_session(model, 1, spinning), Helper()
    except Exception as exc:
        import structlog

        structlog.get_logger("guardrail").warning(
            "classifier_runs_texts_one_by_one", model=where, error=type(exc).__name__
        )
        return None, None
