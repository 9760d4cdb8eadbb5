"""Converters of harmful prompts: red-team pools, real user traffic, and social-media hate, profanity and
self-harm text (capped and down-weighted in the registry, guardrail.training.sources, so tweet style does not
read as harm). Each converter states its label mapping in code; the model card repeats it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from guardrail.training.examples import Example, benign, full_labels, text_key, unsafe_with
from guardrail.training.source_io import UNSAFE_ONLY, csv_rows, jsonl_rows, open_data, reviewed, reviewed_labels

# --- harmful prompt pools (categories from the project's review) ---------------------------------


def advbench(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "advbench/harmful_behaviors_dedup_vs_holdout.csv"):
        yield Example(r["goal"], reviewed("advbench", r["goal"], UNSAFE_ONLY), "advbench", kind="harmful")


def safety_tuned_llamas(root: Path) -> Iterator[Example]:
    for r in json.loads((root / "safety-tuned-llamas/safety_only_data_Instructions.json").read_text()):
        text = r["instruction"] if not r["input"] else r["instruction"] + "\n" + r["input"]
        yield Example(text, reviewed("safety_tuned_llamas", text, UNSAFE_ONLY), "safety-tuned-llamas", kind="harmful")


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
            yield Example(line.strip(), reviewed("maliciousinstruct", line.strip(), UNSAFE_ONLY), "maliciousinstruct")


def strongreject(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "strongreject/strongreject_dedup_vs_holdout.csv"):
        t = r["forbidden_prompt"]
        yield Example(t, reviewed("strongreject", t, UNSAFE_ONLY), "strongreject", kind="harmful")


def beavertails(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "beavertails-artkit-sample/beavertails_sample.csv"):
        yield Example(r["prompt"], reviewed("beavertails", r["prompt"], UNSAFE_ONLY), "beavertails")


def do_not_answer(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "do-not-answer/do_not_answer_en.csv"):
        q = r["question"]
        # Unreviewed rows: the risk taxonomy marks every prompt risky, but many are harmless
        # ("do you love me?"), so only the review may call a row unsafe or benign.
        labels = reviewed_labels("do_not_answer").get(text_key(q))
        if labels is not None:
            yield Example(q, full_labels(labels), "do-not-answer", group=f"dna-{r['id']}")


def gptfuzzer_questions(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "gptfuzzer/questions__question_list.csv"):
        yield Example(
            r["text"],
            reviewed("gptfuzzer_questions", r["text"], UNSAFE_ONLY),
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
            labels = reviewed("toxicchat_toxic", text, {"unsafe": 1.0, "jailbreak": jb})
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
    for r in csv_rows(root / "navirocker-redteam/redteam_master_dataset.csv"):
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
    for r in jsonl_rows(root / "xsafety/xsafety_prompts.jsonl.gz"):
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
    for r in csv_rows(root / "davidson-hate-offensive/labeled_data.csv.gz"):
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
            with open_data(tpath) as fh:
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
    multi = {r["comment"]: r for r in csv_rows(root / "ethos/Ethos_Dataset_Multi_Label.csv", delimiter=";")}
    for r in csv_rows(root / "ethos/Ethos_Dataset_Binary.csv", delimiter=";"):
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
    for r in jsonl_rows(root / "toxigen-prompts/toxigen_seed_sentences.jsonl"):
        text = r["text"].strip().lstrip("- ").strip()
        if r["label"] == "hate":
            yield Example(text, {"hate": 1.0, "unsafe": 1.0, "jailbreak": 0.0}, "toxigen", kind="hate")
        else:
            yield Example(text, benign(), "toxigen", kind="neutral")


def suicidal_tweets(root: Path) -> Iterator[Example]:
    for r in csv_rows(root / "twitter-suicidal-intention/twitter-suicidal_data.csv.gz"):
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
    for r in csv_rows(root / "counsel-chat/counsel_chat_20200325.csv.gz"):
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
