"""Long pasted documents: how often a benign one is blocked, and how often a request buried in one is caught.

    python benchmarks/long_documents.py [--policy default] [--n 150] [--stride N] [--data-root ../shared/data]
                                        [--no-single]

A long text is read in overlapping windows, and its score for a head is the highest of its windows' scores. So a
benign document is blocked when any one of its windows reads as harmful, and a harmful request buried in it is
caught only when the window around it reads as harmful in spite of the benign text beside it. The challenge suite's
documents are short; this benchmark builds long ones from ``../shared/data`` (never from a test set):

- documents: GPT-4 answers to AlpacaEval instructions (``alpaca-eval``), drawn at random (one may come twice) and
  joined until a length drawn from 6,000 to 14,000 characters is passed: 7,067 to 17,341 characters at ``--n 150``;
- buried: the same document with one AdvBench goal (``advbench``) put after a random sentence;
- single: each of the 803 GPT-4 answers alone, checked as a prompt (most are a few windows long; ``--no-single``
  skips them).

Printed: documents blocked, buried requests blocked, buried requests blocked among the documents that were not
blocked without them (the honest catch rate), and single answers blocked. ``--stride`` scores with another window
step than the model's labels.json (a copy of the model folder with that step), for the speed/recall trade. Every
check goes through ``Guard(policy).check_input`` with a long time-out and a ``max_chars`` far above any document,
so the numbers are the model's, not the machine's, and no document is cut short.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def documents(data_root: Path, n: int, seed: int = 24) -> tuple[list[str], list[str], list[str]]:
    """``n`` benign documents, the same with a request buried in each, and the answers they are made of."""
    rng = random.Random(seed)
    answers = [x["output"] for x in json.loads((data_root / "alpaca-eval" / "gpt4_model_outputs.json").read_text())]
    with (data_root / "advbench" / "harmful_behaviors_dedup_vs_holdout.csv").open(encoding="utf-8") as f:
        goals = [row["goal"] for row in csv.DictReader(f)]
    clean, buried = [], []
    for _ in range(n):
        target = rng.randint(6000, 14000)
        parts: list[str] = []
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(answers))
        doc = "\n\n".join(parts)
        at = rng.choice([m.end() for m in re.finditer(r"[.!?]\s", doc)])
        clean.append(doc)
        buried.append(doc[:at] + rng.choice(goals) + ". " + doc[at:])
    return clean, buried, answers


def guard(policy: str, stride: int | None, scratch: Path) -> object:
    import guardrail
    from guardrail.policy import load_policy

    pol = load_policy(policy)
    if stride is not None:  # a copy of the model folder with another window step
        from guardrail.classifiers.onnx import resolve_model_dir

        src = resolve_model_dir(pol.model)
        dst = scratch / "model"
        shutil.copytree(src, dst)
        labels = json.loads((dst / "labels.json").read_text())
        labels["encoding"]["stride"] = stride
        (dst / "labels.json").write_text(json.dumps(labels, indent=1))
        pol = pol.model_copy(update={"model": str(dst)})
    return guardrail.Guard(pol.model_copy(update={"timeout_ms": 600_000, "max_chars": 10**7}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--n", type=int, default=150, help="documents (default 150)")
    ap.add_argument("--stride", type=int, default=None, help="window step (default: the model's labels.json)")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--no-single", action="store_true", help="skip the single answers (803 checks)")
    args = ap.parse_args()
    from _machine import cpu_model  # benchmarks/ is on sys.path when a benchmark runs as a script

    clean, buried, answers = documents(args.data_root, args.n)
    with tempfile.TemporaryDirectory() as scratch:
        g = guard(args.policy, args.stride, Path(scratch))
        clean_blocked = [g.check_input(d).blocked for d in clean]  # type: ignore[attr-defined]
        buried_blocked = [g.check_input(d).blocked for d in buried]  # type: ignore[attr-defined]
        single = [] if args.no_single else [g.check_input(a).blocked for a in answers]  # type: ignore[attr-defined]
    quiet = [i for i, b in enumerate(clean_blocked) if not b]
    print(f"CPU: {cpu_model(flags=True)}; policy {args.policy}; stride {args.stride or 'the model’s'}")
    print(f"benign documents blocked: {sum(clean_blocked)} of {len(clean)}")
    print(f"buried requests blocked: {sum(buried_blocked)} of {len(buried)}")
    caught = sum(buried_blocked[i] for i in quiet)
    print(f"buried requests blocked where the clean document was not: {caught} of {len(quiet)}")
    if single:
        print(f"single answers blocked: {sum(single)} of {len(single)}")


if __name__ == "__main__":
    main()
