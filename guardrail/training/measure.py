"""What a training run measures on its dev and held-out rows, through the int8 model that ships.

Split from pipeline.py (which runs the stages) so that the measurement rules (which rows are hard negatives,
how each head's threshold is chosen, which named sets the card reports) live in one place that benchmarks
(dev_report.py) ask too, instead of copying them.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from guardrail.classifiers.onnx import OnnxClassifier
from guardrail.taxonomy import RESPONSE_CLASS_IDS, STAGES, Stage
from guardrail.training import calibrate as cal
from guardrail.training.examples import Example

BENIGN_SETS: dict[str, Callable[[Example], bool]] = {
    "ToxicChat non-toxic (dev)": lambda e: e.source == "toxicchat" and e.kind == "ordinary" and e.split == "dev",
    "AlpacaEval (held out)": lambda e: e.source == "alpaca-eval",
    "CoCoNot contrast (held out)": lambda e: e.source == "coconot-contrast",
    "ToxiGen neutral (dev)": lambda e: e.source == "toxigen" and e.kind == "neutral" and e.split == "dev",
    "PhysicalSafetySafe (held out)": lambda e: e.source == "stl-I-PhysicalSafetySafe",
    "OKTest held-out (scary words)": lambda e: e.source == "oktest-heldout",
    "authored look-alikes (dev)": lambda e: e.source.startswith("authored") and e.split == "dev",
    "counsel-chat questions (dev)": lambda e: e.source == "counsel-chat" and e.split == "dev",
}


HARMFUL_SETS: dict[str, Callable[[Example], bool]] = {
    "MaliciousInstruct (held out)": lambda e: e.source == "maliciousinstruct",
    "StrongREJECT (held out)": lambda e: e.source == "strongreject",
    "STL MaliciousInstructions (held out)": lambda e: e.source == "stl-I-MaliciousInstructions",
    "STL Q-Harm (held out)": lambda e: e.source == "stl-Q-Harm",
    "STL CoNa hate (held out)": lambda e: e.source == "stl-I-CoNa",
    "STL PhysicalSafetyUnsafe (held out)": lambda e: e.source == "stl-I-PhysicalSafetyUnsafe",
    "authored harmful (dev)": lambda e: e.source.startswith("authored") and e.split == "dev",
}


JAILBREAK_SETS: dict[str, Callable[[Example], bool]] = {
    "DeepInception (held out)": lambda e: e.source == "deepinception",
    "BIPIA test injections (held out)": lambda e: e.source == "bipia-test" and e.kind == "injection",
    "jailbreak dev (random)": lambda e: e.split == "dev",
}


# heads whose default threshold spends a false-positive budget on dev negatives instead of peaking F1 (see
# calibrate.threshold_at_budget): the output target is at most 3% of ordinary answers blocked; the budget here is
# counted over all dev negatives of the stage (harder than ordinary answers alone), and 2.5% leaves margin
FPR_BUDGET_HEADS: dict[tuple[str, str], float] = {("harmful_response", "output"): 0.025}


def is_hard_negative(ex: Example) -> bool:
    if any(v == 1.0 for v in ex.labels.values()):
        return False
    return (
        ex.kind in cal.HARD_NEGATIVE_KINDS
        or ex.source.startswith("authored")
        or ex.source in {"oktest", "coconot-pref", "counsel-chat", "coconot-noncompliance"}
    )


def is_ordinary(ex: Example) -> bool:
    return ex.kind == "ordinary" and not any(v == 1.0 for v in ex.labels.values())


def score_examples(clf: OnnxClassifier, examples: Sequence[Example]) -> np.ndarray:
    """Raw logits of every example through the runtime path (windows included)."""
    out = np.zeros((len(examples), len(clf.info.labels)), np.float32)
    for stage in STAGES:
        idx = [i for i, e in enumerate(examples) if e.stage == stage]
        for s in range(0, len(idx), 256):
            part = idx[s : s + 256]
            out[part] = clf.raw_logits(
                [examples[i].text for i in part],
                stage=stage,
                prompts=[examples[i].prompt for i in part],  # input rows: their context, if any
            )
    return out


def shipped_threshold(heads: dict[str, dict[str, object]], head: str, stage: Stage = "input") -> float:
    """A head's default threshold on ``stage`` as calibrated into ``heads`` (0.5 when it has none)."""
    t = heads.get(head, {}).get("thresholds", {})
    return float(t.get(stage, 0.5)) if isinstance(t, dict) else 0.5


def long_document_metrics(
    clf: OnnxClassifier, examples: Sequence[Example], heads: dict[str, dict[str, object]], n: int = 40
) -> dict[str, object]:
    """Document-level rates through the runtime windows: clean ~2,500-token documents (held-out
    AlpacaEval answers joined) should pass, and the same documents with a dev harmful request
    buried at a random sentence should be caught (the maximum over windows is the score)."""
    import random

    rng = random.Random(5)
    answers = [e.text for e in examples if e.source == "alpaca-eval-responses" and len(e.text) > 400]
    needles = [
        e.text for e in examples
        if e.split == "dev" and e.stage == "input" and e.labels.get("unsafe") == 1.0
        and e.source.startswith("authored") and "+" not in e.source and 30 < len(e.text) < 300
    ]  # fmt: skip
    if len(answers) < 20 or not needles:
        return {}
    docs = [" ".join(rng.sample(answers, 8))[:12000] for _ in range(n)]
    buried = []
    for needle in rng.sample(needles, min(n, len(needles))):
        doc = rng.choice(docs)
        cut = doc.rfind(". ", 0, rng.randint(0, len(doc))) + 2
        buried.append(doc[:cut] + needle + " " + doc[cut:])

    def flagged(texts: list[str], head: str) -> float:
        probs = clf.predict(texts)
        return sum(p[head] >= shipped_threshold(heads, head) for p in probs) / len(texts)

    return {
        "long/clean documents (AlpacaEval answers, held out)": {
            "n": len(docs), "unsafe_fpr": flagged(docs, "unsafe"), "jailbreak_fpr": flagged(docs, "jailbreak"),
        },
        "long/harmful request buried in a clean document": {
            "n": len(buried), "unsafe_recall": flagged(buried, "unsafe"),
        },
    }  # fmt: skip


def system_prompt_metrics(
    clf: OnnxClassifier, examples: Sequence[Example], heads: dict[str, dict[str, object]], n: int = 600
) -> dict[str, object]:
    """The same dev prompts scored alone and behind a held-out system prompt (``input.system_context: true``):
    a system prompt should change neither what is harmful nor what is an attack (see system_prompts.py)."""
    import random

    from guardrail.training.system_prompts import FOLDER, read_prompts

    if not (FOLDER / "heldout.jsonl").is_file():
        return {}
    prompts = read_prompts("heldout")
    rng = random.Random(6)
    dev = [e for e in examples if e.split == "dev" and e.stage == "input" and e.prompt is None]
    sets = {
        "ordinary prompts": ("jailbreak", "fpr", [e for e in dev if is_ordinary(e)]),
        "harmful prompts": ("unsafe", "recall", [e for e in dev if e.labels.get("unsafe") == 1.0]),
        "jailbreaks": ("jailbreak", "recall", [e for e in dev if e.labels.get("jailbreak") == 1.0]),
    }

    def rate(texts: list[str], context: list[str] | None, head: str) -> float:
        probs = clf.predict(texts, prompts=context)
        return sum(p[head] >= shipped_threshold(heads, head) for p in probs) / len(texts)

    out: dict[str, object] = {}
    for title, (head, what, rows) in sets.items():
        if not rows:
            continue
        texts = [e.text for e in rng.sample(rows, min(n, len(rows)))]
        context = [rng.choice(prompts) for _ in texts]
        out[f"system prompt/{title} (dev, held-out system prompts)"] = {
            "n": len(texts), f"{head}_{what} (alone)": rate(texts, None, head),
            f"{head}_{what}": rate(texts, context, head),
        }  # fmt: skip
    return out


def language_metrics(
    examples: Sequence[Example],
    logits: np.ndarray,
    heads: dict[str, dict[str, object]],
    labels: list[str],
    min_rows: int = 10,
) -> tuple[dict[str, dict[str, object]], list[str]]:
    """Per language on the dev split (rows that carry a language): benign rows flagged (unsafe or jailbreak at
    the shipped thresholds), everyday benign rows flagged, and unsafe recall; and the scripts measured (a
    script counts when one of its languages has ``min_rows`` benign and harmful dev rows)."""
    from guardrail.language import dominant_script

    def flag(rows: list[int]) -> np.ndarray:
        out: np.ndarray = prob("unsafe", rows) | prob("jailbreak", rows)
        return out

    def prob(lab: str, rows: list[int]) -> np.ndarray:
        c = heads.get(lab, {}).get("calibration", {"a": 1.0, "b": 0.0})
        assert isinstance(c, dict)
        col = labels.index(lab)
        return cal.sigmoid(c["a"] * logits[rows, col] + c["b"]) >= shipped_threshold(heads, lab)

    by_lang: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        lang = e.meta.get("lang")
        if e.split == "dev" and e.stage == "input" and lang and e.prompt is None:
            by_lang.setdefault(lang, []).append(i)
    out: dict[str, dict[str, object]] = {}
    scripts: Counter[str] = Counter()
    for lang, rows in sorted(by_lang.items()):
        benign_rows = [i for i in rows if not any(v == 1.0 for v in examples[i].labels.values())]
        everyday = [i for i in benign_rows if examples[i].kind in ("ordinary", "benign", "everyday")]
        harmful = [i for i in rows if examples[i].labels.get("unsafe") == 1.0]
        out[lang] = {
            "n_benign": len(benign_rows),
            "benign_flagged": float(flag(benign_rows).mean()) if benign_rows else None,
            "n_everyday": len(everyday),
            "everyday_flagged": float(flag(everyday).mean()) if everyday else None,
            "n_harmful": len(harmful),
            "unsafe_recall": float(prob("unsafe", harmful).mean()) if harmful else None,
        }
        if len(benign_rows) >= min_rows and len(harmful) >= min_rows // 2:
            for i in rows[:50]:
                sc = dominant_script(examples[i].text)
                if sc:
                    scripts[sc] += 1
    measured = sorted(s for s, n in scripts.items() if n >= 5)
    return out, measured


def calibrate_heads(
    labels: list[str], examples: Sequence[Example], logits: np.ndarray, log: Callable[[str], None]
) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    """Fit Platt scaling per head on the dev split and pick per-stage default thresholds."""
    heads: dict[str, dict[str, object]] = {}
    metrics: dict[str, object] = {}
    dev = [i for i, e in enumerate(examples) if e.split == "dev"]
    for j, lab in enumerate(labels):
        if lab in RESPONSE_CLASS_IDS:
            continue
        rows = [i for i in dev if lab in examples[i].labels]
        y = np.array([examples[i].labels[lab] for i in rows], np.float32)
        a, b = cal.fit_platt(logits[rows, j], y) if rows else (1.0, 0.0)
        entry: dict[str, object] = {"calibration": {"a": round(a, 5), "b": round(b, 5)}}
        thresholds: dict[str, float] = {}
        for stage in STAGES:
            srows = [i for i in rows if examples[i].stage == stage]
            if not srows or not any(examples[i].labels[lab] == 1.0 for i in srows):
                continue  # no positives on this stage: it inherits the other stage's threshold
            ys = np.array([examples[i].labels[lab] for i in srows], np.float32)
            ps = cal.sigmoid(a * logits[srows, j] + b)
            hard = [i for i in dev if examples[i].stage == stage and is_hard_negative(examples[i])]
            ordinary = [i for i in dev if examples[i].stage == stage and is_ordinary(examples[i])]
            ph = cal.sigmoid(a * logits[hard, j] + b)
            po = cal.sigmoid(a * logits[ordinary, j] + b)
            strict_ord = 0.01 if lab == "jailbreak" else 0.02
            if (lab, stage) in FPR_BUDGET_HEADS:
                t = cal.threshold_at_budget(ps, ys, ph, max_fpr=FPR_BUDGET_HEADS[lab, stage], max_hard_fpr=0.05)
            else:
                t = cal.choose_threshold(ps, ys, ph, po, max_hard_fpr=0.05, max_ordinary_fpr=strict_ord)
            thresholds[stage] = t
            rep = cal.report(lab, t, a, b, ps, ys, ph, po)
            metrics[f"{lab}/{stage}"] = asdict(rep)
            log(
                f"  {lab:22s} {stage:6s} n+={rep.n_pos:5d} AUPRC {rep.auprc:.3f} t={t:.3f} P {rep.precision:.3f} "
                f"R {rep.recall:.3f} F1 {rep.f1:.3f} hardFPR {rep.hard_fpr:.3f} ordFPR {rep.ordinary_fpr:.3f}"
            )
        if thresholds:
            for stage in STAGES:
                thresholds.setdefault(stage, next(iter(thresholds.values())))
            entry["thresholds"] = thresholds
            entry["threshold"] = thresholds.get("input", next(iter(thresholds.values())))
        heads[lab] = entry
    return heads, metrics


def set_metrics(
    clf: OnnxClassifier, examples: Sequence[Example], logits: np.ndarray, heads: dict[str, dict[str, object]]
) -> dict[str, object]:
    """Per named set: positive rate at the shipped thresholds (recall on harmful sets, FPR on benign)."""
    probs: dict[str, np.ndarray] = {}
    for j, lab in enumerate(clf.info.labels):
        if lab.kind != "sigmoid":
            continue
        c = heads.get(lab.id, {}).get("calibration", {"a": 1.0, "b": 0.0})
        assert isinstance(c, dict)
        probs[lab.id] = cal.sigmoid(c["a"] * logits[:, j] + c["b"])

    out: dict[str, object] = {}
    for title, pred in BENIGN_SETS.items():
        rows = [
            i
            for i, e in enumerate(examples)
            if pred(e) and e.stage == "input" and not any(v == 1 for v in e.labels.values())
        ]
        if rows:
            flagged = probs["unsafe"][rows] >= shipped_threshold(heads, "unsafe")
            any_block = flagged | (probs["jailbreak"][rows] >= shipped_threshold(heads, "jailbreak"))
            out[f"benign/{title}"] = {
                "n": len(rows),
                "unsafe_fpr": float(flagged.mean()),
                "unsafe_or_jailbreak_fpr": float(any_block.mean()),
            }
    for title, pred in HARMFUL_SETS.items():
        rows = [i for i, e in enumerate(examples) if pred(e) and e.stage == "input" and e.labels.get("unsafe") == 1.0]
        if rows:
            out[f"harmful/{title}"] = {
                "n": len(rows),
                "unsafe_recall": float((probs["unsafe"][rows] >= shipped_threshold(heads, "unsafe")).mean()),
            }
    for title, pred in JAILBREAK_SETS.items():
        rows = [
            i for i, e in enumerate(examples) if pred(e) and e.stage == "input" and e.labels.get("jailbreak") == 1.0
        ]
        if rows:
            out[f"jailbreak/{title}"] = {
                "n": len(rows),
                "jailbreak_recall": float((probs["jailbreak"][rows] >= shipped_threshold(heads, "jailbreak")).mean()),
            }
    ordinary = [
        i for i, e in enumerate(examples) if e.split in ("dev", "holdout") and e.stage == "input" and is_ordinary(e)
    ]
    if ordinary:
        p = probs["jailbreak"][ordinary]
        t1 = float(np.quantile(p, 0.99))
        jb = [i for i, e in enumerate(examples) if e.split == "dev" and e.labels.get("jailbreak") == 1.0]
        out["jailbreak/recall at 1% FPR on ordinary prompts"] = {
            "n_ordinary": len(ordinary), "n_jailbreak": len(jb), "threshold": t1,
            "recall": float((probs["jailbreak"][jb] > t1).mean()) if jb else float("nan"),
        }  # fmt: skip
    out.update(long_document_metrics(clf, examples, heads))
    out.update(system_prompt_metrics(clf, examples, heads))
    # response-class accuracy on dev (argmax of the softmax group)
    soft = [lab for lab in clf.info.labels if lab.kind == "softmax"]
    rows = [i for i, e in enumerate(examples) if e.split in ("dev", "holdout") and e.response_class is not None]
    if rows and soft:
        pred = logits[rows][:, [lab.index for lab in soft]].argmax(1)
        gold = np.array([examples[i].response_class for i in rows])
        out["response_class/accuracy"] = {"n": len(rows), "accuracy": float((pred == gold).mean())}
    return out


def int8_parity(work: Path, evaluated: Sequence[Example], labels: list[str], int8: np.ndarray) -> dict[str, float]:
    """Max probability difference and unsafe-AUPRC change between the fp32 ONNX and the int8 model."""
    fp32 = work / "fp32-folder"
    fp32.mkdir(exist_ok=True)
    shutil.copy(work / "model.fp32.onnx", fp32 / "model.onnx")
    shutil.copy(work / "tokenizer.json", fp32 / "tokenizer.json")
    shutil.copy(work / "labels.json", fp32 / "labels.json")
    sample = [e for e in evaluated if e.split == "dev"][:3000]
    idx = [i for i, e in enumerate(evaluated) if e.split == "dev"][:3000]
    ref = score_examples(OnnxClassifier(fp32), sample)
    shutil.rmtree(fp32)
    n_bin = len(labels) - len(RESPONSE_CLASS_IDS)
    dp = np.abs(cal.sigmoid(ref[:, :n_bin]) - cal.sigmoid(int8[idx, :n_bin]))
    j = labels.index("unsafe")
    rows = [k for k, e in enumerate(sample) if "unsafe" in e.labels]
    y = np.array([sample[k].labels["unsafe"] for k in rows])
    ap32 = cal.average_precision(y, ref[rows, j])
    ap8 = cal.average_precision(y, int8[[idx[k] for k in rows], j])
    return {
        "max_abs_prob_diff": float(dp.max()),
        "mean_abs_prob_diff": float(dp.mean()),
        "unsafe_auprc_fp32": ap32,
        "unsafe_auprc_int8": ap8,
        "n": len(sample),
    }
