"""Obfuscation augmentation: cheap evasions applied to harmful AND benign rows alike.

Why both: trained on obfuscated harmful rows only, a model learns "looks encoded = harmful" and flags
spaced-out or leetspeak benign text (base64 of benign text was flagged 27 of 30 times in v3); trained on
neither, spaced letters cut recall on plainly harmful prompts from 96% to 16%. Each variant keeps its
source row's labels and group, so it lands on the same side of the train/dev split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from guardrail.training.examples import Example

LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "b": "8", "g": "9"}
HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і", "s": "ѕ"}


def _words(rng: random.Random, text: str, fn: Callable[[str], str], share: float) -> str:
    words = text.split(" ")
    return " ".join(fn(w) if len(w) > 3 and rng.random() < share else w for w in words)


def spaced(rng: random.Random, text: str) -> str:
    sep = rng.choice([" ", ".", "-", " "])
    return _words(rng, text, lambda w: sep.join(w), rng.choice([0.3, 0.6, 1.0]))


def leet(rng: random.Random, text: str) -> str:
    return _words(rng, text, lambda w: "".join(LEET.get(c, c) if rng.random() < 0.7 else c for c in w), 0.7)


def homoglyph(rng: random.Random, text: str) -> str:
    return "".join(HOMOGLYPHS.get(c, c) if rng.random() < 0.5 else c for c in text)


def dropped(rng: random.Random, text: str) -> str:
    def drop(w: str) -> str:
        i = rng.randrange(1, len(w) - 1)
        return w[:i] + w[i + 1 :]

    return _words(rng, text, drop, 0.5)


def fenced(rng: random.Random, text: str) -> str:
    lang = rng.choice(["", "text", "python", "markdown"])
    return f"```{lang}\n{text}\n```" if rng.random() < 0.7 else f"`{text}`"


TRANSFORMS: dict[str, Callable[[random.Random, str], str]] = {
    "spaced": spaced,
    "leet": leet,
    "homoglyph": homoglyph,
    "dropped": dropped,
    "fenced": fenced,
}


def obfuscated_variants(examples: list[Example], *, n: int, seed: int = 0) -> list[Example]:
    """``n`` variants of short input rows (harmful and benign in their natural mix, English and not)."""
    rng = random.Random(seed)
    pool = [ex for ex in examples if ex.stage == "input" and ex.split != "holdout" and 10 <= len(ex.text) <= 400]
    out: list[Example] = []
    names = sorted(TRANSFORMS)
    for ex in rng.sample(pool, min(n, len(pool))):
        name = rng.choice(names)
        text = TRANSFORMS[name](rng, ex.text)
        if text == ex.text:
            continue
        out.append(
            Example(
                text, dict(ex.labels), ex.source + "+" + name, prompt=ex.prompt, group=ex.group,
                weight=ex.weight, kind=f"obfuscated-{name}", split=ex.split, meta=dict(ex.meta),
            )
        )  # fmt: skip
    return out
