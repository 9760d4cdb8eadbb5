"""The bundled safety classifier at run time: tokenizers + onnxruntime, nothing heavier.

A model folder holds ``model.onnx`` (int8), ``tokenizer.json``, ``labels.json`` (heads, stages,
per-head Platt calibration and default thresholds) and ``MODEL_CARD.md``. The session is created on
first use, under a lock, so ``import guardrail`` and ``Guard()`` stay cheap and several threads may
share one classifier (an onnxruntime session is safe to call concurrently).

Cost is bounded three ways: padding only to the longest window of a sub-batch, sub-batches of at
most ``max_batch_tokens`` tokens, and a cap on windows per text (``EncodingConfig.max_windows``).
A sub-batch holds one text's windows only, so a text scores the same alone or beside others
(``guardrail.classifiers.runs`` says why, and how runs share the cores).
Measured on a 3,000-token text (4-layer model, 2 threads): sub-batches of 4,096 tokens peaked at
293 MB RSS and took 188 ms; 1,024 tokens peaked at 146 MB and took 138 ms (smaller batches stay
in cache), so 1,024 is the default. Repeated texts
(system prompts, earlier turns re-sent with every request) hit a small LRU cache.

Robustness: text the tokenizer cannot take (a lone surrogate, valid in JSON, made it raise, and
under ``fail_mode: open`` that was a universal bypass) is sanitised here as well as in the engine;
``reset()`` terminates running inferences and replaces the session (the scheduler's watchdog calls
it on a hang); ``warmup()`` measures this machine's speed (``check_ms``, ``speed_scale``) so that
time budgets can scale with it (the same check takes 3 ms on one machine kind and 18 on another).
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.classifiers.cpu import int8_saturates
from guardrail.classifiers.encoding import Window, encode_windows, pad_batch
from guardrail.classifiers.model_info import LabelInfo, ModelInfo
from guardrail.classifiers.runs import (
    Helper,
    fan_out,
    new_session,
    plan_runs,
    run_tokens,
    sharing_pair,
    worth_fanning_out,
)
from guardrail.errors import ClassifierError
from guardrail.taxonomy import Stage

__all__ = [
    "REFERENCE_CHECK_MS",
    "LabelInfo",
    "ModelInfo",
    "OnnxClassifier",
    "bundled_model_dir",
    "resolve_model_dir",
    "sanitize",
]

# One 64-token input check on the reference machine (Xeon with AVX-512 VNNI, 2 threads, idle):
# policies' time budgets are written for it and scaled by ``speed_scale`` elsewhere.
REFERENCE_CHECK_MS = 3.0
_SURROGATE = re.compile("[\ud800-\udfff]")
_WARM_TEXT = (
    "Could you explain, in a few short paragraphs, how photosynthesis turns sunlight, water and carbon "
    "dioxide into sugar and oxygen, and why leaves are green? An example for a child would help a lot."
)


def sanitize(text: str) -> str:
    """A text every tokenizer takes: lone surrogates (valid in JSON and in a Python str, not in UTF-8)
    become U+FFFD. Nothing else is changed, so offsets stay the same."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def bundled_model_dir(name: str = "default") -> Path:
    return Path(__file__).resolve().parent.parent / "models" / name


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """A bundled model name (``default``) or a path to a model folder."""
    p = Path(model)
    if isinstance(model, str) and os.sep not in model and "/" not in model and not p.exists():
        return bundled_model_dir(model)
    return p


class OnnxClassifier:
    """Scores texts with a model folder; see the module docstring for the cost bounds."""

    def __init__(
        self,
        model: str | os.PathLike[str] = "default",
        *,
        threads: int | None = None,
        spinning: bool = True,
        max_batch_tokens: int = 1024,
        cache_size: int = 2048,
    ) -> None:
        self.folder = resolve_model_dir(model)
        self.info = ModelInfo.load(self.folder)
        self.name = f"onnx:{self.info.name}"
        self._threads = threads
        self._spinning = spinning
        self._max_batch_tokens = max_batch_tokens
        self._session: Any = None
        self._fan: Any = None  # the single-threaded session that calls with several texts share out
        self._helper: Helper | None = None  # the thread that takes a share of those texts' runs
        self._close_helper: weakref.finalize[Any, Any] | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str | None, str], dict[str, float]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._active: dict[Any, int] = {}  # RunOptions of inferences in progress -> the thread running each
        self._stopped: set[int] = set()  # threads told to stop (interrupt): their next session run is refused
        self._active_lock = threading.Lock()
        self.check_ms: float | None = None  # one 64-token check on this machine, measured by warmup()
        self.resets = 0
        self._sigmoid = [lab for lab in self.info.labels if lab.kind == "sigmoid"]
        self._softmax = [lab for lab in self.info.labels if lab.kind == "softmax"]

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(lab.id for lab in self.info.labels)

    def stage_labels(self, stage: Stage) -> frozenset[str]:
        """The labels ``predict`` returns on ``stage`` (a policy rule on another is a load-time error)."""
        return frozenset(lab.id for lab in self.info.for_stage(stage))

    @property
    def context_reading(self) -> tuple[float, float] | None:
        """(gate, threshold) for reading a text with its system prompt, chosen on dev for this model; None when its
        folder does not say (see ``guardrail._context``)."""
        return self.info.context_reading

    @property
    def scripts(self) -> frozenset[str] | None:
        """The scripts (guardrail.language names) the model was measured on; None when its folder does not say."""
        return self.info.scripts

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                tok.no_padding()
                tok.no_truncation()
                model = (self.folder / "model.onnx").read_bytes()  # both sessions from the same bytes
                threads = self._threads or min(2, os.cpu_count() or 1)
                session = new_session(model, threads, self._spinning)
            except Exception as exc:  # a missing or corrupt model is a classifier failure, not a crash
                raise ClassifierError(f"cannot load model from {self.folder}: {exc}", classifier=self.name) from exc
            self._tokenizer = tok
            # texts of one call share the two cores (guardrail.classifiers.runs); another thread count keeps one
            # session for everything
            self._fan, self._helper = (
                sharing_pair(model, self._spinning, str(self.folder)) if threads == 2 else (None, None)
            )
            # a dropped classifier lets its helper thread go; reset() closes it through the same finalizer
            self._close_helper = weakref.finalize(self, self._helper.close) if self._helper is not None else None
            self._session = session  # last: a call that sees it sees the rest of this load
            if self.info.weight_bits > 7 and int8_saturates():
                import structlog

                structlog.get_logger("guardrail").warning(
                    "model_weights_saturate_on_this_cpu",
                    model=str(self.folder),
                    why="8-bit int8 weights on a CPU without VNNI: onnxruntime's int8 kernel saturates here, so "
                    "scores differ from those the thresholds were calibrated on",
                    fix="if its weights are 8-bit int8 (a folder exported before 7-bit weights), narrow them: "
                    "python -m guardrail.training.int8 OLD_FOLDER NEW_FOLDER (needs the [train] extra's onnx)",
                )

    def warmup(self) -> None:
        """Load the session, run a few inferences (first-call latency otherwise lands on a user) and
        measure ``check_ms``: the median of five uncached 64-token checks."""
        self.predict(["warm up"])
        self.raw_logits([_WARM_TEXT, _WARM_TEXT])  # two even runs fan out: the second session and the helper too
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            self.raw_logits([_WARM_TEXT])
            times.append(time.perf_counter() - t0)
        self.check_ms = statistics.median(times) * 1000.0

    @property
    def speed_scale(self) -> float:
        """How much slower than the reference machine this one ran at warm-up (never below 1)."""
        if self.check_ms is None:
            return 1.0
        return max(1.0, self.check_ms / REFERENCE_CHECK_MS)

    def reset(self) -> None:
        """Terminate inferences in progress and drop the session; the next call loads a fresh one.
        The scheduler's watchdog calls this when an inference hangs."""
        with self._lock, self._active_lock:
            for ro in self._active:
                ro.terminate = True
            self._session = None
            self._fan = None
            if self._close_helper is not None:  # exits after the run it may be stuck in; the next load starts another
                self._close_helper()
            self._helper = self._close_helper = None
            self.resets += 1

    def interrupt(self, thread: int) -> None:
        """Stop the ``predict`` that ``thread`` is in; the session stays. The scheduler calls this when a
        check it let run in the caller's thread reaches its deadline (``ClassifierError`` there). Sticky
        until ``resume(thread)``: a stop that lands while it tokenises, loads the session or sits between
        two sub-batches refuses its next session run."""
        with self._active_lock:
            self._stopped.add(thread)
            for ro, owner in self._active.items():
                if owner == thread:
                    ro.terminate = True

    def resume(self, thread: int) -> None:
        """Let ``thread`` run inferences again after ``interrupt``. The scheduler calls it, under its own
        lock, before and after each run it lets a caller's thread make, so a stop covers exactly one run."""
        with self._active_lock:
            self._stopped.discard(thread)

    # -- scoring ------------------------------------------------------------------------------

    def raw_logits(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Uncalibrated logits per text, aggregated over windows (max for sigmoid heads, mean for the
        response-class group): the scores the calibration was fitted on."""
        if self._session is None:
            self._load()
        texts = [sanitize(t) for t in texts]
        prompts = None if prompts is None else [None if p is None else sanitize(p) for p in prompts]
        # an input text's "prompt" is its context (the system prompt, when a policy passes it); an output
        # text always has one, empty when unknown
        if stage == "output" and prompts is None:
            prompts = [""] * len(texts)
        windows = encode_windows(self._tokenizer, texts, prompts, self.info.encoding, context=stage == "input")
        logits = self._run(windows)
        n_out = logits.shape[1] if len(windows) else len(self.info.labels)
        out = np.full((len(texts), n_out), -np.inf, dtype=np.float32)
        sums = np.zeros((len(texts), n_out), dtype=np.float32)
        counts = np.zeros(len(texts), dtype=np.float32)
        for w, row in zip(windows, logits, strict=True):
            out[w.item] = np.maximum(out[w.item], row)
            sums[w.item] += row
            counts[w.item] += 1
        soft = [lab.index for lab in self._softmax]
        if soft:
            out[:, soft] = sums[:, soft] / np.maximum(counts, 1)[:, None]
        return out

    def _run(self, windows: Sequence[Window]) -> np.ndarray:
        if not windows:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        import onnxruntime as ort

        resets = self.resets  # read before the session: a reset after this is caught between runs below
        session = self._session
        if session is None:  # reset() between raw_logits and here
            self._load()
            session = self._session
        runs = self._runs(windows)
        fan, helper = (self._fan, self._helper) if worth_fanning_out(runs, windows) else (None, None)
        me = threading.get_ident()  # the caller: interrupt(me) stops its runs on either thread
        outputs: dict[int, np.ndarray] = {}  # run number -> its logits (the model's own width)

        def run(k: int, sess: Any) -> None:
            idx = runs[k]
            b = pad_batch([windows[i] for i in idx], self.info.encoding.pad_id)
            ro = ort.RunOptions()
            with self._active_lock:
                if me in self._stopped:
                    raise ClassifierError("inference failed: terminated (deadline)", classifier=self.name)
                if self.resets != resets:  # reset() landed between two runs: its items have been failed
                    raise ClassifierError("inference failed: terminated (reset)", classifier=self.name)
                self._active[ro] = me
            try:
                (logits,) = sess.run(
                    ["logits"],
                    {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids},
                    ro,
                )
            except Exception as exc:
                why = "terminated (reset or deadline)" if ro.terminate else type(exc).__name__
                raise ClassifierError(f"inference failed: {why}", classifier=self.name) from exc
            finally:
                with self._active_lock:
                    self._active.pop(ro, None)
            outputs[k] = logits

        if fan is None:
            for k in range(len(runs)):
                run(k, session)
        else:  # the largest runs first, so the two threads end together
            order = sorted(range(len(runs)), key=lambda k: -run_tokens(runs[k], windows))
            fan_out(order, lambda k: run(k, fan), helper)
        result = np.zeros((len(windows), outputs[0].shape[1]), dtype=np.float32)
        for k, idx in enumerate(runs):
            result[idx] = outputs[k]
        return result

    def _fan_session(self) -> Any:
        """The single-threaded session that calls with several texts share out (None: they run one by one)."""
        if self._session is None:
            self._load()
        return self._fan

    def _runs(self, windows: Sequence[Window]) -> list[list[int]]:
        """The session runs for ``windows`` (:func:`guardrail.classifiers.runs.plan_runs`)."""
        return plan_runs(windows, self._max_batch_tokens)

    def calibrate(self, logits: np.ndarray, stage: Stage) -> list[dict[str, float]]:
        labels = self.info.for_stage(stage)
        sig = [lab for lab in labels if lab.kind == "sigmoid"]
        soft = [lab for lab in labels if lab.kind == "softmax"]
        out: list[dict[str, float]] = [{} for _ in range(len(logits))]
        if sig:
            idx = np.array([lab.index for lab in sig])
            a = np.array([lab.a for lab in sig], dtype=np.float32)
            b = np.array([lab.b for lab in sig], dtype=np.float32)
            p = 1.0 / (1.0 + np.exp(-np.clip(logits[:, idx] * a + b, -40, 40)))
            for r in range(len(logits)):
                out[r].update(zip((lab.id for lab in sig), p[r].tolist(), strict=True))
        if soft:
            z = logits[:, [lab.index for lab in soft]]
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
            for r in range(len(logits)):
                out[r].update(zip((lab.id for lab in soft), z[r].tolist(), strict=True))
        return out

    def predict(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        """Calibrated probabilities of every head scored on ``stage``, one dict per text."""
        texts = [sanitize(t) for t in texts]
        results: list[dict[str, float] | None] = [None] * len(texts)
        todo: list[int] = []
        keys: list[tuple[str, str | None, str]] = []
        with self._cache_lock:
            for i, t in enumerate(texts):
                p = None if prompts is None else prompts[i]
                key = (stage, p[-2000:] if p else p, t)
                keys.append(key)
                hit = self._cache.get(key) if len(t) <= 20_000 else None
                if hit is not None:
                    self._cache.move_to_end(key)
                    results[i] = hit
                else:
                    todo.append(i)
        if todo:
            sub_prompts = None if prompts is None else [prompts[i] for i in todo]
            scores = self.calibrate(self.raw_logits([texts[i] for i in todo], stage=stage, prompts=sub_prompts), stage)
            with self._cache_lock:
                for i, s in zip(todo, scores, strict=True):
                    results[i] = s
                    if len(texts[i]) <= 20_000:
                        self._cache[keys[i]] = s
                        if len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        return [dict(r) for r in results if r is not None]
