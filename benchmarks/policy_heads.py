"""Which category heads should the default policy act on? Recall gained against over-refusal added, measured.

    python benchmarks/policy_heads.py [--model PATH] --embedding-cache RUN/.cache [--data-root ../shared/data]

The default policy blocks on ``unsafe`` and ``jailbreak``. A category head (weapons, sexual_minors, ...) can
add recall where ``unsafe`` stays under its threshold, at the price of flagging more benign look-alikes. For each
head, at the model's calibrated threshold, on the training run's random dev split (rebuilt exactly with the
run's embedding cache) and the sources held out whole:

- gained: harmful rows (unsafe = 1) that ``unsafe``/``jailbreak`` miss and the head catches;
- added FP: hard negatives (look-alikes, counter-speech, support posts, everyday questions in every language)
  that ``unsafe``/``jailbreak`` pass and the head flags.

A head earns a rule when it gains at least twice the share it adds (``--ratio``). The challenge suite is
never used here (it is for reporting only).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEADS = (
    "hate", "harassment", "threat", "violence", "sexual", "sexual_minors", "self_harm", "weapons",
    "controlled_substances", "criminal_planning", "pii",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--embedding-cache", required=True)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--ratio", type=float, default=2.0)
    args = ap.parse_args(argv)
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115
    from guardrail.classifiers.onnx import OnnxClassifier, bundled_model_dir
    from guardrail.training.dataset import build
    from guardrail.training.pipeline import _embedder, is_hard_negative

    folder = Path(args.model).resolve() if args.model else bundled_model_dir()
    clf = OnnxClassifier(folder)
    thr = {lab.id: lab.thresholds.get("input", lab.threshold) for lab in clf.info.labels}
    built = build(Path(args.data_root), _embedder(2, Path(args.embedding_cache)), log=lambda _: None)
    rows = [e for e in built if e.split in ("dev", "holdout") and e.stage == "input"]
    probs: list[dict[str, float]] = []
    for s in range(0, len(rows), 128):
        part = rows[s : s + 128]
        probs += clf.predict([e.text for e in part], prompts=[e.prompt for e in part])
    harmful = np.array([e.labels.get("unsafe") == 1.0 for e in rows])
    hard = np.array([is_hard_negative(e) for e in rows])
    base = np.array([p["unsafe"] >= thr["unsafe"] or p["jailbreak"] >= thr["jailbreak"] for p in probs])
    print(f"model {folder.name}; {int(harmful.sum())} harmful, {int(hard.sum())} hard-negative input rows")
    print(f"unsafe|jailbreak alone: recall {base[harmful].mean():.3f}, hard-negative FPR {base[hard].mean():.3f}\n")
    print("| head | threshold | recall gained | FPR added | verdict |\n|---|---|---|---|---|")
    chosen = []
    for head in HEADS:
        fires = np.array([p.get(head, 0.0) >= thr.get(head, 1.0) for p in probs])
        gained = float((fires & ~base)[harmful].mean())
        added = float((fires & ~base)[hard].mean())
        ok = gained > 0 and gained >= args.ratio * added
        chosen += [head] if ok else []
        print(f"| {head} | {thr.get(head, float('nan')):.3f} | {gained:.4f} | {added:.4f} | {'rule' if ok else '-'} |")
    allf = base.copy()
    for head in chosen:
        allf |= np.array([p.get(head, 0.0) >= thr[head] for p in probs])
    print(f"\nwith {chosen}: recall {allf[harmful].mean():.3f}, hard-negative FPR {allf[hard].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
