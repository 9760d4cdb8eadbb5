"""data -> train -> ONNX int8 -> parity check -> calibration -> labels.json + metrics + model card.

Every number in the model card is computed here, on the int8 model that ships, through the runtime
classifier (the same windowing and aggregation users get), never on the fp32 training graph.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.classifiers.encoding import EncodingConfig
from guardrail.classifiers.onnx import OnnxClassifier
from guardrail.taxonomy import BY_ID, RESPONSE_CLASS_IDS, STAGES, Stage
from guardrail.training import calibrate as cal
from guardrail.training import eval_rows
from guardrail.training.examples import Example
from guardrail.training.sources import SOURCES, read_labelled_jsonl


def model_name(layers: int, base: str = "minilm") -> str:
    return f"guardrail-{'me5' if base == 'e5' else 'minilm'}-l{layers}"


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
# calibrate.threshold_at_budget): the output target is at most 3% of ordinary answers blocked; 2.5% leaves margin
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


def write_model_folder(
    out: Path,
    onnx_path: Path,
    labels: list[str],
    heads: dict[str, dict[str, object]],
    enc: EncodingConfig,
    name: str,
    extra: dict[str, object] | None = None,
) -> None:
    """``extra``: more top-level keys of labels.json (``scripts`` and ``languages`` measured)."""
    out.mkdir(parents=True, exist_ok=True)
    if onnx_path != out / "model.onnx":
        shutil.copy(onnx_path, out / "model.onnx")
    entries = []
    for i, lab in enumerate(labels):
        info = BY_ID.get(lab)
        stages = list(info.stages) if info else ["input", "output"]
        entry: dict[str, object] = {
            "id": lab,
            "index": i,
            "stages": stages,
            "kind": "softmax" if lab in RESPONSE_CLASS_IDS else "sigmoid",
            "description": info.description if info else "custom category",
        }
        entry.update(heads.get(lab, {"threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0}}))
        entries.append(entry)
    doc: dict[str, object] = {"name": name, "encoding": asdict(enc), "labels": entries, **(extra or {})}
    (out / "labels.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))


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
        t = heads.get(head, {}).get("thresholds", {})
        thr = float(t.get("input", 0.5)) if isinstance(t, dict) else 0.5
        return sum(p[head] >= thr for p in probs) / len(texts)

    return {
        "long/clean documents (AlpacaEval answers, held out)": {
            "n": len(docs), "unsafe_fpr": flagged(docs, "unsafe"), "jailbreak_fpr": flagged(docs, "jailbreak"),
        },
        "long/harmful request buried in a clean document": {
            "n": len(buried), "unsafe_recall": flagged(buried, "unsafe"),
        },
    }  # fmt: skip


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
        t = heads.get(lab, {}).get("thresholds", {})
        assert isinstance(c, dict) and isinstance(t, dict)
        col = labels.index(lab)
        return cal.sigmoid(c["a"] * logits[rows, col] + c["b"]) >= float(t.get("input", 0.5))

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

    def thr(lab: str, stage: Stage) -> float:
        t = heads.get(lab, {}).get("thresholds", {})
        assert isinstance(t, dict)
        return float(t.get(stage, 0.5))

    out: dict[str, object] = {}
    for title, pred in BENIGN_SETS.items():
        rows = [
            i
            for i, e in enumerate(examples)
            if pred(e) and e.stage == "input" and not any(v == 1 for v in e.labels.values())
        ]
        if rows:
            flagged = probs["unsafe"][rows] >= thr("unsafe", "input")
            any_block = flagged | (probs["jailbreak"][rows] >= thr("jailbreak", "input"))
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
                "unsafe_recall": float((probs["unsafe"][rows] >= thr("unsafe", "input")).mean()),
            }
    for title, pred in JAILBREAK_SETS.items():
        rows = [
            i for i, e in enumerate(examples) if pred(e) and e.stage == "input" and e.labels.get("jailbreak") == 1.0
        ]
        if rows:
            out[f"jailbreak/{title}"] = {
                "n": len(rows),
                "jailbreak_recall": float((probs["jailbreak"][rows] >= thr("jailbreak", "input")).mean()),
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
    # response-class accuracy on dev (argmax of the softmax group)
    soft = [lab for lab in clf.info.labels if lab.kind == "softmax"]
    rows = [i for i, e in enumerate(examples) if e.split in ("dev", "holdout") and e.response_class is not None]
    if rows and soft:
        pred = logits[rows][:, [lab.index for lab in soft]].argmax(1)
        gold = np.array([examples[i].response_class for i in rows])
        out["response_class/accuracy"] = {"n": len(rows), "accuracy": float((pred == gold).mean())}
    return out


def build_examples(cfg: Any, log: Callable[[str], None] = print) -> list[Example]:
    """The run's rows: the public sources and the user's ``extra_data``, grouped by meaning (embeddings cached
    next to ``out_dir``, so a resumed or continued run rebuilds the same split cheaply)."""
    from guardrail.training import dataset

    extra: list[Example] = []
    for path in cfg.extra_data:
        extra += list(read_labelled_jsonl(Path(path), source=f"user-{Path(path).stem}"))
    embed = _embedder(cfg.threads, Path(cfg.out_dir).parent / ".cache") if cfg.group_by_meaning else None
    examples = dataset.build(
        Path(cfg.data_root), embed, seed=cfg.seed, limit=cfg.limit, extra=extra,
        exclude_restricted=cfg.exclude_noncommercial, log=log,
    )  # fmt: skip
    if getattr(cfg, "keep_out", None):
        eval_rows.keep_out(examples, cfg.keep_out, log)
    return examples


def run(cfg_dict: dict[str, object] | None = None, log: Callable[[str], None] = print) -> Path:
    """The whole pipeline; returns the finished model folder."""
    import torch

    from guardrail.training import export, train

    cfg = train.TrainConfig(**(cfg_dict or {}))  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    examples = build_examples(cfg, log)
    labels = train.label_space(examples)
    work = Path(cfg.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    if cfg.base == "e5":
        prepare_e5(examples, cfg, work, log)
    model = train.train(examples, labels, cfg, log=log, work=work)
    train.save_checkpoint(model, labels, cfg, work)

    log("exporting to ONNX and quantising to int8")
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    export.copy_tokenizer(work)

    return finalize(work, examples, labels, cfg, log=log, t0=t0)


def from_checkpoint(cfg_dict: dict[str, object], log: Callable[[str], None] = print) -> Path:
    """Export and finalise the weights an interrupted or stopped run left in ``out_dir`` (its finished
    ``checkpoint.pt``, else the last resumable ``resume.pt``), rebuilding the same data split (same seed and
    embedding cache), so a run cut short by a deadline still yields a measured model folder."""
    import torch

    from guardrail.training import export, train
    from guardrail.training.model import SafetyClassifier

    cfg = train.TrainConfig(**cfg_dict)  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.out_dir)
    examples = build_examples(cfg, log)
    labels = train.label_space(examples)
    model = SafetyClassifier(len(labels), cfg.layers, kind=cfg.base, keep=train.vocab_keep(work))
    if (work / "checkpoint.pt").exists():
        state = torch.load(work / "checkpoint.pt", weights_only=True)
        log("weights: checkpoint.pt (finished run)")
    else:
        full = torch.load(work / "resume.pt", weights_only=False)
        state = full["model"]
        log(f"weights: resume.pt at step {full['step']}")
    model.load_state_dict(state)
    train.save_checkpoint(model, labels, cfg, work)
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    export.copy_tokenizer(work)
    return finalize(work, examples, labels, cfg, log=log, t0=t0)


def finalize(
    work: Path,
    examples: Sequence[Example],
    labels: list[str],
    cfg: Any,
    *,
    log: Callable[[str], None] = print,
    t0: float | None = None,
    parity: dict[str, float] | None = None,
) -> Path:
    """Score dev/held-out with the int8 model, check parity, calibrate, write labels.json, metrics and card.

    Separate from training so a model folder can be re-calibrated (new dev data, a fixed calibration)
    without retraining.
    """
    t0 = time.time() if t0 is None else t0
    from guardrail.training.train import encoding_config

    base = str(getattr(cfg, "base", "minilm"))
    enc = encoding_config(cfg) if base == "e5" else EncodingConfig(max_length=int(cfg.max_length))
    name = model_name(int(cfg.layers), base)
    identity: dict[str, dict[str, object]] = {
        lab: {"threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0}} for lab in labels
    }
    write_model_folder(work, work / "model.onnx", labels, identity, enc, name)
    evaluated = [e for e in examples if e.split in ("dev", "holdout")]
    eval_rows.record(work, evaluated)
    clf = OnnxClassifier(work)
    t_eval = time.time()
    logits = score_examples(clf, evaluated)
    log(f"scored {len(evaluated)} dev/held-out examples with the int8 model in {time.time() - t_eval:.0f}s")
    if parity is None and (work / "model.fp32.onnx").exists():
        parity = _parity(work, evaluated, labels, logits)
        log(f"parity fp32 vs int8: {parity}")
    elif parity is None and (work / "metrics.json").exists():
        parity = json.loads((work / "metrics.json").read_text()).get("parity")

    log("calibrating (Platt per head, thresholds on hard negatives):")
    heads, metrics = calibrate_heads(labels, evaluated, logits, log)
    write_model_folder(work, work / "model.onnx", labels, heads, enc, name)
    clf = OnnxClassifier(work)
    sets = set_metrics(clf, evaluated, logits, heads)
    for k, v in sets.items():
        log(f"  {k}: {v}")
    languages, scripts = language_metrics(evaluated, logits, heads, labels)
    for lang, v in languages.items():
        log(f"  language {lang}: {v}")
    log(f"  scripts measured: {scripts}")
    if base == "e5":
        # the runtime's unsupported_language check reads these; v3 (MiniLM) states none, so it is never applied
        extra: dict[str, object] = {"scripts": scripts, "languages": languages}
        write_model_folder(work, work / "model.onnx", labels, heads, enc, name, extra)
        clf = OnnxClassifier(work)
    counts = Counter((e.source, e.split) for e in examples)
    summary = {
        "name": name,
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "heads": metrics,
        "sets": sets,
        "languages": languages,
        "scripts": scripts,
        "parity": parity or {},
        "data": {f"{s}|{sp}": n for (s, sp), n in sorted(counts.items(), key=str)},
        "sources": [
            {"name": s.name, "licence": s.licence, "cap": s.cap, "weight": s.weight, "holdout": s.holdout}
            for s in SOURCES
        ],
        "minutes": round((time.time() - t0) / 60, 1),
    }
    (work / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    from guardrail.training.card import write_card

    write_card(work, summary)
    (work / "model.fp32.onnx").unlink(missing_ok=True)
    log(f"done in {summary['minutes']} min: {work}")
    return work


def prepare_e5(examples: Sequence[Example], cfg: Any, work: Path, log: Callable[[str], None] = print) -> None:
    """Choose the kept vocabulary on the corpus and write the run's tokenizer (kept if already there, so an
    interrupted run resumes with the same ids)."""
    from guardrail.training import e5base

    if (work / "vocab_keep.json").exists() and (work / "tokenizer.json").exists():
        log("e5 base: reusing the vocabulary cut in " + str(work))
        return
    f = e5base.read()
    texts: list[str] = []
    for e in examples:
        texts.append(e.text)
        if e.prompt:
            texts.append(e.prompt)
    texts += list(e5base.extra_corpus(Path(cfg.data_root)))
    counts = e5base.piece_counts(f, texts)
    keep = e5base.choose_vocab(f, counts, int(cfg.vocab_size))
    covered = counts[keep].sum() / max(1, counts.sum())
    log(f"e5 base: kept {len(keep)} of {len(f.pieces)} pieces, covering {covered:.4f} of corpus tokens")
    (work / "vocab_keep.json").write_text(json.dumps([int(i) for i in keep]))
    e5base.build_tokenizer(f, keep).save(str(work / "tokenizer.json"))


def _parity(work: Path, evaluated: Sequence[Example], labels: list[str], int8: np.ndarray) -> dict[str, float]:
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


def _embedder(threads: int, cache_dir: Path) -> Callable[[Sequence[str]], np.ndarray]:
    """Sentence embeddings of the full base encoder (mean pooling) for grouping near-duplicates.

    Runs an int8 ONNX export of the base model (about 5x faster than torch on 2 cores) and caches
    vectors by text hash, so a re-run only embeds new rows.
    """
    import onnxruntime as ort

    from guardrail.classifiers.encoding import encode_windows, pad_batch
    from guardrail.training.examples import text_key
    from guardrail.training.export import minilm_pooled_int8
    from guardrail.training.train import load_tokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = minilm_pooled_int8(cache_dir / "base-encoder.int8.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    tok = load_tokenizer()
    cfg = replace(EncodingConfig(), max_length=64)
    cache_file = cache_dir / "embeddings.npz"
    cache: dict[str, np.ndarray] = dict(np.load(cache_file)) if cache_file.exists() else {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values())
        wins = encode_windows(tok, [texts[i] for i in todo], None, cfg, windows=False)
        order = sorted(range(len(wins)), key=lambda i: len(wins[i].ids))
        for s in range(0, len(order), 128):
            idx = order[s : s + 128]
            b = pad_batch([wins[i] for i in idx])
            (emb,) = sess.run(["emb"], {"input_ids": b.input_ids, "attention_mask": b.attention_mask,
                                        "token_type_ids": b.token_type_ids})  # fmt: skip
            for j, e in zip(idx, emb, strict=True):
                cache[keys[todo[j]]] = e.astype(np.float16)
        if todo:
            np.savez(cache_file, **cache)  # type: ignore[arg-type]
        return np.stack([cache[k].astype(np.float32) for k in keys])

    return embed
