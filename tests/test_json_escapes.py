"""Personal data written with JSON string escapes is found and masked where it sits.

A structured answer or a tool call's arguments may carry ``leak\\u0040corp.example`` (or a key as ``sk-abc\\/def``,
from serializers that escape "/"): the application reads the value decoded, so the check must too. Before, the
address went out unmasked (found by the Anthropic review, helper-118; the OpenAI path had it too).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail import Action, Guard
from guardrail.normalize import forms
from guardrail.testing import FakeClassifier

POLICY = {
    "version": 1,
    "name": "escapes",
    "input": {"rules": [{"category": "pii", "action": "redact"}]},
    "output": {"rules": [{"category": "pii", "action": "redact"}]},
    "audit": {"log_text": "none"},
}


@pytest.fixture(scope="module")
def g() -> Guard:
    return Guard(POLICY, classifiers=FakeClassifier())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_address_written_with_a_json_escape_is_masked_in_a_structured_answer(g: Guard, mode: str) -> None:
    answer = '{"to": "leak\\u0040corp.example", "n": 1}'
    d = g.check_output(answer, prompt="hi") if mode == "sync" else asyncio.run(g.acheck_output(answer, prompt="hi"))
    assert d.action is Action.REWRITE and d.text == '{"to": "<EMAIL_1>", "n": 1}'
    assert json.loads(d.text) == {"to": "<EMAIL_1>", "n": 1}  # still the JSON the application parses


def test_an_address_written_with_a_json_escape_is_masked_in_a_prompt(g: Guard) -> None:
    assert g.check_input("write to leak\\u0040corp.example now").text == "write to <EMAIL_1> now"


@given(st.text(alphabet="abcxyzéñüßжщ中文한글ع", min_size=1, max_size=40))
def test_the_decoded_reading_is_what_json_reads(value: str) -> None:
    escaped = json.dumps(value, ensure_ascii=True)[1:-1]  # every non-ASCII letter as \uXXXX
    assert any(f.text.strip() == value.strip() for f in forms(escaped)) or "\\u" not in escaped
