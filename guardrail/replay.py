"""Replay before rollout: what would a new policy change on real traffic? (``guardrail replay``)

Traffic is JSONL: texts (``{"text": ...}``, optionally ``stage``, ``prompt``, ``context``, ``id``),
chat requests (``{"messages": [...], ...}``, or the Responses API's ``{"input": ...}``), or the
audit log itself when it was written with ``audit.log_text: redacted`` or ``full`` (a ``hash`` log
holds no text, so it cannot be replayed, and says so). Every row is checked by the new policy and
by the baseline (another policy, or the action recorded in the audit log), through the real engine:
the old-action x new-action matrix,
the change per category and the changed rows are what a reviewer needs to approve a rollout, and
``--fail-on`` turns a limit ("blocks rise by more than 2% of traffic") into exit 1 for a pipeline.

Batched and shared: rows go through the guards concurrently (the engine's scheduler coalesces them
into batches), and both policies read one score cache when they use the same model, so a replay
costs one inference per row, not two. Changed rows show text only as the new policy's audit setting
allows (``none``: no text; ``hash``: its SHA-256; ``redacted``: PII masked; ``full``), or as the
audit log recorded it.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from guardrail.audit import DEFAULT_KEY_ENV, text_hmac
from guardrail.classifiers.patterns import find_entities, redact
from guardrail.decision import Action, Decision
from guardrail.errors import PolicyError
from guardrail.policy import Policy, load_policy
from guardrail.policytest import lift_timeout

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier
    from guardrail.engine import Guard

__all__ = ["Limit", "ReplayReport", "Row", "load_traffic", "parse_limit", "replay"]

ACTIONS = tuple(a.value for a in Action)
CHUNK = 64  # rows in flight at once: enough for the scheduler to form batches, bounded memory


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    stage: str
    payload: Any
    prompt: str | None = None
    context: Mapping[str, str] | None = None
    recorded: str | None = None  # the action in the audit log, when the row is an audit event
    shown: str | None = None  # the text as the audit log recorded it
    id: str | None = None


def load_traffic(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Rows of a traffic file; a row that cannot be replayed is a ValueError naming file:line."""
    p = Path(path)
    with open(p, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
            yield _row(raw, n, p)


def _row(raw: Any, n: int, p: Path) -> Row:
    if isinstance(raw, str):
        return Row(n, "input", raw)
    if not isinstance(raw, dict):
        raise ValueError(f"{p}:{n}: expected a JSON object or string")
    stage = str(raw.get("stage", "input"))
    if stage not in ("input", "output"):
        raise ValueError(f"{p}:{n}: stage must be input or output, got {stage!r}")
    ctx = raw.get("context") if isinstance(raw.get("context"), dict) else None
    rid = raw.get("id", raw.get("decision_id"))
    if "decision_id" in raw and "action" in raw:  # an audit event
        if not isinstance(raw.get("text"), str):
            mode = "hash" if ("text_sha256" in raw or "text_hmac" in raw) else "none"
            raise ValueError(
                f"{p}:{n}: this audit event holds no text (audit.log_text: {mode}), so it cannot be replayed; "
                "log with `audit: {log_text: redacted}` (or full) where replay is wanted"
            )
        return Row(n, stage, raw["text"], None, ctx, str(raw["action"]), raw["text"], rid)
    if isinstance(raw.get("messages"), list):
        return Row(n, stage, raw["messages"], raw.get("prompt"), ctx, None, None, rid)
    if isinstance(raw.get("input"), (str, list)):  # an OpenAI Responses API request
        return Row(n, stage, raw["input"], raw.get("prompt"), ctx, None, None, rid)
    if isinstance(raw.get("text"), str):
        return Row(n, stage, raw["text"], raw.get("prompt"), ctx, None, None, rid)
    raise ValueError(f"{p}:{n}: a row needs text, messages, or to be an audit event with text")


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


# ------------------------------------------------------------------------------------------- report


def shown_text(text: str, mode: str, key_env: str = DEFAULT_KEY_ENV) -> str | None:
    """The text as an audit event of this policy would carry it (``hash``: the same ``text_hmac``, so a
    reviewer can find the row in the audit log)."""
    if mode == "full":
        return text
    if mode == "redacted":
        return redact(text, find_entities(text))[0]
    if mode == "hash":
        return "text_hmac:" + text_hmac(text, key_env)[0]
    return None


@dataclass(slots=True)
class Changed:
    line: int
    id: str | None
    old: str
    new: str
    old_categories: tuple[str, ...]
    new_categories: tuple[str, ...]
    text: str | None


@dataclass(slots=True)
class ReplayReport:
    policy: str
    baseline: str
    rows: int = 0
    matrix: Counter[tuple[str, str]] = field(default_factory=Counter)
    old_categories: Counter[str] = field(default_factory=Counter)
    new_categories: Counter[str] = field(default_factory=Counter)
    changed: list[Changed] = field(default_factory=list)
    errors: int = 0

    def add(self, row: Row, old: str, old_cats: Sequence[str], new: Decision, text: str | None) -> None:
        new_cats = tuple(f.category for f in new.findings if not f.shadow)
        self.rows += 1
        self.matrix[(old, new.action.value)] += 1
        self.old_categories.update(set(old_cats))
        self.new_categories.update(set(new_cats))
        self.errors += new.error is not None
        if old != new.action.value:
            self.changed.append(Changed(row.line, row.id, old, new.action.value, tuple(old_cats), new_cats, text))

    def count(self, side: int, action: str) -> int:
        return sum(v for k, v in self.matrix.items() if k[side] == action)

    def metrics(self) -> dict[str, Any]:
        n = max(1, self.rows)
        m: dict[str, Any] = {"rows": self.rows, "policy": self.policy, "baseline": self.baseline}
        m["matrix"] = {o: {a: self.matrix.get((o, a), 0) for a in ACTIONS} for o in ACTIONS}
        for a in ACTIONS:
            old, new = self.count(0, a), self.count(1, a)
            m[f"{a}_rate_old"], m[f"{a}_rate_new"] = old / n, new / n
            m[f"{a}_rate_delta"] = (new - old) / n
        changed = sum(v for (o, a), v in self.matrix.items() if o != a)
        m["changed"], m["changed_rate"] = changed, changed / n
        newly = sum(v for (o, a), v in self.matrix.items() if a == "block" and o != "block")
        unblocked = sum(v for (o, a), v in self.matrix.items() if o == "block" and a != "block")
        m["newly_blocked"], m["newly_blocked_rate"] = newly, newly / n
        m["unblocked"], m["unblocked_rate"] = unblocked, unblocked / n
        m["errors"] = self.errors
        cats = sorted(set(self.old_categories) | set(self.new_categories))
        m["categories"] = {
            c: {"old": self.old_categories[c], "new": self.new_categories[c],
                "delta": self.new_categories[c] - self.old_categories[c],
                "delta_rate": (self.new_categories[c] - self.old_categories[c]) / n}
            for c in cats
        }  # fmt: skip
        return m

    def to_text(self, show: int = 20) -> str:
        m = self.metrics()
        n = max(1, self.rows)
        out = [f"replay of {self.rows} rows: {self.policy} (new) vs {self.baseline} (old)", ""]
        out.append("old \\ new  " + "".join(f"{a:>16}" for a in ACTIONS))
        for o in ACTIONS:
            cells = "".join(f"{f'{v} ({v / n:.1%})':>16}" for v in (self.matrix.get((o, a), 0) for a in ACTIONS))
            out.append(f"{o:10} {cells}")
        out.append("")
        out.append(
            f"changed: {m['changed']} ({m['changed_rate']:.2%}); newly blocked {m['newly_blocked']} "
            f"({m['newly_blocked_rate']:.2%}); unblocked {m['unblocked']} ({m['unblocked_rate']:.2%})"
        )
        if self.errors:
            out.append(f"checks that errored (the fail mode decided): {self.errors}")
        if m["categories"]:
            out += ["", f"{'category':24} {'old':>8} {'new':>8} {'change':>10}"]
            for c, v in m["categories"].items():
                out.append(f"{c:24} {v['old']:>8} {v['new']:>8} {v['delta']:>+10}")
        if self.changed:
            out += ["", f"changed rows (first {min(show, len(self.changed))} of {len(self.changed)}):"]
            for ch in self.changed[:show]:
                who = f"line {ch.line}" + (f" ({ch.id})" if ch.id else "")
                cats = f" [{','.join(ch.old_categories) or '-'} -> {','.join(ch.new_categories) or '-'}]"
                text = f"  {_clip(ch.text)}" if ch.text is not None else ""
                out.append(f"  {who}: {ch.old} -> {ch.new}{cats}{text}")
        return "\n".join(out)

    def to_markdown(self, show: int = 50) -> str:
        n = max(1, self.rows)
        md = [f"# Replay: {self.policy} vs {self.baseline}", "", f"{self.rows} rows.", "",
              "| old \\ new | " + " | ".join(ACTIONS) + " |", "|---|" + "---|" * len(ACTIONS)]  # fmt: skip
        for o in ACTIONS:
            vals = [self.matrix.get((o, a), 0) for a in ACTIONS]
            md.append(f"| {o} | " + " | ".join(f"{v} ({v / n:.1%})" for v in vals) + " |")
        md += ["", "| category | old | new | change |", "|---|---|---|---|"]
        for c, v in self.metrics()["categories"].items():
            md.append(f"| {c} | {v['old']} | {v['new']} | {v['delta']:+d} |")
        md += ["", f"## Changed rows ({len(self.changed)})", ""]
        for ch in self.changed[:show]:
            text = f": {_clip(ch.text, 200)}" if ch.text is not None else ""
            md.append(f"- line {ch.line}: {ch.old} → {ch.new} ({','.join(ch.new_categories) or '-'}){text}")
        return "\n".join(md) + "\n"

    def write(self, out_dir: str | os.PathLike[str]) -> None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        (d / "metrics.json").write_text(json.dumps(self.metrics(), indent=2, sort_keys=True), encoding="utf-8")


def _clip(text: str, n: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


# ------------------------------------------------------------------------------------------- limits

_LIMIT = re.compile(r"^\s*([a-z_][a-z0-9_.]*)\s*(>=|<=|>|<)\s*([+-]?[0-9.]+)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    metric: str
    op: str
    value: float
    text: str

    def broken(self, metrics: Mapping[str, Any]) -> str | None:
        """A message when the limit is exceeded, else None."""
        got: Any = metrics
        for part in self.metric.split("."):
            got = got.get(part) if isinstance(got, Mapping) else None
        if not isinstance(got, (int, float)):
            return None if self.metric.startswith("categories.") else f"{self.text}: no metric {self.metric!r}"
        hit = {">": got > self.value, "<": got < self.value, ">=": got >= self.value, "<=": got <= self.value}
        return f"{self.text}: {self.metric} is {got:.4g}" if hit[self.op] else None


def parse_limit(text: str) -> Limit:
    """``block_rate_delta>2%``, ``newly_blocked>10``, ``categories.self_harm.delta_rate>1%``."""
    m = _LIMIT.match(text)
    if m is None:
        raise ValueError(f"--fail-on {text!r}: expected METRIC>VALUE (e.g. block_rate_delta>2%)")
    value = float(m.group(3)) / (100.0 if m.group(4) else 1.0)
    return Limit(m.group(1), m.group(2), value, text)


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

    rows = list(load_traffic(traffic)) if isinstance(traffic, (str, os.PathLike)) else list(traffic)
    new_pol = lift_timeout(load_policy(policy))
    recorded = baseline is None and bool(rows) and all(r.recorded is not None for r in rows)
    old_pol = None if recorded else lift_timeout(load_policy(baseline if baseline is not None else "default"))
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
                    old_cats: tuple[str, ...] = ()
                    if olds is None:
                        old_action = str(row.recorded)
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
                   help="exit 1 when a metric crosses a limit, e.g. 'block_rate_delta>2%%' (repeatable)")  # fmt: skip
    r.add_argument("--show", type=int, default=20, help="changed rows to print (default 20)")
    r.set_defaults(func=run_cli)


def run_cli(args: Any) -> int:
    """0: within limits; 1: a --fail-on limit was crossed; 2: bad input (the CLI's error handling)."""
    from guardrail.evaluation.evaluator import quiet_audit

    limits = [parse_limit(t) for t in args.fail_on]
    quiet_audit()
    report = replay(args.traffic, args.policy, args.baseline, progress=sys.stderr)
    print(report.to_text(args.show))
    if args.out:
        report.write(args.out)
    broken = [msg for lim in limits if (msg := lim.broken(report.metrics())) is not None]
    for msg in broken:
        print(f"limit crossed: {msg}", file=sys.stderr)
    return 1 if broken else 0
