"""An answer given as messages is masked where its personal data sits, tool-call arguments included.

Until session 22 ``Guard.check_output(messages)`` found no personal data in an answer's tool-call arguments: an
address only there was allowed with no finding (the client wrappers masked it; the core did not). Now the redaction
reaches the calls: the Decision carries the answer's messages masked where each value sits, numbered with the
content's placeholders, and an answer whose value cannot be masked where it sits is blocked, never sent on.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from guardrail import Action, Guard
from guardrail.testing import FakeClassifier


@pytest.fixture(scope="module")
def g() -> Guard:
    return Guard(classifiers=FakeClassifier({}))  # no model score fires: only the redaction acts


def check(g: Guard, answer: Any, is_async: bool) -> Any:
    return asyncio.run(g.acheck_output(answer, prompt="hi")) if is_async else g.check_output(answer, prompt="hi")


def call(arguments: str) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": "send", "arguments": arguments}}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_personal_data_in_tool_call_arguments_is_masked_where_it_sits(g: Guard, is_async: bool) -> None:
    args = json.dumps({"to": "bob.smith@example.com", "cc": "ann@example.org"})
    answer = [{"role": "assistant", "content": "Writing to bob.smith@example.com.", "tool_calls": [call(args)]}]
    before = copy.deepcopy(answer)
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.text == "Writing to <EMAIL_1>."
    assert d.redactions == {"<EMAIL_1>": "bob.smith@example.com", "<EMAIL_2>": "ann@example.org"}
    assert d.messages is not None
    (masked,) = d.messages
    assert masked["content"] == "Writing to <EMAIL_1>."
    assert json.loads(masked["tool_calls"][0]["function"]["arguments"]) == {"to": "<EMAIL_1>", "cc": "<EMAIL_2>"}
    assert answer == before  # the caller's answer is untouched


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_answer_that_only_calls_a_tool_keeps_its_shape(g: Guard, is_async: bool) -> None:
    answer = [{"role": "assistant", "content": None, "tool_calls": [call('{"phone": "+1 415 555 0132"}')]}]
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.text == "" and d.redactions == {"<PHONE_1>": "+1 415 555 0132"}
    assert d.messages is not None
    assert d.messages[0]["content"] is None
    assert d.messages[0]["tool_calls"][0]["function"]["arguments"] == '{"phone": "<PHONE_1>"}'


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_value_that_cannot_be_masked_where_it_sits_blocks_the_answer(g: Guard, is_async: bool) -> None:
    # JSON-escaped in the arguments: found in the reading the tool decodes, not where it is written
    answer = [{"role": "assistant", "content": None, "tool_calls": [call('{"to": "bob.smith\\u0040example.com"}')]}]
    d = check(g, answer, is_async)
    assert d.action is Action.BLOCK and d.messages is None and d.redactions == {}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_refusal_and_reasoning_are_masked_too_and_clean_answers_pass_as_they_are(g: Guard, is_async: bool) -> None:
    answer = [{"role": "assistant", "content": "No.", "refusal": "I won't mail ann@example.org.",
               "reasoning_content": "The user wants ann@example.org."}]  # fmt: skip
    d = check(g, answer, is_async)
    assert d.messages is not None
    refusal, reasoning = d.messages[0]["refusal"], d.messages[0]["reasoning_content"]
    assert "ann@example.org" not in refusal + reasoning and "<EMAIL_" in refusal and "<EMAIL_" in reasoning
    clean = check(g, [{"role": "assistant", "content": "Done.", "tool_calls": [call('{"city": "Paris"}')]}], is_async)
    assert clean.action is Action.ALLOW and clean.messages is None
