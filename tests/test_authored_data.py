"""The project's own training data: valid, in every target language, and never a paraphrase of the challenge suite.

The challenge suite (benchmarks/challenge/) judges the model out of distribution; its writer wrote no training
data, but writers of the same kind phrase things alike. A training row that is a near-paraphrase of a challenge
case (its text, or an output row's prompt) would make the suite flatter the model, so the data is checked
against every case (word-set Jaccard >= 0.5).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from guardrail.training.authored.validate import validate

ROOT = Path(__file__).resolve().parents[1]
# the top folder is the full run's mix; continuation/ holds rows a continuation adds with --data
AUTHORED = sorted((ROOT / "guardrail" / "training" / "authored").glob("*.jsonl"))
CONTINUATION = sorted((ROOT / "guardrail" / "training" / "authored" / "continuation").glob("*.jsonl"))
# next/ holds rows written for a run not yet made (its rule names them); held to the same checks
NEXT = sorted((ROOT / "guardrail" / "training" / "authored" / "next").glob("*.jsonl"))
SYSTEM_PROMPTS = sorted((ROOT / "guardrail" / "training" / "authored" / "system_prompts").glob("*.jsonl"))
CHALLENGE = sorted((ROOT / "benchmarks" / "challenge").glob("*.jsonl"))
LANGUAGES = [
    "ar",
    "bn",
    "de",
    "el",
    "es",
    "fa",
    "fr",
    "he",
    "hi",
    "id",
    "it",
    "ja",
    "ko",
    "nl",
    "pl",
    "pt",
    "ru",
    "sw",
    "th",
    "tr",
    "uk",
    "vi",
    "zh",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(re.sub(r"\W+", " ", text.lower()).split())


def _rows(paths: list[Path]) -> list[dict[str, object]]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:  # line iteration: texts may hold U+2028
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def test_every_authored_file_is_valid() -> None:
    assert AUTHORED and CONTINUATION
    problems = [p for path in [*AUTHORED, *CONTINUATION, *NEXT] for p in validate(str(path))]
    assert problems == []


def test_at_least_300_authored_rows_per_target_language() -> None:
    counts = Counter(str(r.get("lang", "en")) for r in _rows(AUTHORED))
    assert {lang: counts[lang] for lang in LANGUAGES if counts[lang] < 300} == {}


def _near_challenge(rows: list[dict[str, object]], keys: tuple[str, ...], case_keys: tuple[str, ...]) -> list[str]:
    cases = [
        w for r in _rows(CHALLENGE) for k in case_keys if isinstance(r.get(k), str) and len(w := _words(str(r[k]))) >= 4
    ]  # fmt: skip
    by_word: dict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(cases):
        for word in w:
            by_word[word].append(i)

    def paraphrases(text: object) -> bool:
        w = _words(str(text))
        if len(w) < 4:
            return False
        shared = Counter(i for word in w for i in by_word.get(word, ()))
        return any(n / (len(w) + len(cases[i]) - n) >= 0.5 for i, n in shared.items())

    return [str(r.get("text") or r.get("system"))[:80] for r in rows if any(paraphrases(r.get(k, "")) for k in keys)]


def test_no_authored_row_paraphrases_a_challenge_case() -> None:
    rows = _rows([*AUTHORED, *CONTINUATION, *NEXT])
    assert _near_challenge(rows, ("text", "prompt", "context"), ("text", "prompt", "response")) == []


def test_no_training_system_prompt_paraphrases_a_challenge_case_or_its_system_prompt() -> None:
    assert SYSTEM_PROMPTS
    rows = _rows(SYSTEM_PROMPTS)
    assert _near_challenge(rows, ("system",), ("text", "prompt", "response", "context")) == []
