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
Zen 3: 77 against 94 checks/s); fanned out, 114. Small runs use two
intra-op threads poorly; two single-threaded runs side by side use both cores (measured on 30 texts of 40-70
tokens: 151 texts/s, against 139 one after another on two threads and 129 in one mixed batch). A call with one
text (a lone check, or one long text's runs, which are uneven: 1,024 tokens in runs of 8 and 2 windows took 255 ms
on one thread each against 167 ms one after another on two) keeps the two-thread session and its latency. The
second session costs memory: peak RSS 262 against 204 MB under 200 concurrent 64-token checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from guardrail.classifiers.encoding import Window

__all__ = ["fan_out", "plan_runs"]

T = TypeVar("T")


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


def fan_out(runs: Sequence[T], work: Callable[[T], None]) -> None:
    """``work`` on every run, by the calling thread and one helper thread taking runs in turn. The first error
    stops both from starting another run and is raised here (the run the other has begun completes). The helper
    is a daemon: an inference that never returns cannot hold the interpreter open."""
    lock = threading.Lock()
    pending = iter(runs)
    errors: list[BaseException] = []

    def take_and_work() -> None:
        while True:
            with lock:
                if errors:
                    return
                run = next(pending, None)
            if run is None:
                return
            try:
                work(run)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return

    helper = threading.Thread(target=take_and_work, name="guardrail-onnx-fan-out", daemon=True)
    helper.start()
    take_and_work()
    helper.join()
    if errors:
        raise errors[0]
