"""Latency, throughput and memory of guardrail with the bundled model, against the bare model as baseline.

    python benchmarks/latency.py [--model PATH] [--quick] [--threads N] [--json FILE]

What it measures, in one process and one run (so the ratios compare like with like):

- input and output checks at 16 / 64 / 256 / 1,024 / 4,096 tokens: p50 and p99 of single
  ``Guard.check_input`` / ``check_output`` calls, against the bare onnxruntime forward pass of the
  same model on the same token windows (the classifier's own session, timed in blocks alternating
  with the checks), printed as a ratio; every text is distinct and the classifier's cache is off;
- batched throughput: ``OnnxClassifier.predict`` on a batch, against the bare session on the same
  padded batches;
- 200 concurrent ``acheck_input`` calls on one event loop (64-token prompts);
- streaming: the delay the guard adds before the first released text (``guard_stream`` with the
  policy's check interval and hold-back), for a source that is instant and one paced like an LLM;
- ``import guardrail`` time (fresh interpreters) and the peak RSS of a process that loads the model
  and runs checks up to 256 and then up to 4,096 tokens (``resource.getrusage`` in a subprocess).

``--quick`` runs fewer iterations (under a minute). Exit status 2 when there is no model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _machine import cpu_model  # benchmarks/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

LENGTHS = (16, 64, 256, 1024, 4096)
_WORD_TEXT = (
    "the a of to and in is for on with that this it as be are was from by at or an have not you your we our they "
    "their can will would should could about into over after before under between through during without within "
    "market report weather garden recipe travel history music science school project meeting budget team customer "
    "service product software update release network server database account invoice payment schedule holiday "
    "river mountain city village museum library kitchen bread coffee water energy health doctor patient student "
    "teacher lesson question answer problem solution idea plan design test result review summary detail example "
    "morning evening weekend summer winter spring autumn yesterday today tomorrow quickly slowly carefully really "
    "important simple useful different large small new old good great long short early late public private local"
)
WORDS = tuple(_WORD_TEXT.split())


def model_dir(arg: str | None) -> Path:
    from guardrail.classifiers.onnx import bundled_model_dir

    return Path(arg).resolve() if arg else bundled_model_dir()


def make_texts(tokenizer: Any, n_tokens: int, count: int, seed: int) -> list[str]:
    """``count`` distinct texts of ``n_tokens`` tokens (without special tokens) each."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words = [f"item{i}"] + [rng.choice(WORDS) for _ in range(n_tokens + 8)]
        ids = tokenizer.encode(" ".join(words), add_special_tokens=False).ids[:n_tokens]
        out.append(tokenizer.decode(ids))
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


class Bare:
    """The model without guardrail: the classifier's own onnxruntime session (a second session would
    compete with it: onnxruntime's pool threads spin after each run and steal the CPU from the
    other), fed the same windows in the same runs (``OnnxClassifier._runs``). Benchmark code:
    it reaches into the classifier's private attributes for exactly that."""

    def __init__(self, clf: Any) -> None:
        clf._load()
        self.session = clf._session
        self.clf = clf

    def feeds(self, texts: list[str], prompts: list[str | None] | None) -> list[dict[str, Any]]:
        from guardrail.classifiers.encoding import encode_windows, pad_batch

        clf = self.clf
        windows = encode_windows(clf._tokenizer, texts, prompts, clf.info.encoding)
        feeds = []
        for run in clf._runs(windows):  # the classifier's own runs: one text's windows each
            b = pad_batch([windows[i] for i in run], clf.info.encoding.pad_id)
            feeds.append(
                {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids}
            )
        return feeds

    def run(self, feeds: list[dict[str, Any]]) -> None:
        for feed in feeds:
            self.session.run(["logits"], feed)


# ------------------------------------------------------------------------------------------- sections


def single_checks(guard: Any, bare: Bare, tok: Any, quick: bool) -> list[dict[str, Any]]:
    iters = {16: 200, 64: 200, 256: 100, 1024: 30, 4096: 10}
    if quick:
        iters = {16: 20, 64: 20, 256: 8, 1024: 3, 4096: 2}
    prompt = "Please summarise the following text for me."
    rows = []
    for stage in ("input", "output"):
        for n in LENGTHS:
            warm = 1 if n >= 1024 else 2
            texts = make_texts(tok, n, iters[n] + warm, seed=n * (1 if stage == "input" else 7))
            prompts = None if stage == "input" else [prompt] * len(texts)
            feeds = [bare.feeds([t], None if prompts is None else [prompt]) for t in texts]
            check = _checker(guard, stage, prompt)
            for t, f in zip(texts[:warm], feeds[:warm], strict=True):  # warm both paths at this shape
                check(t)
                bare.run(f)
            g, b = [], []
            # alternating blocks of 10: both see the same background load, and neither pays on every call
            # for a thread switch right after the other ran (onnxruntime's threads spin between runs)
            for start in range(warm, len(texts), 10):
                g += [timed(lambda t=t, c=check: c(t)) for t in texts[start : start + 10]]
                b += [timed(lambda f=f: bare.run(f)) for f in feeds[start : start + 10]]
            rows.append({
                "stage": stage, "tokens": n, "windows": sum(len(x["input_ids"]) for x in feeds[-1]), "n": len(g),
                "guard_p50": pct(g, 50), "guard_p99": pct(g, 99), "bare_p50": pct(b, 50), "bare_p99": pct(b, 99),
                "ratio_p50": pct(g, 50) / pct(b, 50),
            })  # fmt: skip
            r = rows[-1]
            print(
                f"  {stage:6s} {n:5d} tok ({r['windows']:2d} win)  guard p50 {r['guard_p50']:7.1f} ms  "
                f"p99 {r['guard_p99']:7.1f} ms  | bare p50 {r['bare_p50']:7.1f} ms  p99 {r['bare_p99']:7.1f} ms  "
                f"| guard/bare {r['ratio_p50']:.2f}x",
                flush=True,
            )
    return rows


def batched(clf: Any, bare: Bare, tok: Any, quick: bool) -> list[dict[str, Any]]:
    sizes = {16: 32, 64: 32, 256: 32, 1024: 8, 4096: 2}
    reps = 1 if quick else 5
    rows = []
    for n in LENGTHS[:-1] if quick else LENGTHS:
        b = sizes[n]
        batches = [make_texts(tok, n, b, seed=1000 + n * 10 + r) for r in range(reps + 1)]
        feeds = [bare.feeds(x, None) for x in batches]
        clf.predict(batches[0])
        bare.run(feeds[0])
        g = w = 0.0
        for x, f in zip(batches[1:], feeds[1:], strict=True):  # interleaved, as above
            g += timed(lambda x=x: clf.predict(x))
            w += timed(lambda f=f: bare.run(f))
        rows.append(
            {"tokens": n, "batch": b, "classifier_per_s": b * reps / g * 1000, "bare_per_s": b * reps / w * 1000}
        )
        r = rows[-1]
        print(
            f"  {n:5d} tok x {b:2d}  classifier {r['classifier_per_s']:7.1f} texts/s  "
            f"| bare {r['bare_per_s']:7.1f} texts/s  | {r['classifier_per_s'] / r['bare_per_s']:.2f}x",
            flush=True,
        )
    return rows


def concurrent(guard: Any, tok: Any, n: int = 200) -> dict[str, Any]:
    texts = make_texts(tok, 64, n, seed=99)

    async def one(t: str) -> float:
        start = time.perf_counter()
        await guard.acheck_input(t)
        return (time.perf_counter() - start) * 1000.0

    async def run() -> tuple[list[float], float, float]:
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:  # event-loop lag: how late a 5 ms timer fires while checks run
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append((time.perf_counter() - t) * 1000.0 - 5.0)

        tick = asyncio.create_task(ticker())
        start = time.perf_counter()
        lat = await asyncio.gather(*(one(t) for t in texts))
        wall = time.perf_counter() - start
        stop.set()
        await tick
        return list(lat), wall, max(lags, default=0.0)

    lat, wall, lag = asyncio.run(run())
    out = {"n": n, "wall_s": wall, "per_s": n / wall, "p50": pct(lat, 50), "p99": pct(lat, 99), "max_loop_lag_ms": lag}
    print(
        f"  {n} x acheck_input (64 tok) at once: {wall:.2f} s wall, {out['per_s']:.0f} checks/s, "
        f"latency p50 {out['p50']:.0f} ms p99 {out['p99']:.0f} ms, worst event-loop lag {lag:.1f} ms",
        flush=True,
    )
    return out


def streaming(guard: Any, quick: bool) -> list[dict[str, Any]]:
    from guardrail.streaming import StreamGuard, guard_stream

    cfg = guard.policy.output.stream
    prompt = "Tell me about the history of bread."
    answer = (
        "Bread is one of the oldest prepared foods. Evidence from thirty thousand years ago in Europe shows starch "
        "residue on rocks used for pounding plants. Around ten thousand years ago, with the dawn of agriculture, "
        "grains became the mainstay of making bread. Yeast spores are everywhere, including on the surface of "
        "cereal grains, so any dough left to rest will become naturally leavened. "
    ) * 3
    chunk = 4
    reps = 2 if quick else 5
    rows = []
    for label, pause in (("instant source", 0.0), ("paced 4 chars / 10 ms", 0.010)):

        def source(salt: int, pause: float = pause) -> Iterator[str]:
            text = f"({salt}) " + answer
            for i in range(0, len(text), chunk):
                if pause:
                    time.sleep(pause)
                yield text[i : i + chunk]

        plain, guarded = [], []
        for r in range(reps):
            t = time.perf_counter()
            next(iter(source(r)))
            plain.append((time.perf_counter() - t) * 1000.0)
            sg = StreamGuard(check_every_chars=cfg.check_every_chars, holdback_chars=cfg.holdback_chars)
            t = time.perf_counter()
            for rel in guard_stream(source(100 + r), sg, lambda w: guard.check_output(w, prompt=prompt)):
                if rel.text:
                    break
            guarded.append((time.perf_counter() - t) * 1000.0)
        window_ms = cfg.holdback_chars / chunk * pause * 1000.0
        row = {
            "source": label, "first_token_ms": statistics.median(plain), "guarded_first_ms": statistics.median(guarded),
            "holdback_window_ms": window_ms,
        }  # fmt: skip
        row["added_ms"] = row["guarded_first_ms"] - row["first_token_ms"]
        rows.append(row)
        print(
            f"  {label:22s} first token {row['first_token_ms']:6.1f} ms, guarded {row['guarded_first_ms']:6.1f} ms: "
            f"+{row['added_ms']:.1f} ms (hold-back of {cfg.holdback_chars} chars = {window_ms:.0f} ms of this stream)",
            flush=True,
        )
    return rows


def _checker(guard: Any, stage: str, prompt: str) -> Callable[[str], Any]:
    if stage == "input":
        return guard.check_input  # type: ignore[no-any-return]
    return lambda t: guard.check_output(t, prompt=prompt)


def import_time(reps: int) -> dict[str, Any]:
    code = (
        "import sys, time; t = time.perf_counter(); import guardrail; dt = time.perf_counter() - t; "
        "heavy = ('litellm', 'torch', 'transformers', 'onnxruntime', 'numpy'); "
        "print(dt, ','.join(m for m in heavy if m in sys.modules))"
    )
    times, heavy = [], ""
    for _ in range(reps):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=_env()
        )
        dt, heavy = out.stdout.split(" ", 1)
        times.append(float(dt) * 1000.0)
    row = {"median_ms": statistics.median(times), "min_ms": min(times), "heavy_modules": heavy.strip()}
    heavy = row["heavy_modules"] or "none"
    print(f"  import guardrail: median {row['median_ms']:.0f} ms (min {row['min_ms']:.0f} ms); heavy modules: {heavy}")
    return row


def peak_rss(folder: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", "--model", str(folder)],
        capture_output=True, text=True, check=True, cwd=ROOT, env=_env(),
    )  # fmt: skip
    base, short, full = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
    print(
        f"  peak RSS: {base:.0f} MB before loading the model, {short:.0f} MB with it loaded and checks up to "
        f"256 tokens, {full:.0f} MB after checks up to 4,096 tokens"
    )
    return {"import_rss_mb": base, "peak_rss_mb_to_256_tokens": short, "peak_rss_mb": full}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _peak_mb() -> float:
    """This process's peak RSS. ru_maxrss (KiB on Linux) survives fork+exec, so a child of a big
    parent would report the parent's peak; VmHWM belongs to the new address space: take the smaller."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
        peak = min(peak, int(hwm.split()[1]) / 1024.0)
    except (OSError, StopIteration):
        pass
    return peak


def rss_child(folder: Path) -> None:
    import guardrail
    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.evaluation.evaluator import quiet_audit

    quiet_audit()
    marks = [_peak_mb()]
    clf = OnnxClassifier(folder)
    guard = guardrail.Guard(_policy(folder), classifiers=clf)
    clf._load()
    for limit in (256, 4096):
        for n in (x for x in LENGTHS if x <= limit and (limit == 256 or x > 256)):
            for t in make_texts(clf._tokenizer, n, 3, seed=n):
                guard.check_input(t)
                guard.check_output(t, prompt="Summarise this.")
        marks.append(_peak_mb())
    print(" ".join(f"{m:.1f}" for m in marks))


def _policy(folder: Path) -> Any:
    from guardrail.evaluation.evaluator import with_model

    return with_model("default", folder).model_copy(update={"timeout_ms": 120_000})


def machine() -> str:
    import platform

    import onnxruntime

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} CPUs, load avg {load:.1f}; Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (under a minute)")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: min(2, CPUs))")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    folder = model_dir(args.model)
    if not (folder / "model.onnx").exists():
        print(f"no model at {folder}: train one (guardrail train) or pass --model PATH", file=sys.stderr)
        return 2
    if args.rss_child:
        rss_child(folder)
        return 0

    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.engine import Guard
    from guardrail.evaluation.evaluator import quiet_audit

    quiet_audit()
    threads = args.threads or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    results: dict[str, Any] = {"model": str(folder), "machine": machine(), "threads": threads, "quick": args.quick}
    print(f"model {folder}\nmachine: {results['machine']}; {threads} onnxruntime threads\n")
    clf = OnnxClassifier(folder, threads=threads, cache_size=0)  # every check must reach the model
    clf.warmup()
    bare = Bare(clf)
    tok = clf._tokenizer
    with Guard(_policy(folder), classifiers=clf) as guard:
        print("single checks (sequential), guard vs bare forward pass of the same windows:")
        results["single"] = single_checks(guard, bare, tok, args.quick)
        print("\nbatched throughput, OnnxClassifier.predict vs bare session:")
        results["batched"] = batched(clf, bare, tok, args.quick)
        print("\nconcurrency:")
        results["concurrent"] = concurrent(guard, tok)
        print("\nstreaming, delay added before the first released text:")
        results["streaming"] = streaming(guard, args.quick)
    print("\nprocess:")
    results["import"] = import_time(3 if args.quick else 7)
    results["memory"] = peak_rss(folder)
    results["seconds"] = time.perf_counter() - started
    print(f"\ndone in {results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
