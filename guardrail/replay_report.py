"""Replay's output: the old-action x new-action matrix, changes per category, changed rows, limits.

What a reviewer needs to approve a rollout, as text, Markdown and ``metrics.json``; and ``--fail-on``
limits ("blocks rise by more than 2% of traffic") that turn the metrics into exit 1 for a pipeline.
The metrics a limit may name are listed here (:data:`METRICS`, :data:`CATEGORY_FIELDS`), and a limit
naming another is refused when it is parsed, with the closest names: a misspelt limit must stop the
pipeline as a usage error, not pass every rollout (or fail every one) after the whole replay has run.
Rows of a redacted audit log are counted (``redacted_rows``) and marked among the changed rows, since
they were compared with stand-ins for their personal data (see :mod:`guardrail.replay_traffic`); audit events
that do not hold what their check read are counted apart (``unreplayable_rows``), never as changes.
Changed rows show text only as the new policy's audit setting allows (``none``: no text; ``hash``:
its keyed digest; ``redacted``: PII masked; ``full``), or as the audit log recorded it. Apart from
:mod:`guardrail.replay` (which runs the checks) because none of this needs an engine or a model.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.audit import DEFAULT_KEY_ENV, text_hmac
from guardrail.classifiers.patterns import redact
from guardrail.decision import Action, Decision
from guardrail.replay_traffic import REASONS, Row
from guardrail.revealed import entity_spans

__all__ = ["ACTIONS", "CATEGORY_FIELDS", "METRICS", "Changed", "Limit", "ReplayReport", "parse_limit", "shown_text"]

ACTIONS = tuple(a.value for a in Action)
# every number in metrics.json, by its dotted name (what --fail-on may name), apart from the categories
METRICS: tuple[str, ...] = (
    "rows", "changed", "changed_rate", "newly_blocked", "newly_blocked_rate", "unblocked", "unblocked_rate",
    "errors", "redacted_rows", "unreplayable_rows",
    *(f"{a}_rate_{side}" for a in ACTIONS for side in ("old", "new", "delta")),
    *(f"matrix.{o}.{a}" for o in ACTIONS for a in ACTIONS),
)  # fmt: skip
CATEGORY_FIELDS = ("old", "new", "delta", "delta_rate")  # categories.<category>.<field>


def shown_text(text: str, mode: str, key_env: str = DEFAULT_KEY_ENV) -> str | None:
    """The text as an audit event of this policy would carry it (``hash``: the same ``text_hmac``, so a
    reviewer can find the row in the audit log)."""
    if mode == "full":
        return text
    if mode == "redacted":
        return redact(text, entity_spans(text))[0]
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
    redacted: bool = False  # compared on a redacted audit text, with stand-ins for its personal data


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
    redacted_rows: int = 0
    # audit events that could not be checked as they were, by reason (replay_traffic.REASONS): not among ``rows``
    unreplayable: Counter[str] = field(default_factory=Counter)

    def add(self, row: Row, old: str, old_cats: Sequence[str], new: Decision, text: str | None) -> None:
        new_cats = tuple(f.category for f in new.findings if not f.shadow)
        self.rows += 1
        self.matrix[(old, new.action.value)] += 1
        self.old_categories.update(set(old_cats))
        self.new_categories.update(set(new_cats))
        self.errors += new.error is not None
        self.redacted_rows += row.redacted
        if old != new.action.value:
            self.changed.append(
                Changed(row.line, row.id, old, new.action.value, tuple(old_cats), new_cats, text, row.redacted)
            )

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
        m["redacted_rows"] = self.redacted_rows
        m["unreplayable_rows"] = sum(self.unreplayable.values())
        cats = sorted(set(self.old_categories) | set(self.new_categories))
        m["categories"] = {
            c: {"old": self.old_categories[c], "new": self.new_categories[c],
                "delta": self.new_categories[c] - self.old_categories[c],
                "delta_rate": (self.new_categories[c] - self.old_categories[c]) / n}
            for c in cats
        }  # fmt: skip
        return m

    def to_text(self, show: int = 20) -> str:
        _check_show(show)
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
        if self.redacted_rows:
            out.append(_redacted_note(self.redacted_rows))
        if self.unreplayable:
            out.append(self._unreplayable_note())
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
                red = " (redacted text)" if ch.redacted else ""
                out.append(f"  {who}: {ch.old} -> {ch.new}{cats}{red}{text}")
        return "\n".join(out)

    def to_markdown(self, show: int = 50) -> str:
        _check_show(show)
        n = max(1, self.rows)
        red = f" {_redacted_note(self.redacted_rows)}" if self.redacted_rows else ""
        red += f" {self._unreplayable_note()}" if self.unreplayable else ""
        md = [f"# Replay: {self.policy} vs {self.baseline}", "", f"{self.rows} rows.{red}", "",
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
            red = " (redacted text)" if ch.redacted else ""
            md.append(f"- line {ch.line}: {ch.old} → {ch.new} ({','.join(ch.new_categories) or '-'}){red}{text}")
        return "\n".join(md) + "\n"

    def _unreplayable_note(self) -> str:
        """Said plainly, never folded into the changes: such a row checked anyway would show a change that never
        happened (an answer judged without its prompt, a routed request under the parent policy)."""
        why = "; ".join(f"{REASONS.get(k, k)}: {n}" for k, n in sorted(self.unreplayable.items()))
        return (
            f"not replayed: {sum(self.unreplayable.values())} more audit events, which do not hold what their "
            f"check read, so they are neither compared nor counted above. {why}"
        )

    def write(self, out_dir: str | os.PathLike[str]) -> None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        (d / "metrics.json").write_text(json.dumps(self.metrics(), indent=2, sort_keys=True), encoding="utf-8")


def _check_show(show: int) -> None:
    if show < 0:  # a negative slice end would list every changed row but the last |show|
        raise ValueError(f"show: expected 0 or more changed rows, got {show}")


def _redacted_note(n: int) -> str:
    return (
        f"compared on redacted text: {n} rows (the audit log masked their personal data; each placeholder "
        "was checked as a sample value of its kind, so redaction rules fire as they would have)"
    )


def _clip(text: str, n: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


_LIMIT = re.compile(r"^\s*([a-z_][a-z0-9_.]*)\s*(>=|<=|>|<)\s*([+-]?[0-9.]+)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    metric: str
    op: str
    value: float
    text: str

    def broken(self, metrics: Mapping[str, Any]) -> str | None:
        """A message when the limit is exceeded, else None. A category no row had counts as 0."""
        got: Any = metrics
        for part in self.metric.split("."):
            got = got.get(part) if isinstance(got, Mapping) else None
        if got is None and self.metric.startswith("categories."):
            got = 0
        if not isinstance(got, (int, float)):
            return f"{self.text}: no metric {self.metric!r}"
        hit = {">": got > self.value, "<": got < self.value, ">=": got >= self.value, "<=": got <= self.value}
        return f"{self.text}: {self.metric} is {got:.4g}" if hit[self.op] else None


def metric_help() -> str:
    """The metrics a limit may name, compactly."""
    plain = ", ".join(m for m in METRICS if "." not in m and "_rate_" not in m)
    return (
        f"{plain}, <action>_rate_old|new|delta, matrix.<old action>.<new action>, "
        f"categories.<category>.{'|'.join(CATEGORY_FIELDS)} (actions: {', '.join(ACTIONS)})"
    )


def _closest(word: str, names: Collection[str]) -> list[str]:
    """Up to three names close to ``word``; a near miss of a rate family (``blok_rate``) offers the family."""
    families = {f"{a}_rate": [f"{a}_rate_delta", f"{a}_rate_new", f"{a}_rate_old"] for a in ACTIONS}
    out: list[str] = []
    for hit in difflib.get_close_matches(word, [*families, *names], n=4, cutoff=0.6):
        out += [m for m in families.get(hit, [hit]) if m in names and m not in out]
    return out[:3]


def _unknown(text: str, what: str, word: str, names: Collection[str], listing: str) -> ValueError:
    near = _closest(word, names)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return ValueError(f"--fail-on {text!r}: no {what} {word!r}{hint} ({listing})")


def parse_limit(text: str, categories: Collection[str] | None = None) -> Limit:
    """``block_rate_delta>2%``, ``newly_blocked>10``, ``categories.self_harm.delta_rate>1%``. A metric that
    does not exist is a ValueError naming the closest ones; so is a category not in ``categories`` (when
    given: the taxonomy's and the policies' categories), since a limit on it could never be crossed. ``%`` is
    for rates only: on a count (``newly_blocked>50%``) it would compare a number of rows with 0.5, so one row
    would cross it; that is refused, naming the rate to use."""
    m = _LIMIT.match(text)
    if m is None:
        raise ValueError(f"--fail-on {text!r}: expected METRIC>VALUE (e.g. block_rate_delta>2%)")
    metric = m.group(1)
    if metric.startswith("categories.") or metric == "categories":
        parts = metric.split(".")
        if len(parts) != 3 or not parts[1]:
            raise ValueError(f"--fail-on {text!r}: expected categories.<category>.<{'|'.join(CATEGORY_FIELDS)}>")
        if parts[2] not in CATEGORY_FIELDS:
            raise _unknown(text, "category field", parts[2], CATEGORY_FIELDS, f"fields: {', '.join(CATEGORY_FIELDS)}")
        if categories is not None and parts[1] not in categories:
            raise _unknown(
                text, "category", parts[1], sorted(categories), f"categories: {', '.join(sorted(categories))}"
            )
    elif metric not in METRICS:
        raise _unknown(text, "metric", metric, METRICS, f"metrics: {metric_help()}")
    if m.group(4) and not _is_rate(metric):
        raise _percent_of_count(text, metric, m.group(2), m.group(3))
    value = float(m.group(3)) / (100.0 if m.group(4) else 1.0)
    return Limit(metric, m.group(2), value, text)


def _is_rate(metric: str) -> bool:
    """A share of the rows (0-1), which ``%`` may express; every other metric counts rows."""
    return "rate" in metric.rsplit(".", 1)[-1].split("_")


def _percent_of_count(text: str, metric: str, op: str, number: str) -> ValueError:
    # `newly_blocked>50%` read as newly_blocked > 0.5, so one newly blocked row of a thousand crossed "50%"
    parts = metric.split(".")
    if parts[0] == "categories":
        rate = ".".join([*parts[:2], f"{parts[2]}_rate"]) if f"{parts[2]}_rate" in CATEGORY_FIELDS else None
    else:
        rate = f"{metric}_rate" if f"{metric}_rate" in METRICS else None
    if rate is not None:
        fix = f"for a share of the rows use {rate}{op}{number}%"
    else:
        rates = [m for m in METRICS if _is_rate(m) and "_rate_" not in m]
        fix = (
            f"give a number of rows ({metric}{op}{number}) or name a rate: {', '.join(rates)}, "
            f"<action>_rate_old|new|delta, categories.<category>.delta_rate"
        )
    return ValueError(f"--fail-on {text!r}: {metric} is a count of rows, not a share, so % does not apply; {fix}")
