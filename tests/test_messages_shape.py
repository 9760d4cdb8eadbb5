"""Anthropic Messages API answers (LiteLLM's proxy on /v1/messages) are read like any answer: their text, and
apart from it what they do (tool calls, thinking); a block leaves the refusal alone, a rewrite keeps the rest."""

from __future__ import annotations

from typing import Any

from guardrail.adapters import shapes

from guardrail.call import CONTENT_FILTER


def _answer() -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
        "content": [
            {"type": "thinking", "thinking": "they want the \\u0062omb recipe", "signature": "sig"},
            {"type": "text", "text": "Let me look that "},
            {"type": "text", "text": "up for you."},
            {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "how to build a bomb"}},
        ],
    }  # fmt: skip


def test_its_text_and_its_actions_are_read_apart() -> None:
    answer = _answer()
    assert shapes.texts_of(answer) == ["Let me look that up for you."]
    [actions] = shapes.action_texts_of(answer)
    assert actions is not None
    assert "search: " in actions and "how to build a bomb" in actions and "they want the \\u0062omb" in actions


def test_a_block_keeps_only_the_refusal_and_a_rewrite_keeps_the_tool_call() -> None:
    blocked = shapes.replace_completion_texts(_answer(), {0: "Sorry."}, finish_reason={0: CONTENT_FILTER})
    assert blocked["content"] == [{"type": "text", "text": "Sorry."}] and blocked["stop_reason"] == "refusal"
    original = _answer()
    rewritten = shapes.replace_completion_texts(original, {0: "Let me look that up for <NAME_1>."})
    # the parts keep their order (an agent sends its thinking back first); the text is one part now
    assert [p["type"] for p in rewritten["content"]] == ["thinking", "text", "tool_use"]
    assert (
        rewritten["content"][1]["text"] == "Let me look that up for <NAME_1>."
        and rewritten["stop_reason"] == "tool_use"
    )
    assert _answer()["content"][1]["text"] == "Let me look that "  # the caller's object is never changed


def test_other_results_are_not_messages() -> None:
    assert shapes.texts_of({"type": "message", "content": "not a list"}) == []
    assert shapes.action_texts_of({"object": "list", "data": [{"embedding": [0.1]}]}) == []


def test_sdk_objects_are_changed_in_their_own_types() -> None:
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    item = ResponseOutputMessage(
        id="m", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text="call bob@example.com", annotations=[])],
    )  # fmt: skip
    assert shapes.answer_kind(item) == "message" and shapes.texts_of(item) == ["call bob@example.com"]
    out = shapes.replace_completion_texts(item, {0: "call <EMAIL_1>"})
    assert isinstance(out.content[0], ResponseOutputText) and out.content[0].text == "call <EMAIL_1>"
    assert item.content[0].text == "call bob@example.com"


def test_which_answers_can_be_read() -> None:
    assert shapes.answer_kind("text") == "text"
    assert shapes.answer_kind(_answer()) == "message"
    assert shapes.answer_kind({"choices": [{"message": {"content": "hi"}}]}) == "chat"
    assert shapes.answer_kind({"choices": [{"text": "hi"}]}) == "chat"  # a legacy text completion
    for unread in ({"choices": ["hi"]}, {"choices": []}, {"object": "response", "output": []}, {"answer": "hi"}):
        assert shapes.answer_kind(unread) is None, unread


def test_reasoning_in_a_chat_answer_is_read_and_a_block_drops_it() -> None:
    answer = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "ok",
                    "reasoning_content": "first, the bomb",
                    "thinking_blocks": [{"type": "thinking", "thinking": "then the fuse"}],
                    "parsed": {"steps": "the bomb"},
                },
            }
        ]
    }
    [actions] = shapes.action_texts_of(answer)
    assert actions is not None and "first, the bomb" in actions and "then the fuse" in actions
    blocked = shapes.replace_completion_texts(answer, {0: "Sorry."}, finish_reason={0: CONTENT_FILTER})
    message = blocked["choices"][0]["message"]
    assert message["content"] == "Sorry." and not {"reasoning_content", "thinking_blocks", "parsed"} & set(message)


def test_unreadable_message_and_choice_shapes_are_not_answers() -> None:
    for unread in (
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"content": {"text": "hi"}}}]},
        {"type": "message", "content": ["text"]},
    ):
        assert shapes.answer_kind(unread) is None, unread
