"""What the classifiers read when a policy masks names and addresses: the bare placeholder, never the value.

A made-up name in its place (as a policy's own kinds get a made-up value of their pattern) was tried and measured
(session 24, bundled model). On the 350 dev and held-out rows that hold a name or an address: the placeholder
flagged 138 of 179 harmful prompts and 30 of 98 benign ones, made-up names 117 and 19, the text as written 126 and
17. On 12 benign templates x 10 names under the default policy: 0, 30 and 16 of 120 blocked, and all 80 harmful ones
each way. Over both the placeholder catches the most and flags the fewest, so names and addresses stay placeholders.
Masking them in what the model reads for every policy (as e-mail addresses are) was rejected on the dev rows:
benign flagged 30 of 98 against 17 as written.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from guardrail import Guard
from guardrail.policy import load_policy
from guardrail.testing import FakeClassifier

PROMPT = "My name is Jordan Whitfield and I live at 42 Elm Street, Springfield, IL 62704. Can you check my order?"


def policy(entities: list[str]) -> Any:
    redact = {"category": "pii", "action": "redact", "entities": entities}
    stages = {
        "input": {"rules": [redact, {"category": "jailbreak", "threshold": 0.9, "action": "block"}]},
        "output": {"rules": [redact, {"category": "unsafe", "threshold": 0.9, "action": "block"}]},
    }
    return load_policy({"version": 1, "name": "cued", **stages})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_listed_name_and_address_reach_the_classifiers_as_placeholders_only(mode: str) -> None:
    fake = FakeClassifier()
    with Guard(policy(["person", "address"]), classifiers=fake) as g:
        d = g.check_input(PROMPT) if mode == "sync" else asyncio.run(g.acheck_input(PROMPT))
    assert d.text == "My name is <PERSON_1> and I live at <ADDRESS_1>. Can you check my order?"
    seen = [t for _, texts in fake.calls for t in texts]
    assert seen and not any("Whitfield" in t or "42 Elm" in t or "Springfield" in t for t in seen)
    assert any("PERSON_1" in t and "ADDRESS_1" in t for t in seen)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_answer_naming_someone_reaches_the_classifiers_as_a_placeholder(mode: str) -> None:
    fake = FakeClassifier()
    answer = "Sure. Best regards,\nJordan Whitfield"
    with Guard(policy(["person"]), classifiers=fake) as g:
        check = g.check_output(answer, prompt="write a sign-off") if mode == "sync" else None
        d = check or asyncio.run(g.acheck_output(answer, prompt="write a sign-off"))
    assert d.text == "Sure. Best regards,\n<PERSON_1>"
    seen = [t for _, texts in fake.calls for t in texts]
    assert seen and not any("Whitfield" in t for t in seen)


def test_a_policy_that_does_not_list_them_shows_names_and_addresses_as_written() -> None:
    fake = FakeClassifier()
    with Guard(policy(["email"]), classifiers=fake) as g:
        g.check_input(PROMPT)
    seen = [t for _, texts in fake.calls for t in texts]
    assert any("Jordan Whitfield" in t and "42 Elm Street" in t for t in seen)
