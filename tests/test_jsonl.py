"""JSON Lines files as replay, evaluation and ``guardrail check --file`` read them (guardrail.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail.evaluation.data import read_records
from guardrail.jsonl import read_jsonl
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
