"""Quality of the bundled model + default policy on the dev and held-out splits of ../shared/data.

    python benchmarks/quality.py [--model PATH] [--policy default] [--quick] [--out DIR] [--data-root DIR]

The splits are rebuilt as training builds them (``guardrail.training.dataset.build``: the dev split
by group, drawn by the method the model's folder records, ``random`` for folders from before it was
recorded; and the sources held out whole), and only ``dev`` and ``holdout`` rows are evaluated.
Training also groups near-duplicates *by meaning* (embeddings of the base encoder) before the split;
``--embedding-cache DIR`` (the ``.cache`` folder next to the training output, and the ``[train]``
extra) repeats that, so ``dev`` is exactly the model's dev split (for runs since session 19; earlier ones
grouped rows by batch-computed vectors that cannot be rebuilt). Without it the dev
split is only approximate and contains rows the model trained on (measured: unsafe AUPRC 0.98
instead of 0.92), so the script says so in its output; ``holdout`` is exact either way.

Every row goes through ``Guard.check_input``/``check_output`` (the same path as
``guardrail eval``), and the result is one table: split x stage x category, plus what the policy
would do and its over-refusal on benign look-alikes (hard negatives: scary-word questions, support
posts, contrast prompts). ``--quick`` evaluates a fixed sample (under a minute); the full run takes
a few minutes on 2 cores.

Exit status: 0 done, 2 no model (train one with ``guardrail train`` or pass ``--model``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

BENIGN_KINDS = {"benign-scary", "lookalike", "support", "neutral", "edgy-benign", "benign_lookalike", "over_refusal"}
BENIGN_SOURCES = {"oktest", "oktest-heldout", "coconot-contrast", "counsel-chat"}


def model_dir(arg: str | None) -> Path:
    from guardrail.classifiers.onnx import bundled_model_dir

    return Path(arg).resolve() if arg else bundled_model_dir()


def to_rows(examples: list[Any]) -> list[Any]:
    """Training examples as evaluation rows (labels 0/1 only; soft labels are left out)."""
    from guardrail.evaluation.data import EvalRow
    from guardrail.taxonomy import RESPONSE_CLASS_IDS

    rows = []
    for i, ex in enumerate(examples):
        truth = {k: int(v) for k, v in ex.labels.items() if v in (0.0, 1.0)}
        if ex.stage == "output" and ex.response_class is not None:
            truth.update({c: int(j == ex.response_class) for j, c in enumerate(RESPONSE_CLASS_IDS)})
        overall = "unsafe" if ex.stage == "input" else "harmful_response"
        positive = any(v == 1 for k, v in truth.items() if k not in RESPONSE_CLASS_IDS and k != "refusal")
        label = 1 if positive else truth.get(overall)  # a jailbreak counts as harmful even where unsafe is 0
        benign = not positive and (ex.kind in BENIGN_KINDS or ex.source in BENIGN_SOURCES)
        row = EvalRow(ex.text, ex.stage, ex.prompt, label=label, truth=truth, benign=benign, id=f"{ex.split}:{i}")
        rows.append((ex.split, ex.source, row))
    return rows


def sample(rows: list[Any], n: int, seed: int = 0) -> list[Any]:
    """A fixed sample stratified by split and stage (so quick runs still cover both stages)."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r[0], r[2].stage), []).append(r)
    out = []
    for key in sorted(groups):
        g = groups[key]
        out += rng.sample(g, min(len(g), n))
    return out


def fmt(v: Any, d: int = 3) -> str:
    return "—" if v is None else f"{v:.{d}f}"


def table(per_split: dict[str, dict[str, Any]]) -> str:
    from guardrail.evaluation.report import shown_categories

    head = f"{'split':8s} {'stage':6s} {'category':22s} {'n+':>5s} {'n-':>6s} {'thr':>5s} {'prec':>6s} {'recall':>6s} "
    head += f"{'F1':>6s} {'FPR':>6s} {'AUPRC':>6s} {'R@1%':>6s} {'R@5%':>6s}"
    lines = [head, "-" * len(head)]
    for split, rep in per_split.items():
        for m in shown_categories(rep):
            lines.append(
                f"{split:8s} {m['stage']:6s} {m['category']:22s} {m['n_pos']:5d} {m['n_neg']:6d} "
                f"{fmt(m['threshold'], 2):>5s} "
                f"{fmt(m['precision']):>6s} {fmt(m['recall']):>6s} {fmt(m['f1']):>6s} {fmt(m['fpr']):>6s} "
                f"{fmt(m['auprc']):>6s} {fmt(m['recall_at_fpr']['1%']):>6s} {fmt(m['recall_at_fpr']['5%']):>6s}"
            )
        for stage, p in rep["policy_outcome"].items():
            lines.append(
                f"{split:8s} {stage:6s} {'POLICY (block|rewrite)':22s} {p['n_pos']:5d} {p['n_neg']:6d} {'':>5s} "
                f"{fmt(p['precision']):>6s} {fmt(p['recall']):>6s} {fmt(p['f1']):>6s} {fmt(p['fpr']):>6s}"
            )
        o = rep["over_refusal"]
        if o.get("n"):
            lines.append(
                f"{split:8s} over-refusal on {o['n']} benign look-alikes: {o['blocked']:.1%} blocked, "
                f"{o['rewritten']:.1%} rewritten"
            )
        lat = rep["latency_ms"]["all"]
        lines.append(
            f"{split:8s} latency per check: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms ({int(lat['n'])} checks)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--policy", default="default", help="policy name or YAML path (default: default)")
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--quick", action="store_true", help="a fixed sample of 150 rows per split and stage (< 1 minute)")
    ap.add_argument(
        "--embedding-cache",
        default=None,
        help="training's embedding cache folder: rebuild the exact dev split (needs the [train] extra)",
    )
    ap.add_argument("--out", default=None, help="write report.md, metrics.json and plots (all rows) here")
    args = ap.parse_args(argv)

    folder = model_dir(args.model)
    if not (folder / "model.onnx").exists():
        print(f"no model at {folder}: train one (guardrail train) or pass --model PATH", file=sys.stderr)
        return 2
    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.engine import Guard
    from guardrail.evaluation.evaluator import evaluate, quiet_audit, run_checks, with_model
    from guardrail.evaluation.report import write_outputs
    from guardrail.training.dataset import build

    quiet_audit()
    t0 = time.perf_counter()
    embed = None
    if args.embedding_cache:
        from guardrail.training.pipeline import _embedder

        embed = _embedder(2, Path(args.embedding_cache))
    else:
        print("dev split: approximate (no --embedding-cache), it overlaps training rows; holdout is exact")
    from guardrail.training.unpack import recorded_split

    built = build(Path(args.data_root), embed, split=recorded_split(folder), log=lambda _: None)
    examples = [e for e in built if e.split in ("dev", "holdout")]
    rows = to_rows(examples)
    if args.quick:
        rows = sample(rows, 150)
    print(
        f"{len(rows)} rows: "
        + ", ".join(f"{s}/{st} {n}" for (s, st), n in sorted(Counter((r[0], r[2].stage) for r in rows).items()))
    )
    policy = with_model(args.policy, folder)
    run_policy = policy.model_copy(update={"timeout_ms": 60_000})  # quality, not time-outs (latency is reported)
    clf = OnnxClassifier(folder)
    clf.warmup()
    with Guard(run_policy, classifiers=clf) as guard:
        checked = run_checks(guard, [r[2] for r in rows])
    by_split: dict[str, Any] = {}
    for split in ("dev", "holdout"):
        part = [c for c, r in zip(checked, rows, strict=True) if r[0] == split]
        if part:
            by_split[split] = evaluate(part, policy)
    print(f"model {folder} · policy {policy.name} · {time.perf_counter() - t0:.0f} s\n")
    print(table(by_split))
    if args.out:
        write_outputs(evaluate(checked, policy), Path(args.out))
        print(f"\nwrote {args.out}/report.md (dev + holdout together)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
