"""A continuation never trains on the previous run's dev/held-out rows, nor on their near-duplicates.

The before/after comparison of a continued model is made on the previous run's recorded rows; a row the new
build groups with one of them (same meaning) would leak the answer into training.
"""

from __future__ import annotations

import json
from pathlib import Path

from guardrail.training.continue_run import Mix, choose, read_eval_rows
from guardrail.training.examples import Example, benign, full_labels


def _ex(text: str, source: str, *, stage: str = "input", group: str = "", split: str | None = "train") -> Example:
    labels = benign("output") if stage == "output" else full_labels(["unsafe", "violence"])
    prompt = "a prompt" if stage == "output" else None
    return Example(text, labels, source, stage, prompt, group=group or f"g-{text}", split=split)  # type: ignore[arg-type]


def test_continuation_mix_keeps_evaluation_rows_and_their_groups_out() -> None:
    evaluated = [_ex("recorded dev row", "toxicchat", split="dev")]
    built = [
        _ex("recorded dev row", "toxicchat", group="cluster-9"),  # the same text, now in train
        _ex("a paraphrase of the dev row", "toxicchat", group="cluster-9"),  # grouped with it by meaning
        _ex("held-out source row", "maliciousinstruct", split="holdout"),
        _ex("authored row", "authored-v5_en_c"),
        _ex("user row", "user-mine"),
        _ex("an answer", "stl-responses", stage="output"),
        *[_ex(f"public row {i}", "alpaca") for i in range(10)],
    ]
    chosen = choose(built, evaluated, Mix(output_repeat=3, input_sample=4))
    texts = [e.text for e in chosen]
    assert "recorded dev row" not in texts and "a paraphrase of the dev row" not in texts
    assert "held-out source row" not in texts
    assert texts.count("authored row") == 1 and texts.count("user row") == 1
    assert texts.count("an answer") == 3
    assert sum(t.startswith("public row") for t in texts) == 4
    assert {e.split for e in chosen} == {"train"}


def test_a_continuation_repeats_your_own_rows_as_asked_and_nothing_else() -> None:
    built = [
        _ex("authored row", "authored-v5_en_c"),
        _ex("user row", "user-mine"),
        _ex("user answer", "user-mine", stage="output"),  # your answers are your rows too
        _ex("an answer", "stl-responses", stage="output"),
        _ex("public row", "alpaca"),
    ]
    texts = [e.text for e in choose(built, [], Mix(output_repeat=2, input_sample=1, data_repeat=4))]
    assert sorted(texts) == sorted(["authored row", "public row", *["an answer"] * 2, *["user row", "user answer"] * 4])


def test_the_dev_part_of_your_new_rows_is_measured_never_trained_on() -> None:
    from guardrail.training.continue_run import user_dev_rows

    built = [
        _ex("my dev row", "user-mine", group="mine-7", split="dev"),
        _ex("its twin", "user-mine", group="mine-7", split="dev"),
        _ex("my train row", "user-mine", group="mine-8"),
        _ex("authored dev row", "authored-v5_en_c", split="dev"),  # the previous run's split decides these
    ]
    held = user_dev_rows(built)
    assert [e.text for e in held] == ["my dev row", "its twin"]
    chosen = [e.text for e in choose(built, held, Mix(output_repeat=1, input_sample=0))]
    assert chosen == ["authored dev row", "my train row"]


def test_recorded_eval_rows_read_back_with_line_separators(tmp_path: Path) -> None:
    row = {
        "text": "a\u2028b", "prompt": None, "labels": {"unsafe": 0.0}, "stage": "input", "source": "s", "kind": "k",
        "split": "dev", "meta": {"lang": "en"}, "response_class": None, "group": "g",
    }  # fmt: skip
    path = tmp_path / "eval_rows.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    rows = read_eval_rows(path)
    assert [r.text for r in rows] == ["a\u2028b", "a\u2028b"] and rows[0].split == "dev"


def _finished_run(folder: Path, **config: object) -> Path:
    folder.mkdir()
    for name in ("checkpoint.pt", "eval_rows.jsonl", "tokenizer.json", "vocab_keep.json"):
        (folder / name).write_text("{}")
    meta = {"labels": ["unsafe"], "config": {"base": "e5", "layers": 6, "max_length": 128, **config}}
    (folder / "train_meta.json").write_text(json.dumps(meta))
    return folder


def test_a_continuation_reads_the_previous_run_and_never_overwrites_it(tmp_path: Path) -> None:
    import pytest

    from guardrail.training.continue_run import _prepare

    prev = _finished_run(tmp_path / "v4", exclude_noncommercial=True)
    with pytest.raises(ValueError, match="must differ"):
        _prepare({"out_dir": prev}, prev, Mix(), print)
    with pytest.raises(ValueError, match="not a finished training run"):
        _prepare({"out_dir": tmp_path / "x"}, tmp_path, Mix(), print)
    with pytest.raises(ValueError, match="output-repeat"):
        _prepare({"out_dir": tmp_path / "x"}, prev, Mix(output_repeat=0), print)
    # the weights' shape and the licence choice come from the previous run, whatever the command line says
    cfg = _prepare({"out_dir": tmp_path / "v5", "layers": 3, "exclude_noncommercial": False}, prev, Mix(), print)
    assert cfg["layers"] == 6 and cfg["exclude_noncommercial"] is True
    assert (tmp_path / "v5" / "tokenizer.json").exists()
    # the split method too: a run that does not record one drew its split at random
    assert _prepare({"out_dir": tmp_path / "v6", "split": "group-hash"}, prev, Mix(), print)["split"] == "random"
    hashed = _finished_run(tmp_path / "v7", split="group-hash")
    assert _prepare({"out_dir": tmp_path / "v8", "split": "random"}, hashed, Mix(), print)["split"] == "group-hash"


def test_a_continuation_refuses_another_runs_resumable_checkpoint(tmp_path: Path) -> None:
    import pytest

    from guardrail.training.continue_run import _prepare

    prev = _finished_run(tmp_path / "v4")
    other = tmp_path / "stale"
    other.mkdir()
    (other / "resume.pt").write_text("x")
    with pytest.raises(ValueError, match="another run"):
        _prepare({"out_dir": other}, prev, Mix(), print)
    # the same continuation, interrupted, resumes
    out = tmp_path / "v5"
    _prepare({"out_dir": out, "epochs": 1.0}, prev, Mix(), print)
    (out / "resume.pt").write_text("x")
    _prepare({"out_dir": out, "epochs": 1.0}, prev, Mix(), print)


def test_translations_stay_on_the_side_of_the_split_of_their_english_original() -> None:
    # grouping by meaning renames English groups to clusters; a translation must follow, or an original trains
    # while its translations are measured on dev
    import numpy as np

    from guardrail.training.dataset import assign_splits, group_by_meaning

    rows = []
    for i in range(40):
        for lang in ("en", "ru", "zh"):
            ex = _ex(f"sentence {i} in {lang}", "xsafety", group=f"xs-{i}", split=None)
            ex.meta = {"lang": lang}
            rows.append(ex)

    def embed(texts: object) -> np.ndarray:
        return np.eye(len(list(texts)), 8, dtype=np.float32) + 0.01  # type: ignore[arg-type]

    group_by_meaning(rows, embed, log=lambda _s: None)
    assign_splits(rows, dev_fraction=0.3, seed=1)
    by_sentence: dict[str, set[str | None]] = {}
    for ex in rows:
        by_sentence.setdefault(ex.text.split(" in ")[0], set()).add(ex.split)
    assert all(len(splits) == 1 for splits in by_sentence.values())
    assert {ex.split for ex in rows} == {"train", "dev"}


def test_an_earlier_read_back_is_reused_only_for_the_same_folder_and_rows(tmp_path: Path) -> None:
    from guardrail.training.unpack import stale_start

    start = tmp_path / "out-start"
    start.mkdir()
    folder, rows = tmp_path / "model", tmp_path / "rows.jsonl"
    meta = {"labels": [], "config": {}, "read_back_from": {"folder": str(folder), "eval_rows": ""}}
    (start / "train_meta.json").write_text(json.dumps(meta))
    assert stale_start(start, folder, None) is None
    assert "not of" in str(stale_start(start, tmp_path / "other-model", None))
    assert "eval rows" in str(stale_start(start, folder, rows))


def test_a_continuation_records_its_starts_split_seed_and_a_read_back_uses_it(tmp_path: Path) -> None:
    """A continuation trains with its own --seed but is measured on its start's split: reading it back must rebuild
    that split (the bundled v19b is seed 1 on v10's seed-0 rows), or its 'held-out' rows would be trained on."""
    from guardrail.training.continue_run import record_split_seed
    from guardrail.training.unpack import _settings

    start, first, second = tmp_path / "start", tmp_path / "first", tmp_path / "second"
    for folder, seed in ((start, 0), (first, 1), (second, 2)):
        folder.mkdir()
        config = {"seed": seed, "base": "e5", "layers": 6}
        (folder / "train_meta.json").write_text(json.dumps({"config": config}))
        (folder / "metrics.json").write_text(json.dumps({"config": {k: str(v) for k, v in config.items()}}))
    assert record_split_seed(first, start) == 0
    assert record_split_seed(second, first) == 0  # a continuation of a continuation keeps the first split
    assert json.loads((second / "metrics.json").read_text())["split_seed"] == 0
    assert _settings(second)["seed"] == 0 and _settings(start)["seed"] == 0
