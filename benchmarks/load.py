"""The guard under load: a sweep of concurrent checks, with and without competing CPU work.

    python benchmarks/load.py [--sizes 1,10,100,200,1000,10000] [--competitors 0,2] [--mode async|threads]
                              [--tokens 64] [--policy default] [--no-batching-section] [--quick]

For each concurrency level N (all N ``acheck_input`` calls started at once on one event loop, or N
threads calling ``check_input``), with 0 and then 2 busy-loop processes competing for the CPU:
checks/s, per-check p50/p99 latency, the share of checks decided by the fail mode because of the
budget (``timeout``) or load shedding (``overloaded``), the share blocked by the model (every prompt
is benign, so a block is an over-refusal), and the process's peak RSS. Every prompt is distinct,
so the classifier's cache never answers.

The batching section compares, on the same batches of distinct 64-token prompts: the bare
``OnnxClassifier.predict`` on the whole batch; the same checks run sequentially through
``Guard.check_input``; and the same checks issued concurrently (the scheduler batches them).

Prints the CPU model and load average first: compare only numbers from one run on one machine, and
take the full sweep on an idle machine (``--quick``: sizes 1,10,50,200 and a short batching section).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _machine import cpu_model  # benchmarks/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

_TOPICS = (
    "a birthday party for a seven year old",
    "the history of the Roman aqueducts",
    "repotting a fiddle leaf fig",
    "a polite email asking for a deadline extension",
    "how compound interest works on a savings account",
    "the rules of cricket for a beginner",
    "a vegetarian lasagne for six people",
    "preparing for a job interview at a bakery",
    "the difference between weather and climate",
    "a week of exercises for a sore lower back",
    "learning Spanish verbs quickly",
    "choosing a laptop for a university student",
)
_ASKS = (
    "Could you help me plan",
    "Please write a short guide about",
    "I would love a friendly explanation of",
    "Give me three practical tips on",
    "Can you summarise what matters most about",
)
_TAILS = (
    "Keep it simple and clear, with a short list at the end and one example I can try this weekend.",
    "I am new to this, so please avoid jargon and tell me which mistakes people usually make first.",
    "Write it for a busy parent, in a warm tone, and finish with a one-line summary I can remember.",
)


def benign_prompts(n: int, tokens: int = 64, seed: int = 7) -> list[str]:
    """``n`` distinct benign prompts of about ``tokens`` word-piece tokens (about 4 characters each)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        text = f"{rnd.choice(_ASKS)} {rnd.choice(_TOPICS)}? {rnd.choice(_TAILS)}"
        while len(text) < tokens * 4:
            text += f" {rnd.choice(_TAILS)}"
        out.append(f"{text[: tokens * 4].rsplit(' ', 1)[0]} (ref {i})")
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _busy(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


@contextmanager
def competitors(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU for the duration of the block."""
    if n <= 0:
        yield
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let them reach the CPU
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_level(guard: Any, prompts: list[str], mode: str) -> dict[str, Any]:
    """All ``prompts`` checked at once; per-check latency, outcome counts."""
    lat: list[float] = []
    decisions: list[Any] = []
    lock = threading.Lock()

    def one_sync(p: str) -> None:
        t0 = time.perf_counter()
        d = guard.check_input(p)
        with lock:
            lat.append(time.perf_counter() - t0)
            decisions.append(d)

    async def one_async(p: str) -> None:
        t0 = time.perf_counter()
        d = await guard.acheck_input(p)
        lat.append(time.perf_counter() - t0)
        decisions.append(d)

    started = time.perf_counter()
    if mode == "threads":
        threads = [threading.Thread(target=one_sync, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:

        async def main() -> None:
            await asyncio.gather(*(one_async(p) for p in prompts))

        asyncio.run(main())
    wall = time.perf_counter() - started
    kinds: dict[str, int] = {}
    for d in decisions:
        if d.error_kind:
            kinds[d.error_kind] = kinds.get(d.error_kind, 0) + 1
    model_blocks = sum(d.blocked and not d.error_kind for d in decisions)
    n = len(prompts)
    return {
        "n": n,
        "checks_s": n / wall,
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "timeout": kinds.get("timeout", 0) / n,
        "overloaded": kinds.get("overloaded", 0) / n,
        "other_errors": sum(v for k, v in kinds.items() if k not in ("timeout", "overloaded")) / n,
        "model_blocked": model_blocks / n,
        "rss_mb": peak_rss_mb(),
    }


def sweep(args: argparse.Namespace) -> None:
    from guardrail import Guard

    guard = Guard(args.policy)
    clf = guard.classifiers()[0]
    print(
        f"warm-up: one 64-token check {getattr(clf, 'check_ms', float('nan')):.1f} ms, "
        f"speed_scale {getattr(clf, 'speed_scale', 1.0):.2f}; policy {guard.policy.name}: "
        f"timeout_ms {guard.policy.timeout_ms}, +{guard.policy.timeout_per_1k_tokens_ms} ms per 1k tokens"
    )
    print(
        f"\n{'competitors':>11} {'N':>6} {'checks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'timeout':>8} "
        f"{'overload':>8} {'other':>6} {'blocked':>8} {'RSS MB':>7}"
    )
    offset = 0
    for comp in args.competitors:
        with competitors(comp):
            for n in args.sizes:
                prompts = benign_prompts(n, args.tokens, seed=1000 + offset)
                offset += 1
                r = run_level(guard, prompts, args.mode)
                print(
                    f"{comp:>11} {n:>6} {r['checks_s']:>9.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                    f"{r['timeout']:>8.1%} {r['overloaded']:>8.1%} {r['other_errors']:>6.1%} "
                    f"{r['model_blocked']:>8.1%} {r['rss_mb']:>7.0f}",
                    flush=True,
                )
    guard.close()


def batching_section(args: argparse.Namespace) -> None:
    """texts/s: bare predict on a batch vs sequential checks vs concurrent (batched) checks."""
    from guardrail import Guard
    from guardrail.classifiers.onnx import OnnxClassifier

    guard = Guard(args.policy)
    bare = OnnxClassifier(guard.policy.model, cache_size=0)
    bare.warmup()
    sizes = (8, 32) if args.quick else (8, 32, 64)
    rounds = 2 if args.quick else 5
    print(f"\n{'batch':>6} {'predict texts/s':>16} {'sequential checks/s':>20} {'concurrent checks/s':>20}")
    seed = 50_000
    for b in sizes:
        pr, sq, cc = [], [], []
        for _ in range(rounds):
            seed += 3
            texts = benign_prompts(b, args.tokens, seed=seed)
            t0 = time.perf_counter()
            bare.predict(texts)
            pr.append(b / (time.perf_counter() - t0))
            texts = benign_prompts(b, args.tokens, seed=seed + 1)
            t0 = time.perf_counter()
            for t in texts:
                guard.check_input(t)
            sq.append(b / (time.perf_counter() - t0))
            texts = benign_prompts(b, args.tokens, seed=seed + 2)
            r = run_level(guard, texts, "async")
            cc.append(r["checks_s"])
        print(f"{b:>6} {statistics.median(pr):>16.1f} {statistics.median(sq):>20.1f} {statistics.median(cc):>20.1f}")
    sched = guard._scheduler(guard.classifiers()[0])
    s = sched.stats
    print(f"scheduler: {s.batches} batches, {s.texts} texts, largest batch {s.largest_batch}, shed {s.shed}, "
          f"dropped {s.dropped}, hangs {s.hangs}")  # fmt: skip
    guard.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,100,200,1000,10000")
    ap.add_argument("--competitors", default="0,2")
    ap.add_argument("--mode", choices=("async", "threads"), default="async")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--quick", action="store_true", help="sizes 1,10,50,200 and a short batching section")
    ap.add_argument("--no-batching-section", action="store_true")
    args = ap.parse_args()
    if args.quick and args.sizes == ap.get_default("sizes"):
        args.sizes = "1,10,50,200"
    args.sizes = [int(x) for x in args.sizes.split(",") if x]
    args.competitors = [int(x) for x in args.competitors.split(",") if x]
    import structlog  # audit events are written in a deployment; here they would drown the table

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    load = os.getloadavg()
    print(f"CPU: {cpu_model()} x {os.cpu_count()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"mode {args.mode}, {args.tokens}-token benign prompts, every prompt distinct")
    sweep(args)
    if not args.no_batching_section:
        batching_section(args)


if __name__ == "__main__":
    main()
