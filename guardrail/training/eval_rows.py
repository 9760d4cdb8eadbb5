"""A run's recorded dev and held-out rows (``eval_rows.jsonl``): the one module that writes and reads them.

Why they are recorded: the random split (every run before the group-hash split) moves when one row is added to
the data, and even the group-hash split moves when the data or the build code change, so a later comparison
(benchmarks/dev_report.py --rows, a continuation's before/after) cannot count on rebuilding it. Why a later run may keep
them out of training: a new full run that trained on an older run's dev rows would make the comparison on
those rows flatter the new model; ``keep_out`` moves them, and every row grouped with them by meaning, to dev.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from guardrail.training.examples import Example

FILE = "eval_rows.jsonl"


def record(work: Path, evaluated: Sequence[Example]) -> None:
    """Write the exact dev and held-out rows of a run to ``work/eval_rows.jsonl``."""
    with open(work / FILE, "w", encoding="utf-8") as fh:
        for e in evaluated:
            row = {
                "text": e.text, "prompt": e.prompt, "labels": e.labels, "stage": e.stage, "source": e.source,
                "kind": e.kind, "split": e.split, "meta": e.meta, "response_class": e.response_class, "group": e.group,
            }  # fmt: skip
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read(path: Path) -> list[Example]:
    rows: list[Example] = []
    with open(path, encoding="utf-8") as fh:  # line iteration: texts may hold U+2028
        for line in fh:
            r = json.loads(line)
            rows.append(Example(r["text"], r["labels"], r["source"], r["stage"], r["prompt"], r["response_class"],
                                r["group"], kind=r["kind"], split=r["split"], meta=r["meta"]))  # fmt: skip
    return rows


def keep_out(examples: Sequence[Example], paths: Sequence[Path], log: Callable[[str], None] = print) -> int:
    """Move every training row that another run recorded for evaluation (``paths``), and every row this build
    groups with one of them, to the dev split; returns how many moved. A group never spans train and dev (the
    train side of a group that also has held-out rows moves to dev, not to held-out: held-out is per source)."""
    held = {e.key for p in paths for e in read(Path(p))}
    groups = {e.group for e in examples if e.key in held}
    moved = 0
    for e in examples:
        if e.split == "train" and (e.key in held or e.group in groups):
            e.split = "dev"
            moved += 1
    log(f"kept out of training: {moved} rows recorded for evaluation by {', '.join(map(str, paths))} (now dev)")
    return moved
