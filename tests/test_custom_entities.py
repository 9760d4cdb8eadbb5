"""A policy's own personal data (``pii_entities: {employee_id: 'EMP-\\d{6}'}``) is masked as the built-in kinds are.

What ops rely on: a value is masked wherever the built-in redaction reaches (prompt, answer, a stream cut anywhere,
the audit log, an encoded reading), through the real openai client, sync and async; ``restore=True`` gives it back;
a replay of a redacted log against the same policy changes nothing; and a definition that cannot be enforced
safely (spaces, any-character, non-ASCII, empty matches, a clash) is refused at its file and line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from stub_server import StubServer
from test_streaming import content, split

import guardrail
from guardrail import Guard, PolicyError, load_policy
from guardrail.classifiers import custom_entities
from guardrail.replay import replay
from guardrail.testing import FakeClassifier

EMP = r"EMP-\d{6}"


def policy(**extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "custom-pii",
        "pii_entities": {"employee_id": EMP, "ticket_ref": r"TCK[0-9A-F]{4}-[0-9]{2,4}"},
        "input": {"scope": "last_user", "rules": [{"category": "pii", "action": "redact"}]},
        "output": {
            "rules": [{"category": "pii", "action": "redact", "entities": ["employee_id", "email"]}],
            "stream": {"check_every_chars": 20, "holdback_chars": 4},
        },
        "audit": {"log_text": "redacted"},
        **extra,
    }


def guard(**extra: Any) -> Guard:
    return Guard(policy(**extra), classifiers=FakeClassifier())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_prompt_and_an_answer_are_masked_with_typed_placeholders(mode: str) -> None:
    prompt = "Pay emp-123456 and EMP-654321 (ticket tckBEEF-42), then EMP-654321 again; mail a@example.com"
    with guard() as g:
        if mode == "sync":
            d_in, d_out = g.check_input(prompt), g.check_output("Done for EMP-777000.")
        else:
            d_in, d_out = asyncio.run(g.acheck_input(prompt)), asyncio.run(g.acheck_output("Done for EMP-777000."))
    assert d_in.text == (
        "Pay <EMPLOYEE_ID_1> and <EMPLOYEE_ID_2> (ticket <TICKET_REF_1>), then <EMPLOYEE_ID_2> again; mail <EMAIL_1>"
    )  # case-insensitive, one value one placeholder
    assert set(d_in.findings[0].entities) == {"employee_id", "ticket_ref", "email"}
    assert d_out.text == "Done for <EMPLOYEE_ID_1>."


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_value_in_an_answers_tool_call_arguments_is_masked_where_it_sits(mode: str) -> None:
    args = json.dumps({"employee": "EMP-123456", "note": "EMP-999000 too"})
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": args}}
    answer = [{"role": "assistant", "content": "Looking up EMP-123456.", "tool_calls": [call]}]
    with guard() as g:
        d = g.check_output(answer, prompt="hi") if mode == "sync" else asyncio.run(g.acheck_output(answer, prompt="hi"))
    assert d.text == "Looking up <EMPLOYEE_ID_1>." and d.messages is not None
    masked = json.loads(d.messages[0]["tool_calls"][0]["function"]["arguments"])
    assert masked == {"employee": "<EMPLOYEE_ID_1>", "note": "<EMPLOYEE_ID_2> too"}


@pytest.mark.parametrize("written", ["ＥＭＰ－１２３４５６", "EMP-12\u200b3456", "E M P - 1 2 3 4 5 6"])
def test_a_value_written_to_dodge_the_pattern_is_masked_where_it_sits(written: str) -> None:
    with guard() as g:  # full-width, with a zero-width space, spaced apart: the readings the check reads
        assert g.check_input(f"look up {written} please").text == "look up <EMPLOYEE_ID_1> please"


def test_only_the_entities_a_rule_names_are_masked() -> None:
    with guard() as g:  # the output rule names employee_id and email, not ticket_ref
        assert g.check_output("EMP-123456 closed TCKBEEF-42").text == "<EMPLOYEE_ID_1> closed TCKBEEF-42"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_through_the_openai_client_the_upstream_never_sees_the_value_and_restore_gives_it_back(
    stub: StubServer, mode: str
) -> None:
    messages = [{"role": "user", "content": "Summarise the file of EMP-123456"}]
    stub.reply = "The file of <EMPLOYEE_ID_1> is complete."

    async def asked_async(g: Guard) -> Any:
        async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
            return await guardrail.wrap(g, raw, restore=True).chat.completions.create(model="m", messages=messages)

    with guard() as g:
        if mode == "sync":
            with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
                answer = guardrail.wrap(g, raw, restore=True).chat.completions.create(model="m", messages=messages)
        else:
            answer = asyncio.run(asked_async(g))
    sent = json.dumps(stub.completions()[-1].body)
    assert "123456" not in sent and "<EMPLOYEE_ID_1>" in sent
    assert answer.choices[0].message.content == "The file of EMP-123456 is complete."


@settings(max_examples=30, deadline=None)
@given(data=st.data(), before=st.text("abc def,.", max_size=60), after=st.text("abc def,.", max_size=60))
def test_a_value_cut_anywhere_in_a_stream_is_never_released_in_part(
    stub_server: StubServer, data: st.DataObject, before: str, after: str
) -> None:
    text = f"{before} EMP-{data.draw(st.integers(0, 999999)):06d} {after}"
    cuts = data.draw(st.sets(st.integers(1, len(text) - 1), max_size=30), label="cuts")
    stub_server.reset()
    stub_server.pieces = split(text, cuts)
    try:
        with guard() as g, openai.OpenAI(base_url=stub_server.url, api_key="x", max_retries=0) as raw:
            stream = guardrail.wrap(g, raw).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "go"}], stream=True
            )
            chunks = list(stream)
    finally:
        stub_server.reset()
    assert content(chunks) == f"{before} <EMPLOYEE_ID_1> {after}"


def test_the_redacted_audit_log_masks_the_value_and_its_replay_changes_nothing(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs, guard() as g:
        g.check_input("Pay EMP-123456 and EMP-222333 today")
    events = [e for e in logs if e.get("event") == "guardrail.decision"]
    assert events[0]["text"] == "Pay <EMPLOYEE_ID_1> and <EMPLOYEE_ID_2> today"
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(e, default=str) + "\n" for e in events), encoding="utf-8")
    report = replay(log, policy(), classifiers=FakeClassifier())
    assert report.metrics()["rows"] == 1 and report.changed == []


def test_a_stand_in_is_a_value_its_pattern_finds_whole_and_differs_by_number() -> None:
    load_policy(policy())
    values = {custom_entities.sample("ticket_ref", n) for n in range(1, 6)}
    assert len(values) == 5
    for value in values:
        assert value is not None
        with guard() as g:
            assert g.check_input(value).text == "<TICKET_REF_1>"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"EMP \d{6}", "not printable ASCII"),
        (r"EMP-.+", "any character"),
        (r"EMP[^x]+", "any character"),
        (r"EMP\s\d+", r"\s"),
        (r"Проект-\d+", "not printable ASCII"),
        (r"\d*", "empty text"),
        (r"(EMP)\1", "back-references"),
        (r"EMP-(\d+", "invalid regular expression"),
    ],
)
def test_a_pattern_that_cannot_be_masked_safely_is_refused_at_its_line(tmp_path: Path, pattern: str, why: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nname: p\npii_entities:\n  badge: '{pattern}'\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.file == str(path) and err.value.line == 4 and err.value.field == "pii_entities.badge"
    assert why in str(err.value)


@pytest.mark.parametrize(
    ("entities", "field", "why"),
    [
        ({"email": r"E\d+"}, "pii_entities.email", "built-in"),
        ({"Badge": r"B\d+"}, "pii_entities.Badge", "lowercase letters"),
        ({"badge2": r"B\d+"}, "pii_entities.badge2", "lowercase letters"),
    ],
)
def test_a_bad_entity_name_is_refused(entities: dict[str, str], field: str, why: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy({"version": 1, "name": "p", "pii_entities": entities})
    assert err.value.field == field and why in str(err.value)


def test_a_rule_naming_an_undefined_entity_suggests_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: p\npii_entities:\n  employee_id: 'EMP-\\d{6}'\ninput:\n  rules:\n"
        "    - category: pii\n      action: redact\n      entities: [email, employe_id]\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert err.value.line == 9 and err.value.field == "input.rules[0].entities[1]"
    assert err.value.suggestion == "employee_id"


def test_two_files_defining_one_name_differently_clash_and_a_file_may_redefine_its_own(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("version: 1\nname: a\npii_entities:\n  badge_no: 'BDG\\d{4}'\n", encoding="utf-8")
    b.write_text("version: 1\nname: b\npii_entities:\n  badge_no: 'BX\\d{4}'\n", encoding="utf-8")
    load_policy(a)
    with pytest.raises(PolicyError) as err:
        load_policy(b)
    assert err.value.file == str(b) and err.value.field == "pii_entities.badge_no" and str(a) in str(err.value)
    a.write_text("version: 1\nname: a\npii_entities:\n  badge_no: 'BDG\\d{5}'\n", encoding="utf-8")  # an edit
    load_policy(a)
    assert [d.regex.pattern for d in custom_entities.detectors() if d.entity == "badge_no"] == [r"BDG\d{5}"]


def test_without_re2_a_policy_defining_entities_does_not_load_and_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(custom_entities, "_re2", lambda: None)
    with pytest.raises(PolicyError) as err:
        load_policy({"version": 1, "name": "p", "pii_entities": {"badge": r"B\d+"}})
    assert "guardrail-sdk[re2]" in str(err.value)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.text("abEMP-0123456789 ,.\n", max_size=12), st.integers(0, 999999).map(lambda n: f"EMP-{n:06d}")),
        max_size=8,
    )
)
def test_no_value_the_pattern_finds_survives_a_checked_prompt(parts: list[str]) -> None:
    import re

    with guard() as g:
        out = g.check_input("".join(parts)).text
    assert re.search(r"EMP-\d{6}", out, re.IGNORECASE | re.ASCII) is None
