"""`guardrail replay`: a new policy against recorded traffic, with the old x new matrix and rollout limits."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from guardrail import Guard
from guardrail.cli import main
from guardrail.replay import load_traffic, parse_limit, replay
from guardrail.testing import FakeClassifier

OLD = {"version": 1, "name": "old", "audit": {"log_text": "redacted"},
       "input": {"rules": [{"category": "unsafe", "threshold": 0.9, "action": "block"},
                           {"category": "profanity", "threshold": 0.5, "action": "log"}]}}  # fmt: skip
NEW = {**OLD, "name": "new",
       "input": {"rules": [{"category": "unsafe", "threshold": 0.5, "action": "block"},
                           {"category": "profanity", "threshold": 0.5, "action": "block"}]}}  # fmt: skip
SCORES = {"bomb": {"unsafe": 0.95}, "gun": {"unsafe": 0.6}, "damn": {"profanity": 0.8}}
TRAFFIC = [
    {"text": "how to make a bomb"},
    {"text": "where to buy a gun, mail me at a.b@example.com"},
    {"text": "damn this printer"},
    {"messages": [{"role": "user", "content": "bake bread"}], "model": "gpt-4o"},
    "plain string row",
    {"stage": "output", "prompt": "hi", "text": "damn right"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_matrix_counts_old_against_new_actions(tmp_path: Path) -> None:
    fake = FakeClassifier(rules=SCORES)
    report = replay(write_jsonl(tmp_path / "t.jsonl", TRAFFIC), NEW, OLD, classifiers=fake)
    m = report.metrics()
    assert m["rows"] == 6 and m["matrix"]["allow"]["block"] == 1 and m["matrix"]["log"]["block"] == 1
    assert m["matrix"]["block"]["block"] == 1 and m["matrix"]["allow"]["allow"] == 3  # the output row: no rules
    assert m["newly_blocked"] == 2 and m["block_rate_delta"] == pytest.approx(2 / 6)
    assert m["categories"]["unsafe"] == {"old": 1, "new": 2, "delta": 1, "delta_rate": pytest.approx(1 / 6)}
    assert m["categories"]["profanity"]["delta"] == 0  # fired (log) before, fires (block) now
    # both policies read one score cache: the model sees what one policy alone would send it, not twice that
    alone = FakeClassifier(rules=SCORES)
    replay(write_jsonl(tmp_path / "t.jsonl", TRAFFIC), NEW, NEW, classifiers=alone)
    assert sum(len(t) for _, t in fake.calls) == sum(len(t) for _, t in alone.calls) > 0
    (gun, damn) = sorted(report.changed, key=lambda c: c.line)
    assert (gun.line, gun.old, gun.new) == (2, "allow", "block")
    assert gun.text == "where to buy a gun, mail me at <EMAIL_1>"  # as the new policy's audit setting allows
    assert damn.old_categories == damn.new_categories == ("profanity",) and (damn.old, damn.new) == ("log", "block")


def test_an_audit_log_replays_against_its_recorded_actions(tmp_path: Path) -> None:
    fake = FakeClassifier(rules=SCORES)
    with structlog.testing.capture_logs() as logs, Guard(OLD, classifiers=fake) as g:
        for text in ("how to make a bomb", "where to buy a gun", "bake bread"):
            g.check_input(text)
    path = write_jsonl(tmp_path / "audit.jsonl", logs)
    report = replay(path, NEW, classifiers=fake)
    assert report.baseline == "recorded actions"
    assert report.metrics()["matrix"]["allow"]["block"] == 1 and report.changed[0].text == "where to buy a gun"


def test_a_hashed_audit_log_cannot_be_replayed_and_says_why(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs, Guard({**OLD, "audit": {}}, classifiers=FakeClassifier()) as g:
        g.check_input("hello")
    path = write_jsonl(tmp_path / "audit.jsonl", [{"text": "fine"}, *logs])
    with pytest.raises(ValueError, match=r"audit.jsonl:2: .*log_text: hash.*cannot be replayed"):
        list(load_traffic(path))


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"messages": [{"role": "usr", "content": "hi"}]}, "messages: message 0 has the unknown role 'usr'"),
        ({"messages": [{"role": "user", "content": {"a": 1}}]}, "messages: message 0: content must be a string"),
        ({"input": [{"content": "hi"}]}, "input: message 0 has no role"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ["hi"]}]}]}, "messages: message 0 part 0"),
        ({"text": "hi", "prompt": "why"}, "prompt: is for stage: output"),  # was silently dropped
        ({"messages": [{"role": "user", "content": "hi"}], "prompt": "why"}, "prompt: is for stage: output"),
        ({"stage": "output", "text": "hi", "prompt": ["why"]}, "prompt: must be a string"),
        ({"text": "hi", "context": "acme"}, "context: must be an object of strings"),  # was silently dropped
        ({"text": "hi", "context": {"tenant": 7}}, "context: must be an object of strings"),
    ],
)
def test_a_row_that_would_be_misread_is_refused_at_its_line(tmp_path: Path, row: dict[str, Any], problem: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "fine"}, row])
    with pytest.raises(ValueError) as info:
        list(load_traffic(path))
    assert str(info.value).startswith(f"{path}:2: {problem}")


def test_the_cli_names_the_line_of_a_row_with_unreadable_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the replay used to stop at the engine's TypeError with "message 0 has the unknown role 'usr'" and no place
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "hi"}, {"messages": [{"role": "usr", "content": "hi"}]}])
    assert main(["replay", str(path), "-p", "strict", "-b", "default"]) == 2
    assert f"{path}:2: messages: message 0 has the unknown role 'usr'" in capsys.readouterr().err


def test_the_cli_writes_reports_and_fails_on_a_crossed_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # keyword rules decide here, so the real engine runs and no model score matters
    old = tmp_path / "old.yaml"
    old.write_text("version: 1\nname: old\ninput:\n  rules:\n    - {category: c, keywords: [globex], action: log}\n")
    new = tmp_path / "new.yaml"
    new.write_text(old.read_text().replace("name: old", "name: new").replace("action: log", "action: block"))
    traffic = write_jsonl(tmp_path / "t.jsonl", [{"text": "globex prices"}] + [{"text": "hello"}] * 9)
    out = tmp_path / "out"
    args = ["replay", str(traffic), "--policy", str(new), "--baseline", str(old), "--out", str(out)]
    assert main([*args, "--fail-on", "block_rate_delta>20%"]) == 0
    assert main([*args, "--fail-on", "block_rate_delta>2%", "--fail-on", "newly_blocked>5"]) == 1
    captured = capsys.readouterr()
    assert "limit crossed: block_rate_delta>2%" in captured.err and "newly_blocked" not in captured.err
    assert "1 (10.0%)" in captured.out and "line 1: log -> block" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["matrix"]["log"]["block"] == 1 and "| log | 0 (0.0%)" in (out / "report.md").read_text()
    assert main([*args, "--fail-on", "blocks up 2%"]) == 2


def test_long_files_show_progress_in_a_pipeline_log(tmp_path: Path) -> None:
    traffic = write_jsonl(tmp_path / "t.jsonl", [{"text": f"row {i}"} for i in range(1200)])
    stream = io.StringIO()
    report = replay(traffic, NEW, OLD, classifiers=FakeClassifier(), progress=stream)
    lines = stream.getvalue().splitlines()
    assert report.rows == 1200 and 5 <= len(lines) <= 11 and lines[-1] == "replay: 1200/1200 (100%)"


@given(
    metric=st.sampled_from(["block_rate_delta", "newly_blocked", "categories.self_harm.delta_rate"]),
    op=st.sampled_from([">", ">=", "<", "<="]),
    value=st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda v: round(v, 3)),
    pct=st.booleans(),
)
def test_limits_parse_metric_operator_and_percent(metric: str, op: str, value: float, pct: bool) -> None:
    lim = parse_limit(f"{metric} {op} {value}{'%' if pct else ''}")
    assert (lim.metric, lim.op) == (metric, op)
    assert lim.value == pytest.approx(value / 100 if pct else value)


def test_with_a_hash_audit_setting_changed_rows_show_the_audit_logs_hmac(tmp_path: Path) -> None:
    new = {**NEW, "audit": {"log_text": "hash"}}
    report = replay(write_jsonl(tmp_path / "t.jsonl", [{"text": "where to buy a gun"}]), new, OLD,
                    classifiers=FakeClassifier(rules=SCORES))  # fmt: skip
    with structlog.testing.capture_logs() as logs, Guard(new, classifiers=FakeClassifier(rules=SCORES)) as g:
        g.check_input("where to buy a gun")
    (changed,) = report.changed
    assert changed.text == f"text_hmac:{logs[0]['text_hmac']}" and "gun" not in changed.text


def test_routes_to_another_model_are_not_scored_with_the_first_models_cache(tmp_path: Path) -> None:
    import shutil

    from guardrail.classifiers.onnx import bundled_model_dir
    from guardrail.policy import load_policy
    from guardrail.replay import _one_model

    (tmp_path / "m").mkdir()
    shutil.copy(bundled_model_dir() / "labels.json", tmp_path / "m")
    (tmp_path / "other.yaml").write_text("version: 1\nname: other\nmodel: ./m\n")
    (tmp_path / "same.yaml").write_text("version: 1\nname: same\n")
    main_ = tmp_path / "main.yaml"
    main_.write_text("version: 1\nname: main\nroutes:\n  - match: {tenant: a}\n    policy: same.yaml\n")
    assert _one_model(load_policy(main_))
    main_.write_text(main_.read_text() + "  - match: {tenant: b}\n    policy: other.yaml\n")
    assert not _one_model(load_policy(main_))


def test_responses_api_requests_replay_too(tmp_path: Path) -> None:
    rows = [{"model": "m", "input": "how to make a bomb"},
            {"model": "m", "input": [{"role": "user", "content": "where to buy a gun"}]}]  # fmt: skip
    report = replay(write_jsonl(tmp_path / "t.jsonl", rows), NEW, OLD, classifiers=FakeClassifier(rules=SCORES))
    assert report.metrics()["matrix"]["block"]["block"] == 1 and report.metrics()["matrix"]["allow"]["block"] == 1
