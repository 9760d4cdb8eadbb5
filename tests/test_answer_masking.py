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


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_single_message_is_masked_as_one_message(g: Guard, is_async: bool) -> None:
    # a dict given alone (not in a list) was read as its keys: three empty messages without the masked call
    answer = {"role": "assistant", "content": "To bob@example.com.", "tool_calls": [call('{"to": "ann@example.org"}')]}
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.messages is not None
    (masked,) = d.messages
    assert masked["role"] == "assistant" and masked["content"] == "To <EMAIL_1>."
    assert masked["tool_calls"][0]["function"]["arguments"] == '{"to": "<EMAIL_2>"}'


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_arguments_given_as_an_object_are_masked_not_blocked(g: Guard, is_async: bool) -> None:
    args = {"to": ["ann@example.org"], "note": {"phone": "+1 415 555 0132"}, "n": 3}
    answer = [{"role": "assistant", "content": None, "tool_calls": [call(args)]}]  # type: ignore[arg-type]
    before = copy.deepcopy(answer)
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.messages is not None
    masked = d.messages[0]["tool_calls"][0]["function"]["arguments"]
    assert masked == {"to": ["<EMAIL_1>"], "note": {"phone": "<PHONE_1>"}, "n": 3}
    assert answer == before


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_calls_given_as_objects_are_masked_and_kept(g: Guard, is_async: bool) -> None:
    from types import SimpleNamespace

    from openai.types.chat import ChatCompletionMessageToolCall

    typed = ChatCompletionMessageToolCall.model_validate(call('{"to": "ann@example.org"}'))
    in_dict = [{"role": "assistant", "content": None, "tool_calls": [typed]}]  # an openai call in a plain message
    d = check(g, in_dict, is_async)
    assert d.action is Action.REWRITE and d.messages is not None
    assert d.messages[0]["tool_calls"][0]["function"]["arguments"] == '{"to": "<EMAIL_1>"}'
    assert typed.function.arguments == '{"to": "ann@example.org"}'  # the caller's object is untouched
    fn = SimpleNamespace(name="send", arguments='{"to": "ann@example.org"}')
    plain = SimpleNamespace(role="assistant", content="Sent.", tool_calls=[SimpleNamespace(id="c1", function=fn)])
    d = check(g, [plain], is_async)  # an object of no known kind: its call is kept, masked, never dropped
    assert d.action is Action.REWRITE and d.messages is not None
    assert d.messages[0]["tool_calls"][0]["function"]["arguments"] == '{"to": "<EMAIL_1>"}'
    assert fn.arguments == '{"to": "ann@example.org"}'


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_citation_title_is_masked_not_blocked(g: Guard, is_async: bool) -> None:
    cite = {"type": "url_citation", "url_citation": {"title": "Contact ann@example.org", "url": "https://x.example"}}
    answer = [{"role": "assistant", "content": "See the page.", "annotations": [cite]}]
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.messages is not None
    assert d.messages[0]["annotations"][0]["url_citation"]["title"] == "Contact <EMAIL_1>"
    assert cite["url_citation"]["title"] == "Contact ann@example.org"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_value_at_the_end_of_one_field_is_read_apart_from_the_next(g: Guard, is_async: bool) -> None:
    # refusal and reasoning were read run together: "...1111" + "2 ok" hid the card (no longer a valid number),
    # and "...example.org" + "I think" made an address written nowhere, which blocked the answer
    answer = [{"role": "assistant", "content": "No.", "refusal": "Card 4111 1111 1111 1111",
               "reasoning_content": "2 ok", "audio": {"transcript": "Mail ann@example.org", "data": "UklG"},
               "thinking_blocks": [{"type": "thinking", "thinking": "I think so"}]}]  # fmt: skip
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.messages is not None
    assert d.redactions == {"<CREDIT_CARD_1>": "4111 1111 1111 1111", "<EMAIL_1>": "ann@example.org"}
    masked = d.messages[0]
    assert masked["refusal"] == "Card <CREDIT_CARD_1>" and masked["reasoning_content"] == "2 ok"
    assert masked["audio"] == {"transcript": "Mail <EMAIL_1>", "data": ""}  # its sound would still say it


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_name_read_with_the_answer_is_masked_where_it_sits_or_blocks(g: Guard, is_async: bool) -> None:
    # the name is read beside the content: its address was numbered and reported masked, yet sent on as it was
    answer = [{"role": "assistant", "name": "ann@example.org", "content": "Hi.", "tool_calls": [call("{}")]}]
    d = check(g, answer, is_async)
    assert d.action is Action.REWRITE and d.redactions == {"<EMAIL_1>": "ann@example.org"}
    assert d.messages is not None and d.messages[0]["name"] == "<EMAIL_1>"
    # written there in a form the reading changes (separators read as spaces): not reachable, so blocked ("415-555-0132"
    # is found as written, beside "call_", and masked where it sits: guardrail.names.name_reading)
    d = check(g, [{"role": "assistant", "name": "call_415_555_0132", "content": "Hi."}], is_async)
    assert d.action is Action.BLOCK and d.messages is None
