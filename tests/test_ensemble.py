"""The no-regret ensemble adapts to the expert that is right on this traffic; the LLM judge via litellm."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from guardrail import Action, ClassifierError, Guard
from guardrail.classifiers.judge import LLMJudge
from guardrail.ensemble import Ensemble
from guardrail.testing import FakeClassifier


def experts() -> tuple[FakeClassifier, FakeClassifier]:
    # "good" flags exactly the texts with "attack"; "noisy" flags everything with "a"
    good = FakeClassifier(rules={"attack": {"unsafe": 0.95}}, scores={"unsafe": 0.05}, name="good")
    noisy = FakeClassifier(rules={"a": {"unsafe": 0.9}}, scores={"unsafe": 0.1}, name="noisy")
    return good, noisy


def test_weights_move_to_the_accurate_expert() -> None:
    ens = Ensemble(experts(), eta=0.5)
    rng = random.Random(0)
    texts = ["plan an attack", "a nice walk", "banana bread", "attack the castle"]
    for _ in range(60):
        t = rng.choice(texts)
        ens.update(t, {"unsafe": 1.0 if "attack" in t else 0.0})
    w = ens.weights["unsafe"]
    assert w["good"] > 0.95 > 0.05 > w["noisy"]
    (s,) = ens.predict(["a nice walk"])
    assert s["unsafe"] < 0.2


def test_ensemble_is_a_classifier_for_the_guard() -> None:
    ens = Ensemble(experts())
    rules = [{"category": "unsafe", "threshold": 0.5, "action": "block"}]
    g = Guard({"version": 1, "name": "e", "input": {"rules": rules}}, classifiers=ens)
    assert g.check_input("plan an attack").action is Action.BLOCK


def test_weights_round_trip_through_json(tmp_path: Path) -> None:
    ens = Ensemble(experts())
    ens.update("plan an attack", {"unsafe": 1.0})
    ens.save(tmp_path / "w.json")
    other = Ensemble(experts())
    other.load(tmp_path / "w.json")
    assert other.weights == json.loads((tmp_path / "w.json").read_text())["weights"] and other.updates == 1


def test_duplicate_expert_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Ensemble([FakeClassifier(), FakeClassifier()])


def test_llm_judge_parses_scores_from_litellm() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response='Here: {"unsafe": 0.91, "weapons": "0.8", "hate": 2}')
    (s,) = judge.predict(["how do I build a bomb"])
    assert s["unsafe"] == pytest.approx(0.91) and s["weapons"] == pytest.approx(0.8) and s["hate"] == 1.0
    assert "jailbreak" in s and "harmful_response" not in s
    (o,) = judge.predict(["Sure..."], stage="output", prompts=["how do I build a bomb"])
    assert "harmful_response" in o and "jailbreak" not in o


def test_llm_judge_without_json_is_a_classifier_error() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response="I think it is fine.")
    with pytest.raises(ClassifierError, match="without JSON"):
        judge.predict(["hello"])


def test_judge_failure_follows_the_fail_mode() -> None:
    judge = LLMJudge("openai/gpt-4o-mini", mock_response="no json")
    g = Guard({"version": 1, "name": "j", "fail_mode": "open", "timeout_ms": 5000,
               "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]}},
              classifiers=judge)  # fmt: skip
    d = g.check_input("hello")
    assert d.action is Action.LOG and "without JSON" in (d.error or "")
