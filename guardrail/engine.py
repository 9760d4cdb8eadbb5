"""Guard: check prompts and completions against a policy.

One decision core, two thin drivers (tenacity's ``BaseRetrying.iter()`` is the model):

    _prepare(stage, payload)  -> _Pending   pure: snapshot the policy, extract and normalise texts,
                                            decide early what needs no classifier (empty, oversized)
    _score(pending)           -> scores     the only slow part: classifiers + PII patterns
    _finish(pending, outcome) -> Decision   pure: rules or fail mode, audit event

``check_*`` run ``_score`` on a small bounded pool and wait with the policy's time-out;
``acheck_*`` await the same future (after copying contextvars) so the event loop never runs an
inference. There is no second copy of any rule.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from guardrail import audit, metrics
from guardrail.classifiers.base import Classifier
from guardrail.classifiers.patterns import Span, find_entities
from guardrail.decision import Action, Decision, Finding, RuleAction
from guardrail.errors import ClassifierError, GuardrailError, PolicyError
from guardrail.language import dominant_script
from guardrail.messages import Extracted, extract, replace_texts, scoring_form
from guardrail.policy import Policy, PolicyReloader, Rule, load_policy
from guardrail.rules import evaluate
from guardrail.taxonomy import Stage

if TYPE_CHECKING:
    from guardrail.classifiers.onnx import OnnxClassifier

__all__ = ["Guard"]

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy | None
UNSUPPORTED = "unsupported_language"  # the finding for text in a script the model was not measured on


@dataclass(slots=True)
class _Pending:
    stage: Stage
    policy: Policy
    started: float
    original: str  # the text the decision is about (last scanned text), for audit
    texts: tuple[str, ...] = ()
    prompt: str | None = None
    extracted: Extracted | None = None
    payload: Any = None
    early: Decision | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Scores:
    scores: dict[str, float]
    spans: tuple[tuple[Span, ...], ...]


_shared_classifiers: dict[str, OnnxClassifier] = {}
_by_model_name: dict[str, OnnxClassifier] = {}
_shared_lock = threading.Lock()


def _model_classifier(model: str) -> Classifier:
    """One OnnxClassifier per model folder per process: reloading a policy never reloads the model."""
    clf = _by_model_name.get(model)  # the hot path: no filesystem call per check
    if clf is not None:
        return clf
    from guardrail.classifiers.onnx import OnnxClassifier, resolve_model_dir

    folder = resolve_model_dir(model)
    key = str(folder.resolve())
    with _shared_lock:
        clf = _shared_classifiers.get(key)
        if clf is None:
            if not (folder / "model.onnx").exists():
                raise ClassifierError(
                    f"no model installed at {folder} (policy model {model!r}); pass classifiers=... or "
                    "point the policy's `model:` at a model folder",
                    classifier="onnx",
                )
            clf = _shared_classifiers[key] = OnnxClassifier(folder)
        _by_model_name[model] = clf
        return clf


class Guard:
    """Checks traffic against a policy; thread-safe, and cheap to share across an application.

    ``policy``: ``None``/``"default"`` and the other bundled names, a YAML path, a mapping, or a
    ``Policy``. ``classifiers``: the classifiers to use instead of the policy's model (tests use
    ``guardrail.testing.FakeClassifier``). ``reload=True`` re-reads the policy file when it changes
    (checked at most every ``reload_interval`` seconds, on use; a broken edit keeps the last good
    policy). ``on_decision`` is called with every Decision (after the audit event).
    """

    def __init__(
        self,
        policy: PolicySource = None,
        classifiers: Classifier | Sequence[Classifier] | None = None,
        *,
        reload: bool = False,
        reload_interval: float = 0.5,
        max_workers: int = 4,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self._reloader: PolicyReloader | None = None
        if reload:
            if not isinstance(policy, (str, os.PathLike)):
                raise PolicyError("reload=True needs a policy file path", field="policy")
            self._reloader = PolicyReloader(policy, interval=reload_interval)
            self._static = self._reloader.current()
        else:
            self._static = load_policy(policy)
        if classifiers is None:
            self._fixed: tuple[Classifier, ...] | None = None
            # fail at construction, not on the first request; and load the session now so the first
            # request is not charged the model load (which would exceed a 250 ms time-out)
            clf = _model_classifier(self._static.model)
            warm = getattr(clf, "warmup", None)
            if callable(warm):
                warm()
        else:
            self._fixed = (classifiers,) if isinstance(classifiers, Classifier) else tuple(classifiers)
        self._check_coverage(self._static)
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="guardrail")
        self._on_decision = on_decision

    # -- policy and classifiers ---------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The policy in force now (a snapshot; a reload swaps it atomically)."""
        if self._reloader is None:
            return self._static
        current = self._reloader.current()
        if current is not self._static:
            try:
                self._check_coverage(current)
                self._static = current
            except GuardrailError:
                pass  # the reloader logged why; keep enforcing the last good policy
        return self._static

    def classifiers(self, policy: Policy | None = None) -> tuple[Classifier, ...]:
        if self._fixed is not None:
            return self._fixed
        return (_model_classifier((policy or self.policy).model),)

    def _check_coverage(self, policy: Policy) -> None:
        """Every category a policy enforces must be scored by some classifier (fail closed on typos)."""
        labels: set[str] = set()
        for clf in self.classifiers(policy):
            labels |= set(clf.labels)
        for stage_name, rules in (("input", policy.input.rules), ("output", policy.output.rules)):
            for i, rule in enumerate(rules):
                if rule.action is not RuleAction.REDACT and not rule.is_match and rule.category not in labels:
                    raise PolicyError(
                        f"category {rule.category!r} is not scored by the classifier(s) "
                        f"{', '.join(c.name for c in self.classifiers(policy))}",
                        file=policy.source,
                        field=f"{stage_name}.rules[{i}].category",
                    )

    # -- the core ------------------------------------------------------------------------------

    def _prepare(self, stage: Stage, payload: Any, prompt: Any = None) -> _Pending:
        policy = self.policy
        started = time.perf_counter()
        pending = _Pending(stage, policy, started, "")
        if stage == "input":
            ex = extract(payload, policy.input.scope)
            pending.extracted, pending.payload = ex, payload
            pending.notes += [f"skipped non-text part: {s}" for s in ex.skipped]
            texts = ex.texts
        else:
            # a completion given as messages is checked whole (the input scope would pick no assistant turn)
            texts = extract(payload, "all").texts if payload is not None else ("",)
            if prompt is not None:
                p = extract(prompt, "last_user").texts
                pending.prompt = p[-1] if p else None
        pending.texts = texts
        pending.original = texts[-1] if texts else ""
        total = sum(len(t) for t in texts)
        if not any(t.strip() for t in texts):
            pending.early = self._decision(pending, Action.ALLOW, {}, (), texts, note="empty")
        elif total > policy.max_chars:
            why = f"text of {total} characters exceeds the policy's max_chars ({policy.max_chars})"
            pending.early = self._fail(pending, why)
        return pending

    def _score(self, pending: _Pending) -> _Scores:
        policy = pending.policy
        rules = policy.input.rules if pending.stage == "input" else policy.output.rules
        found = tuple(tuple(find_entities(t)) for t in pending.texts)
        scan = [scoring_form(t, ss) for t, ss in zip(pending.texts, found, strict=True)]
        merged: dict[str, float] = {}
        if any(r.action is not RuleAction.REDACT for r in rules):
            prompt = None if pending.prompt is None else scoring_form(pending.prompt)
            prompts = None if pending.stage == "input" else [prompt] * len(scan)
            for clf in self.classifiers(policy):
                try:
                    t0 = time.perf_counter()
                    results = clf.predict(scan, stage=pending.stage, prompts=prompts)
                    metrics.observe_classifier(clf.name, pending.stage, time.perf_counter() - t0, len(scan))
                except ClassifierError:
                    raise
                except Exception as exc:
                    raise ClassifierError(f"{type(exc).__name__}: {exc}", classifier=clf.name) from exc
                if len(results) != len(scan):
                    raise ClassifierError(f"returned {len(results)} results for {len(scan)} texts", classifier=clf.name)
                for res in results:
                    for k, v in res.items():
                        if not 0.0 <= v <= 1.0 or v != v:
                            raise ClassifierError(f"score {k}={v!r} is not a probability", classifier=clf.name)
                        if v > merged.get(k, -1.0):
                            merged[k] = float(v)
        entities: set[str] = set()
        for r in rules:
            if r.action is RuleAction.REDACT:
                entities |= set(r.entities or ())
        spans = tuple(tuple(x for x in ss if x.entity in entities) for ss in found)
        return _Scores(merged, spans)

    def _finish(self, pending: _Pending, outcome: _Scores | BaseException) -> Decision:
        if isinstance(outcome, BaseException):
            if isinstance(outcome, (TimeoutError, cf.TimeoutError, asyncio.TimeoutError)):
                why = f"classifier timed out after {pending.policy.timeout_ms} ms"
            else:
                why = f"classifier failed: {outcome}"
            return self._fail(pending, why)
        policy = pending.policy
        rules: Sequence[Any] = policy.input.rules if pending.stage == "input" else policy.output.rules
        scores = outcome.scores
        script = self._unsupported_script(pending)
        if script is not None:
            # text the model was never measured on: the policy's documented handling, as one more rule
            ul = policy.unsupported_language
            action = RuleAction.BLOCK if ul.action == "block" else RuleAction.LOG
            rule = Rule.model_construct(
                category=UNSUPPORTED, threshold=1.0, action=action, message=ul.message, mode="enforce",
                entities=None, requires=None,
            )  # fmt: skip
            kept = {} if ul.action == "allow" else scores
            rules = [*rules, rule]
            scores = {**kept, UNSUPPORTED: 1.0}
        verdict = evaluate(
            rules,
            scores,
            pending.texts,
            outcome.spans,
            shadow_all=policy.mode == "shadow",
            block_message=policy.on_block.message,
        )
        if script is not None:
            named = tuple(replace(f, entities=(script,)) if f.category == UNSUPPORTED else f for f in verdict.findings)
            verdict = replace(verdict, findings=named)
            scores = {**outcome.scores, UNSUPPORTED: 1.0}
        return self._decision(
            pending,
            verdict.action,
            scores,
            verdict.findings,
            verdict.texts,
            verdict.message,
            verdict.redactions,
        )

    def _unsupported_script(self, pending: _Pending) -> str | None:
        """The first script among the texts that a classifier declares it was not measured on, if any."""
        declared = [getattr(c, "scripts", None) for c in self.classifiers(pending.policy)]
        if not declared or any(d is None for d in declared):
            return None
        supported = frozenset().union(*[d for d in declared if d is not None])
        for text in pending.texts:
            script = dominant_script(text)
            if script is not None and script not in supported:
                return script
        return None

    def _fail(self, pending: _Pending, why: str) -> Decision:
        """The policy's fail mode decides: closed blocks, open lets the text through and logs."""
        closed = pending.policy.fail_mode == "closed"
        action = Action.BLOCK if closed else Action.LOG
        msg = pending.policy.on_block.message if closed else None
        texts = ((msg,) if closed and msg is not None else pending.texts) or ("",)
        return self._decision(pending, action, {}, (), texts, msg, error=why)

    def _decision(
        self,
        pending: _Pending,
        action: Action,
        scores: Mapping[str, float],
        findings: tuple[Finding, ...],
        texts: Sequence[str],
        message: str | None = None,
        redactions: Mapping[str, str] | None = None,
        *,
        error: str | None = None,
        note: str | None = None,
    ) -> Decision:
        messages = None
        ex = pending.extracted
        if ex is not None and ex.is_messages and action is Action.REWRITE:
            messages = tuple(replace_texts(pending.payload, ex, texts))
        policy = pending.policy
        decision = Decision(
            id=uuid.uuid4().hex,
            action=action,
            stage=pending.stage,
            text=texts[-1] if texts else "",
            scores=dict(scores),
            findings=findings,
            policy=policy.name,
            policy_hash=policy.hash,
            latency_ms=(time.perf_counter() - pending.started) * 1000.0,
            error=error,
            message=message,
            redactions=dict(redactions or {}),
            messages=messages,
        )
        extra = {"notes": pending.notes + ([note] if note else [])} if (pending.notes or note) else None
        audit.emit(decision, pending.original, policy.audit.log_text, extra=extra)
        metrics.observe_decision(decision)
        if self._on_decision is not None:
            self._on_decision(decision)
        return decision

    # -- drivers --------------------------------------------------------------------------------

    def _run_sync(self, pending: _Pending) -> Decision:
        if pending.early is not None:
            return pending.early
        future = self._pool.submit(self._score, pending)
        try:
            outcome: _Scores | BaseException = future.result(timeout=pending.policy.timeout_ms / 1000.0)
        except BaseException as exc:  # time-out or classifier failure: the fail mode decides
            if not isinstance(exc, Exception):
                raise
            outcome = exc
        return self._finish(pending, outcome)

    async def _run_async(self, pending: _Pending) -> Decision:
        if pending.early is not None:
            return pending.early
        ctx = contextvars.copy_context()
        future = self._pool.submit(ctx.run, self._score, pending)
        try:
            outcome: _Scores | BaseException = await asyncio.wait_for(
                asyncio.wrap_future(future), pending.policy.timeout_ms / 1000.0
            )
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            outcome = exc
        return self._finish(pending, outcome)

    def check_input(self, payload: Any) -> Decision:
        """Check a prompt: a string, bytes, or chat messages (the policy's ``input.scope`` picks which)."""
        return self._run_sync(self._prepare("input", payload))

    def check_output(self, text: Any, prompt: Any = None) -> Decision:
        """Check a completion, judged in the context of its ``prompt`` (a string or messages)."""
        return self._run_sync(self._prepare("output", text, prompt))

    async def acheck_input(self, payload: Any) -> Decision:
        return await self._run_async(self._prepare("input", payload))

    async def acheck_output(self, text: Any, prompt: Any = None) -> Decision:
        return await self._run_async(self._prepare("output", text, prompt))

    # -- integrations ---------------------------------------------------------------------------

    def protect(self, fn: Any = None, *, prompt_arg: str | None = None) -> Any:
        """Decorator for your own LLM-calling function (sync, async or async generator)."""
        from guardrail.protect import protect

        return protect(self, fn, prompt_arg=prompt_arg)

    def wrap(self, client: Any, *, restore: bool = False) -> Any:
        """The same client, guarded: ``openai.OpenAI``/``AsyncOpenAI`` or the ``litellm`` module.
        ``restore=True`` maps redaction placeholders in answers back to the caller's original values."""
        from guardrail.adapters import wrap

        return wrap(self, client, restore=restore)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
