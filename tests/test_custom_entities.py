"""A policy's own personal data (``pii_entities: {employee_id: 'EMP-\\d{6}'}``) is masked as the built-in kinds are.

What ops rely on: a value is masked wherever the built-in redaction reaches (prompt, answer, a stream cut anywhere,
the audit log, an encoded reading), through the real openai client, sync and async; ``restore=True`` gives it back;
a replay of a redacted log against the same policy changes nothing; and a definition that cannot be enforced
safely (spaces, any-character, non-ASCII, empty matches, a clash) is refused at its file and line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from stub_server import StubServer
from test_streaming import content, split

import guardrail
import guardrail.policy_reload
from guardrail import Guard, PolicyError, load_policy
from guardrail.classifiers import custom_entities, custom_entity_samples
from guardrail.classifiers.patterns import find_entities
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
    held = load_policy(policy())  # noqa: F841 (its definitions are in force while it is in use)
    values = {custom_entity_samples.sample("ticket_ref", n) for n in range(1, 6)}
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
    in_use = load_policy(a)
    with pytest.raises(PolicyError) as err:
        load_policy(b)
    assert err.value.file == str(b) and err.value.field == "pii_entities.badge_no" and str(a) in str(err.value)
    a.write_text("version: 1\nname: a\npii_entities:\n  badge_no: 'BDG\\d{5}'\n", encoding="utf-8")  # an edit
    edited = load_policy(a)
    assert in_use is not edited
    found = find_entities("BDG12345 or BDG1234?", ["badge_no"])  # the edit is in force at once, for every policy
    assert [s.value for s in found] == ["BDG12345"]


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


# ------------------------------------------------------------------------------------------- review (helper)
# What follows pins what a review found: a Guard's values let through because another Guard defined the same name,
# patterns that loaded but could not be enforced (RE2 reading them otherwise than the checks, a lazy repeat or an
# alternation masking a value's head only, anchors, empty matches, JSON escapes, placeholders), a value written
# with look-alike characters released in part by a stream, and reloads of files that extend or route to others.


def mapping(name: str, entities: dict[str, str], **output: Any) -> dict[str, Any]:
    rule = {"category": "pii", "action": "redact"}
    stages = {"input": {"rules": [rule]}, "output": {"rules": [rule], **output}}
    return {"version": 1, "name": name, "pii_entities": entities, **stages}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_two_guards_made_from_mappings_each_mask_their_own_values(mode: str) -> None:
    # Before: the second mapping's pattern replaced the first's for both, and the first Guard let EMP-123456 through
    first = Guard(mapping("a", {"staff_id": r"EMP-\d{6}"}), classifiers=FakeClassifier())
    second = Guard(mapping("b", {"staff_id": r"S\d{4}X"}), classifiers=FakeClassifier())
    with first, second:
        for g, text in ((first, "id EMP-123456"), (second, "id S1234X")):
            d = g.check_input(text) if mode == "sync" else asyncio.run(g.acheck_input(text))
            assert d.text == "id <STAFF_ID_1>"


def test_definitions_go_with_the_last_policy_using_them(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("version: 1\nname: a\npii_entities:\n  desk_no: 'DSK\\d{3}'\n", encoding="utf-8")
    b.write_text("version: 1\nname: b\npii_entities:\n  desk_no: 'DK\\d{5}'\n", encoding="utf-8")
    held = load_policy(a)
    with pytest.raises(PolicyError):
        load_policy(b)  # a's definition is in use
    del held
    gc.collect()
    in_use = load_policy(b)  # a test suite, or an app that replaced a Guard, may then define it otherwise
    assert [s.value for s in find_entities("DSK123 DK12345", ["desk_no"])] == ["DK12345"]
    assert in_use.pii_entities == {"desk_no": r"DK\d{5}"}


def _reloader(path: Path) -> tuple[guardrail.policy_reload.PolicyReloader, list[float]]:
    now = [0.0]
    return guardrail.policy_reload.PolicyReloader(path, interval=1, clock=lambda: now[0]), now


def test_a_file_that_extends_another_follows_its_edits_on_hot_reload(tmp_path: Path) -> None:
    # Before: the definition was the last loader's (the child's), so the parent's own reload after its edit clashed
    # with it and failed (and was not retried until the next edit)
    parent, child = tmp_path / "parent.yaml", tmp_path / "child.yaml"
    parent.write_text("version: 1\nname: parent\npii_entities:\n  desk_no: 'DSK\\d{3}'\n", encoding="utf-8")
    child.write_text(
        "version: 1\nname: child\nextends: parent.yaml\ninput:\n  rules:\n    - {category: pii, action: redact}\n",
        encoding="utf-8",
    )
    parents, now_p = _reloader(parent)
    children, now_c = _reloader(child)
    parent.write_text("version: 1\nname: parent\npii_entities:\n  desk_no: 'DSK\\d{4}'\n", encoding="utf-8")
    now_c[0] = now_p[0] = 5.0
    assert parents.current().pii_entities == {"desk_no": r"DSK\d{4}"}
    assert children.current().pii_entities == {"desk_no": r"DSK\d{4}"}
    with Guard(children.current(), classifiers=FakeClassifier()) as g:
        assert g.check_input("desk DSK1234").text == "desk <DESK_NO_1>"


def test_a_reload_that_fails_leaves_the_definitions_in_force_as_they_were(tmp_path: Path) -> None:
    main, routed, other = tmp_path / "main.yaml", tmp_path / "routed.yaml", tmp_path / "other.yaml"
    other.write_text("version: 1\nname: other\npii_entities:\n  lab_id: 'LAB\\d{3}'\n", encoding="utf-8")
    routed.write_text("version: 1\nname: routed\npii_entities:\n  desk_no: 'DSK\\d{3}'\n", encoding="utf-8")
    head = "version: 1\nname: main\nroutes:\n  - {match: {tenant: acme}, policy: ./routed.yaml}\n"
    main.write_text(head, encoding="utf-8")
    in_use = load_policy(other)
    reloader, now = _reloader(main)
    # the routed file loads (and would put DKX\d{3} in force), then main's own clash fails the whole reload
    routed.write_text("version: 1\nname: routed\npii_entities:\n  desk_no: 'DKX\\d{3}'\n", encoding="utf-8")
    main.write_text(head + "pii_entities:\n  lab_id: 'LB\\d{3}'\n", encoding="utf-8")
    now[0] = 5.0
    with structlog.testing.capture_logs() as logs:
        kept = reloader.current()
    gc.collect()
    assert [e["event"] for e in logs] == ["guardrail.policy_reload_failed"]
    assert kept.routed[0].pii_entities == {"desk_no": r"DSK\d{3}"} and in_use.name == "other"
    assert [s.value for s in find_entities("DSK123 and DKX123", ["desk_no"])] == ["DSK123"]


@pytest.mark.parametrize(
    ("pattern", "text", "masked"),
    [
        (r"EMP-\d+?", "id EMP-123456 ok", "id <ID_1> ok"),  # lazy: was "<ID_1>23456"
        (r"E\d{3}|E\d{6}", "id E123456 ok", "id <ID_1> ok"),  # first alternative: was "<ID_1>456"
        (r"EMP\d{,3}", "id EMP123 ok", "id <ID_1> ok"),  # Python's {,3}; RE2 read it as the text "{,3}"
        (r"(?-i:EMP)\d+", "id EMP12 and emp12", "id <ID_1> and emp12"),  # a group may keep its case
    ],
)
@pytest.mark.parametrize("mode", ["whole", "stream"])
def test_a_value_is_masked_whole_as_python_reads_its_pattern(
    stub_server: StubServer, pattern: str, text: str, masked: str, mode: str
) -> None:
    with Guard(mapping("p", {"id": pattern}), classifiers=FakeClassifier()) as g:
        if mode == "whole":
            assert g.check_output(text).text == masked
            return
        stub_server.reset()
        stub_server.pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        try:
            with openai.OpenAI(base_url=stub_server.url, api_key="x", max_retries=0) as raw:
                stream = guardrail.wrap(g, raw).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "go"}], stream=True
                )
                assert content(list(stream)) == masked
        finally:
            stub_server.reset()


LOOK_ALIKES = {
    "full-width": "\uff25\uff2d\uff30\uff0d\uff11\uff12\uff13\uff14\uff15\uff16",
    "zero-width space": "EMP-12\u200b3456",
    "Kelvin sign": "EMP-\u212a23456",  # RE2's own case folding matched it as k; a stream released "EMP-" first
}


@pytest.mark.parametrize("form", sorted(LOOK_ALIKES))
def test_a_value_written_in_look_alikes_is_never_released_in_part_by_a_stream(
    stub_server: StubServer, form: str
) -> None:
    text = f"the code {LOOK_ALIKES[form]} is it, and more text."
    want = "the code <EMPLOYEE_ID_1> is it, and more text."
    stream_cfg = {"check_every_chars": 20, "holdback_chars": 4}
    entities = {"employee_id": r"EMP-[0-9K]\d{5}"}
    with (
        Guard(mapping("p", entities, stream=stream_cfg), classifiers=FakeClassifier()) as g,
        openai.OpenAI(base_url=stub_server.url, api_key="x", max_retries=0) as raw,
    ):
        assert g.check_output(text).text == want
        got = {}
        for cut in range(1, len(text)):  # one cut anywhere: was "the code EMP-" then "<EMPLOYEE_ID_1>", and so on
            stub_server.reset()
            stub_server.pieces = [text[:cut], text[cut:]]
            try:
                stream = guardrail.wrap(g, raw).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "go"}], stream=True
                )
                got[cut] = content(list(stream))
            finally:
                stub_server.reset()
    assert {cut: out for cut, out in got.items() if out != want} == {}


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"^EMP-\d{6}$", "start or end of the whole text"),  # masked only a prompt that was nothing but the value
        (r"\AEMP-\d{6}", "start or end of the whole text"),
        (r"x*\b", "empty text"),  # matched nothing but empty spans: loaded, never masked anything
        (r"EMP[[:^alpha:]]+", "POSIX"),  # RE2: any non-letter, spaces included; Python: seven characters
        (r"CORP\\[a-z]+", "escaped"),  # "CORP\\jdoe" in tool-call arguments: allowed with no finding
        (r'ID"\d+', "escaped"),
        (r"[!-/]\d+", "escaped"),
        (r"[A-Z]+_\d+", "<EMAIL_1>"),  # re-masked an answer's placeholders: "<<CODE_2>>"
        (r"EMP_\d+", "placeholder"),  # entity "badge": its own placeholder <BADGE_1> is fine; EMAIL_1 is not
        (r"\w{1000}\w{1000}\w{1000}\w{1000}\w{1000}", "more than a stream holds back"),
        (r"(\d{100}){100}", "RE2 cannot compile it"),
    ],
)
def test_a_pattern_the_guard_could_not_enforce_as_written_is_refused(pattern: str, why: str) -> None:
    entities = {"emp" if pattern == r"EMP_\d+" else "badge": pattern}  # EMP_\d+ finds a value in <EMP_1>, its own
    with pytest.raises(PolicyError) as err:
        load_policy({"version": 1, "name": "p", "pii_entities": entities})
    assert why in str(err.value) and err.value.field == f"pii_entities.{next(iter(entities))}"


def test_checks_on_many_threads_while_policies_load_always_mask_their_own_values() -> None:
    failures: list[str] = []

    def work(k: int) -> None:
        for i in range(15):
            prefix = "ABCD"[k] + "QZ"[i % 2]
            with Guard(mapping(f"t{k}", {"seat_no": f"{prefix}\\d{{4}}"}), classifiers=FakeClassifier()) as g:
                out = g.check_input(f"seat {prefix}{1000 + i}").text
                if out != "seat <SEAT_NO_1>":
                    failures.append(out)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_classifiers_read_a_made_up_value_of_the_same_shape_never_the_value_or_its_placeholder(mode: str) -> None:
    # shown as EMPLOYEE_ID_1, a token it never saw in training, the bundled model read short requests as attacks
    # ("status for EMP-123456 please": jailbreak 0.92, blocked; as written it was allowed)
    import re

    fake = FakeClassifier()
    rules = [{"category": "pii", "action": "redact"}, {"category": "jailbreak", "threshold": 0.9, "action": "block"}]
    with Guard(policy(input={"rules": rules}), classifiers=fake) as g:
        prompt = "status for EMP-123456 please"
        d = g.check_input(prompt) if mode == "sync" else asyncio.run(g.acheck_input(prompt))
    assert d.text == "status for <EMPLOYEE_ID_1> please"
    seen = [t for _, texts in fake.calls for t in texts]
    assert seen and all("123456" not in t and "EMPLOYEE_ID" not in t for t in seen)
    assert any(re.search(r"EMP-\d{6}", t) for t in seen)


def test_guardrail_replay_of_a_redacted_log_in_a_new_process_checks_stand_ins_of_the_policys_own_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the rows were read before the policy was loaded, so no stand-in existed and the row came back "rewrite ->
    # allow" against the very policy that wrote the log
    import gc

    from guardrail.cli import main

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy()), encoding="utf-8")

    def write_log() -> None:
        with structlog.testing.capture_logs() as logs, Guard(path, classifiers=FakeClassifier()) as g:
            g.check_input("Please reset the laptop of EMP-123456, it won't boot.")
        events = [e for e in logs if e.get("event") == "guardrail.decision"]
        (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e, default=str) + "\n" for e in events))

    write_log()
    gc.collect()  # no policy defining employee_id is in use any more, as in a new process
    assert not [d for d in custom_entities.detectors() if d.entity == "employee_id"]
    assert main(["replay", str(tmp_path / "audit.jsonl"), "-p", str(path)]) == 0
    assert "changed: 0 (0.00%)" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_prompt_read_beside_an_answer_hides_the_policys_own_kinds_too(mode: str) -> None:
    # an output check scores the answer with its prompt beside it: the prompt's employee id went to the classifiers
    # (an LLM judge included) as written, masked only of the built-in kinds
    class Recording(FakeClassifier):
        def __init__(self) -> None:
            super().__init__()
            self.prompts: list[str | None] = []

        def predict(self, texts: Any, *, stage: Any = "input", prompts: Any = None) -> list[dict[str, float]]:
            self.prompts += list(prompts or [])
            return super().predict(texts, stage=stage, prompts=prompts)

    rec = Recording()
    rules = [{"category": "harmful_response", "threshold": 0.9, "action": "block"}]
    with Guard(policy(output={"rules": rules}), classifiers=rec) as g:
        prompt = "status of EMP-123456, mail bob@example.com"
        if mode == "sync":
            g.check_output("It is fine.", prompt=prompt)
        else:
            asyncio.run(g.acheck_output("It is fine.", prompt=prompt))
    assert rec.prompts and all(p is not None and "123456" not in p and "bob@" not in p for p in rec.prompts)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_reading_that_rewrites_a_value_never_shows_it_to_the_classifiers(mode: str) -> None:
    # the leetspeak reading turned E123456 into Ei2eas6, which no detector finds: the classifiers (an LLM judge
    # included) read the value in that form, and for this text it was the only reading they read
    fake = FakeClassifier()
    rules = [{"category": "pii", "action": "redact"}, {"category": "unsafe", "threshold": 0.9, "action": "block"}]
    entities = {**policy()["pii_entities"], "staff_no": r"E\d{6}", "badge_no": r"ID\d{4}"}
    with Guard(policy(input={"rules": rules}, pii_entities=entities), classifiers=fake) as g:
        prompt = "h0w t0 r3s3t E123456 and ID1234"
        d = g.check_input(prompt) if mode == "sync" else asyncio.run(g.acheck_input(prompt))
    assert d.text == "h0w t0 r3s3t <STAFF_NO_1> and <BADGE_NO_1>"
    seen = [t for _, texts in fake.calls for t in texts]
    assert seen and not any(v in t for t in seen for v in ("123456", "1234", "i2eas6", "i2ea"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_classifiers_never_read_the_policys_own_kinds_on_a_stage_whose_rules_do_not_redact_them(mode: str) -> None:
    # named in the input rule only, an answer's employee id was neither masked (as documented) nor hidden from the
    # classifiers, so an LLM judge received it as written
    fake = FakeClassifier()
    out_rules = [{"category": "harmful_response", "threshold": 0.9, "action": "block"}]
    with Guard(policy(output={"rules": out_rules}), classifiers=fake) as g:
        answer = "EMP-123456 handles it."
        d = g.check_output(answer, prompt="who?") if mode == "sync" else asyncio.run(g.acheck_output(answer))
    assert d.text == answer  # not redacted: no output rule names it
    seen = [t for _, texts in fake.calls for t in texts]
    assert seen and not any("123456" in t for t in seen)


def test_a_policy_that_uses_neither_new_key_keeps_the_hash_it_had_before_they_existed() -> None:
    # topics and pii_entities joined the schema in session 23: dumped empty, they changed the hash of every policy
    # (ops track rollouts by policy_hash in the audit log); these are the hashes of 69d5483
    assert load_policy({"version": 1, "name": "t"}).hash == "a3406219a6e3dafd"
    assert load_policy("strict").hash == "73278dc05966f20e"
    more = {**policy()["pii_entities"], "badge_no": r"B\d{6}"}
    assert load_policy(policy()).hash != load_policy(policy(pii_entities=more)).hash
