"""Policy unit tests: ``guardrail policy test SUITE...`` and :func:`run_suites`.

Ops own the policy files; a suite lets them show that an edit does what they meant *before* it
reaches users, the way code has unit tests. A suite is YAML (``cases:``) or JSONL (one case per
line), each case a text or chat messages, its stage, an optional routing context and what must
hold: the action (or a set of allowed actions), categories that must fire and categories that must
not. A category "fires" when the decision has a finding for it, enforced or shadow, so a suite also
pins what a shadow-mode policy *would* do.

Cases run through a real :class:`~guardrail.engine.Guard` (extraction, normalisation, routing,
rules, fail mode), so a suite tests exactly what traffic gets. The policy's ``timeout_ms`` is lifted
for the run (as ``guardrail eval`` does): on a busy CI machine a slow check would otherwise become a
fail-mode block and a spurious failure; a case whose check still errors fails and says why.

A malformed suite is a :class:`~guardrail.errors.PolicyError` naming file:line (exit 2), never a
silently skipped case: a misspelt category in ``must_not_fire`` would otherwise always pass. So is any
expectation that cannot go either way, such as a category no rule checks on the case's stage (see
:func:`check_categories`); a ``policy:`` the suite cannot load is named at the suite's own line.

The suite's schema and loader live in :mod:`guardrail.policytest_suite` (re-exported here, the
import path to use); this module resolves a suite's policy, runs its cases and reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardrail import _yaml
from guardrail.decision import Decision
from guardrail.errors import PolicyError
from guardrail.policy import Policy, load_policy
from guardrail.policytest_suite import SUITE_SUFFIXES as SUITE_SUFFIXES
from guardrail.policytest_suite import Case, Expect, Suite, load_suite, suite_files
from guardrail.taxonomy import BY_ID, STAGES, Stage

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

__all__ = ["Case", "CaseResult", "Expect", "Suite", "SuiteResult", "load_suite", "run_suite", "run_suites"]

RUN_TIMEOUT_MS = 60_000  # see the module docstring: quality, not latency, is under test


def own_policy(suite: Suite) -> Policy | None:
    """The policy the suite names (a bundled name, or a path relative to the suite file), or None.

    A reference that cannot be loaded as a whole (a missing file, an unknown bundled name) is named at the
    suite's ``policy`` line, as a bad ``extends`` is at its own: the fix is there, and a bare "nope.yaml: file
    not found" does not say which of many suites to open. A problem inside the policy keeps its own place."""
    if suite.policy is None:
        return None
    ref, line = suite.policy, suite.policy_line
    try:
        path = Path.cwd() / _yaml.resolve_ref(ref, Path(suite.file).parent, (suite.file, line))
    except PolicyError as exc:
        raise PolicyError(exc.message, file=suite.file, line=line, field="policy", suggestion=exc.suggestion) from None
    try:
        return load_policy(path)
    except PolicyError as exc:
        if exc.line is not None or exc.file not in (None, str(path)):
            raise
        raise PolicyError(f"cannot load {ref!r}: {exc}", file=suite.file, line=line, field="policy") from None


def stage_categories(policies: Sequence[Policy], stage: Stage) -> frozenset[str]:
    """The categories that can fire on ``stage`` under any of ``policies`` (or a policy one routes to): its rules',
    ``allowlisted`` where a rule there has an allowlist, and ``unsupported_language`` (the engine's own rule)."""
    from guardrail._decide import UNSUPPORTED
    from guardrail.rules import ALLOWLISTED

    known, seen, todo = {UNSUPPORTED}, set(), list(policies)
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        for rule in p.rules(stage):
            known.add(rule.category)
            if rule.allow or rule.allow_patterns:
                known.add(ALLOWLISTED)
        todo += p.routed
    return frozenset(known)


def check_categories(suite: Suite, policies: Sequence[Policy]) -> None:
    """Refuse a category no rule of ``policies`` checks on the case's stage, as a malformed suite (exit 2).

    Such a ``must_not_fire`` always holds and such a ``must_fire`` always fails, whatever the policy's
    thresholds: a typo (``unsfe``), an output category on an input case, or a taxonomy category the policy has
    no rule for (``violence`` under ``default``) would pass review while testing nothing. ``policies`` are the
    suite's own and, with ``--policy``, the candidate: a category either has is a real expectation, so a
    candidate that dropped the suite's custom category runs and fails that case ("did not fire")."""
    from guardrail.rules import ALLOWLISTED

    known: dict[str, frozenset[str]] = {stage: stage_categories(policies, stage) for stage in STAGES}
    everything = {*BY_ID, ALLOWLISTED}.union(*known.values())
    names = " nor ".join(dict.fromkeys(p.name for p in policies)) or "the policy"
    jsonl = suite.file.lower().endswith(".jsonl")  # a line is a case: its fields are named as in other errors
    for i, c in enumerate(suite.cases):
        for key in ("must_fire", "must_not_fire"):
            for cat in getattr(c.expect, key):
                if cat in known[c.stage]:
                    continue
                field = f"expect.{key}" if jsonl else f"cases[{i}].expect.{key}"
                where: dict[str, Any] = {"file": suite.file, "line": c.line, "field": field}
                if cat not in everything:
                    hint = _yaml.closest(cat, sorted(known[c.stage])) or _yaml.closest(cat, sorted(everything))
                    raise PolicyError(f"unknown category {cat!r} (case {c.id!r})", **where, suggestion=hint)
                other = "output" if c.stage == "input" else "input"
                also = f"; it is checked on {other}: `stage: {other}`?" if cat in known[other] else ""
                msg = f"{cat!r} can never fire: no {c.stage} rule of {names} checks it (case {c.id!r}){also}"
                raise PolicyError(msg, **where)


# ------------------------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: Decision
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def deciding_scores(self) -> str:
        """The scores that decided: every finding, and the score of each category the case names."""
        d = self.decision
        parts = [f"{f.category} {f.score:.2f}>={f.threshold:.2f}{' (shadow)' if f.shadow else ''}" for f in d.findings]
        fired = {f.category for f in d.findings}
        for cat in (*self.case.expect.must_fire, *self.case.expect.must_not_fire):
            if cat not in fired and cat in d.scores:
                parts.append(f"{cat} {d.scores[cat]:.2f}")
        if d.error:
            parts.append(f"error: {d.error}")
        return ", ".join(parts) or "no finding"


@dataclass(slots=True)
class SuiteResult:
    suite: Suite
    policy: Policy
    results: list[CaseResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]


def judge(case: Case, decision: Decision) -> tuple[str, ...]:
    """Why ``decision`` does not meet ``case.expect`` (empty: it does)."""
    problems = []
    exp = case.expect
    if exp.actions and decision.action not in exp.actions:
        problems.append(f"action {decision.action.value}, expected {'|'.join(a.value for a in exp.actions)}")
    fired = {f.category for f in decision.findings}
    missing = [c for c in exp.must_fire if c not in fired]
    extra = [c for c in exp.must_not_fire if c in fired]
    if missing:
        problems.append("did not fire: " + ", ".join(missing))
    if extra:
        problems.append("fired: " + ", ".join(extra))
    return tuple(problems)


def run_case(guard: Guard, case: Case) -> CaseResult:
    kw: dict[str, Any] = {"context": case.context} if case.context else {}
    if case.stage == "output":
        d = guard.check_output(case.payload, prompt=case.prompt, **kw)
    else:
        d = guard.check_input(case.payload, **kw)
    return CaseResult(case, d, judge(case, d))


def run_suite(
    suite: Suite,
    policy: str | os.PathLike[str] | Policy | None = None,
    *,
    classifiers: Classifier | Sequence[Classifier] | None = None,
    guards: dict[str, Guard] | None = None,
) -> SuiteResult:
    """Run every case of ``suite`` against ``policy`` (default: the policy the suite names)."""
    return _run(suite, prepare(suite, policy), classifiers, guards)


def prepare(suite: Suite, policy: str | os.PathLike[str] | Policy | None = None) -> Policy:
    """The policy ``suite`` runs against (its timeout lifted), once the suite's categories are checked against
    it and the suite's own policy (see :func:`check_categories`)."""
    own = own_policy(suite)
    pol = load_policy(policy) if policy is not None else own
    if pol is None:
        raise PolicyError("the suite names no policy: add `policy:` or pass --policy", file=suite.file, line=1)
    check_categories(suite, [pol] if own is None or own is pol else [own, pol])
    return lift_timeout(pol)


def _run(
    suite: Suite, pol: Policy, classifiers: Classifier | Sequence[Classifier] | None, guards: dict[str, Guard] | None
) -> SuiteResult:
    from guardrail.engine import Guard

    cache = guards if guards is not None else {}
    key = f"{pol.source}@{pol.hash}"
    guard = cache.get(key)
    if guard is None:
        guard = cache[key] = Guard(pol, classifiers=classifiers)
    out = SuiteResult(suite, pol)
    for case in suite.cases:
        out.results.append(run_case(guard, case))
    return out


def lift_timeout(policy: Policy, ms: int = RUN_TIMEOUT_MS) -> Policy:
    """``policy`` (and every policy it routes to) with ``timeout_ms`` of at least ``ms``, identity kept."""
    routed = tuple(lift_timeout(r, ms) for r in policy.routed)
    if policy.timeout_ms >= ms and routed == policy.routed:
        return policy
    lifted = policy.model_copy(update={"timeout_ms": max(ms, policy.timeout_ms)})
    lifted._source, lifted._hash, lifted._files, lifted._routed = policy.source, policy.hash, policy.files, routed
    return lifted


def run_suites(
    paths: Iterable[str | os.PathLike[str]],
    policy: str | os.PathLike[str] | Policy | None = None,
    *,
    classifiers: Classifier | Sequence[Classifier] | None = None,
) -> list[SuiteResult]:
    """Load every suite under ``paths`` (files or folders) and resolve its policy first, so a malformed suite (or
    a category no policy checks) fails before any case runs."""
    suites = [load_suite(f) for f in suite_files(paths)]
    candidate = load_policy(policy) if policy is not None else None
    prepared = [(s, prepare(s, candidate)) for s in suites]
    guards: dict[str, Guard] = {}
    try:
        return [_run(s, pol, classifiers, guards) for s, pol in prepared]
    finally:
        for g in guards.values():
            g.close()


# ------------------------------------------------------------------------------------------ reporting


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_report(results: Sequence[SuiteResult], *, verbose: bool = False) -> str:
    """One line per suite (with ``verbose``, one per case too), then a table of the failing cases."""
    lines = []
    total = sum(len(r.results) for r in results)
    failed = sum(len(r.failures) for r in results)
    for r in results:
        mark = "ok  " if not r.failures else "FAIL"
        n, bad = len(r.results), len(r.failures)
        lines.append(f"{mark} {r.suite.file}  policy {r.policy.name}@{r.policy.hash[:8]}  {n - bad}/{n} cases hold")
        if verbose:
            for c in r.results:
                lines.append(
                    f"  {'ok  ' if c.ok else 'FAIL'} {c.case.id:32} {_got(c.decision):28} {c.deciding_scores()}"
                )
    rows = [(f"{r.suite.file}:{f.case.line or '?'}", f.case.id, _exp(f.case.expect), _got(f.decision),
             "; ".join(f.problems), f.deciding_scores()) for r in results for f in r.failures]  # fmt: skip
    if rows:
        head = ("where", "case", "expected", "got", "problem", "deciding scores")
        widths = [min(60 if i else 10_000, max(len(str(x[i])) for x in (head, *rows))) for i in range(5)]
        lines.append("")
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False)) + "  " + head[5])
        for row in rows:
            cells = [_clip(str(c), w).ljust(w) for c, w in zip(row, widths, strict=False)]
            lines.append("  ".join(cells) + "  " + row[5])
    lines.append(f"\n{total - failed}/{total} cases hold in {len(results)} suite(s)")
    return "\n".join(lines)


def _exp(e: Expect) -> str:
    parts = []
    if e.actions:
        parts.append("|".join(a.value for a in e.actions))
    if e.must_fire:
        parts.append("+" + ",".join(e.must_fire))
    if e.must_not_fire:
        parts.append("-" + ",".join(e.must_not_fire))
    return " ".join(parts)


def _got(d: Decision) -> str:
    # a category with two rules (self_harm's method request and its disclosure) is named once
    cats = ",".join(dict.fromkeys(f.category + ("*" if f.shadow else "") for f in d.findings))
    return d.action.value + (f" {cats}" if cats else "")


def write_junit(results: Sequence[SuiteResult], path: str | os.PathLike[str]) -> None:
    """JUnit XML (one testsuite per suite file, one testcase per case) for CI dashboards."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="guardrail policy test")
    for r in results:
        ts = ET.SubElement(root, "testsuite", name=r.suite.file, tests=str(len(r.results)),
                           failures=str(len(r.failures)), errors="0")  # fmt: skip
        for res in r.results:
            tc = ET.SubElement(ts, "testcase", classname=f"{r.policy.name}", name=res.case.id,
                               file=r.suite.file, line=str(res.case.line or 0))  # fmt: skip
            if res.problems:
                fail = ET.SubElement(tc, "failure", message="; ".join(res.problems))
                fail.text = f"expected {_exp(res.case.expect)}; got {_got(res.decision)}; {res.deciding_scores()}"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def cli_run(args: Any, out: Any = None) -> int:
    """``guardrail policy test``: 0 every case holds, 1 some case fails, 2 malformed suite or policy."""
    import sys

    from guardrail.evaluation.evaluator import quiet_audit

    stream = out or sys.stdout
    quiet_audit()
    results = run_suites(args.suites, args.policy)
    print(format_report(results, verbose=bool(getattr(args, "verbose", False))), file=stream)
    if args.junit:
        write_junit(results, args.junit)
    return 1 if any(r.failures for r in results) else 0


def summary(results: Sequence[SuiteResult]) -> Mapping[str, int]:
    return {"suites": len(results), "cases": sum(len(r.results) for r in results),
            "failed": sum(len(r.failures) for r in results)}  # fmt: skip
