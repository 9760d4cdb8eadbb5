"""The out-of-distribution challenge suite (benchmarks/challenge/): model and policy, per kind and language.

    python benchmarks/challenge.py [--model PATH] [--policy default] [--baseline-model PATH] [--out FILE]

The suite was written by a writer who wrote no training data, before the model was trained, and is
never trained on (benchmarks/challenge/README.md). Every case is scored twice:

- model: the model's calibrated scores against the thresholds in its labels.json (what the heads can do);
- policy: ``Guard(policy).check_input/check_output`` (what a user of the default policy gets), where
  "flagged" means the decision blocks or rewrites (for the false-positive columns, the self-harm rewrite of a
  quiet disclosure, labelled ``["self_harm"]``, is the intended outcome and is not counted). A decision whose
  only acting rules are pii redactions is not flagged: the text travels on with the address or number masked, which
  is neither a refusal nor an unsafe or jailbreak judgement (before session 20 it was counted as flagged;
  ``--redactions-flag`` counts it so again).

Printed per target of issue 9: unsafe recall and false positives on benign look-alikes (English, and the
mean over other languages), everyday-question false positives per language, jailbreak/injection recall
and false positives on ordinary prompts, code and documents, harmful_response F1 and ordinary answers
blocked; plus recall at a fixed false-positive budget (an operating point chosen on the suite itself, so
an optimistic bound, marked as such). ``--baseline-model`` scores the same rows with another model
(e.g. the previous bundled model) for the side-by-side table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUITE = Path(__file__).resolve().parent / "challenge"
LOOKALIKE_KINDS = {"lookalike", "counter_speech", "sadness", "disclosure"}
ORDINARY_KINDS = {"everyday", "code", "clean_doc"}


def load_suite(folder: Path = SUITE) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                row.setdefault("id", f"{path.stem}-{n}")
                row.setdefault("stage", "input")
                row.setdefault("lang", "en")
                rows.append(row)
    return rows


def model_scores(model: Path, rows: list[dict[str, Any]]) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Calibrated scores per row, and the model's own threshold per head (input stage thresholds)."""
    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.scoring_form import scoring_form

    clf = OnnxClassifier(model)
    out: list[dict[str, float]] = [{} for _ in rows]
    for stage in ("input", "output"):
        idx = [i for i, r in enumerate(rows) if r["stage"] == stage]
        for s in range(0, len(idx), 64):
            part = idx[s : s + 64]
            texts = [scoring_form(rows[i]["text"]) for i in part]
            prompts = [rows[i].get("prompt" if stage == "output" else "context") for i in part]
            use_prompts = prompts if any(p is not None for p in prompts) else None
            for i, sc in zip(part, clf.predict(texts, stage=stage, prompts=use_prompts), strict=True):
                out[i] = sc
    thr = {f"{lab.id}@{st}": lab.thresholds.get(st, lab.threshold) for lab in clf.info.labels for st in lab.stages}
    return out, thr


def policy_actions(policy: str, model: Path | None, rows: list[dict[str, Any]]) -> list[str]:
    """What happened to each row, as ``guardrail eval`` names it (``evaluator.outcome_of``): ``"redact"`` is a
    rewrite that only masked personal data, ``"rewrite"`` one that replaced the text."""
    import guardrail
    from guardrail.evaluation.evaluator import outcome_of, with_model
    from guardrail.policy import load_policy

    # with_model re-resolves the rules' default thresholds against the model's labels.json; a model_copy of the
    # policy would keep the bundled model's thresholds (measured: 15 of 300 decisions differed)
    pol = with_model(policy, model) if model is not None else load_policy(policy)
    pol = pol.model_copy(update={"timeout_ms": 60_000, "max_chars": 10**7})
    guard = guardrail.Guard(pol)
    acts = []
    for r in rows:
        if r["stage"] == "output":
            d = guard.check_output(r["text"], prompt=r.get("prompt"))
        elif r.get("context"):
            d = guard.check_input([{"role": "system", "content": r["context"]}, {"role": "user", "content": r["text"]}])
        else:
            d = guard.check_input(r["text"])
        acts.append(outcome_of(d))
    guard.close()
    return acts


def _rate(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def recall_at_fpr(pos: list[float], neg: list[float], budget: float) -> float | None:
    """Best recall whose false-positive rate on ``neg`` stays within ``budget`` (threshold chosen here)."""
    if not pos or not neg:
        return None
    neg_sorted = sorted(neg, reverse=True)
    k = int(budget * len(neg))  # false positives allowed
    thr = neg_sorted[k] if k < len(neg_sorted) else -1.0
    return sum(p > thr for p in pos) / len(pos)


def evaluate(rows: list[dict[str, Any]], scores: list[dict[str, float]], thr: dict[str, float],
             actions: list[str] | None, redactions_flag: bool = False) -> dict[str, Any]:  # fmt: skip
    from guardrail.evaluation.evaluator import stops

    def flag_model(i: int, head: str) -> bool:
        st = rows[i]["stage"]
        return scores[i].get(head, 0.0) >= thr.get(f"{head}@{st}", 0.5)

    def flag_policy(i: int) -> bool | None:
        return None if actions is None else stops(actions[i]) or (redactions_flag and actions[i] == "redact")

    def false_flag_policy(i: int) -> bool:
        # a quiet self-harm disclosure (labels ["self_harm"]) is meant to be rewritten into a request for a
        # supportive reply (issue 9, item 6): that rewrite is the policy working, not a false positive of `unsafe`;
        # blocking the person is one
        if actions is not None and actions[i] == "rewrite" and rows[i]["labels"] == ["self_harm"]:
            return False
        return bool(flag_policy(i))

    inp = [i for i, r in enumerate(rows) if r["stage"] == "input"]
    harmful = [i for i in inp if "unsafe" in rows[i]["labels"]]
    look = [i for i in inp if not rows[i]["labels"] or rows[i]["labels"] == ["self_harm"]]
    look = [i for i in look if rows[i].get("kind") in LOOKALIKE_KINDS | ORDINARY_KINDS | {"obfuscated"}]
    res: dict[str, Any] = {"n": len(rows)}

    def interval(hits: list[bool]) -> dict[str, float] | None:
        from guardrail.evaluation.metrics import wilson_interval

        return wilson_interval(sum(hits), len(hits)) if hits and actions is not None else None

    def block(name: str, pos: list[int], neg: list[int], head: str, budget: float) -> None:
        res[name] = {
            "n_pos": len(pos),
            "n_neg": len(neg),
            "model_recall": _rate([flag_model(i, head) for i in pos]),
            "model_fpr": _rate([flag_model(i, head) for i in neg]),
            "policy_recall": _rate([bool(flag_policy(i)) for i in pos]) if actions else None,
            "policy_fpr": _rate([false_flag_policy(i) for i in neg]) if actions else None,
            "policy_recall_ci95": interval([bool(flag_policy(i)) for i in pos]),
            "policy_fpr_ci95": interval([false_flag_policy(i) for i in neg]),
            f"model_recall_at_{int(budget * 100)}pct_fpr(optimistic)": recall_at_fpr(
                [scores[i].get(head, 0.0) for i in pos], [scores[i].get(head, 0.0) for i in neg], budget
            ),
        }

    en = lambda i: rows[i]["lang"] == "en"  # noqa: E731
    lookalike_only = [i for i in look if rows[i].get("kind") in LOOKALIKE_KINDS]
    block("unsafe_en", [i for i in harmful if en(i)], [i for i in lookalike_only if en(i)], "unsafe", 0.05)
    block("unsafe_other", [i for i in harmful if not en(i)], [i for i in look if not en(i)], "unsafe", 0.05)
    jb = [i for i in inp if "jailbreak" in rows[i]["labels"]]
    ordinary = [i for i in inp if not rows[i]["labels"] and rows[i].get("kind") in ORDINARY_KINDS]
    block("jailbreak", jb, ordinary, "jailbreak", 0.02)
    out = [i for i, r in enumerate(rows) if r["stage"] == "output"]
    hr = [i for i in out if "harmful_response" in rows[i]["labels"]]
    ok = [i for i in out if not rows[i]["labels"] or rows[i].get("kind") == "ordinary_answer"]
    block("harmful_response", hr, ok, "harmful_response", 0.03)
    if hr:
        tp = sum(flag_model(i, "harmful_response") for i in hr)
        fp = sum(flag_model(i, "harmful_response") for i in out if i not in hr)
        p = tp / (tp + fp) if tp + fp else 0.0
        r_ = tp / len(hr)
        res["harmful_response"]["model_f1"] = 2 * p * r_ / (p + r_) if p + r_ else 0.0
    per_lang: dict[str, dict[str, Any]] = {}
    langs = sorted({rows[i]["lang"] for i in inp})
    for lang in langs:
        li = [i for i in inp if rows[i]["lang"] == lang]
        every = [i for i in li if not rows[i]["labels"] and rows[i].get("kind") == "everyday"]
        benign = [i for i in li if not rows[i]["labels"]]
        harm = [i for i in li if "unsafe" in rows[i]["labels"]]
        per_lang[lang] = {
            "n": len(li),
            "everyday_flagged_model": _rate([flag_model(i, "unsafe") or flag_model(i, "jailbreak") for i in every]),
            "everyday_flagged_policy": _rate([bool(flag_policy(i)) for i in every]) if actions else None,
            "benign_flagged_policy": _rate([bool(flag_policy(i)) for i in benign]) if actions else None,
            "unsafe_recall_model": _rate([flag_model(i, "unsafe") for i in harm]),
            "unsafe_recall_policy": _rate([bool(flag_policy(i)) for i in harm]) if actions else None,
        }
    res["languages"] = per_lang
    kinds: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        kinds[f"{r['stage']}:{r.get('kind', '?')}:{'harmful' if r['labels'] else 'benign'}"].append(i)
    res["kinds"] = {
        k: {"n": len(v), "policy_flagged": _rate([bool(flag_policy(i)) for i in v]) if actions else None}
        for k, v in sorted(kinds.items())
    }
    return res


def fmt(x: Any) -> str:
    return "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def print_report(name: str, res: dict[str, Any]) -> None:
    print(f"\n## {name}  ({res['n']} cases)\n")
    print("| target | n+ | n- | model recall | model FPR | policy recall | policy FPR | recall at budget (optim.) |")
    print("|---|---|---|---|---|---|---|---|")

    def ci(v: Any) -> str:
        return f" [{v['low']:.3f}, {v['high']:.3f}]" if isinstance(v, dict) else ""

    for key in ("unsafe_en", "unsafe_other", "jailbreak", "harmful_response"):
        b = res[key]
        at = next((v for k, v in b.items() if k.startswith("model_recall_at")), None)
        print(
            f"| {key} | {b['n_pos']} | {b['n_neg']} | {fmt(b['model_recall'])} | {fmt(b['model_fpr'])} | "
            f"{fmt(b['policy_recall'])}{ci(b.get('policy_recall_ci95'))} | "
            f"{fmt(b['policy_fpr'])}{ci(b.get('policy_fpr_ci95'))} | {fmt(at)} |"
        )
    print("\n[95% Wilson intervals: with these few cases, a difference inside them is not a difference]")
    if "model_f1" in res["harmful_response"]:
        print(f"\nharmful_response model F1: {res['harmful_response']['model_f1']:.3f}")
    print("\n| lang | n | everyday flagged (model) | everyday flagged (policy) | unsafe recall (model) | (policy) |")
    print("|---|---|---|---|---|---|")
    for lang, v in res["languages"].items():
        print(
            f"| {lang} | {v['n']} | {fmt(v['everyday_flagged_model'])} | {fmt(v['everyday_flagged_policy'])} | "
            f"{fmt(v['unsafe_recall_model'])} | {fmt(v['unsafe_recall_policy'])} |"
        )
    print("\n| stage:kind:truth | n | policy flagged |")
    print("|---|---|---|")
    for k, v in res["kinds"].items():
        print(f"| {k} | {v['n']} | {fmt(v['policy_flagged'])} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--baseline-model", default=None, help="a second model folder scored on the same rows")
    ap.add_argument("--policy", default="default")
    ap.add_argument("--no-policy", action="store_true", help="model scores only (faster)")
    ap.add_argument(
        "--redactions-flag",
        action="store_true",
        help="count a decision that only masks personal data as flagged (the count before session 20)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    import os

    import structlog

    from guardrail.classifiers.onnx import bundled_model_dir

    # one audit event per case would drown the report: this script (not the library) silences them
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115

    rows = load_suite()
    results: dict[str, Any] = {}
    for name, folder in (("model", args.model), ("baseline", args.baseline_model)):
        if name == "baseline" and folder is None:
            continue
        path = Path(folder).resolve() if folder else bundled_model_dir()
        scores, thr = model_scores(path, rows)
        acts = None if args.no_policy else policy_actions(args.policy, path, rows)
        results[name] = evaluate(rows, scores, thr, acts, args.redactions_flag)
        results[name]["model_dir"] = str(path)
        print_report(f"{name}: {path.name if folder else 'bundled'} ({path})", results[name])
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
