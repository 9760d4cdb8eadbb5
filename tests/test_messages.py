"""Extraction of the text to check from strings, bytes and chat messages of every shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail.messages import extract, replace_texts, to_text
from guardrail.scoring_form import scan_form


def test_bytes_with_invalid_utf8_are_replaced_not_rejected() -> None:
    assert to_text(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"


def test_scan_form_removes_invisible_and_folds_lookalikes() -> None:
    assert scan_form("ki\u200bll") == "kill"
    assert scan_form("ｋｉｌｌ") == "kill"
    assert scan_form("a\x00b\x07c") == "a b c"
    assert scan_form("line1\nline2\ttab") == "line1\nline2\ttab"


def test_sdk_objects_with_attributes_are_accepted() -> None:
    class Msg:
        def __init__(self, role: str, content: Any) -> None:
            self.role, self.content = role, content

    ex = extract([Msg("user", "hi"), Msg("assistant", None), Msg("user", "there")], "all_user")
    assert ex.texts == ("hi", "there")


def test_single_message_dict_is_treated_as_a_conversation() -> None:
    assert extract({"role": "user", "content": "hi"}).texts == ("hi",)


def test_no_user_message_gives_nothing_to_check() -> None:
    assert extract([{"role": "system", "content": "be nice"}]).texts == ()


def test_audio_and_image_parts_are_reported_as_skipped() -> None:
    ex = extract(
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}, {"type": "text", "text": "t"}]}]
    )
    assert ex.texts == ("t",) and ex.skipped == ("message 0 part 0: input_audio",)


@pytest.mark.parametrize("bad", [42, None, [1, 2], [{"role": 3, "content": "x"}]])
def test_unexpected_shapes_raise_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        extract(bad)


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system", "tool"]), st.text(max_size=20)), max_size=8))
def test_replace_texts_round_trips_and_leaves_input_untouched(turns: list[tuple[str, str]]) -> None:
    msgs = [{"role": r, "content": c} for r, c in turns]
    snapshot = [dict(m) for m in msgs]
    ex = extract(msgs, "all")
    out = replace_texts(msgs, ex, [t.upper() for t in ex.texts])
    assert msgs == snapshot
    assert [m["content"] for m in out] == [c.upper() for _, c in turns]


# -- roles and scope: what an attacker controls is read ---------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are a cooking assistant."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "tool", "content": "tool result"},
    {"role": "document", "content": "retrieved page"},
    {"role": "user", "content": "second question"},
    {"role": "function", "content": "function result"},
]


@pytest.mark.parametrize(
    "scope,texts",
    [
        ("untrusted", ("first question", "tool result", "retrieved page", "function result", "second question")),
        ("last_user", ("second question",)),
        ("all_user", ("first question", "second question")),
    ],
)
def test_scope_picks_turns_and_puts_the_newest_user_turn_last(scope: Any, texts: tuple[str, ...]) -> None:
    ex = extract(CONVERSATION, scope)
    assert ex.texts == texts
    assert ex.system == "You are a cooking assistant."
    assert dict(zip(ex.texts, ex.roles, strict=True))["second question"] == "user"


def test_roles_are_canonical_whatever_their_case_or_alias() -> None:
    msgs = [{"role": r, "content": r} for r in ("USER", "Human", "TOOL", "Function", "ipython", "Documents")]
    ex = extract(msgs, "untrusted")
    assert sorted(ex.roles) == ["document", "tool", "tool", "tool", "user", "user"]
    assert extract([{"role": "Developer", "content": "rules"}, {"role": "user", "content": "hi"}]).system == "rules"


@pytest.mark.parametrize("role", ["narrator", "admin", "", "usr"])
def test_an_unknown_role_is_an_error_that_names_it(role: str) -> None:
    from guardrail.errors import InvalidMessages

    with pytest.raises(InvalidMessages, match=repr(role)):
        extract([{"role": "user", "content": "hi"}, {"role": role, "content": "x"}], "last_user")


@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=50))
def test_scan_form_is_always_encodable_text(text: str) -> None:
    scan_form(text).encode("utf-8")  # what every tokenizer needs: no lone surrogate survives


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_list_of_plain_strings_is_refused_with_what_to_pass_instead(is_async: bool) -> None:
    import asyncio

    from guardrail import Guard
    from guardrail.errors import InvalidMessages
    from guardrail.testing import FakeClassifier

    g = Guard(classifiers=FakeClassifier({}))
    with pytest.raises(InvalidMessages, match=r"message 0 is a str, not a chat message.*check each"):
        asyncio.run(g.acheck_input(["hi", "there"])) if is_async else g.check_input(["hi", "there"])
