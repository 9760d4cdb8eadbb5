"""JSON Lines as replay, evaluation, ``check --file`` and policy-test suites read them (guardrail.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.cli import main
from guardrail.evaluation.data import read_records
from guardrail.jsonl import JsonlError, parse_jsonl, read_jsonl, split_lines
from guardrail.replay_traffic import load_traffic


def test_a_raw_line_separator_inside_a_string_stays_in_its_row(tmp_path: Path) -> None:
    # json.dumps(..., ensure_ascii=False) writes U+2028/U+2029/U+0085 raw; str.splitlines() would cut the row there
    texts = ["first\u2028still first", "second\u2029still second", "third\x85still third"]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    assert [v["text"] for _, v in read_jsonl(path)] == texts
    assert [rec["text"] for _, rec in read_records(path)] == texts
    assert [(row.line, row.payload) for row in load_traffic(path)] == list(enumerate(texts, 1))


def test_blank_lines_are_skipped_and_a_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n{not json}\n', encoding="utf-8")
    rows = read_jsonl(path)
    assert [next(rows), next(rows)] == [(1, {"text": "a"}), (3, {"text": "b"})]
    with pytest.raises(ValueError, match=r"rows\.jsonl:4: not valid JSON"):
        next(rows)


def test_undecodable_bytes_become_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "caf\xe9"}\n')
    assert list(read_jsonl(path)) == [(1, {"text": "caf\ufffd"})]


def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path: Path) -> None:
    # Notepad's "UTF-8 with BOM": the first row failed with "Unexpected UTF-8 BOM"
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "first"}\n{"text": "second \xef\xbb\xbf kept"}\n')
    assert list(read_jsonl(p)) == [(1, {"text": "first"}), (2, {"text": "second \ufeff kept"})]


_keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
_values = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
_objects = st.recursive(
    st.dictionaries(_keys, _values, max_size=4), lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_objects, min_size=1, max_size=5), data=st.data())
def test_an_object_with_a_key_twice_is_refused_naming_the_line_and_key(
    tmp_path: Path, rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    # json.loads keeps the last of two equal keys: {"text": "hi", "text": "<harmful>"} was checked as the second
    # text only, in replay traffic, evaluation data and `check --file` alike (the HTTP service refuses it)
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    assert [v for _, v in read_jsonl(path)] == rows  # objects without a repeated key read as written
    n = data.draw(st.integers(0, len(rows) - 1))
    key = data.draw(_keys)
    doubled = json.dumps(key, ensure_ascii=False)
    lines[n] = "{" + f"{doubled}: 1, {doubled}: 2" + (", " + lines[n][1:] if rows[n] else "}")
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    with pytest.raises(ValueError) as info:
        list(read_jsonl(path))
    assert str(info.value) == f"{path}:{n + 1}: duplicate key {key!r} (JSON would silently keep the last one)"


def test_replay_and_check_file_refuse_a_duplicated_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "hi"}\n{"text": "hi", "text": "how to build a bomb"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: duplicate key 'text'"):
        list(load_traffic(path))
    with pytest.raises(ValueError, match=r"t\.jsonl:2: duplicate key 'text'"):
        list(read_records(path))
    # pattern-only policy: the real engine runs, no model decides
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\ninput:\n  rules:\n    - {category: pii, action: redact}\n")
    assert main(["check", "--policy", str(policy), "--file", str(path)]) == 2
    assert f"{path}:2: duplicate key 'text'" in capsys.readouterr().err


def test_a_reader_that_decodes_itself_splits_lines_as_a_file_does() -> None:
    text = '{"a": "x\u2028y"}\r\n{"a": "z\x85"}\r{"a": 1}\n\n'
    assert list(parse_jsonl(split_lines(text), "t")) == [(1, {"a": "x\u2028y"}), (2, {"a": "z\x85"}), (3, {"a": 1})]
    with pytest.raises(JsonlError) as info:
        list(parse_jsonl(split_lines('{"a": 1}\n{"b": 1, "b": 2}\n'), "t"))
    assert (info.value.file, info.value.line) == ("t", 2) and info.value.problem.startswith("duplicate key 'b'")
    assert isinstance(info.value, ValueError) and str(info.value).startswith("t:2: duplicate key 'b'")
