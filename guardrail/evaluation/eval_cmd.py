"""``guardrail eval DATA --policy P --out DIR``: per-category metrics, actions, over-refusal and latency.

Only the argument parser lives at module level (building the CLI must not import numpy or pydantic);
the work is in :mod:`guardrail.evaluation.evaluator`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier

__all__ = ["add_parser", "cmd_eval"]

DEFAULT_EVAL_TIMEOUT_MS = 30_000  # a time-out during an eval would score a fail-mode block, not the model


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a policy on labelled data (per-category metrics, actions, over-refusal, latency)",
        description="Check every row of DATA with the policy and report how it did. DATA is JSONL or CSV with "
        "`text`, optional `prompt` (the row is then a response), and a binary `label` and/or category labels "
        "(a `labels` list, or 0/1 columns named after categories); `benign: true` marks over-refusal probes.",
    )
    p.add_argument("data", help="JSONL or CSV file")
    p.add_argument("--policy", "-p", default=None, help="bundled policy name or YAML path (default: default)")
    p.add_argument("--model", default=None, help="model folder to score with (default: the policy's model)")
    p.add_argument("--out", "-o", default=None, help="write report.md, metrics.json and PNG plots to this folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--show", type=int, default=10, help="benign examples to list on each side of the threshold")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the table")
    p.add_argument(
        "--timeout-ms", type=int, default=DEFAULT_EVAL_TIMEOUT_MS,
        help="time-out per check during the run (0: the policy's own; a time-out is scored as the fail mode)",
    )  # fmt: skip
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace, classifiers: Classifier | None = None) -> int:
    """``classifiers`` replaces the policy's model (tests pass a FakeClassifier)."""
    from guardrail.evaluation.data import Progress, load_rows
    from guardrail.evaluation.evaluator import quiet_audit, run_eval, with_model
    from guardrail.evaluation.report import format_table, public_report
    from guardrail.policy import load_policy

    quiet_audit()
    rows = load_rows(args.data)[: args.limit]
    policy = with_model(args.policy, args.model) if args.model else load_policy(args.policy)
    out = Path(args.out) if args.out else None
    report = run_eval(
        rows, policy, classifiers=classifiers, out=out, plots=not args.no_plots, show=args.show,
        timeout_ms=args.timeout_ms or None, progress=Progress(len(rows), "eval "),
    )  # fmt: skip
    if args.json:
        print(json.dumps(public_report(report), indent=1, ensure_ascii=False))
    else:
        print(format_table(report))
        if out is not None:
            print(f"wrote {out / 'report.md'}, metrics.json and {len(report['files']) - 2} plot(s)", file=sys.stderr)
    return 0
