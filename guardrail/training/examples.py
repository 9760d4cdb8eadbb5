"""The one training-example schema every data converter produces.

Supervision is *partial* on purpose: a tweet labelled "offensive" says nothing about jailbreaks, and an
AdvBench goal says "unsafe" without a category. ``labels`` holds only the heads a source actually
supervises; the trainer masks the rest instead of treating them as negatives, which is what stops
single-purpose datasets from teaching the other heads wrong zeros.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from guardrail.taxonomy import HARM_IDS, RESPONSE_CLASS_IDS, Stage, stage_ids

Split = Literal["train", "dev", "holdout"]

# Heads a fully labelled row of each stage supervises (the DNA response classes are a separate
# softmax group, supervised through ``response_class``).
BINARY_HEADS: dict[Stage, tuple[str, ...]] = {
    stage: tuple(i for i in stage_ids(stage) if i not in RESPONSE_CLASS_IDS) for stage in ("input", "output")
}


@dataclass(slots=True)
class Example:
    text: str
    labels: dict[str, float]
    source: str
    stage: Stage = "input"
    prompt: str | None = None
    response_class: int | None = None
    group: str = ""
    weight: float = 1.0
    kind: str = ""
    split: Split | None = None  # None: decided by the splitter; "holdout": a whole source kept out
    meta: dict[str, str] = field(default_factory=dict)
    # character span of the part that carries the label, when known (dataset.locate_evidence): a text longer
    # than one training window is cut to a window around it, not to its head and tail (which can cut it out)
    focus: tuple[int, int] | None = None

    @property
    def positive(self) -> bool:
        """Whether any head is labelled positive (a row with none is benign, or says nothing)."""
        return any(v == 1.0 for v in self.labels.values())

    @property
    def key(self) -> str:
        return text_key(self.text if self.prompt is None else self.prompt + "\x1f" + self.text)


def text_key(text: str) -> str:
    """Stable id of a text, insensitive to case and whitespace (used by label files and de-duplication)."""
    return hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()[:16]


def full_labels(positives: list[str] | tuple[str, ...] | set[str], stage: Stage = "input") -> dict[str, float]:
    """Every binary head of ``stage`` supervised: the positives 1, the rest 0."""
    heads = BINARY_HEADS[stage]
    unknown = set(positives) - set(heads)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not scored on the {stage} stage")
    return {h: 1.0 if h in positives else 0.0 for h in heads}


def benign(stage: Stage = "input", *, except_: tuple[str, ...] = ()) -> dict[str, float]:
    """All heads negative, but leave ``except_`` unsupervised (e.g. profanity for edgy-but-benign tweets)."""
    return {h: 0.0 for h in BINARY_HEADS[stage] if h not in except_}


def unsafe_with(categories: tuple[str, ...] | list[str], stage: Stage = "input") -> dict[str, float]:
    """A harmful prompt whose categories are known: fully labelled."""
    pos = set(categories)
    if pos & set(HARM_IDS) - {"profanity"}:
        pos.add("unsafe")
    return full_labels(pos, stage)
