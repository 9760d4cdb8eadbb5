"""Converters of benign prompts and hard negatives: everyday instructions, look-alikes of unsafe requests and
over-refusal test sets, which calibrate the heads against refusing the harmless."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from guardrail.training.examples import Example, benign, full_labels, text_key
from guardrail.training.source_io import csv_rows, jsonl_rows, open_data, reviewed_labels

# --- benign pools and hard negatives -----------------------------------------------------------


def alpaca(root: Path) -> Iterator[Example]:
    for split in ("train", "test"):  # val feeds the benign fillers of the jailbreak templates
        with open_data(root / f"benign-alpaca/alpaca_harmless_{split}.json.gz") as fh:
            rows = json.load(fh)
        for r in rows:
            yield Example(r["instruction"], benign(), f"alpaca-{split}", kind="ordinary")
    for r in jsonl_rows(root / "benign-alpaca/seed_tasks.jsonl"):
        yield Example(r["instruction"], benign(), "alpaca-train", kind="ordinary")


def coconot(root: Path) -> Iterator[Example]:
    for r in jsonl_rows(root / "coconot/coconot_eval.jsonl"):
        if r["category"] == "Requests with safety concerns":
            labels = reviewed_labels("coconot_safety").get(text_key(r["prompt"]))
            if labels is not None:
                yield Example(r["prompt"], full_labels(labels), "coconot-safety")
        else:  # incomplete, unsupported, indeterminate, humanizing: refusal-worthy, not harmful
            yield Example(r["prompt"], benign(), "coconot-noncompliance", kind="ordinary")
    for r in jsonl_rows(root / "coconot/coconot_pref.jsonl.gz"):
        yield Example(r["prompt"], benign(), "coconot-pref", group=f"cp-{r['id']}", kind="benign-scary")
        yield Example(r["chosen"], {**benign("output"), "refusal": 0.0}, "coconot-pref-responses", stage="output",
                      prompt=r["prompt"], group=f"cp-{r['id']}")  # fmt: skip


def coconot_contrast(root: Path) -> Iterator[Example]:
    for r in jsonl_rows(root / "coconot/coconot_contrast_eval.jsonl"):
        yield Example(r["prompt"], benign(), "coconot-contrast", kind="benign-scary")


def oktest(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "oktest/OKTest.csv"):
        yield Example(r["prompt"], benign(except_=("profanity",)), "oktest", kind="benign-scary")


def oktest_heldout(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "oktest/OKTest_heldout.csv"):
        yield Example(r["prompt"], benign(except_=("profanity",)), "oktest-heldout", kind="benign-scary")


def alpaca_eval(root: Path) -> Iterator[Example]:
    for name in ("gpt4", "text_davinci_003"):
        for i, r in enumerate(json.loads((root / f"alpaca-eval/{name}_model_outputs.json").read_text())):
            if name == "gpt4":
                yield Example(r["instruction"], benign(), "alpaca-eval", group=f"ae-{i}", kind="ordinary")
            yield Example(r["output"], {"harmful_response": 0.0, "unsafe": 0.0}, "alpaca-eval-responses",
                          stage="output", prompt=r["instruction"], group=f"ae-{i}")  # fmt: skip


def stl_eval(root: Path) -> Iterator[Example]:
    sets = {
        "I-MaliciousInstructions": {"unsafe": 1.0, "jailbreak": 0.0},
        "I-CoNa": {"hate": 1.0, "unsafe": 1.0, "jailbreak": 0.0},
        "Q-Harm": {"unsafe": 1.0, "jailbreak": 0.0},
        "I-PhysicalSafetyUnsafe": {"unsafe": 1.0},
        "I-PhysicalSafetySafe": benign(),
        "I-Alpaca": benign(),
    }
    for name, labels in sets.items():
        d = json.loads((root / f"safety-tuned-llamas/eval_{name}.json").read_text())
        inputs = d.get("inputs") or [""] * len(d["instructions"])
        for ins, inp in zip(d["instructions"], inputs, strict=False):
            text = ins if not inp else ins + "\n" + inp
            kind = (
                "benign-scary" if name == "I-PhysicalSafetySafe" else ("ordinary" if name == "I-Alpaca" else "harmful")
            )
            yield Example(text, dict(labels), f"stl-{name}", kind=kind)


def multilingual_benign(root: Path) -> Iterator[Example]:
    """Benign questions and commands in 23 languages (exam, reading-comprehension, voice-assistant): the
    negatives that stop the model reading "not English" as "harmful"; ``ordinary`` for jailbreak FPR."""
    for r in jsonl_rows(root / "multilingual-benign/prompts.jsonl.gz"):
        yield Example(r["text"], benign(), "multilingual-benign", kind="ordinary", meta={"lang": r["lang"]})
