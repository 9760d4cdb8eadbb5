"""Review (helper s23) of the bare-digit phone numbers, the JSON-escape reading and topics judged by an LLM.

What a user relies on: a run of digits is masked as a phone number where the words just before it say phone, and
only there ("recall", "syscall", "text length: 12345678" and "Hotel room 12345678" are not phone cues); an address in
a JSON string after an escape (``"Hi,\\nbob@example.com"``) is masked without eating the escape, so the answer is
still the JSON the application parses; an address split by an escaped zero-width space is masked as the plain one
is; and a judge that writes a topic's name back in another case or wraps its scores still scores the topic (it
failed every check under the fail mode).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from stub_server import StubServer

from guardrail import Action, Guard
from guardrail.classifiers.patterns import find_entities
from guardrail.testing import FakeClassifier

REDACT = {
    "version": 1,
    "name": "redact",
    "input": {"rules": [{"category": "pii", "action": "redact"}]},
    "output": {"rules": [{"category": "pii", "action": "redact"}]},
    "audit": {"log_text": "none"},
}


@pytest.fixture(scope="module")
def g() -> Any:
    with Guard(REDACT, classifiers=FakeClassifier()) as guard:
        yield guard


def check(g: Guard, text: str, mode: str, stage: str = "input") -> Any:
    if stage == "input":
        return g.check_input(text) if mode == "sync" else asyncio.run(g.acheck_input(text))
    return g.check_output(text, prompt="hi") if mode == "sync" else asyncio.run(g.acheck_output(text, prompt="hi"))


# ------------------------------------------------------------------------------------------- phone cues

BENIGN = [
    "I recall 12345678 rows in that table",  # "call" inside a word
    "the recall notice 20230115 applies",
    "syscall 123456789 returned",
    "callback count 123456789",
    "textbook ISBN 9780306406157",
    "Hotel room 12345678 is booked",  # "tel" ending a word
    "text 12345678 characters long",  # a count
    "text length: 12345678",
    "The contact form received 12345678 submissions",
    "function call took 123456789 ns",
    "Ring size 12345678",
    "contact id 12345678",
    "cellular data 123456789 bytes",
    "Contacts table has 12345678 rows",
]


@pytest.mark.parametrize("text", BENIGN)
def test_a_run_of_digits_near_a_word_that_only_contains_a_phone_cue_is_not_a_phone(text: str) -> None:
    # all of these were masked as <PHONE_1>: the cue was matched inside words and across any words before the number
    assert [s for s in find_entities(text) if s.entity == "phone"] == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_benign_text_with_a_count_after_a_cue_word_is_left_as_written(g: Guard, mode: str) -> None:
    text = "Set the text length: 12345678 and recall 20230115 from the callback 123456789."
    d = check(g, text, mode)
    assert d.action is Action.ALLOW and d.text == text


@pytest.mark.parametrize(
    "text",
    [
        "call me at 4155552671 tonight",
        "Tel.: 4155552671",  # an abbreviation's full stop
        "mobile no. 4155552671",
        "call our support hotline at 4155552671",
        "my cell is 4155552671",
        "text me at 4155552671",
        "My phone number is: 4155552671",
        "llámame al 4155552671",
        "appelle-moi au 0612345678",
        "ruf mich an unter 01701234567",
        "电话：13812345678",
        "फ़ोन नंबर 9876543210",  # a nukta and a virama (combining marks) between the cue and the number
        "phone—4155552671",
    ],
)
def test_a_run_of_digits_after_a_phone_cue_and_linking_words_is_a_phone(text: str) -> None:
    (span,) = find_entities(text)
    assert span.entity == "phone" and span.value.isdigit()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_phone_number_after_a_cue_is_masked_in_an_answer(g: Guard, mode: str) -> None:
    d = check(g, "Sure: call me at 4155552671, or text me on 4155552672.", mode, "output")
    assert d.text == "Sure: call me at <PHONE_1>, or text me on <PHONE_2>."


# ------------------------------------------------------------------------------------------- JSON strings


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("escape", ["\\n", "\\t", "\\r", "\\u00e9", "\\u2028"])
def test_an_address_after_a_json_escape_is_masked_and_the_answer_stays_json(g: Guard, mode: str, escape: str) -> None:
    # Before: the escape's letter was read as the address's first ("nbob@..."), masked as "Hi,\<EMAIL_1>": the
    # structured answer no longer parsed, and its line break was gone
    answer = f'{{"reply": "Hi,{escape}bob@example.com"}}'
    d = check(g, answer, mode, "output")
    assert d.action is Action.REWRITE
    assert json.loads(d.text) == {"reply": "Hi," + json.loads(f'"{escape}"') + "<EMAIL_1>"}


def test_an_escaped_backslash_before_a_letter_leaves_the_letter_in_the_address(g: Guard) -> None:
    # "\\\\nbob@..." is a backslash and "nbob@...": the whole address is masked
    assert g.check_input('{"a": "x\\\\nbob@example.com"}').text == '{"a": "x\\\\<EMAIL_1>"}'


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("hidden", ["\\u200b", "\\u00ad", "\\u2060"])
def test_an_address_split_by_an_escaped_invisible_character_is_masked(g: Guard, mode: str, hidden: str) -> None:
    # Before: the decoded zero-width space was read as U+FFFD, which no reading drops: the address the application
    # shows ("bob@example.com") went out unmasked, where the same address with a plain zero-width space was masked
    d = check(g, f'{{"to": "bob@exa{hidden}mple.com"}}', mode, "output")
    assert d.text == '{"to": "<EMAIL_1>"}'


# ------------------------------------------------------------------------------------------- topics

MEDICAL = "asks for a diagnosis, a medicine's dose or a treatment for a specific person"


def policy_text(stub: StubServer) -> str:
    return f"""version: 1
name: topics
fail_mode: closed
timeout_ms: 20000
topics:
  medical_advice: "{MEDICAL}"
classifiers:
  experts:
    - {{name: model, type: import, path: "guardrail.testing:FakeClassifier", options: {{labels: [unsafe]}}}}
    - {{name: judge, type: judge, model: openai/judge, api_base: "{stub.url}"}}
input:
  rules:
    - {{category: medical_advice, action: block}}
audit: {{log_text: none}}
"""


def judge_writing(spell: Any, wrap: bool = False) -> Any:
    def reply(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        asked = [line[2:].split(":")[0] for line in system.splitlines() if line.startswith("- ")]
        scores = {spell(c): (0.93 if c == "medical_advice" and "mg" in user else 0.0) for c in asked}
        return json.dumps({"scores": scores} if wrap else scores)

    return reply


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("spell", "wrap"),
    [
        (str.upper, False),  # "MEDICAL_ADVICE"
        (lambda c: c.replace("_", " ").title(), False),  # "Medical Advice", "Self Harm"
        (lambda c: c.replace("_", "-"), False),  # "self-harm"
        (lambda c: c, True),  # {"scores": {...}}
    ],
)
def test_a_judge_that_writes_the_names_its_own_way_still_scores_the_topic(
    tmp_path: Path, stub: StubServer, monkeypatch: pytest.MonkeyPatch, mode: str, spell: Any, wrap: bool
) -> None:
    # Before: "no score for 'hate'": every check failed, and the closed fail mode blocked every prompt
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    stub.reply = judge_writing(spell, wrap)
    path = tmp_path / "topics.yaml"
    path.write_text(policy_text(stub), encoding="utf-8")
    with Guard(path) as g:
        on, off = (check(g, t, mode) for t in ("How many mg of ibuprofen for my son?", "Who was Galen?"))
    assert on.action is Action.BLOCK and on.error is None
    assert [(f.category, f.score) for f in on.findings] == [("medical_advice", pytest.approx(0.93))]
    assert off.action is Action.ALLOW and off.error is None
