"""``guardrail calibrate DATA --target-fpr 0.02 | --target-recall R``: per-category thresholds from your data.

Only the argument parser lives at module level (building the CLI must not import numpy or pydantic);
the work is in :mod:`guardrail.evaluation.calibration`.

Which policy is calibrated: ``--policy``; else the ``--write`` FILE when it exists (the file being
updated is the one whose rules and thresholds count, so its "was" column is its own); else the bundled
default, with every labelled category. A category is skipped, and said so, when it has fewer than
``--min-examples`` (20) positives or negatives on a stage, or when the policy has no rule for it on
that stage and ``--add-rules`` was not given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.classifiers.base import Classifier

__all__ = ["add_parser", "cmd_calibrate"]

MIN_EXAMPLES = 20  # guardrail.evaluation.calibration.MIN_EXAMPLES (not imported: it would import numpy)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose per-category thresholds on labelled data for a target false-positive rate or recall",
        description="Score DATA (the `guardrail eval` format) and choose, per category, the threshold meeting the "
        "target; print the expected precision/recall and optionally write the thresholds into a policy file.",
    )
    p.add_argument("data", help="JSONL or CSV file with labels")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-fpr", type=float, help="highest false-positive rate on each category's negatives")
    target.add_argument("--target-recall", type=float, help="lowest share of each category's positives to flag")
    p.add_argument(
        "--policy", "-p", default=None,
        help="the policy whose rules to calibrate (default: the --write FILE when it exists, else the bundled "
        "default policy, trying every labelled category)",
    )  # fmt: skip
    p.add_argument("--model", default=None, help="model folder to score with (default: the policy's model)")
    p.add_argument("--categories", default=None, help="comma-separated categories to calibrate (default: see --policy)")
    p.add_argument("--write", "-w", default=None, metavar="FILE",
                   help="new policy file (extends --policy), or an existing one to update in place (without "
                   "--policy, an existing FILE is also the policy calibrated)")  # fmt: skip
    p.add_argument("--min-examples", type=int, default=MIN_EXAMPLES, metavar="N",
                   help=f"fewest positives, and fewest negatives, a category needs on a stage to get a threshold "
                   f"(default: {MIN_EXAMPLES}); categories with fewer are skipped and said so")  # fmt: skip
    p.add_argument("--add-rules", action="store_true",
                   help="also add rules for categories the policy has no rule for on a stage (default: skip "
                   "them and say so)")  # fmt: skip
    p.add_argument("--action", default="block", choices=("block", "log"),
                   help="action of the rules --add-rules adds (default: block)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the choices as JSON")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace, classifier: Classifier | None = None) -> int:
    """``classifier`` replaces the policy's model (tests pass a FakeClassifier)."""
    from guardrail.evaluation.calibration import (
        choose_thresholds,
        flow_rule_for,
        format_choices,
        labelled_targets,
        score_rows,
        without_new_rules,
        write_policy,
    )
    from guardrail.evaluation.data import Progress, load_rows
    from guardrail.evaluation.evaluator import with_model
    from guardrail.policy import load_policy

    for name, v in (("--target-fpr", args.target_fpr), ("--target-recall", args.target_recall)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    if args.min_examples < 1:
        raise ValueError("--min-examples must be at least 1")
    rows = load_rows(args.data)
    existing = args.write is not None and Path(args.write).exists()
    policy_ref = args.policy
    if policy_ref is None and existing:
        policy_ref = args.write
        print(f"calibrating the rules of {args.write} (no --policy given)", file=sys.stderr)
    policy = with_model(policy_ref, args.model) if args.model else load_policy(policy_ref)
    if classifier is None:
        from guardrail.classifiers.onnx import OnnxClassifier

        classifier = OnnxClassifier(policy.model)
    scores = score_rows(rows, classifier, progress=Progress(len(rows), "scoring "))
    cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    targets = labelled_targets(rows, scores, rules_of=policy if policy_ref else None, categories=cats)
    choices = choose_thresholds(
        rows, scores, targets, target_fpr=args.target_fpr, target_recall=args.target_recall, policy=policy,
        min_examples=args.min_examples,
    )  # fmt: skip
    if not args.add_rules:  # the rules the result will have: the file's when it is updated, else the policy's
        owner = load_policy(args.write) if existing and policy_ref != args.write else policy
        choices = without_new_rules(choices, owner, args.write if existing else (policy_ref or "default"))
    if policy_ref is None and cats is None:  # everything labelled: heads with no positives are just noise
        choices = [c for c in choices if c.threshold is not None or c.n_pos]
    if not choices:
        raise ValueError(
            "no category has both labels and scores in this data; see `guardrail eval --help` for the format"
        )
    if args.json:
        print(json.dumps([{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}
                          for c in choices], indent=1))  # fmt: skip
    else:
        print(format_choices(choices))
    chosen = [c for c in choices if c.threshold is not None]
    if args.write and not chosen:
        raise ValueError(f"{args.write} not written: no category could be calibrated (see the notes above)")
    if args.write:
        target = "false-positive rate" if args.target_fpr is not None else "recall"
        value = args.target_fpr if args.target_fpr is not None else args.target_recall
        header = (
            f"Thresholds chosen by `guardrail calibrate` for a {target} of {value:g} per category on\n"
            f"{Path(args.data).name} ({len(rows)} rows). The expected numbers noted on each rule were measured on\n"
            "that data; check them with `guardrail eval` on data they were not chosen on.\n"
        )
        verb = write_policy(
            Path(args.write), choices, base=policy, policy_ref=args.policy, action=args.action, header=header,
            model=args.model,
        )  # fmt: skip
        print(f"{verb} {args.write}", file=sys.stderr)
    elif not args.json and chosen:
        print("\nrules (paste into a policy, or use --write FILE):")
        for c in chosen:
            print(f"  {c.stage}: - {flow_rule_for(policy, c, args.action)}")
    return 0
