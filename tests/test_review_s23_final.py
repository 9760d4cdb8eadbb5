"""Review (helper s23, final) of the stand-ins for a policy's own kinds read beside an answer, and of the judge's
loose reading of its JSON.

What a user relies on: a value the policy masks never reaches a classifier or a judge, also not as the made-up
stand-in of another value shown in the same request (the prompt read beside an answer); and a judge's score is
read as the judge wrote it, whichever of the common shapes it takes, and never the lower of two scores it gave one
category.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from guardrail import Guard
from guardrail.classifiers.judge import LLMJudge
from guardrail.errors import InvalidScores
from guardrail.testing import FakeClassifier

# ------------------------------------------------------------------------------------- stand-ins beside an answer


def own_kind_policy() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "own-kinds",
        "pii_entities": {"employee_id": r"EMP-\d{6}"},
        "input": {"rules": [{"category": "pii", "action": "redact"}]},
        "output": {
            "rules": [
                {"category": "pii", "action": "redact"},
                {"category": "harmful_response", "threshold": 0.9, "action": "block"},
            ]
        },
        "audit": {"log_text": "none"},
    }


PROMPTS: list[Any] = [
    "who is EMP-200000?",
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "who is EMP-200000?"}],
    "what about <EMPLOYEE_ID_1> and EMP-200000?",
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_a_value_in_an_answer_never_reaches_the_classifiers_as_the_stand_in_of_one_in_its_prompt(
    prompt: Any, mode: str
) -> None:
    # the prompt read beside the answer chose its stand-ins alone: the prompt's <EMPLOYEE_ID_1> was shown as
    # EMP-100000, which was the answer's own value, sent to the judge with the answer in one request
    shown: list[tuple[str, str | None]] = []

    def scorer(text: str, stage: str, beside: str | None) -> dict[str, float]:
        shown.append((text, beside))
        return {"harmful_response": 0.0}

    answer = "EMP-200000 reports to EMP-100000."
    with Guard(own_kind_policy(), classifiers=FakeClassifier(scorer=scorer)) as g:
        if mode == "sync":
            d = g.check_output(answer, prompt=prompt)
        else:
            d = asyncio.run(g.acheck_output(answer, prompt=prompt))
    assert "EMP-" not in d.text and d.text.endswith(">.")
    real = {"emp-100000", "emp-200000"}
    assert shown
    for text, beside in shown:
        both = f"{text}\n{beside or ''}".casefold()
        assert not any(v in both for v in real)
        assert re.search(r"EMP-\d{6}", text) and re.search(r"EMP-\d{6}", beside or "")


# ------------------------------------------------------------------------------------------------ judge


def judge(*topics: str) -> LLMJudge:
    return LLMJudge("m", categories=["unsafe", *topics], topics={t: "about " + t for t in topics})


@pytest.mark.parametrize(
    "answer",
    [
        '{"unsafe": 0.9, "medical_advice": 0.1, "unsafe": 0.1}',
        '{"Unsafe": 0.9, "unsafe": 0.1, "medical_advice": 0.1}',
        '{"unsafe": 0.1, "Unsafe": 0.9, "medical_advice": 0.1}',
    ],
)
def test_a_category_the_judge_scores_twice_is_read_by_its_higher_score_even_under_its_exact_name(answer: str) -> None:
    # a key written twice kept only the later score (json), and the exact key won over a higher spelling of it
    assert judge("medical_advice")._parse(answer, "input") == {"unsafe": 0.9, "medical_advice": 0.1}


@pytest.mark.parametrize("order", ['{"Unsafe": "nan", "unsafe ": 0.2', '{"Unsafe": 0.2, "unsafe ": "nan"'])
def test_a_category_scored_once_with_no_probability_is_never_passed_on_its_other_score(order: str) -> None:
    # with "nan" beside 0.2 the check passed at 0.2 or failed, by the order the judge wrote them in
    with pytest.raises(InvalidScores, match="not a probability"):
        judge("medical_advice")._parse(order + ', "medical_advice": 0.1}', "input")


@pytest.mark.parametrize(
    "answer",
    [
        '{"unsafe": {"score": 0.9, "reason": "asks for a dose"}, "medical_advice": {"score": 0.1}}',
        '{"scores": {"unsafe": 0.9, "medical_advice": 0.1}, "reasons": {"unsafe": "a dose", "medical_advice": "no"}}',
        '{"result": {"unsafe": 0.9, "medical_advice": 0.1}, "meta": {"model": "m"}}',
    ],
)
def test_a_judge_that_writes_an_object_per_category_or_objects_beside_its_scores_is_read(answer: str) -> None:
    # each failed every check under the fail mode (closed: everything blocked; open: everything let through)
    assert judge("medical_advice")._parse(answer, "input") == {"unsafe": 0.9, "medical_advice": 0.1}


def test_a_single_category_written_as_its_own_object_is_read() -> None:
    # {"unsafe": {...}} alone was unwrapped as if it were the object of scores, and "unsafe" was then missing
    assert LLMJudge("m", categories=["unsafe"])._parse('{"unsafe": {"score": 0.7}}', "input") == {"unsafe": 0.7}


@pytest.mark.parametrize("value", ["1" + "0" * 400, "1e999", "NaN", "[0.5]", '"high"', "true"])
def test_a_score_that_is_no_probability_is_reported_as_such(value: str) -> None:
    with pytest.raises(InvalidScores, match="not a probability"):
        LLMJudge("m", categories=["unsafe"])._parse('{"unsafe": ' + value + "}", "input")
