"""Topics written in plain language (``topics: {medical_advice: "asks for a diagnosis ..."}``), judged by an LLM.

What ops rely on: a rule on a topic acts like a rule on a model category, on both stages, sync and async; the judge is
asked about the topic in the policy's own words (through real litellm, against a local OpenAI-compatible server); a
judge that fails follows the fail mode; and a policy whose topics no judge would ever read does not load.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from stub_server import StubServer

from guardrail import Action, Guard, PolicyError, load_policy

MEDICAL = "asks for a diagnosis, a medicine's dose or a treatment for a specific person"
REFUSAL = "I can't give medical advice; please ask a doctor or pharmacist."


def judged(body: dict[str, Any]) -> str:
    """The stub's judge: medical_advice where the text names a dose, every other category it is asked 0."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    asked = [line[2:].split(":")[0] for line in system.splitlines() if line.startswith("- ")]
    return json.dumps({c: (0.93 if c == "medical_advice" and "mg" in user else 0.0) for c in asked})


def policy_text(stub: StubServer, **extra: str) -> str:
    judge = extra.get("judge", f'{{name: judge, type: judge, model: openai/judge, api_base: "{stub.url}"}}')
    return f"""version: 1
name: topics
fail_mode: {extra.get("fail_mode", "closed")}
timeout_ms: 20000  # an LLM judge on every check: its latency, not the local model's
topics:
  medical_advice: "{MEDICAL}"
classifiers:
  experts:
    - {{name: model, type: import, path: "guardrail.testing:FakeClassifier", options: {{labels: [unsafe]}}}}
    - {judge}
input:
  rules:
    - {{category: medical_advice, action: block, message: "{REFUSAL}"}}
output:
  rules:
    - {{category: medical_advice, threshold: 0.8, action: block}}
on_block: {{message: "Sorry, I can't help with that."}}
audit: {{log_text: none}}
"""


@pytest.fixture
def judge_stub(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> StubServer:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # litellm's openai provider wants a key; the stub ignores it
    stub.reply = judged
    return stub


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_rule_on_a_topic_blocks_what_the_judge_says_is_on_it_and_passes_the_rest(
    tmp_path: Path, judge_stub: StubServer, mode: str
) -> None:
    with Guard(write(tmp_path, policy_text(judge_stub))) as g:
        if mode == "sync":
            on, off = g.check_input("How many mg of ibuprofen should my son take?"), g.check_input("Who was Galen?")
        else:
            on = asyncio.run(g.acheck_input("How many mg of ibuprofen should my son take?"))
            off = asyncio.run(g.acheck_input("Who was Galen?"))
    assert on.action is Action.BLOCK and on.text == REFUSAL
    assert [(f.category, f.score) for f in on.findings] == [("medical_advice", pytest.approx(0.93))]
    assert off.action is Action.ALLOW


def test_the_judge_is_asked_about_the_topic_in_the_policys_own_words(tmp_path: Path, judge_stub: StubServer) -> None:
    with Guard(write(tmp_path, policy_text(judge_stub))) as g:
        g.check_input("Who was Galen?")
    (asked,) = judge_stub.completions()
    assert f"- medical_advice: {MEDICAL}" in asked.body["messages"][0]["content"]


def test_a_topic_is_judged_on_answers_too_with_its_own_threshold(tmp_path: Path, judge_stub: StubServer) -> None:
    with Guard(write(tmp_path, policy_text(judge_stub))) as g:
        d = g.check_output("Give him 200 mg every six hours.", prompt="my son has a fever")
    assert d.action is Action.BLOCK and d.findings[0].threshold == 0.8


def test_a_judge_asked_only_about_the_topic_answers_only_that(tmp_path: Path, judge_stub: StubServer) -> None:
    judge = (
        f'{{name: judge, type: judge, model: openai/judge, api_base: "{judge_stub.url}", categories: [medical_advice]}}'
    )
    with Guard(write(tmp_path, policy_text(judge_stub, judge=judge))) as g:
        assert g.check_input("How many mg of paracetamol for my mother?").action is Action.BLOCK
    system = judge_stub.completions()[0].body["messages"][0]["content"]
    assert [line for line in system.splitlines() if line.startswith("- ")] == [f"- medical_advice: {MEDICAL}"]


@pytest.mark.parametrize(("fail_mode", "action"), [("closed", Action.BLOCK), ("open", Action.LOG)])
def test_a_judge_that_answers_nonsense_follows_the_fail_mode(
    tmp_path: Path, judge_stub: StubServer, fail_mode: str, action: Action
) -> None:
    judge_stub.reply = "I think this is fine."  # no JSON: the judge cannot say
    with Guard(write(tmp_path, policy_text(judge_stub, fail_mode=fail_mode))) as g:
        d = g.check_input("How many mg of ibuprofen should my son take?")
    assert d.action is action and d.error is not None


def test_topics_without_a_judge_asked_on_every_check_do_not_load(tmp_path: Path, judge_stub: StubServer) -> None:
    text = policy_text(judge_stub)
    escalated = text.replace("input:\n", "  escalate: {to: judge}\ninput:\n", 1)
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, escalated))
    assert err.value.field == "topics" and "escalate.to" in str(err.value)
    lone = text.replace(f'    - {{name: judge, type: judge, model: openai/judge, api_base: "{judge_stub.url}"}}\n', "")
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, lone))
    assert err.value.field == "topics" and err.value.line == 5


@pytest.mark.parametrize(
    ("topics", "field", "why"),
    [
        ({"unsafe": "anything harmful"}, "topics.unsafe", "taxonomy"),
        ({"Medical": "x"}, "topics.Medical", "snake_case"),
        ({"medical_advice": "  "}, "topics.medical_advice", "describe"),
    ],
)
def test_a_bad_topic_is_refused_with_its_field(topics: dict[str, str], field: str, why: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy({"version": 1, "name": "p", "topics": topics})
    assert err.value.field == field and why in str(err.value)


def test_a_rule_on_a_misspelt_topic_suggests_the_topic(tmp_path: Path, judge_stub: StubServer) -> None:
    text = policy_text(judge_stub).replace(
        "- {category: medical_advice, action: block, message", "- {category: medical_advise, action: block, message"
    )
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, text))
    assert err.value.suggestion == "medical_advice"


def test_a_judge_category_that_names_nothing_is_refused(tmp_path: Path, judge_stub: StubServer) -> None:
    judge = f'{{name: judge, type: judge, model: openai/judge, api_base: "{judge_stub.url}", categories: [medical]}}'
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, policy_text(judge_stub, judge=judge)))
    assert err.value.field == "classifiers.experts[1].categories[0]" and err.value.suggestion == "medical_advice"
