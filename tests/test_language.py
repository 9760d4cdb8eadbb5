"""Text in a script the model was not measured on gets the policy's unsupported_language handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import guardrail
from guardrail.language import dominant_script
from guardrail.testing import FakeClassifier


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("how do I cook rice", "Latin"),
        ("Cách nấu cơm ngon", "Latin"),
        ("Как приготовить рис?", "Cyrillic"),
        ("如何煮米饭？", "Han"),
        ("ご飯の炊き方を教えて", "Japanese"),
        ("밥 짓는 법", "Hangul"),
        ("วิธีหุงข้าว", "Thai"),
        ("مرحبا كيف حالك", "Arabic"),
        ("नमस्ते", "Devanagari"),
        ("კარგი დღე", "Georgian"),
        ("123 !! 😀", None),
    ],
)
def test_dominant_script(text: str, script: str | None) -> None:
    assert dominant_script(text) == script


@given(st.text(max_size=300))
def test_dominant_script_never_raises(text: str) -> None:
    dominant_script(text)


def _guard(action: str) -> guardrail.Guard:
    policy = {
        "version": 1,
        "name": "lang",
        "unsupported_language": {"action": action, "message": "Please write in a supported language."},
        "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"}]},
    }
    # the fake reads only Latin and Cyrillic, and (like v3 did) scores anything else as unsafe
    fake = FakeClassifier({"unsafe": 0.01}, rules={"[\u10a0-\u10ff\u1200-\u137f]": {"unsafe": 0.99}},
                          scripts={"Latin", "Cyrillic"})  # fmt: skip
    return guardrail.Guard(policy, classifiers=fake)


def test_supported_script_has_no_finding() -> None:
    d = _guard("log").check_input("how do I cook rice")
    assert d.action is guardrail.Action.ALLOW
    assert not any(f.category == "unsupported_language" for f in d.findings)


async def test_log_scores_as_usual_and_names_the_script() -> None:
    d = await _guard("log").acheck_input("კარგი დღე")
    assert d.action is guardrail.Action.BLOCK  # the model's 0.99 still counts under `log`
    (f,) = [f for f in d.findings if f.category == "unsupported_language"]
    assert f.entities == ("Georgian",)
    assert d.scores["unsupported_language"] == 1.0


def test_allow_does_not_act_on_the_model() -> None:
    d = _guard("allow").check_input("კარგი დღე")
    assert d.action is guardrail.Action.LOG
    assert [f.category for f in d.findings] == ["unsupported_language"]


async def test_block_refuses_with_its_message() -> None:
    d = await _guard("block").acheck_input("ሰላም ነው")
    assert d.action is guardrail.Action.BLOCK
    assert d.message == "Please write in a supported language."


def test_requires_makes_a_rule_conditional() -> None:
    policy = {
        "version": 1,
        "name": "sh",
        "input": {
            "rules": [
                {"category": "self_harm", "threshold": 0.5, "action": "block", "requires": {"unsafe": 0.5},
                 "message": "Please reach out to a crisis line."},
                {"category": "self_harm", "threshold": 0.5, "action": "rewrite", "message": "support me"},
            ]
        },
    }  # fmt: skip
    fake = FakeClassifier(rules={"method": {"self_harm": 0.9, "unsafe": 0.9}, "miss": {"self_harm": 0.9}})
    guard = guardrail.Guard(policy, classifiers=fake)
    method = guard.check_input("tell me a method")
    assert method.action is guardrail.Action.BLOCK and method.message == "Please reach out to a crisis line."
    quiet = guard.check_input("nobody would miss me")
    assert quiet.action is guardrail.Action.REWRITE and quiet.text == "support me"
