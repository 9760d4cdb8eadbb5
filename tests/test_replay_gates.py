"""`guardrail replay` as a rollout gate: a limit means what it says, and a replay of nothing passes no gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail.cli import main
from guardrail.replay import replay
from guardrail.replay_report import CATEGORY_FIELDS, METRICS, ReplayReport, parse_limit
from guardrail.testing import FakeClassifier

# keyword rules: the real engine runs in the CLI and no model score decides
OLD = "version: 1\nname: old\ninput:\n  rules:\n    - {category: c, keywords: [globex], action: log}\n"
COUNTS = [m for m in METRICS if "rate" not in m] + [f"categories.c.{f}" for f in CATEGORY_FIELDS if "rate" not in f]
RATES = [m for m in METRICS if "rate" in m] + [f"categories.c.{f}" for f in CATEGORY_FIELDS if "rate" in f]


@pytest.fixture
def policies(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD)
    new.write_text(OLD.replace("name: old", "name: new").replace("action: log", "action: block"))
    return old, new


def traffic(tmp_path: Path, rows: list[object], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ a percentage on a count


@given(metric=st.sampled_from(COUNTS), op=st.sampled_from([">", ">=", "<", "<="]), value=st.integers(0, 100))
def test_a_percentage_on_a_count_of_rows_is_refused(metric: str, op: str, value: int) -> None:
    # `newly_blocked>50%` compared a number of rows with 0.5: one newly blocked row of a thousand "crossed" it
    with pytest.raises(ValueError, match="is a count of rows, not a share") as info:
        parse_limit(f"{metric}{op}{value}%")
    rate = f"{metric}_rate"
    if rate in METRICS or rate.endswith(".delta_rate"):
        assert f"use {rate}{op}{value}%" in str(info.value)  # the rate that exists for it
    assert parse_limit(f"{metric}{op}{value}").value == value  # a count of rows is a plain number


@given(metric=st.sampled_from(RATES), value=st.integers(0, 100))
def test_a_percentage_on_a_rate_is_a_share_of_the_rows(metric: str, value: int) -> None:
    assert parse_limit(f"{metric}>{value}%").value == pytest.approx(value / 100)


def test_the_cli_refuses_a_percentage_on_a_count_before_any_row_is_checked(
    tmp_path: Path, policies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = policies
    rows = traffic(tmp_path, [{"text": "globex prices"}] + [{"text": "hello"}] * 8)  # 1 of 9 newly blocked: 11%
    args = ["replay", str(rows), "-p", str(new), "-b", str(old)]
    assert main([*args, "--fail-on", "newly_blocked>50%"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "use newly_blocked_rate>50%" in captured.err
    assert main([*args, "--fail-on", "newly_blocked_rate>50%"]) == 0
    assert main([*args, "--fail-on", "newly_blocked_rate>10%"]) == 1


# -------------------------------------------------------------------------------------- nothing to replay


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_a_traffic_file_with_no_rows_is_an_error_not_a_pass(
    tmp_path: Path, policies: tuple[Path, Path], capsys: pytest.CaptureFixture[str], content: str
) -> None:
    # it printed "replay of 0 rows", exited 0 and passed every --fail-on limit: a truncated export approved a rollout
    old, new = policies
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content)
    assert main(["replay", str(empty), "-p", str(new), "-b", str(old), "--fail-on", "block_rate_delta>2%"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{empty}: no rows to replay" in captured.err
    with pytest.raises(ValueError, match="no rows to replay"):
        replay(empty, str(new), str(old), classifiers=FakeClassifier())
    with pytest.raises(ValueError, match=r"^no rows to replay"):
        replay([], str(new), str(old), classifiers=FakeClassifier())


# ------------------------------------------------------------------------------------------------ --show


def test_a_negative_show_is_a_usage_error(
    tmp_path: Path, policies: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # `--show -1` sliced the changed rows [:-1]: every one but the last, under a heading that said "first -1"
    old, new = policies
    rows = traffic(tmp_path, [{"text": "globex prices"}, {"text": "globex again"}])
    args = ["replay", str(rows), "-p", str(new), "-b", str(old)]
    assert main([*args, "--show", "-1"]) == 2
    assert "argument --show: expected 0 or more rows, got -1" in capsys.readouterr().err
    assert main([*args, "--show", "1"]) == 0
    assert "changed rows (first 1 of 2)" in capsys.readouterr().out
    report = ReplayReport("new", "old")
    for show in (report.to_text, report.to_markdown):
        with pytest.raises(ValueError, match="0 or more"):
            show(-1)
