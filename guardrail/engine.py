"""Guard: check prompts and completions against a policy.

One decision core, two thin drivers (tenacity's ``BaseRetrying.iter()`` is the model):

    _prepare(stage, payload)  -> Pending    pure: snapshot the policy, extract texts (roles, context),
                                            decide early what needs no classifier (empty, too long)
    _plan(pending)            -> Plan       cheap and pure: PII spans, the scoring forms of every text
                                            (normalised, decoded evasions, joined where cut into parts:
                                            guardrail._readings), the deadline
    (scheduler)                             the only slow part: every classifier's ``predict`` runs on
                                            its scheduler's one inference worker, batched with other
                                            checks; work past its deadline is dropped unrun
    _merge(pending, plan, results) -> scores  validate (a missing category, NaN or out-of-range
                                            score is ``invalid_scores``, never an allow) and merge
    _finish(pending, outcome) -> Decision   pure: rules or fail mode (with an error kind), audit event

``check_*`` wait on the scheduler's futures until the deadline; ``acheck_*`` await the same futures,
so the event loop never runs an inference. There is no second copy of any rule. The steps that need
no Guard state live in :mod:`guardrail._decide`; the process-wide model sessions and schedulers in
:mod:`guardrail._shared_models`.

The deadline is the policy's ``timeout_ms`` plus ``timeout_per_1k_tokens_ms`` per 1,000 estimated
tokens, multiplied by the scheduler's ``speed_scale()`` (the warm-up check time over the reference
machine's 3 ms, stretched up to 8 times while competing work slows inference): one policy means the
same on a fast and a slow machine, and a long document gets the time its length needs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guardrail import audit, metrics
from guardrail._coverage import check_coverage
from guardrail._decide import (
    Pending,
    Plan,
    Scores,
    aligned,
    context_plan,
    failure_kind,
    merge_scores,
    new_decision,
    prepare,
    verdict,
    with_context,
)
from guardrail._readings import plan_readings
from guardrail._shared_models import model_classifier, shared_scheduler
from guardrail._waiting import wait_async, wait_sync
from guardrail.classifiers.base import Classifier
from guardrail.decision import Action, Decision, Finding, RuleAction
from guardrail.errors import PolicyError
from guardrail.policy import Policy, load_policy
from guardrail.policy_reload import PolicyReloader
from guardrail.routing import RoutingContext
from guardrail.scheduler import Scheduler, estimate_tokens
from guardrail.taxonomy import Stage

__all__ = ["Guard"]

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy | None
_model_classifier = model_classifier  # the name guardrail.ensemble_policy (and its tests) import from here
_ASYNC_INLINE_CHARS = 20_000  # longer texts are prepared off the event loop


class Guard:
    """Checks traffic against a policy; thread-safe, and cheap to share across an application.

    ``policy``: ``None``/``"default"`` and the other bundled names, a YAML path, a mapping, or a
    ``Policy``. ``classifiers``: the classifiers to use instead of the policy's model (tests use
    ``guardrail.testing.FakeClassifier``). ``reload=True`` re-reads the policy file when it changes
    (checked at most every ``reload_interval`` seconds, on use; a broken edit keeps the last good
    policy). ``on_decision`` is called with every Decision (after the audit event).
    ``scheduler`` options (``max_batch``, ``max_batch_tokens``, ``max_wait_ms``, ``max_queue``,
    ``hang_after``) apply to the schedulers of the classifiers passed here; the bundled model's
    scheduler is shared by every Guard in the process. ``max_workers`` bounds the threads that
    prepare very long texts for async callers.
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
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        self._reloader: PolicyReloader | None = None
        if reload:
            if not isinstance(policy, (str, os.PathLike)):
                raise PolicyError("reload=True needs a policy file path", field="policy")
            self._reloader = PolicyReloader(policy, interval=reload_interval)
            self._static = self._reloader.current()
        else:
            self._static = load_policy(policy)
        self._own: dict[int, Scheduler] = {}
        if classifiers is None:
            self._fixed: tuple[Classifier, ...] | None = None
            # fail at construction, not on the first request; load the session now so the first request
            # is not charged the model load, and measure this machine's speed for the budgets
            clf = _model_classifier(self._static.model)
            warm = getattr(clf, "warmup", None)
            if callable(warm) and getattr(clf, "check_ms", 0) is None:
                warm()
        else:
            self._fixed = (classifiers,) if isinstance(classifiers, Classifier) else tuple(classifiers)
            for c in self._fixed:
                self._own[id(c)] = Scheduler(c, **dict(scheduler or {}))
        self._check_coverage(self._static)
        if self._reloader is not None:
            self._reloader.accept = self._check_coverage
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="guardrail")
        self._on_decision = on_decision

    # -- policy and classifiers ---------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The policy in force now (a snapshot; a reload swaps it atomically)."""
        if self._reloader is None:
            return self._static
        self._static = self._reloader.current()  # only versions _check_coverage accepted (the reloader's accept)
        return self._static

    def classifiers(self, policy: Policy | None = None) -> tuple[Classifier, ...]:
        if self._fixed is not None:
            return self._fixed
        p = policy or self.policy
        if p.classifiers is not None:  # the policy names its experts: an ensemble (guardrail.ensemble_policy)
            from guardrail.ensemble_policy import policy_classifier

            return (policy_classifier(p),)
        return (_model_classifier(p.model),)

    def _scheduler(self, clf: Classifier) -> Scheduler:
        return self._own.get(id(clf)) or shared_scheduler(clf)

    def _check_coverage(self, policy: Policy) -> None:
        check_coverage(policy, self.classifiers)  # fail closed at load time (guardrail._decide)

    # -- the core ------------------------------------------------------------------------------

    def _prepare(
        self, stage: Stage, payload: Any, prompt: Any = None, policy: Policy | None = None, ctx: RoutingContext = None
    ) -> Pending:
        policy = policy or self.policy  # a call that pinned a snapshot keeps it across a hot reload
        pending = prepare(stage, payload, prompt, policy, ctx)  # the texts to check, and the context (audit)
        texts = pending.texts
        said = [e.text for e in pending.extra if not e.joined]  # a name, an answer's tool calls: read besides
        total = sum(len(t) for t in texts) + sum(len(t) for t in said)
        if not any(t.strip() for t in (*texts, *said)):
            pending.early = self._decision(pending, Action.ALLOW, {}, (), texts, note="empty")
        elif total > policy.max_chars:
            why = f"text of {total} characters exceeds the policy's max_chars ({policy.max_chars})"
            pending.early = self._fail(pending, why, "too_long")
        return pending

    def _plan(self, pending: Pending) -> Plan:
        return plan_readings(pending, self._deadline)  # every reading, and the budget they need (guardrail._readings)

    def _deadline(self, pending: Pending, tokens: int) -> tuple[float, float]:
        """The check's deadline (``time.monotonic()``) and budget in ms for about ``tokens`` tokens."""
        policy = pending.policy
        scale = max((self._scheduler(c).speed_scale() for c in self.classifiers(policy)), default=1.0)
        budget_ms = (policy.timeout_ms + policy.timeout_per_1k_tokens_ms * tokens / 1000.0) * max(1.0, scale)
        return pending.started_mono + budget_ms / 1000.0, budget_ms

    def _admit(self, pending: Pending) -> None:
        """Shed a check before preparing it (normalising, finding PII) when its scheduler would refuse it
        anyway: under a flood, refusing costs next to nothing."""
        if all(r.action is RuleAction.REDACT for r in pending.policy.rules(pending.stage)):
            return
        tokens = sum(estimate_tokens(t) for t in pending.texts)
        deadline, _ = self._deadline(pending, tokens)
        for clf in self.classifiers(pending.policy):
            refused = self._scheduler(clf).admits(tokens, deadline)
            if refused is not None:
                raise refused

    def _submit(self, pending: Pending, plan: Plan, *, sync: bool = False) -> list[cf.Future[list[dict[str, float]]]]:
        """One future per classifier. ``sync``: the caller blocks on them anyway, so a lone classifier
        may score in the caller's thread when its scheduler is idle (``Scheduler.run``)."""
        if not plan.needs_model:
            return []
        clfs = self.classifiers(pending.policy)
        if plan.asked:  # a second reading: each classifier reads only the texts past its own gate
            return [self._ask(pending, plan, clf, mine) for clf, mine in zip(clfs, plan.asked, strict=True)]
        return [
            (self._scheduler(clf).run if sync and len(clfs) == 1 else self._scheduler(clf).submit)(
                plan.scan, stage=pending.stage, prompts=plan.prompts, deadline=plan.deadline
            )
            for clf in clfs
        ]

    def _ask(self, pending: Pending, plan: Plan, clf: Classifier, mine: Sequence[int]) -> cf.Future[Any]:
        """One classifier's share of a second reading; none at all (no queue, no call) when it has no texts."""
        if not mine:
            done: cf.Future[Any] = cf.Future()
            done.set_result([])
            return done
        prompts = [plan.prompts[k] for k in mine] if plan.prompts else None
        texts = [plan.scan[k] for k in mine]
        return self._scheduler(clf).submit(texts, stage=pending.stage, prompts=prompts, deadline=plan.deadline)

    def _merge(self, pending: Pending, plan: Plan, results: Sequence[Sequence[Any]]) -> Scores:
        clfs = self.classifiers(pending.policy) if results else ()
        return merge_scores(pending, plan, clfs, results)

    def _second(self, pending: Pending, plan: Plan, results: Sequence[Sequence[Any]]) -> Plan | None:
        """The cascade's second reading (with the system prompt), when some text needs it."""
        return context_plan(plan, self.classifiers(pending.policy), results) if results else None

    def _scores_sync(self, pending: Pending, plan: Plan) -> list[list[Any]]:
        results = wait_sync(self._submit(pending, plan, sync=True), plan)
        return aligned(plan, self.classifiers(pending.policy), results)

    async def _scores_async(self, pending: Pending, plan: Plan) -> list[list[Any]]:
        results = await wait_async(self._submit(pending, plan), plan)
        return aligned(plan, self.classifiers(pending.policy), results)

    def _finish(self, pending: Pending, outcome: Scores | BaseException) -> Decision:
        if isinstance(outcome, BaseException):
            return self._fail(pending, str(outcome) or type(outcome).__name__, failure_kind(outcome))
        result, scores = verdict(pending, outcome, self.classifiers(pending.policy))
        return self._decision(
            pending,
            result.action,
            scores,
            result.findings,
            result.texts,
            result.message,
            result.redactions,
        )

    def _fail(self, pending: Pending, why: str, kind: str) -> Decision:
        """The policy's fail mode decides: closed blocks, open lets the text through and logs.
        ``kind`` (timeout, overloaded, classifier_error, invalid_scores, too_long) goes on the
        Decision and the audit event; ``error`` reads "<kind>: <why>"."""
        closed = pending.policy.fail_mode == "closed"
        action = Action.BLOCK if closed else Action.LOG
        msg = pending.policy.on_block.message if closed else None
        texts = ((msg,) if closed and msg is not None else pending.texts) or ("",)
        return self._decision(pending, action, {}, (), texts, msg, error=f"{kind}: {why}", error_kind=kind)

    def _decision(
        self,
        pending: Pending,
        action: Action,
        scores: Mapping[str, float],
        findings: tuple[Finding, ...],
        texts: Sequence[str],
        message: str | None = None,
        redactions: Mapping[str, str] | None = None,
        *,
        error: str | None = None,
        error_kind: str | None = None,
        note: str | None = None,
    ) -> Decision:
        decision = new_decision(pending, action, scores, findings, texts, message, redactions, error, error_kind)
        policy = pending.policy
        extra = {"notes": pending.notes + ([note] if note else [])} if (pending.notes or note) else None
        audit.emit(  # with what the check read: a chat's texts, the prompt, the routing context (_audit_read)
            decision, pending.original, policy.audit.log_text, extra=extra, key_env=policy.audit.hash_key_env,
            checked=pending,
        )  # fmt: skip
        if audit.recording():  # an application's own check (a service's warm-up) is not traffic: audit.unrecorded
            metrics.observe_decision(decision)
        if policy.classifiers is not None and self._fixed is None:  # experts' scores kept for late feedback
            from guardrail.ensemble_policy import remember

            remember(policy, decision, pending.texts)
        if self._on_decision is not None:
            self._on_decision(decision)
        return decision

    # -- drivers --------------------------------------------------------------------------------

    def _run_sync(self, pending: Pending) -> Decision:
        if pending.early is not None:
            return pending.early
        outcome: Scores | BaseException
        try:
            self._admit(pending)
            plan = self._plan(pending)
            results = self._scores_sync(pending, plan)
            if (second := self._second(pending, plan, results)) is not None:
                plan, results = with_context(plan, results, second, self._scores_sync(pending, second))
            outcome = self._merge(pending, plan, results)
        except Exception as exc:  # the fail mode decides, with the error's kind
            outcome = exc
        return self._finish(pending, outcome)

    async def _run_async(self, pending: Pending) -> Decision:
        if pending.early is not None:
            return pending.early
        outcome: Scores | BaseException
        try:
            self._admit(pending)
            if sum(len(t) for t in pending.texts) > _ASYNC_INLINE_CHARS:
                plan = await asyncio.get_running_loop().run_in_executor(self._pool, self._plan, pending)
            else:
                plan = self._plan(pending)
            results = await self._scores_async(pending, plan)
            if (second := self._second(pending, plan, results)) is not None:
                plan, results = with_context(plan, results, second, await self._scores_async(pending, second))
            outcome = self._merge(pending, plan, results)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            outcome = exc
        return self._finish(pending, outcome)

    def _routed(self, policy: Policy | None, context: RoutingContext, payload: Any) -> Policy | None:
        """The policy the request's ``context`` selects through the policy's ``routes`` (guardrail.routing);
        the Decision's ``policy`` then names it. No routes: the pinned snapshot (None: the current policy)."""
        base = policy or self.policy
        return base.select(context, payload) if base.routes else policy

    def check_input(self, payload: Any, *, policy: Policy | None = None, context: RoutingContext = None) -> Decision:
        """Check a prompt: a string, bytes, or chat messages (the policy's ``input.scope`` picks which).
        ``policy``: a snapshot of ``self.policy`` to use instead of the current one (``guardrail.call.Call``
        pins one per request, so a hot reload never lands in the middle of a request). ``context``: keys such
        as tenant, route, model, tier or language that the policy's ``routes`` match on."""
        routed = self._routed(policy, context, payload)
        return self._run_sync(self._prepare("input", payload, policy=routed, ctx=context))

    def check_output(
        self, text: Any, prompt: Any = None, *, policy: Policy | None = None, context: RoutingContext = None
    ) -> Decision:
        """Check a completion, judged in the context of its ``prompt`` (a string or messages)."""
        routed = self._routed(policy, context, text)
        return self._run_sync(self._prepare("output", text, prompt, policy=routed, ctx=context))

    async def acheck_input(
        self, payload: Any, *, policy: Policy | None = None, context: RoutingContext = None
    ) -> Decision:
        routed = self._routed(policy, context, payload)
        return await self._run_async(self._prepare("input", payload, policy=routed, ctx=context))

    async def acheck_output(
        self, text: Any, prompt: Any = None, *, policy: Policy | None = None, context: RoutingContext = None
    ) -> Decision:
        routed = self._routed(policy, context, text)
        return await self._run_async(self._prepare("output", text, prompt, policy=routed, ctx=context))

    def feedback(self, decision_id: str, label: Any) -> dict[str, float] | None:
        """A reviewed label for a recent decision, into the policy's ensemble (``classifiers:``): ``"safe"``,
        a category or list of them, or ``{category: 0|1}``. Returns each expert's loss; None when the
        decision's scores are no longer kept (see ``recent``)."""
        from guardrail.ensemble_policy import feedback

        policy = self.policy
        if policy.classifiers is None:
            raise PolicyError("this policy names no ensemble (`classifiers:`)", file=policy.source, field="classifiers")
        return feedback(policy, decision_id, label)

    # -- integrations: deprecated aliases (the Guard is the decision core; see guardrail.integrations) ----

    def protect(self, fn: Any = None, *, prompt_arg: str | None = None) -> Any:
        """Deprecated alias of ``guardrail.protect(guard, fn)``."""
        from guardrail.integrations import deprecated, protect

        deprecated("guard.protect", "guardrail.protect(guard)")
        return protect(self, fn, prompt_arg=prompt_arg)

    def wrap(self, client: Any, *, restore: bool = False) -> Any:
        """Deprecated alias of ``guardrail.wrap(guard, client)``."""
        from guardrail.integrations import deprecated, wrap

        deprecated("guard.wrap", "guardrail.wrap(guard, client)")
        return wrap(self, client, restore=restore)

    def close(self) -> None:
        for sched in self._own.values():
            sched.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
