"""A model folder's labels.json has one reader (guardrail.classifiers.model_info): the runtime that scores with the
model and the policy that takes its thresholds read the same heads with the same checks. Before, the runtime read
the file on its own and took a threshold of 7 or a stage named "both" without a word, while the policy refused them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from guardrail.classifiers.model_info import ModelInfo
from guardrail.classifiers.onnx import resolve_model_dir
from guardrail.errors import ClassifierError, PolicyError
from guardrail.policy import load_policy, model_labels


def _folder(tmp_path: Path, labels: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("head", "field", "words"),
    [
        ({"id": "unsafe", "index": 0, "threshold": 7}, "labels[0].threshold", "less than"),
        ({"id": "unsafe", "index": 0, "thresholds": {"input": -0.1}}, "labels[0].thresholds.input", "greater than"),
        ({"id": "unsafe", "index": 0, "stages": ["both"]}, "labels[0].stages[0]", "'input' or 'output'"),
        ({"id": "unsafe", "index": 0, "threshold": "0.5"}, "labels[0].threshold", "valid number"),
    ],
)
def test_an_impossible_head_is_refused_by_the_runtime_and_the_policy_alike(
    tmp_path: Path, head: dict[str, Any], field: str, words: str
) -> None:
    folder = _folder(tmp_path, [head])
    with pytest.raises(ClassifierError) as runtime:
        ModelInfo.load(folder)
    assert field in str(runtime.value) and words in str(runtime.value) and str(folder) in str(runtime.value)
    with pytest.raises(PolicyError) as policy:
        load_policy({"version": 1, "name": "t", "model": str(folder)})
    assert policy.value.field == field and words in policy.value.message
    assert policy.value.file == str(folder / "labels.json")


def test_a_head_listed_twice_is_refused_by_both(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [{"id": "unsafe", "index": 0}, {"id": "unsafe", "index": 1}])
    with pytest.raises(ClassifierError, match=r"labels\[1\]\.id: head 'unsafe' is listed twice"):
        ModelInfo.load(folder)
    with pytest.raises(PolicyError, match="listed twice"):
        model_labels(str(folder))


def test_broken_json_names_its_line_to_both(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "labels.json").write_text('{"labels": [\n  {"id": "unsafe",,}\n]}', encoding="utf-8")
    with pytest.raises(ClassifierError, match="line 2: invalid JSON"):
        ModelInfo.load(folder)
    with pytest.raises(PolicyError) as policy:
        model_labels(str(folder))
    assert policy.value.line == 2


def test_the_bundled_model_reads_the_same_heads_both_ways(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(resolve_model_dir("default"), folder, ignore=shutil.ignore_patterns("*.onnx"))
    info = ModelInfo.load(folder)
    heads = model_labels(str(folder))
    assert heads is not None and [lab.id for lab in info.labels] == list(heads)
    for lab in info.labels:
        for stage in lab.stages:
            assert lab.thresholds.get(stage, lab.threshold) == heads[lab.id].threshold_for(stage)
        assert lab.stages == heads[lab.id].stages
