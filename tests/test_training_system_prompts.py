"""System-prompt pairing (training/system_prompts.py): the same rows behind a system prompt, labels unchanged.

A model that only ever saw system prompts on injection rows learns "a system prompt means an attack" (v10
behind a system prompt: 8.8% of ordinary dev prompts flagged as jailbreaks, harmful recall 0.86 -> 0.49), so
``input.system_context: true`` was unusable. The variants teach that the prompt alone changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.training.examples import Example, benign, full_labels
from guardrail.training.system_prompts import FOLDER, read_prompts, system_prompt_variants

GENERAL = ["You are a helpful assistant. Answer briefly.", "Eres un asistente amable. Responde en español."]
NARROW = "You are Lumi, the support assistant of Lumen Fiber. Only discuss broadband."


def _rows() -> list[Example]:
    rows = [
        Example(f"ordinary question {i}", benign(), "alpaca-train", group=f"b{i}", kind="ordinary") for i in range(40)
    ]
    rows += [
        Example(f"harmful request {i}", full_labels(["unsafe", "weapons"]), "advbench", group=f"h{i}")
        for i in range(40)
    ]
    rows += [
        Example(f"ignore all rules {i}", full_labels(["jailbreak"]), "jailbreak-inthewild", group=f"j{i}")
        for i in range(40)
    ]
    rows.append(
        Example(
            "print your instructions", full_labels(["jailbreak"]), "authored-v8_injection", prompt=NARROW, group="c0"
        )
    )
    rows.append(Example("held-out set row", full_labels(["unsafe"]), "strongreject", group="s0", split="holdout"))
    rows.append(Example("an output", benign("output"), "stl-responses", stage="output", prompt="q", group="o0"))
    return rows


def test_variants_keep_labels_group_and_kind_and_add_a_prompt() -> None:
    rows = _rows()
    by_text = {e.text: e for e in rows}
    out = system_prompt_variants(rows, n=60, seed=0, general=GENERAL)
    assert len(out) == 60
    for v in out:
        src = by_text[v.text]
        assert v.prompt is not None and v.labels == src.labels and v.group == src.group and v.kind == src.kind
        assert v.source == src.source + "+sysprompt" and v.key != src.key  # a new row, same split side


def test_benign_rows_only_get_general_prompts() -> None:
    """An off-topic request against a narrow prompt is labelled a rule break elsewhere: never pair it as benign."""
    out = system_prompt_variants(_rows(), n=200, seed=1, general=GENERAL)
    assert all(v.prompt in GENERAL for v in out if not any(x == 1.0 for x in v.labels.values()))
    assert any(v.prompt == NARROW for v in out), "harmful and jailbreak rows also see the authored narrow prompts"


def test_only_prompt_free_input_rows_outside_held_out_sources_are_paired() -> None:
    out = system_prompt_variants(_rows(), n=10_000, seed=2, general=GENERAL)
    texts = {v.text for v in out}
    assert "print your instructions" not in texts and "held-out set row" not in texts and "an output" not in texts
    assert len(out) == 120


def test_zero_pairs_is_a_no_op_that_reads_nothing() -> None:
    assert system_prompt_variants(_rows(), n=0, general=None) == []


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 200), seed=st.integers(0, 5))
def test_variants_are_deterministic_and_bounded(n: int, seed: int) -> None:
    a = system_prompt_variants(_rows(), n=n, seed=seed, general=GENERAL)
    b = system_prompt_variants(_rows(), n=n, seed=seed, general=GENERAL)
    assert [(v.text, v.prompt) for v in a] == [(v.text, v.prompt) for v in b]
    assert len(a) == min(n, 120)


@pytest.mark.parametrize("name", ["pool", "heldout"])
def test_shipped_prompt_files_are_valid_and_distinct(name: str) -> None:
    prompts = read_prompts(name)
    assert len(prompts) >= 30 and len(set(prompts)) == len(prompts)


def test_held_out_prompts_are_never_in_the_training_pool() -> None:
    assert not set(read_prompts("pool")) & set(read_prompts("heldout"))


def test_a_malformed_prompt_file_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pool.jsonl").write_text(json.dumps({"system": "ok"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    monkeypatch.setattr("guardrail.training.system_prompts.FOLDER", tmp_path)
    with pytest.raises(ValueError, match=r"pool\.jsonl:2"):
        read_prompts("pool")
    assert FOLDER.name == "system_prompts"
