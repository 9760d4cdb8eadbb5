"""JSONL policy-test suites are read by the one JSONL reader (guardrail.jsonl), as strictly as YAML suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.cli import main
from guardrail.errors import PolicyError
from guardrail.policytest import load_suite

# separators JSON allows raw inside a string and str.splitlines() splits at, beside ordinary text
SEPARATORS = "\u2028\u2029\x85\x1c\x1d\x1e"
_texts = st.text(
    st.sampled_from(SEPARATORS) | st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def case(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"id": "a", "text": text, "expect": {"action": "allow"}, **extra}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_texts, min_size=1, max_size=4))
def test_a_case_text_with_raw_line_separators_reads_back_unchanged(tmp_path: Path, texts: list[str]) -> None:
    # json.dumps(..., ensure_ascii=False) writes U+2028 raw; the suite loader split the row there ("not valid JSON")
    rows = [{"policy": "default"}, *({**case(t), "id": f"c{i}"} for i, t in enumerate(texts))]
    path = write(tmp_path, "s.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    suite = load_suite(path)
    assert [(c.line, c.text) for c in suite.cases] == [(i + 2, t) for i, t in enumerate(texts)]


def test_the_reviewers_u2028_row_is_one_case(tmp_path: Path) -> None:
    path = tmp_path / "u2028.jsonl"
    path.write_bytes(b'{"policy": "default"}\n{"id": "ls", "text": "first line\xe2\x80\xa8second line", '
                     b'"expect": {"must_not_fire": ["pii"]}}\n')  # fmt: skip
    assert load_suite(path).cases[0].text == "first line\u2028second line"


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ('{"id": "a", "text": "hi", "text": "how to build a bomb", "expect": {"action": "allow"}}', "text"),
        ('{"id": "a", "text": "hi", "expect": {"action": "allow", "action": "block"}}', "action"),
        ('{"id": "a", "messages": [{"role": "user", "content": "hi", "content": "x"}], "expect": {"action": "allow"}}',
         "content"),
    ],
)  # fmt: skip
def test_a_duplicated_key_is_refused_at_its_line(tmp_path: Path, row: str, key: str) -> None:
    # the last one silently won: a case tested "how to build a bomb" while the suite showed "hi" (YAML refuses it)
    path = write(tmp_path, "s.jsonl", f'{{"policy": "default"}}\n\n{row}\n')
    with pytest.raises(PolicyError) as info:
        load_suite(path)
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert f"duplicate key {key!r}" in info.value.message


def test_a_second_policy_header_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the later header replaced the first: the suite ran against `permissive` while its first line said `default`
    path = write(tmp_path, "s.jsonl", '{"policy": "default"}\n' + json.dumps(case()) + '\n{"policy": "permissive"}\n')
    with pytest.raises(PolicyError) as info:
        load_suite(path)
    assert (info.value.line, info.value.field) == (3, "policy") and "first is line 1" in info.value.message
    assert main(["policy", "test", str(path)]) == 2
    assert f"{path}:3: policy: a second policy header" in capsys.readouterr().err


def test_a_header_that_is_not_a_policy_name_is_named_at_its_line(tmp_path: Path) -> None:
    # it was reported as "the suite has no cases"
    path = write(tmp_path, "s.jsonl", json.dumps(case()) + '\n{"policy": 5}\n')
    with pytest.raises(PolicyError) as info:
        load_suite(path)
    assert (info.value.line, info.value.field) == (2, "policy")


def test_a_suite_is_still_read_strictly_as_utf8(tmp_path: Path) -> None:
    # the traffic reader replaces a corrupt byte; a suite must not: the case would test another text
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"policy": "default"}\n{"id": "a", "text": "caf\xe9", "expect": {"action": "allow"}}\n')
    with pytest.raises(PolicyError, match="not UTF-8") as info:
        load_suite(path)
    assert info.value.line == 2
