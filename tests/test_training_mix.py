"""A full run's training mix and the output head's budgeted threshold.

``--output-repeat`` / ``--authored-repeat`` give the rare rows (the output stage, the project's own data) more
optimiser steps in one run; ``threshold_at_budget`` spends the output target's over-blocking budget on dev.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardrail.training.calibrate import threshold_at_budget
from guardrail.training.eval_rows import keep_out, read, record
from guardrail.training.examples import Example, benign, full_labels
from guardrail.training.train import TrainConfig, config_meta, oversample


def _ex(text: str, source: str, stage: str = "input") -> Example:
    labels = benign("output") if stage == "output" else full_labels(["unsafe", "violence"])
    prompt = "a prompt" if stage == "output" else None
    return Example(text, labels, source, stage, prompt, group=f"g-{text}", split="train")  # type: ignore[arg-type]


def test_oversample_repeats_output_and_authored_rows_only() -> None:
    rows = [_ex("answer", "stl-responses", "output"), _ex("mine", "authored-v6_en"), _ex("user", "user-x"),
            _ex("public", "alpaca")]  # fmt: skip
    texts = [e.text for e in oversample(rows, TrainConfig(output_repeat=3, authored_repeat=2))]
    assert texts.count("answer") == 3 and texts.count("mine") == 2 and texts.count("user") == 2
    assert texts.count("public") == 1
    assert [e.text for e in oversample(rows, TrainConfig())] == ["answer", "mine", "user", "public"]


def test_oversample_refuses_a_zero_repeat() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        oversample([], TrainConfig(output_repeat=0))


def test_budget_threshold_is_the_lowest_within_the_false_positive_budget() -> None:
    rng = np.random.default_rng(0)
    neg = rng.uniform(0.0, 0.5, 200)
    pos = rng.uniform(0.2, 1.0, 50)
    p, y = np.concatenate([neg, pos]), np.concatenate([np.zeros(200), np.ones(50)])
    t = threshold_at_budget(p, y, np.array([]), max_fpr=0.025, max_hard_fpr=0.05)
    assert float((neg >= t).mean()) <= 0.025
    lower = t - 0.02
    assert float((neg >= lower).mean()) > 0.025  # any lower threshold would overspend the budget


def test_budget_threshold_also_respects_hard_negatives() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.9, 0.95])
    y = np.array([0, 0, 0, 1, 1])
    hard = np.array([0.6, 0.7])  # a hard negative scoring 0.7 forces the threshold above it
    t = threshold_at_budget(p, y, hard, max_fpr=0.5, max_hard_fpr=0.0)
    assert t > 0.7


def test_keep_out_moves_recorded_rows_and_their_groups_to_dev(tmp_path: Path) -> None:
    older = [_ex("recorded dev row", "toxicchat")]
    older[0].split = "dev"
    record(tmp_path, older)
    built = [_ex("recorded dev row", "toxicchat"), _ex("its paraphrase", "toxicchat"), _ex("other", "toxicchat")]
    built[1].group = built[0].group  # grouped with it by meaning
    moved = keep_out(built, [tmp_path / "eval_rows.jsonl"], log=lambda _: None)
    assert moved == 2
    assert [e.split for e in built] == ["dev", "dev", "train"]
    assert [e.text for e in read(tmp_path / "eval_rows.jsonl")] == ["recorded dev row"]


def test_run_settings_are_written_as_json_values() -> None:
    cfg = TrainConfig(keep_out=[Path("/runs/v4/eval_rows.jsonl")], extra_data=[Path("mine.jsonl")], steps=10)
    meta = json.loads(json.dumps(config_meta(cfg)))  # a Path anywhere would fail here, after training
    assert meta["keep_out"] == ["/runs/v4/eval_rows.jsonl"] and meta["extra_data"] == ["mine.jsonl"]
    assert meta["steps"] == 10 and meta["out_dir"] == "build/model"


def test_a_continuation_refuses_authored_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    from guardrail.training.cli import main

    assert main(["--continue-from", "some-run", "--authored-repeat", "2"]) == 2
    assert "--authored-repeat is for full runs" in capsys.readouterr().err


def test_continuation_options_are_refused_on_a_full_run(capsys: pytest.CaptureFixture[str]) -> None:
    from guardrail.training.cli import main

    assert main(["--data-repeat", "4"]) == 2
    assert main(["--eval-rows", "rows.jsonl"]) == 2
    assert "are for --continue-from" in capsys.readouterr().err
    assert main(["--continue-from", "some-run", "--eval-rows", "rows.jsonl"]) == 2  # a run has its own rows
    assert "--eval-rows is for --continue-from a model folder" in capsys.readouterr().err
