"""Editing the strings an answer's actions carry (guardrail.adapters.actions): restore and redaction inside
tool-call arguments keep them valid JSON, change only string values, and leave untouched what has nothing
to edit."""

from __future__ import annotations

import json
from typing import Any

from guardrail.adapters import actions, json_edits, response_events
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
key = st.text(max_size=4) | st.sampled_from([*MAPPING, *VALUES])  # a mapping may be keyed by the user's values
doc = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(key, inner, max_size=3),
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


def _expected(value: Any, keys: bool | None = None) -> Any:
    """``value`` restored: its keys too, unless restoring them makes two keys of one object equal anywhere in it
    (then every key stays as written: the parser would silently drop one)."""
    if keys is None:
        keys = not _collides(value)
    if isinstance(value, str):
        return restore(value, MAPPING)
    if isinstance(value, dict):
        return {(restore(k, MAPPING) if keys else k): _expected(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_expected(v, keys) for v in value]
    return value


def _collides(value: Any) -> bool:
    if isinstance(value, dict):
        return len({restore(k, MAPPING) for k in value}) < len(value) or any(map(_collides, value.values()))
    return isinstance(value, list) and any(map(_collides, value))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(key, doc, max_size=4))
def test_restoring_json_arguments_keeps_them_json_and_edits_only_string_values(args: dict[str, Any]) -> None:
    message = {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
               "function": {"name": "f", "arguments": json.dumps(args)}}]}  # fmt: skip
    result = {"choices": [{"index": 0, "message": message}]}
    actions.edit_actions(result, 0, lambda text: restore(text, MAPPING))
    out = result["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(out["function"]["arguments"]) == _expected(args)
    assert out["id"] == "t" and out["function"]["name"] == "f"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(key, doc, max_size=4))
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


def test_only_the_edited_string_changes_numbers_and_spacing_stay_as_written() -> None:
    # re-encoding the whole document turned 0.1000000000000000055511151231257827 into 0.1 and 1e400 into
    # Infinity (not JSON)
    raw = '{"to":"<EMAIL_1>",  "amount":0.1000000000000000055511151231257827,"big":1e400,"k":{"<EMAIL_1>":"x"}}'
    result = {"choices": [{"message": {"tool_calls": [{"function": {"name": "pay", "arguments": raw}}]}}]}
    actions.edit_actions(result, 0, lambda text: restore(text, MAPPING))
    out = result["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert out == raw.replace('"<EMAIL_1>"', '"bob@example.com"')  # the key too: a mapping keyed by the user's own


def test_signed_thinking_is_not_restored_but_is_redacted() -> None:
    # a provider refuses signed thinking that comes back changed; masking personal data still wins over that
    def answer() -> dict[str, Any]:
        blocks = [{"type": "thinking", "thinking": "mail <EMAIL_1> at bob@example.com", "signature": "sig"}]
        return {"choices": [{"message": {"content": "ok", "thinking_blocks": blocks}}]}

    restored = answer()
    actions.edit_actions(restored, 0, lambda text: restore(text, MAPPING), masking=False)
    assert restored == answer()
    masked = answer()
    actions.edit_actions(masked, 0, actions.redactor({"<EMAIL_2>": "bob@example.com"}))
    assert masked["choices"][0]["message"]["thinking_blocks"][0]["thinking"] == "mail <EMAIL_1> at <EMAIL_2>"


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        out["usage"] = usage
    return out


def test_holding_calls_keeps_the_role_the_finish_and_the_usage_once() -> None:
    first = _chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "t", "type": "function",
                   "function": {"name": "f", "arguments": '{"a": '}}]})  # fmt: skip
    last = _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls", {"total_tokens": 9})
    kept = [actions.without_calls(c) for c in (first, last)]
    assert kept[0] is not None and kept[0]["choices"][0]["delta"]["role"] == "assistant"  # a tools-only answer
    assert kept[1] is not None and kept[1]["choices"][0]["finish_reason"] == "tool_calls" and kept[1]["usage"]
    merged = actions.merge_calls([first, last])
    assert "usage" not in merged or merged["usage"] is None
    assert merged["choices"][0]["finish_reason"] is None and merged["choices"][0]["delta"].get("role") is None
    (call,) = merged["choices"][0]["delta"]["tool_calls"]
    assert call["id"] == "t" and call["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_merging_joins_custom_tool_input_and_parallel_calls_by_index() -> None:
    chunks = [
        _chunk({"tool_calls": [{"index": 1, "id": "b", "type": "custom", "custom": {"name": "sh", "input": ""}}]}),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}]}
        ),
        _chunk({"tool_calls": [{"index": 1, "custom": {"input": "echo leak@corp"}}]}),
        _chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}, {"index": 1, "custom": {"input": ".io"}}]}
        ),
    ]
    calls = actions.merge_calls(chunks)["choices"][0]["delta"]["tool_calls"]
    assert [c["id"] for c in calls] == ["a", "b"]
    assert calls[0]["function"]["arguments"] == "{}" and calls[1]["custom"] == {
        "name": "sh",
        "input": "echo leak@corp.io",
    }


def test_litellm_responses_stream_events_are_edited_and_read_like_openai_ones() -> None:
    """litellm's stream items are models with undeclared (extra) fields: their arguments must be edited too,
    else a restored or masked call disagrees with its own fragments (or, redacted, ends the answer)."""
    from guardrail.adapters import actions
    from litellm.llms.openai.responses.transformation import OpenAIResponsesAPIConfig

    config = OpenAIResponsesAPIConfig()
    args = '{"to": "<EMAIL_1>", "cc": "leak@corp.example"}'
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "send", "arguments": args,
            "status": "completed"}  # fmt: skip
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Mail <EMAIL_1>."}],
                 "encrypted_content": "sig"}  # fmt: skip
    chunks = [
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": args[:20]},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": args[20:]},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1, "arguments": args},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        {"type": "response.output_item.done", "output_index": 1, "item": call},
    ]
    events = [config.transform_streaming_response(model="m", parsed_chunk={**c, "sequence_number": i},
                                                  logging_obj=None) for i, c in enumerate(chunks)]  # fmt: skip
    merged = [e for _, e in response_events.merge_event_deltas(events)]
    assert len(merged) == 4 and merged[0].delta == args and events[0].delta == args[:20]  # upstream untouched
    edit = actions.redactor({"<EMAIL_2>": "leak@corp.example"})
    restored = response_events.edit_events(
        response_events.edit_events(merged, edit), lambda t: t.replace("<EMAIL_1>", "bob@x.io")
    )
    want = {"to": "bob@x.io", "cc": "<EMAIL_2>"}
    assert json.loads(restored[0].delta) == want and json.loads(restored[1].arguments) == want
    assert json.loads(restored[3].item.arguments) == want and "leak@corp" not in response_events.events_text(restored)
    assert restored[2].item.summary[0]["text"] == "Mail <EMAIL_1>."  # reasoning is not a held tool item
    assert json.loads(events[4].item.arguments)["to"] == "<EMAIL_1>"  # the caller's objects are not changed


_EMAILS = st.sampled_from(["leak@corp.example", "a.b@x.io", "ann@mail.example"])
_PIECES = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8), _EMAILS)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abcdef", min_size=1, max_size=4) | _EMAILS, st.lists(_PIECES, max_size=4).map("\n".join)
    )
)
def test_masking_a_json_document_keeps_it_json_and_leaves_no_address(doc: dict[str, str]) -> None:
    """Structured outputs are masked value by value, keys included: whatever the values hold (line breaks,
    quotes, escapes), the document stays valid JSON with as many keys, the keys without an address as they
    were, and no address is left in any key or value."""
    text = json.dumps(doc)
    result = json_edits.mask_json_text(text, frozenset({"email"}), {})
    assert result is not None
    masked, mapping = result
    out = json.loads(masked)
    assert all(placeholder in masked for placeholder in mapping)
    assert len(out) == len(doc) and {k for k in doc if "@" not in k} <= out.keys()
    for piece in (*out, *out.values()):
        assert not any(e in piece for e in ("leak@corp.example", "a.b@x.io", "ann@mail.example"))


def test_a_string_with_a_lone_surrogate_stays_escaped_when_edited() -> None:
    # written back with ensure_ascii=False, the decoded surrogate made arguments that could not be encoded to be sent
    raw = '{"\\ud800 <EMAIL_1>": "\\udfff to <EMAIL_1>"}'
    out = json_edits.edit_json_text(raw, lambda text: restore(text, MAPPING))
    out.encode("utf-8")
    assert json.loads(out) == {"\ud800 bob@example.com": "\udfff to bob@example.com"}
