"""``guardrail redteam --model M --suite S``: risky and benign prompts sent to a model, with and without the guard.

Each probe goes to the model through litellm once, unguarded; the answer is judged by the output
classifier (``harmful_response``, ``refusal`` and the Do-Not-Answer response classes). The guarded
path then runs the same probe through the policy: a prompt the input rules block never reaches the
model; a rewritten prompt is sent as rewritten (a second call); a prompt passed unchanged reuses the
unguarded answer (the same request, so a paired comparison that costs no second call). The answer
then goes through the output rules, and whatever would reach the user is judged again.

The judge is the bundled classifier, the same one the output rules use, so with an output rule on
``harmful_response`` at or below the judge's threshold the guarded count is zero by construction;
the number that carries information is the unguarded one and what the *input* rules stop.

Real providers fail transiently: each call is retried (tenacity, exponential back-off with jitter) on
connection errors, time-outs, 408/409/429 and 5xx, and calls run ``--concurrency`` at a time
(asyncio + a semaphore). A probe that still fails is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail.decision import Action, Decision
from guardrail.evaluation.data import Progress, read_records
from guardrail.evaluation.redteam_outcomes import Judged, Outcome, Probe, format_summary, summarize, write_outputs
from guardrail.scoring_form import scoring_form
from guardrail.taxonomy import RESPONSE_CLASS_IDS

if TYPE_CHECKING:
    from guardrail.engine import Guard
    from guardrail.policy import Policy

__all__ = ["BUILTIN_SUITES", "Outcome", "Probe", "add_parser", "cmd_redteam", "load_suite", "run_redteam", "summarize"]

BUILTIN_SUITES = ("default", "risky", "benign")  # default = risky + benign
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_TRANSIENT_NAMES = frozenset(
    {"APIConnectionError", "APITimeoutError", "Timeout", "RateLimitError", "ServiceUnavailableError",
     "InternalServerError", "BadGatewayError"}
)  # fmt: skip


# ------------------------------------------------------------------------------------------- suites


def load_suite(ref: str) -> list[Probe]:
    """A built-in suite by name (``default``, ``risky``, ``benign``) or a JSONL/CSV file of probes.

    A file row has ``prompt`` (or ``text``) and ``kind`` (``risky``/``benign``); without ``kind``, a
    truthy ``benign`` or ``label: 0`` makes it benign, anything else risky.
    """
    if ref in BUILTIN_SUITES and not Path(ref).exists():
        names = ("risky", "benign") if ref == "default" else (ref,)
        probes: list[Probe] = []
        for name in names:
            text = resources.files("guardrail.training").joinpath(f"suites/{name}.jsonl").read_text("utf-8")
            probes += [_probe(json.loads(line), f"{name}:{n}") for n, line in enumerate(text.splitlines(), 1) if line]
        return probes
    path = Path(ref)
    if not path.exists():
        raise ValueError(f"no suite {ref!r}: not a file, and the built-in suites are {', '.join(BUILTIN_SUITES)}")
    probes = [_probe(rec, where) for where, rec in read_records(path)]
    if not probes:
        raise ValueError(f"{path}: no probes")
    return probes


def _probe(rec: Mapping[str, Any], where: str) -> Probe:
    prompt = rec.get("prompt") or rec.get("text")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: needs a `prompt`")
    kind = str(rec.get("kind") or "").lower()
    if kind not in ("risky", "benign"):
        benign = str(rec.get("benign", "")).lower() in ("1", "true", "yes") or str(rec.get("label", "")) in ("0", "0.0")
        kind = "benign" if benign else "risky"
    return Probe(str(rec.get("id") or where), prompt, kind, str(rec.get("category") or ""))


# ------------------------------------------------------------------------------------------- running


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection problems, time-outs, rate limits and server-side errors."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status in TRANSIENT_STATUS:
        return True
    return type(exc).__name__ in _TRANSIENT_NAMES or isinstance(exc, (TimeoutError, ConnectionError))


def import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else the import fetches a price map
    import litellm

    litellm.suppress_debug_info = True
    return litellm


@dataclass(frozen=True, slots=True)
class Caller:
    """One chat completion through litellm, retried on transient errors."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 3
    retry_wait: float = 1.0  # initial back-off in seconds (doubles, with jitter, up to 30 s)
    params: Mapping[str, Any] = field(default_factory=dict)

    async def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        litellm = import_litellm()
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        kwargs: dict[str, Any] = {"timeout": self.timeout, "max_retries": 0, **self.params}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.retry_wait, max=30.0)
            + wait_random(0, self.retry_wait),  # with jitter
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                resp = await litellm.acompletion(model=self.model, messages=messages, **kwargs)
        content = resp.choices[0].message.content
        return content if isinstance(content, str) else ""


class Judge:
    """The output classifier(s) of the guard, read as a judge of answers."""

    def __init__(self, guard: Guard, harmful_threshold: float, refusal_threshold: float) -> None:
        self.guard = guard
        self.harmful_threshold = harmful_threshold
        self.refusal_threshold = refusal_threshold

    def _scores(self, answer: str, prompt: str) -> dict[str, float]:
        merged: dict[str, float] = {}
        for clf in self.guard.classifiers():
            for k, v in clf.predict([scoring_form(answer)], stage="output", prompts=[scoring_form(prompt)])[0].items():
                merged[k] = max(v, merged.get(k, 0.0))
        return merged

    async def __call__(self, answer: str, prompt: str) -> Judged:
        import asyncio

        scores = await asyncio.to_thread(self._scores, answer, prompt)
        classes = {k: v for k, v in scores.items() if k in RESPONSE_CLASS_IDS}
        return Judged(
            harmful=scores.get("harmful_response", 0.0) >= self.harmful_threshold,
            refusal=scores.get("refusal", 0.0) >= self.refusal_threshold,
            response_class=max(classes, key=lambda k: classes[k]) if classes else None,
            scores=scores,
        )


def _action(d: Decision) -> str:
    return str(d.action.value)


async def _probe_once(probe: Probe, guard: Guard, call: Caller, judge: Judge) -> Outcome:
    out = Outcome(probe)
    try:
        out.answer = await call(probe.prompt)
        out.calls += 1
        out.judged = await judge(out.answer, probe.prompt)
        din = await guard.acheck_input(probe.prompt)
        out.input_action = _action(din)
        if din.action is Action.BLOCK:
            out.delivered = din.text
            return out
        answer, sent = out.answer, probe.prompt
        if din.action is Action.REWRITE:
            sent = din.text
            answer = await call(list(din.messages) if din.messages else din.text)
            out.calls += 1
            out.notes.append("prompt rewritten by the guard; answer to the rewritten prompt")
        dout = await guard.acheck_output(answer, prompt=sent)
        out.output_action = _action(dout)
        out.delivered = dout.text
        if dout.action is not Action.BLOCK:
            out.guarded_harmful = (await judge(dout.text, sent)).harmful
    except Exception as exc:  # one failing probe must not end the run
        out.error = f"{type(exc).__name__}: {exc}"[:500]
    return out


async def run_redteam(
    probes: Sequence[Probe],
    guard: Guard,
    call: Caller,
    *,
    judge: Judge | None = None,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Every probe, ``concurrency`` at a time; results in the order of ``probes``."""
    import asyncio

    judge = judge or default_judge(guard)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(p: Probe) -> Outcome:
        async with sem:
            result = await _probe_once(p, guard, call, judge)
        if progress is not None:
            progress.step()
        return result

    return list(await asyncio.gather(*(one(p) for p in probes)))


def default_judge(guard: Guard, harmful_threshold: float | None = None) -> Judge:
    """Judge thresholds: ``harmful_threshold``, else the policy's harmful_response output rule, else the
    model's default; for refusal, the model's default."""
    from guardrail.policy import DEFAULT_THRESHOLD, model_labels

    policy: Policy = guard.policy
    defaults = {k: v.threshold for k, v in (model_labels(policy.model) or {}).items()}
    rule = next((r.threshold for r in policy.output.rules if r.category == "harmful_response"), None)
    harmful = harmful_threshold if harmful_threshold is not None else rule
    if harmful is None:
        harmful = defaults.get("harmful_response", DEFAULT_THRESHOLD)
    return Judge(guard, harmful, defaults.get("refusal", DEFAULT_THRESHOLD))


# ---------------------------------------------------------------------------------------------- CLI


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "redteam",
        help="send risky and benign prompts to a model through litellm, with and without the guard",
        description="Send a suite of risky and benign prompts to MODEL through litellm, unguarded and guarded, "
        "and report harmful answers, refusals, what the guard stopped, and the Do-Not-Answer response "
        "classes as judged by the output classifier. Exit 1 when a harmful answer got through the guard.",
    )
    p.add_argument("--model", "-m", required=True, help="any litellm model, e.g. openai/gpt-4o-mini, ollama/llama3")
    p.add_argument(
        "--suite", "-s", default="default", help="built-in suite (default, risky, benign) or a JSONL/CSV file"
    )
    p.add_argument("--policy", "-p", default=None, help="bundled policy name or YAML path (default: default)")
    p.add_argument("--api-base", default=None, help="base URL of an OpenAI-compatible server")
    p.add_argument(
        "--api-key", default=None,
        help="API key (default: the provider's environment variable; a placeholder for openai/ models at --api-base)",
    )  # fmt: skip
    p.add_argument("--concurrency", "-c", type=int, default=8, help="model calls in flight at once (default 8)")
    p.add_argument("--retries", type=int, default=3, help="retries of a transient failure per call (default 3)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per model call (default 60)")
    p.add_argument("--max-tokens", type=int, default=400, help="answer length limit (default 400)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument(
        "--judge-threshold", type=float, default=None,
        help="harmful_response score counted as harmful (default: the policy's output rule)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="only the first N probes of each kind")
    p.add_argument("--mock-response", default=None, help="litellm mock_response: a dry run without a provider")
    p.add_argument("--out", "-o", default=None, help="write results.jsonl, summary.json and report.md here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_redteam)


def cmd_redteam(args: argparse.Namespace, guard: Guard | None = None) -> int:
    import asyncio

    from guardrail.engine import Guard
    from guardrail.evaluation.evaluator import quiet_audit
    from guardrail.policy import load_policy

    quiet_audit()
    probes = load_suite(args.suite)
    if args.limit:
        probes = [p for k in ("risky", "benign") for p in [q for q in probes if q.kind == k][: args.limit]]
    own = guard is None
    g = guard if guard is not None else Guard(load_policy(args.policy))
    params: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    if args.mock_response is not None:
        params["mock_response"] = args.mock_response
    api_key = args.api_key
    if args.api_base and not api_key and args.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
        api_key = "no-key"  # local OpenAI-compatible servers rarely check it, but the client insists on one
    call = Caller(args.model, args.api_base, api_key, args.timeout, max(0, args.retries), params=params)
    try:
        judge = default_judge(g, args.judge_threshold)
        outcomes = asyncio.run(
            run_redteam(
                probes, g, call, judge=judge, concurrency=args.concurrency, progress=Progress(len(probes), "redteam ")
            )
        )
    finally:
        if own:
            g.close()
    summary = summarize(outcomes)
    meta = {
        "model": args.model, "suite": args.suite, "policy": g.policy.name, "policy_hash": g.policy.hash,
        "judge_harmful_threshold": judge.harmful_threshold, "judge_refusal_threshold": judge.refusal_threshold,
    }  # fmt: skip
    if args.out:
        write_outputs(Path(args.out), outcomes, summary, meta)
    print(json.dumps({**meta, **summary}, indent=1) if args.json else format_summary(summary))
    if summary["errors"] == summary["probes"]:
        first = next((o.error for o in outcomes if o.error), "")
        print(f"guardrail: every probe failed; first error: {first}", file=sys.stderr)
        return 2
    through = sum(summary.get(k, {}).get("harmful_with_guard", 0) for k in ("risky", "benign"))
    return 1 if through else 0
