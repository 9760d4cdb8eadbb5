"""Review (helper s23, last) of the phone cues, the stand-ins for a policy's own kinds, the judge's loose keys, the
shared client base and replay against a baseline.

What a user relies on: a product or title written after a phone word ("Call Of Duty 12345678", "Ring Doorbell
12345678", "Telefonrechnung Nr. 12345678") is left as written, while "call my wife at ..." is masked; the values a
policy masks never reach a classifier or a judge, not even when the made-up stand-in would have been the value
itself; a placeholder the user quotes back is read as a value of its kind, not as an attack token; a judge that
writes its reasons next to its scores, or one key twice, is still read; a guarded client can be copied with
``copy.copy``, and its ``with_options`` copy keeps ``restore``; and replay against a baseline gives stand-ins to the
kinds only the baseline defines.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import inspect
import json
import re
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import structlog
import yaml
from stub_server import StubServer

import guardrail
from guardrail import Action, Guard
from guardrail.classifiers.judge import LLMJudge
from guardrail.classifiers.patterns import find_entities
from guardrail.replay import replay
from guardrail.testing import FakeClassifier

# ------------------------------------------------------------------------------------------- phone cues

TITLES = [
    "Call Of Duty 12345678",
    "Text Mining 12345678",
    "Ring Doorbell 12345678",
    "Phone Model 12345678",
    "Mobile Suit Gundam 12345678",
    "Phone: Samsung Galaxy 12345678",
    "Contact Lens Order 12345678",
    "Call Log Entry 12345678",
    "Reach Out 12345678",
    "Llamar Madrid 12345678",
    "Handy Vertrag 12345678",
    "Telefonrechnung Nr. 12345678",
    "Telefonica Kundennummer 12345678",
    "Anrufbeantworter Seriennummer 12345678",
    "Teléfono Modelo 12345678",
]


@pytest.mark.parametrize("text", TITLES)
def test_a_run_of_digits_after_a_phone_word_and_a_title_is_not_a_phone(text: str) -> None:
    # each was masked as <PHONE_1>: any run of capitalised words counted as a name, and "Telef..." any compound
    assert [s for s in find_entities(text) if s.entity == "phone"] == []


PHONES = [
    "call my wife at 4155552671",
    "call my mom on 4155552671",
    "call me this afternoon at 4155552671",
    "call me tomorrow morning at 4155552671",
    "call O'Brien at 4155552671",
    "call McDonald at 4155552671",
    "call Dr. Smith at 4155552671",
    "contact John Smith at 4155552671",
    "Telefonnummer 4155552671",
    "mi número de teléfono es 5512345678",
]


@pytest.mark.parametrize("text", PHONES)
def test_a_number_given_to_call_a_person_at_is_a_phone(text: str) -> None:
    assert [s.entity for s in find_entities(text)] == ["phone"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_title_with_a_number_is_left_as_written_and_a_persons_number_masked(mode: str) -> None:
    policy = {"version": 1, "name": "r", "input": {"rules": [{"category": "pii", "action": "redact"}]}}
    text = "Call Of Duty 12345678 is sold out; call my wife at 4155552671."
    with Guard(policy, classifiers=FakeClassifier()) as g:
        d = g.check_input(text) if mode == "sync" else asyncio.run(g.acheck_input(text))
    assert d.text == "Call Of Duty 12345678 is sold out; call my wife at <PHONE_1>."


# ------------------------------------------------------------------------------------------- stand-ins


def own_kind_policy(entities: dict[str, str]) -> dict[str, Any]:
    rules = [{"category": "pii", "action": "redact"}, {"category": "jailbreak", "threshold": 0.9, "action": "block"}]
    return {
        "version": 1,
        "name": "own-kinds",
        "pii_entities": entities,
        "input": {"scope": "last_user", "rules": rules},
        "audit": {"log_text": "none"},
    }


def seen_by_classifiers(entities: dict[str, str], prompt: str, mode: str) -> tuple[Any, list[str]]:
    fake = FakeClassifier()
    with Guard(own_kind_policy(entities), classifiers=fake) as g:
        d = g.check_input(prompt) if mode == "sync" else asyncio.run(g.acheck_input(prompt))
    return d, [t for _, texts in fake.calls for t in texts]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "prompt", ["status for EMP-100000 please", "compare EMP-200000 with EMP-100000", "is emp-100000 in?"]
)
def test_a_value_that_is_its_own_stand_in_never_reaches_the_classifiers(prompt: str, mode: str) -> None:
    # the stand-in of <EMPLOYEE_ID_1> was EMP-100000 whatever the value: a user whose id it was had it sent to the
    # classifiers (an LLM judge included) as written
    d, seen = seen_by_classifiers({"employee_id": r"EMP-\d{6}"}, prompt, mode)
    assert "EMP-" not in d.text
    values = {v.casefold() for v in re.findall(r"EMP-\d{6}", prompt, re.I)}
    assert seen and all(re.search(r"EMP-\d{6}", t) for t in seen)
    assert all(v not in t.casefold() for t in seen for v in values)
    # two values stay two stand-ins
    assert all(len(set(re.findall(r"EMP-\d{6}", t))) == len(values) for t in seen)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fixed_secret_word_never_reaches_the_classifiers(mode: str) -> None:
    # a pattern with one value (a project's code name): its only sample was the secret itself
    d, seen = seen_by_classifiers({"codename": r"Falcon-Seven"}, "is Falcon-Seven on schedule?", mode)
    assert d.text == "is <CODENAME_1> on schedule?"
    assert seen and all("falcon" not in t.casefold() for t in seen)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_placeholder_the_user_quotes_back_is_read_as_a_value_of_its_kind(mode: str) -> None:
    # a masked answer's <EMPLOYEE_ID_1>, asked about in the next turn, was read as EMPLOYEE_ID_1 (the token the
    # bundled model reads as an attack)
    prompt = "what is the status of <EMPLOYEE_ID_1> and EMP-123456?"
    d, seen = seen_by_classifiers({"employee_id": r"EMP-\d{6}"}, prompt, mode)
    assert d.text == "what is the status of <EMPLOYEE_ID_1> and <EMPLOYEE_ID_2>?"
    assert seen and all("EMPLOYEE_ID" not in t and "123456" not in t for t in seen)
    assert all(len(set(re.findall(r"EMP-\d{6}", t))) == 2 for t in seen)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stand_in_that_would_read_as_an_address_is_never_shown(mode: str) -> None:
    d, seen = seen_by_classifiers({"staff_uri": r"mailto:[a-z]+@corp\.internal"}, "ping mailto:bob@corp.internal", mode)
    assert d.action is Action.REWRITE
    assert seen and all("@" not in t for t in seen)


# ------------------------------------------------------------------------------------------------ judge


def judge(*topics: str) -> LLMJudge:
    return LLMJudge("m", categories=["unsafe", *topics], topics={t: "about " + t for t in topics})


@pytest.mark.parametrize(
    "answer",
    [
        '{"reasoning": "a dose is asked", "scores": {"unsafe": 0.1, "medical_advice": 0.8}}',
        '{"scores": {"unsafe": 0.1, "Medical Advice": 0.8}, "confidence": "high"}',
    ],
)
def test_a_judge_that_writes_its_reasons_beside_its_wrapped_scores_is_read(answer: str) -> None:
    # only a wrapper alone in the object was unwrapped: every check failed under the fail mode
    assert judge("medical_advice")._parse(answer, "input") == {"unsafe": 0.1, "medical_advice": 0.8}


def test_a_judge_that_wraps_the_score_of_a_topic_named_scores_is_read() -> None:
    answer = '{"scores": {"unsafe": 0.1, "scores": 0.7}}'
    assert judge("scores")._parse(answer, "input") == {"unsafe": 0.1, "scores": 0.7}
    assert judge("scores")._parse('{"unsafe": 0.1, "scores": 0.7}', "input") == {"unsafe": 0.1, "scores": 0.7}


def test_a_topic_written_twice_by_the_judge_is_scored_by_its_higher_score() -> None:
    # "medical advice": 0.9 then "Medical_Advice": 0.1 passed the check on the later, lower one
    answer = '{"unsafe": 0.1, "medical advice": 0.9, "Medical_Advice": 0.1}'
    assert judge("medical_advice")._parse(answer, "input")["medical_advice"] == 0.9


# ------------------------------------------------------------------------------------------------ clients


def raw_client(kind: str, mode: str, stub: StubServer) -> Any:
    if kind == "openai":
        cls: Any = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
        return cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    return cls(base_url=f"http://127.0.0.1:{stub.port}", api_key="sk-ant-test", max_retries=0)


async def create(kind: str, client: Any, text: str) -> str:
    msgs = [{"role": "user", "content": text}]
    if kind == "openai":
        r = client.chat.completions.create(model="m", messages=msgs)
        resp = await r if inspect.isawaitable(r) else r
        return str(resp.choices[0].message.content)
    r = client.messages.create(model="m", max_tokens=64, messages=msgs)
    resp = await r if inspect.isawaitable(r) else r
    return str(resp.content[0].text)


async def close(raw: Any) -> None:
    r = raw.close()
    if inspect.isawaitable(r):
        await r


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_guarded_client_copied_with_copy_copy_stays_guarded(
    guard: Guard, stub: StubServer, kind: str, mode: str
) -> None:
    # copy.copy asked the half-made copy for __setstate__, which looked up _client through __getattr__ without
    # end: RecursionError
    raw = raw_client(kind, mode, stub)
    try:
        c = copy.copy(guardrail.wrap(guard, raw))
        assert c.guard is guard and c.unwrapped is raw
        assert await create(kind, c, "mail bob@example.com") == "You said: mail <EMAIL_1>"
    finally:
        await close(raw)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_with_options_copy_keeps_restore(guard: Guard, stub: StubServer, kind: str, mode: str) -> None:
    raw = raw_client(kind, mode, stub)
    try:
        for derived in (
            guardrail.wrap(guard, raw, restore=True).with_options(timeout=5.0),
            guardrail.wrap(guard, raw, restore=True).copy(max_retries=1),
        ):
            assert await create(kind, derived, "mail bob@example.com") == "You said: mail bob@example.com"
    finally:
        await close(raw)


# ------------------------------------------------------------------------------------------------ replay


def test_replay_against_a_baseline_gives_stand_ins_to_the_kinds_only_the_baseline_defines(tmp_path: Path) -> None:
    # the rows were read before the baseline was loaded: the log's <BADGE_1> got no stand-in, and the very policy
    # that masked it was reported as allowing the row
    old = {
        "version": 1,
        "name": "old",
        "pii_entities": {"badge": r"BDG\d{5}"},
        "input": {"rules": [{"category": "pii", "action": "redact", "entities": ["badge"]}]},
        "audit": {"log_text": "redacted"},
    }
    new = {**old, "name": "new", "pii_entities": {}, "input": {"rules": [{"category": "pii", "action": "redact"}]}}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old), encoding="utf-8")
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new), encoding="utf-8")

    def write_log() -> None:  # in a function: its Guard, and the policy defining badge, are gone after it
        with structlog.testing.capture_logs() as logs, Guard(tmp_path / "old.yaml", classifiers=FakeClassifier()) as g:
            assert g.check_input("open the door for BDG12345 now").action is Action.REWRITE
        events = [e for e in logs if e.get("event") == "guardrail.decision"]
        (tmp_path / "audit.jsonl").write_text("".join(json.dumps(e, default=str) + "\n" for e in events))

    write_log()
    gc.collect()  # no policy defining badge is in use any more, as in a new process
    report = replay(
        tmp_path / "audit.jsonl", tmp_path / "new.yaml", tmp_path / "old.yaml", classifiers=FakeClassifier()
    )
    assert report.rows == 1 and report.errors == 0
    assert report.matrix == {("rewrite", "allow"): 1}
