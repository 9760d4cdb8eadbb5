"""Replay before rollout: what would a new policy change on real traffic? (``guardrail replay``)

Traffic is JSONL: texts (``{"text": ...}``, optionally ``stage``, ``prompt``, ``context``, ``id``),
chat requests (``{"messages": [...], ...}``, or the Responses API's ``{"input": ...}``), or the
audit log itself when it was written with ``audit.log_text: redacted`` or ``full`` (a ``hash`` log
holds no text, so it cannot be replayed, and says so). Every row is checked by the new policy and
by the baseline (another policy, or the action recorded in the audit log), through the real engine:
the old-action x new-action matrix,
the change per category and the changed rows are what a reviewer needs to approve a rollout, and
``--fail-on`` turns a limit ("blocks rise by more than 2% of traffic") into exit 1 for a pipeline;
a limit naming no metric (or no category) is a usage error before any row is checked.

Against an audit log, the old side is what the event recorded: its ``action`` and its ``categories``
(the enforced findings). Replaying a log against the policy that wrote it must then change nothing,
and that includes a ``redacted`` log, whose text holds ``<EMAIL_1>`` where the address was. The rule:
each placeholder the log's redaction inserted is checked as a stand-in value of its kind
(``user1@example.com``), so the new policy's redaction rules decide on the entity as they would have
on the original (an address still redacted: unchanged; e-mail dropped from ``entities``: rewrite ->
allow; phone numbers newly redacted: allow -> rewrite), and scores are unaffected (classifiers see
personal data masked anyway). What cannot be recovered is the value itself, so a rule that matches a
particular address (a keyword or regex rule) cannot be replayed on a redacted log; the report counts
the rows compared this way (``redacted_rows``) and marks them among the changed rows. Each event carries what its
check read (a chat's messages, an answer's prompt, the routing context), and an event that does not is counted apart
(``unreplayable_rows``), never as a change: checked without its prompt or routing context, a row would show a change
that never happened. An event written before the routing context was logged is recognised as routed when its
``policy`` names a policy the routes lead to that is not the one chosen without a context.

Batched and shared: rows go through the guards concurrently (the engine's scheduler coalesces them
into batches), and both policies read one score cache when they use the same model, so a replay
costs one inference per row, not two. Changed rows show text only as the new policy's audit setting
allows (``none``: no text; ``hash``: its SHA-256; ``redacted``: PII masked; ``full``), or as the
audit log recorded it.

Three modules, one job each: :mod:`guardrail.replay_traffic` reads the rows, this module checks them
(and is the import path for all of it), :mod:`guardrail.replay_report` tallies and limits the result.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from guardrail.decision import Decision
from guardrail.errors import PolicyError
from guardrail.policy import Policy, load_policy
from guardrail.policytest import lift_timeout
from guardrail.replay_report import ACTIONS as ACTIONS
from guardrail.replay_report import Changed as Changed
from guardrail.replay_report import Limit, ReplayReport, parse_limit, shown_text
from guardrail.replay_traffic import REASONS, Row, load_traffic

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

__all__ = ["Limit", "ReplayReport", "Row", "load_traffic", "parse_limit", "replay"]

CHUNK = 64  # rows in flight at once: enough for the scheduler to form batches, bounded memory


# ------------------------------------------------------------------------------------------ scoring


class _SharedScores:
    """A classifier that answers from a cache filled by the wrapped one: two guards, one inference."""

    def __init__(self, inner: Classifier) -> None:
        self.inner = inner
        self.name = inner.name
        self._cache: dict[tuple[str, str, str | None], dict[str, float]] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:  # scripts, stage_labels, speed_scale, warmup, ...
        return getattr(self.inner, name)

    @property
    def labels(self) -> frozenset[str]:
        return self.inner.labels

    def predict(
        self, texts: Sequence[str], *, stage: Any = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        keys = [(stage, t, prompts[i] if prompts else None) for i, t in enumerate(texts)]
        with self._lock:
            todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            got = self.inner.predict(
                [texts[i] for i in todo], stage=stage, prompts=[prompts[i] for i in todo] if prompts else None
            )
            with self._lock:
                self.calls += 1
                for i, scores in zip(todo, got, strict=True):
                    self._cache[keys[i]] = scores
        with self._lock:
            return [dict(self._cache[k]) for k in keys]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


# --------------------------------------------------------------------------------------------- run


def replay(
    traffic: str | os.PathLike[str] | Sequence[Row],
    policy: str | os.PathLike[str] | Policy,
    baseline: str | os.PathLike[str] | Policy | None = None,
    *,
    classifiers: Classifier | Sequence[Classifier] | None = None,
    progress: TextIO | None = None,
    workers: int = 8,
) -> ReplayReport:
    """Check every row with ``policy`` and with ``baseline`` (default: the action the audit log recorded)."""
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

    # the policy first: its own kinds of personal data (pii_entities) give a redacted log's placeholders stand-ins
    # (and the baseline's too: the policy that wrote the log may define a kind the new one dropped or renamed)
    new_pol = lift_timeout(load_policy(policy))
    base_pol = None if baseline is None else lift_timeout(load_policy(baseline))
    rows = list(load_traffic(traffic)) if isinstance(traffic, (str, os.PathLike)) else list(traffic)
    _require_rows(rows, traffic)
    rows = [_unrouted(r, [p for p in (new_pol, base_pol) if p is not None]) for r in rows]
    unreplayable = Counter(r.missing for r in rows if r.missing is not None)
    rows = _replayable(rows, unreplayable, traffic)
    recorded = baseline is None and bool(rows) and all(r.recorded is not None for r in rows)
    old_pol = None if recorded else base_pol if base_pol is not None else lift_timeout(load_policy("default"))
    if baseline is None and not recorded and any(r.recorded is not None for r in rows):
        raise PolicyError("some rows are audit events and some are not: pass --baseline to compare against a policy")
    guards: list[Guard] = []
    shared: dict[str, _SharedScores] = {}

    def make(pol: Policy) -> Guard:
        if classifiers is None and not _one_model(pol):  # routes to other models: each scores its own
            g = Guard(pol)
            guards.append(g)
            return g
        if classifiers is not None:
            inner: Sequence[Classifier] = [classifiers] if isinstance(classifiers, Classifier) else classifiers
            key = ""
        else:
            probe = Guard(pol)
            inner, key = probe.classifiers(), pol.model
            probe.close()
        wrapped = [shared.setdefault(f"{key}:{c.name}", _SharedScores(c)) for c in inner]
        g = Guard(pol, classifiers=wrapped)
        guards.append(g)
        return g

    new_g = make(new_pol)
    old_g = make(old_pol) if old_pol is not None else None
    report = ReplayReport(
        f"{new_pol.name}@{new_pol.hash[:8]}",
        "recorded actions" if old_pol is None else f"{old_pol.name}@{old_pol.hash[:8]}",
        unreplayable=unreplayable,
    )
    mode, key_env = new_pol.audit.log_text, new_pol.audit.hash_key_env
    bar = _Progress(len(rows), progress)
    try:
        with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guardrail-replay") as pool:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                news = list(pool.map(lambda r: _check(new_g, r), chunk))
                olds = list(pool.map(lambda r: _check(old_g, r), chunk)) if old_g is not None else None
                for i, row in enumerate(chunk):
                    if olds is None:  # the audit event's own record: its action and enforced categories
                        old_action, old_cats = str(row.recorded), row.recorded_categories
                    else:
                        old_action = olds[i].action.value
                        old_cats = tuple(f.category for f in olds[i].findings if not f.shadow)
                    text = row.shown if row.shown is not None else shown_text(_plain(row.payload), mode, key_env)
                    report.add(row, old_action, old_cats, news[i], text)
                for s in shared.values():
                    s.clear()
                bar.update(len(chunk))
    finally:
        for g in guards:
            g.close()
    return report


def _require_rows(rows: Sequence[Row], traffic: object) -> None:
    """Refuse a replay of nothing: its rates are 0 of 0, so it would pass every ``--fail-on`` limit and report
    "no change" for a rollout that was never compared (a truncated export, the wrong file)."""
    if not rows:
        where = f"{os.fspath(traffic)}: " if isinstance(traffic, (str, os.PathLike)) else ""
        raise ValueError(f"{where}no rows to replay (the traffic is empty or only blank lines): nothing was compared")


def _unrouted(row: Row, policies: Sequence[Policy]) -> Row:
    """``row`` marked as missing its routing context when it is an audit event written before the context was logged
    whose recorded policy is one that ``policies`` route to, but not the one they choose without a context: checked
    now, it would be decided by another policy and show as a change that never happened."""
    if row.recorded is None or row.context_logged or row.context or row.missing is not None or row.policy is None:
        return row
    for pol in policies:
        if pol.routes and row.policy in _route_targets(pol) and pol.select(None, row.payload).name != row.policy:
            return replace(row, missing="context")
    return row


def _route_targets(policy: Policy) -> set[str]:
    """The names of every policy ``policy`` routes to, through routed policies' own routes too."""
    names: set[str] = set()
    todo = list(policy.routed)
    while todo:
        p = todo.pop()
        if p.name not in names:
            names.add(p.name)
            todo += p.routed
    return names


def _replayable(rows: Sequence[Row], unreplayable: Counter[str], traffic: object) -> list[Row]:
    """The rows that can be checked as they were; none at all is an error, as no rows are (``_require_rows``)."""
    kept = [r for r in rows if r.missing is None]
    if not kept:
        where = f"{os.fspath(traffic)}: " if isinstance(traffic, (str, os.PathLike)) else ""
        why = "; ".join(f"{n} {REASONS[k]}" for k, n in sorted(unreplayable.items()))
        raise ValueError(f"{where}no row can be replayed as it was checked ({why}): nothing was compared")
    return kept


def _one_model(policy: Policy) -> bool:
    """True when ``policy`` and every policy it routes to score with the same single model."""
    seen, todo = set(), [policy]
    while todo:
        p = todo.pop()
        if p.classifiers is not None and p is not policy:
            return False
        seen.add(p.model)
        todo += p.routed
    return len(seen) == 1


def _check(guard: Guard, row: Row) -> Decision:
    kw: dict[str, Any] = {"context": dict(row.context)} if row.context else {}
    if row.stage == "output":
        return guard.check_output(row.payload, prompt=row.prompt, **kw)
    return guard.check_input(row.payload, **kw)


def _plain(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    users = [str(m["content"]) for m in payload if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return users[-1] if users else ""


class _Progress:
    """On a terminal a live counter; in a pipeline log a line every 10% (only for long files)."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.tty = bool(stream is not None and stream.isatty())
        self.next_pct = 10

    def update(self, n: int) -> None:
        self.done += n
        if self.stream is None or (self.total < 1000 and not self.tty):
            return
        pct = 100 * self.done // max(1, self.total)
        if self.tty:
            self.stream.write(
                f"\rreplay: {self.done}/{self.total} ({pct}%)" + ("\n" if self.done >= self.total else "")
            )
        elif pct >= self.next_pct:
            self.stream.write(f"replay: {self.done}/{self.total} ({pct}%)\n")
            self.next_pct = pct // 10 * 10 + 10
        self.stream.flush()


# --------------------------------------------------------------------------------------------- CLI


def add_parser(sub: Any) -> None:
    r = sub.add_parser("replay", help="what would a new policy change on recorded traffic? (matrix, diffs, limits)")
    r.add_argument("traffic", help="JSONL: texts, chat requests, or an audit log with log_text redacted|full")
    r.add_argument("--policy", "-p", required=True, help="the new policy (bundled name or YAML path)")
    r.add_argument("--baseline", "-b", default=None, help="the old policy (default: the audit log's recorded actions)")
    r.add_argument("--out", default=None, metavar="DIR", help="write report.md and metrics.json here")
    r.add_argument("--fail-on", action="append", default=[], metavar="LIMIT",
                   help="exit 1 when a metric crosses a limit, e.g. 'block_rate_delta>2%%' (repeatable); a limit "
                   "naming no metric is refused before the replay runs")  # fmt: skip
    r.add_argument("--show", type=_count, default=20, metavar="N", help="changed rows to print (default 20)")
    r.set_defaults(func=run_cli)


def _count(text: str) -> int:
    """``--show N``: 0 or more (``-1`` was taken as a slice end: every changed row but the last)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more rows, got {n}")
    return n


def run_cli(args: Any) -> int:
    """0: within limits; 1: a --fail-on limit was crossed; 2: bad input (the CLI's error handling).
    Every limit is checked before any row is: a misspelt one is a usage error, not a crossed limit."""
    from guardrail.evaluation.evaluator import quiet_audit

    limits = [parse_limit(t) for t in args.fail_on]
    # loaded before the rows are read and held while they are: a redacted log's placeholders of the policies' own
    # kinds (pii_entities) get stand-in values only while a policy defining them is in use
    policies = [load_policy(args.policy), load_policy(args.baseline or "default")]
    rows = list(load_traffic(args.traffic))
    _require_rows(rows, args.traffic)
    if any(lim.metric.startswith("categories.") for lim in limits):
        known = known_categories(policies, rows)
        limits = [parse_limit(lim.text, known) for lim in limits]
    quiet_audit()
    report = replay(rows, args.policy, args.baseline, progress=sys.stderr)
    print(report.to_text(args.show))
    if args.out:
        report.write(args.out)
    broken = [msg for lim in limits if (msg := lim.broken(report.metrics())) is not None]
    for msg in broken:
        print(f"limit crossed: {msg}", file=sys.stderr)
    return 1 if broken else 0


def known_categories(policies: Sequence[Policy], rows: Sequence[Row] = ()) -> frozenset[str]:
    """Categories a replay can count: the taxonomy's, the engine's own findings', every rule's of the
    policies (and the policies they route to), and those the audit log recorded."""
    from guardrail._decide import UNSUPPORTED
    from guardrail.rules import ALLOWLISTED
    from guardrail.taxonomy import BY_ID, STAGES

    out = {*BY_ID, UNSUPPORTED, ALLOWLISTED, *(c for r in rows for c in r.recorded_categories)}
    todo, seen = list(policies), set()
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        out.update(r.category for st in STAGES for r in p.rules(st))
        todo += p.routed
    return frozenset(out)
