"""System-prompt pairing: input rows seen behind an application's system prompt, labels unchanged.

Why: with ``input.system_context: true`` the classifier reads the system prompt as context for the user's
text, to catch requests that only break the application's own rules. Until v18 every training row that had
a system prompt was an injection or its clean twin, so "a system prompt is present" itself became evidence:
v10 read behind one of 40 held-out general-purpose system prompts (600 of v10's own dev rows of each kind)
flagged 7.8% of ordinary prompts as jailbreaks (1.7% alone) and caught 0.58 of harmful prompts as unsafe (0.875
alone). A system prompt does not change whether a request is harmful, or whether "ignore your instructions" is an
attack, so the same rows are shown with and without one.

Which prompts: benign rows get only general-purpose prompts (``authored/system_prompts/pool.jsonl``: personas,
tone, format, language, no narrow topic rules), because an off-topic request against a narrowly scoped prompt
("you only discuss broadband") is itself labelled a rule break in the authored injection rows. Harmful and
jailbreak rows also get the narrow prompts of those rows. ``heldout.jsonl`` is written for other products and is
only ever measured on (``measure.py``), never trained on.

Pairs are made of training rows only, once the split is final (after ``--keep-out``, which moves whole groups to
dev), and are training rows themselves: the default policy never reads a system prompt, so dev rows behind one
would skew the calibration of every head (v19b, paired before the split, was calibrated with 86 such rows among
16,868); the narrow prompts likewise come from training rows only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from guardrail.scoring_form import scoring_form
from guardrail.training.examples import Example

FOLDER = Path(__file__).resolve().parent / "authored" / "system_prompts"


def read_prompts(name: str = "pool") -> list[str]:
    """The system prompts of ``authored/system_prompts/<name>.jsonl`` (one ``{"system": ...}`` per line)."""
    path = FOLDER / f"{name}.jsonl"
    out: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        text = row.get("system") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f'{path}:{n}: expected {{"system": "<non-empty text>"}}')
        out.append(text)
    return out


def _is_positive(ex: Example) -> bool:
    return ex.labels.get("unsafe") == 1.0 or ex.labels.get("jailbreak") == 1.0


def system_prompt_variants(
    examples: list[Example],
    *,
    n: int,
    seed: int = 0,
    general: list[str] | None = None,
    exclude_prompts: frozenset[str] = frozenset(),
) -> list[Example]:
    """``n`` training input rows without a prompt, each again behind a system prompt: same labels and group, and
    ``split="train"`` (call it after the split)."""
    if n <= 0:
        return []
    # shown as the classifier is shown them (the rows' own texts and prompts are already in this form)
    general = [scoring_form(p) for p in (read_prompts("pool") if general is None else general)]
    if not general:
        raise ValueError(f"no general-purpose system prompts to pair with (expected some in {FOLDER / 'pool.jsonl'})")
    rng = random.Random(seed)
    train = [ex for ex in examples if ex.stage == "input" and ex.split == "train"]
    # a narrow prompt is often shared by several rows: one that a dev, held-out or excluded row carries is not used
    measured = {ex.prompt for ex in examples if ex.prompt and ex.split != "train"} | exclude_prompts
    narrow = sorted({ex.prompt for ex in train if ex.prompt and ex.source.startswith("authored")} - measured)
    pool = [ex for ex in train if ex.prompt is None and 5 <= len(ex.text) <= 1500]
    out: list[Example] = []
    for ex in rng.sample(pool, min(n, len(pool))):
        use_narrow = narrow and _is_positive(ex) and rng.random() < 0.5
        prompt = rng.choice(narrow if use_narrow else general)
        out.append(
            Example(
                ex.text, dict(ex.labels), ex.source + "+sysprompt", prompt=prompt, group=ex.group, weight=ex.weight,
                kind=ex.kind, split="train", meta=dict(ex.meta), focus=ex.focus,
            )
        )  # fmt: skip
    return out
