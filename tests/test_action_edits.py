"""Editing the strings an answer's actions carry (guardrail.adapters.actions): restore and redaction inside
tool-call arguments keep them valid JSON, change only string values, and leave untouched what has nothing
to edit."""

from __future__ import annotations

import json
from typing import Any

from guardrail.adapters import actions
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.classifiers.patterns import restore

VALUES = ["bob@example.com", 'say "hi"\n', "a\\b", "ünï 字"]
MAPPING = {f"<EMAIL_{i + 1}>": v for i, v in enumerate(VALUES)}

leaf = st.one_of(
    st.sampled_from([*MAPPING, "plain", "x <EMAIL_1> y", "<EMAIL_9>"]),
    st.text(max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
)
doc = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _expected(value: Any) -> Any:
    if isinstance(value, str):
        return restore(value, MAPPING)
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expected(v) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), doc, max_size=4))
def test_restoring_json_arguments_keeps_them_json_and_edits_only_string_values(args: dict[str, Any]) -> None:
    message = {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
               "function": {"name": "f", "arguments": json.dumps(args)}}]}  # fmt: skip
    result = {"choices": [{"index": 0, "message": message}]}
    actions.edit_actions(result, 0, lambda text: restore(text, MAPPING))
    out = result["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(out["function"]["arguments"]) == _expected(args)
    assert out["id"] == "t" and out["function"]["name"] == "f"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), doc, max_size=4))
def test_redacting_then_restoring_gives_the_arguments_back(args: dict[str, Any]) -> None:
    plain = _expected(args)  # the arguments with real values only
    raw = json.dumps(plain)
    message = {"tool_calls": [{"function": {"name": "f", "arguments": raw}}]}
    result = {"choices": [{"message": message}]}
    actions.edit_actions(result, 0, actions.redactor(MAPPING))
    masked = result["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert not any(v in leaf for leaf in _strings(json.loads(masked)) for v in VALUES)
    actions.edit_actions(result, 0, lambda text: restore(text, MAPPING))
    assert json.loads(result["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == plain


def test_arguments_with_nothing_to_edit_stay_byte_for_byte() -> None:
    raw = '{"city":"Oslo",  "days": 3}'  # compact and odd spacing: never re-serialised when unchanged
    result = {"choices": [{"message": {"tool_calls": [{"function": {"name": "w", "arguments": raw}}]}}]}
    actions.edit_actions(result, 0, lambda text: restore(text, MAPPING))
    assert result["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] is raw


def test_messages_tool_use_input_and_thinking_are_edited() -> None:
    answer = {"type": "message", "role": "assistant", "content": [
        {"type": "thinking", "thinking": "write to <EMAIL_1>"},
        {"type": "tool_use", "id": "tu", "name": "send", "input": {"to": "<EMAIL_1>", "n": 2}},
    ]}  # fmt: skip
    actions.edit_actions(answer, 0, lambda text: restore(text, MAPPING))
    assert answer["content"][0]["thinking"] == "write to bob@example.com"
    assert answer["content"][1]["input"] == {"to": "bob@example.com", "n": 2} and answer["content"][1]["id"] == "tu"
