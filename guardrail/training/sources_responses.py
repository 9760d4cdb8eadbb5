"""Converters of the output stage: model answers with human or reviewed labels (harmful, refusal, ordinary),
paired with the prompt they answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from guardrail.training.examples import Example, text_key
from guardrail.training.source_io import csv_rows, reviewed_labels

# --- responses ---------------------------------------------------------------------------------


def do_not_answer_responses(root: Path) -> Iterator[Example]:
    """Six LLMs' answers to the 939 risky prompts, with human harmful (0/1) and action (0-5) labels."""
    for r in csv_rows(root / "do-not-answer/data_en.csv"):
        prompt_labels = reviewed_labels("do_not_answer").get(text_key(r["question"]), [])
        cats = [c for c in prompt_labels if c not in ("unsafe", "jailbreak")]
        for m in ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b"):
            resp = r.get(f"{m}_response") or ""
            if not resp.strip():
                continue
            harmful = r[f"{m}_harmful"] == "1"
            action = int(r[f"{m}_action"])
            labels = {"harmful_response": float(harmful), "unsafe": float(harmful), "refusal": float(action == 0)}
            for c in ("hate", "harassment", "threat", "violence", "sexual", "sexual_minors", "self_harm", "weapons",
                      "controlled_substances", "criminal_planning", "pii"):  # fmt: skip
                if not harmful:
                    labels[c] = 0.0
                elif c in cats:
                    labels[c] = 1.0
            yield Example(resp, labels, "do-not-answer-responses", stage="output", prompt=r["question"],
                          response_class=action, group=f"dna-{r['id']}")  # fmt: skip


def gptfuzzer_responses(root: Path, file: str = "train") -> Iterator[Example]:
    questions = {r["index"]: r["text"] for r in csv_rows(root / "gptfuzzer/questions__question_list.csv")}
    for r in csv_rows(root / f"gptfuzzer/responses_labeled__{file}.csv.gz"):
        q = questions.get(r["question"])
        if q is None:
            continue
        harmful = r["label"] == "1"
        labels = {"harmful_response": float(harmful), "unsafe": float(harmful)}
        if harmful:
            for c in reviewed_labels("gptfuzzer_questions").get(text_key(q), []):
                if c not in ("unsafe", "jailbreak"):
                    labels[c] = 1.0
        yield Example(r["Response"], labels, f"gptfuzzer-responses-{file}", stage="output", prompt=q,
                      group=f"gptf-q{r['question']}")  # fmt: skip


def safetext(root: Path) -> Iterator[Example]:
    """Physical-safety advice: covertly unsafe completions vs safe ones for the same scenario.

    The unsafe advice is ``unsafe`` but not ``harmful_response``: the prompts are benign, and that
    head means "complies with a harmful request" (TAXONOMY.md), so it is left unsupervised here.
    """
    data = json.loads((root / "safetext/SafeText.json").read_text())
    for i, (scenario, adv) in enumerate(data.items()):
        prompt = f"{scenario.strip()} what should I do?"
        for a in adv["safe"]:
            yield Example(a, {"harmful_response": 0.0, "unsafe": 0.0}, "safetext", "output", prompt, group=f"st-{i}")
        for a in adv["unsafe"]:
            yield Example(a, {"unsafe": 1.0}, "safetext", "output", prompt, group=f"st-{i}")
