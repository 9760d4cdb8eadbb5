"""The training run's dev split and held-out sources, for the new model beside a baseline, on the same rows.

    python benchmarks/dev_report.py (--rows RUN/eval_rows.jsonl | --embedding-cache RUN/.cache)
                                    [--model PATH] [--baseline-model PATH] [--data-root ../shared/data] [--json FILE]

``--rows``: the dev and held-out rows a training run recorded (exact). ``--embedding-cache``: rebuild the
split as training built it (same seed, the run's embedding cache for the grouping by meaning); exact only
while the data on disk is the data the run read (one added row moves the random split), and for runs since
session 19 (earlier ones grouped rows by batch-computed vectors that cannot be rebuilt). Printed per model,
each at its own shipped thresholds (labels.json): AUPRC, precision/recall/F1 of ``unsafe`` and ``jailbreak``
(input) and ``harmful_response`` (output); false positives on hard negatives (look-alikes, counter-speech,
support posts, everyday questions in every language) and on ordinary prompts; and per language, benign rows
flagged and unsafe recall. Then, for the default policy's design: what each category head would add in recall
where ``unsafe``/``jailbreak`` miss, against the over-refusal it adds (a head earns a rule when it gains at
least twice what it adds). The challenge suite is never used here (benchmarks/challenge.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEADS = (
    "hate", "harassment", "threat", "violence", "sexual", "sexual_minors", "self_harm", "weapons",
    "controlled_substances", "criminal_planning", "pii",
)  # fmt: skip


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    from guardrail.training.calibrate import average_precision

    return float(average_precision(y, s)) if y.any() and (~y).any() else float("nan")


def score(folder: Path, rows: list[Any]) -> tuple[list[dict[str, float]], dict[str, dict[str, float]]]:
    from guardrail.classifiers.onnx import OnnxClassifier

    clf = OnnxClassifier(folder)
    probs: list[dict[str, float]] = [{} for _ in rows]
    for stage in ("input", "output"):
        idx = [i for i, e in enumerate(rows) if e.stage == stage]
        for s in range(0, len(idx), 128):
            part = idx[s : s + 128]
            prompts = [rows[i].prompt for i in part]
            use = prompts if stage == "output" or any(p is not None for p in prompts) else None
            # a MiniLM (v3) model was never shown contexts: it gets the input text alone
            if stage == "input" and clf.info.scripts is None:
                use = None
            for i, p in zip(part, clf.predict([rows[i].text for i in part], stage=stage, prompts=use), strict=True):
                probs[i] = p
    thr = {
        lab.id: {st: lab.thresholds.get(st, lab.threshold) for st in lab.stages} for lab in clf.info.labels
    }  # fmt: skip
    return probs, thr


def report(rows: list[Any], probs: list[dict[str, float]], thr: dict[str, dict[str, float]]) -> dict[str, Any]:
    from guardrail.training.measure import is_hard_negative, is_ordinary

    out: dict[str, Any] = {}
    for split in ("dev", "holdout"):
        for head, stage in (("unsafe", "input"), ("jailbreak", "input"), ("harmful_response", "output")):
            idx = [i for i, e in enumerate(rows) if e.split == split and e.stage == stage and head in e.labels]
            if not idx:
                continue
            y = np.array([rows[i].labels[head] == 1.0 for i in idx])
            s = np.array([probs[i].get(head, 0.0) for i in idx])
            t = thr.get(head, {}).get(stage, 0.5)
            pred = s >= t
            tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
            p_, r_ = tp / max(1, tp + fp), tp / max(1, tp + fn)
            hard = [i for i in idx if is_hard_negative(rows[i])]
            ordinary = [i for i in idx if is_ordinary(rows[i])]
            out[f"{split}/{head}"] = {
                "n_pos": int(y.sum()), "n": len(idx), "auprc": auprc(y, s), "threshold": t,
                "precision": p_, "recall": r_, "f1": 2 * p_ * r_ / max(1e-9, p_ + r_),
                "hard_neg_fpr": float(np.mean([probs[i].get(head, 0.0) >= t for i in hard])) if hard else None,
                "ordinary_fpr": float(np.mean([probs[i].get(head, 0.0) >= t for i in ordinary])) if ordinary else None,
            }  # fmt: skip
    langs: dict[str, Any] = {}
    for lang in sorted({e.meta.get("lang") for e in rows if e.meta.get("lang")}):
        idx = [i for i, e in enumerate(rows) if e.split == "dev" and e.stage == "input" and e.meta.get("lang") == lang]
        benign = [i for i in idx if not any(v == 1.0 for v in rows[i].labels.values())]
        harm = [i for i in idx if rows[i].labels.get("unsafe") == 1.0]
        flag = [
            probs[i]["unsafe"] >= thr["unsafe"]["input"] or probs[i]["jailbreak"] >= thr["jailbreak"]["input"]
            for i in benign
        ]
        langs[lang] = {
            "n_benign": len(benign), "benign_flagged": float(np.mean(flag)) if flag else None,
            "n_harmful": len(harm),
            "unsafe_recall": float(np.mean([probs[i]["unsafe"] >= thr["unsafe"]["input"] for i in harm]))
            if harm else None,
        }  # fmt: skip
    out["languages"] = langs
    return out


def heads(
    rows: list[Any],
    probs: list[dict[str, float]],
    thr: dict[str, dict[str, float]],
    ratio: float,
    also: Sequence[str] = (),
) -> None:
    from guardrail.training.measure import is_hard_negative

    idx = [i for i, e in enumerate(rows) if e.stage == "input"]
    harmful = np.array([rows[i].labels.get("unsafe") == 1.0 for i in idx])
    hard = np.array([is_hard_negative(rows[i]) for i in idx])
    t_u, t_j = thr["unsafe"]["input"], thr["jailbreak"]["input"]
    base = np.array([probs[i]["unsafe"] >= t_u or probs[i]["jailbreak"] >= t_j for i in idx])
    print(f"\nunsafe|jailbreak alone (dev+holdout input): recall {base[harmful].mean():.3f}, "
          f"hard-negative FPR {base[hard].mean():.3f}")  # fmt: skip
    print("\n| head | threshold | recall gained | FPR added | verdict |\n|---|---|---|---|---|")
    chosen = []
    for head in HEADS:
        t = thr.get(head, {}).get("input", 1.0)
        fires = np.array([probs[i].get(head, 0.0) >= t for i in idx])
        gained, added = float((fires & ~base)[harmful].mean()), float((fires & ~base)[hard].mean())
        ok = gained > 0 and gained >= ratio * added
        chosen += [head] if ok else []
        print(f"| {head} | {t:.3f} | {gained:.4f} | {added:.4f} | {'rule' if ok else '-'} |")
    for heads_on in [chosen, list(also)] if also else [chosen]:
        allf = base.copy()
        for head in heads_on:
            allf |= np.array([probs[i].get(head, 0.0) >= thr[head]["input"] for i in idx])
        print(f"\nwith rules on {heads_on}: recall {allf[harmful].mean():.3f}, "
              f"hard-negative FPR {allf[hard].mean():.3f}")  # fmt: skip


def fmt(x: Any) -> str:
    return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--baseline-model", default=None)
    ap.add_argument("--embedding-cache", default=None)
    ap.add_argument("--rows", type=Path, default=None, help="eval_rows.jsonl written by the training run")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--ratio", type=float, default=2.0)
    ap.add_argument("--heads", default="", help="comma-separated heads: also print recall and FPR with rules on these")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    also = [h.strip() for h in args.heads.split(",") if h.strip()]
    if unknown := [h for h in also if h not in HEADS]:
        ap.error(f"--heads: not an input category head: {', '.join(unknown)} (choose from {', '.join(HEADS)})")
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115
    from guardrail.classifiers.onnx import bundled_model_dir
    from guardrail.training.dataset import build
    from guardrail.training.pipeline import _embedder

    if args.rows:
        from guardrail.training.examples import Example

        rows = []
        for line in args.rows.open(encoding="utf-8"):  # not splitlines(): texts may hold U+2028 and the like
            r = json.loads(line)
            rows.append(Example(r["text"], r["labels"], r["source"], r["stage"], r["prompt"], r["response_class"],
                                r["group"], kind=r["kind"], split=r["split"], meta=r["meta"]))  # fmt: skip
    elif args.embedding_cache:
        from guardrail.training.unpack import recorded_split

        folder = Path(args.model).resolve() if args.model else bundled_model_dir()  # the split it was trained on
        built = build(Path(args.data_root), _embedder(2, Path(args.embedding_cache)), split=recorded_split(folder),
                      log=lambda _: None)  # fmt: skip
        rows = [e for e in built if e.split in ("dev", "holdout")]
    else:
        ap.error("give --rows or --embedding-cache")
    models = {"model": Path(args.model).resolve() if args.model else bundled_model_dir()}
    if args.baseline_model:
        models["baseline"] = Path(args.baseline_model).resolve()
    results: dict[str, Any] = {}
    scored: dict[str, Any] = {}
    for name, folder in models.items():
        probs, thr = score(folder, rows)
        scored[name] = (probs, thr)
        results[name] = report(rows, probs, thr)
    names = list(results)
    print("| split/head | " + " | ".join(f"{n}: AUPRC / P / R / F1 / hardFPR / ordFPR" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for key in results[names[0]]:
        if key == "languages":
            continue
        cells = []
        for n in names:
            r = results[n].get(key, {})
            cells.append(" / ".join(fmt(r.get(k)) for k in ("auprc", "precision", "recall", "f1", "hard_neg_fpr",
                                                              "ordinary_fpr")))  # fmt: skip
        print(f"| {key} (n+ {results[names[0]][key]['n_pos']}) | " + " | ".join(cells) + " |")
    print("\n| lang | " + " | ".join(f"{n}: benign flagged / unsafe recall" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for lang in results[names[0]]["languages"]:
        cells = []
        for n in names:
            v = results[n]["languages"].get(lang, {})
            cells.append(f"{fmt(v.get('benign_flagged'))} / {fmt(v.get('unsafe_recall'))}")
        v0 = results[names[0]]["languages"][lang]
        print(f"| {lang} ({v0['n_benign']}/{v0['n_harmful']}) | " + " | ".join(cells) + " |")
    heads(rows, *scored["model"], args.ratio, also)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
