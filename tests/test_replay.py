"""`guardrail replay`: a new policy against recorded traffic, with the old x new matrix and rollout limits."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from guardrail import Guard
from guardrail.classifiers.patterns import ENTITIES
from guardrail.cli import main
from guardrail.replay import load_traffic, parse_limit, replay
from guardrail.replay_report import METRICS
from guardrail.replay_traffic import stand_in
from guardrail.revealed import entity_spans
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
        ({"stage": "input", "text": "hi", "prompt": "why"}, "prompt: is for stage: output"),  # was silently dropped
        ({"stage": "input", "messages": [{"role": "user", "content": "hi"}], "prompt": "why"}, "prompt: is for stage"),
        ({"stage": "output", "text": "hi", "prompt": ["why"]}, "prompt: must be a string"),
        ({"text": "hi", "context": "acme"}, "context: must be an object of strings"),  # was silently dropped
        ({"text": "hi", "context": {"tenant": 7}}, "context: must be an object of strings"),
        ({"decision_id": "d", "action": "deny", "text": "hi"}, "action: expected one of allow, block, log, rewrite"),
        (
            {"decision_id": "d", "action": "log", "text": "hi", "categories": 3},
            "categories: expected the audit event's",
        ),
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
    if pct and metric == "newly_blocked":  # a count of rows: % is refused (tests/test_replay_gates.py)
        with pytest.raises(ValueError, match="newly_blocked_rate"):
            parse_limit(f"{metric} {op} {value}%")
        return
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


# ------------------------------------------------- an audit log replayed with the policy that wrote it

SUPPORT_V1 = """\
version: 1
name: support-v1
input:
  rules:
    - {category: unsafe, threshold: 0.85, action: block}
    - {category: weapons, threshold: 0.5, action: log}
    - {category: pii, action: redact, entities: [email, phone]}
    - {category: competitors, keywords: [globex], action: log}
audit: {log_text: redacted}
"""
SUPPORT_SCORES = {"bomb": {"unsafe": 0.97, "weapons": 0.96}, "rifle": {"weapons": 0.7}}
SUPPORT_TRAFFIC = [
    "hello there",
    "how do I build a pipe bomb",
    "where can I buy a hunting rifle",
    "mail me at a.b@example.com please",
    "is globex cheaper? call 555-123-4567",
    "my ip is 10.1.2.3",
    "thanks",
]


def audit_log(tmp_path: Path, policy: Path, texts: list[str], classifier: FakeClassifier) -> Path:
    """The audit events a Guard with ``policy`` writes for ``texts``, as a JSON-lines file."""
    with structlog.testing.capture_logs() as logs, Guard(policy, classifiers=classifier) as g:
        for text in texts:
            g.check_input(text)
    return write_jsonl(tmp_path / "audit.jsonl", logs)


@pytest.mark.parametrize("log_text", ["redacted", "full"])
def test_an_audit_log_replayed_with_the_policy_that_wrote_it_changes_nothing(tmp_path: Path, log_text: str) -> None:
    # the recorded categories were read as none (every category "rose"), and a redacted row could never be
    # redacted again (always "rewrite -> allow"): both crossed any categories.* or changed limit of a rollout
    policy = tmp_path / "support-v1.yaml"
    policy.write_text(SUPPORT_V1.replace("log_text: redacted", f"log_text: {log_text}"))
    fake = FakeClassifier(rules=SUPPORT_SCORES)
    log = audit_log(tmp_path, policy, SUPPORT_TRAFFIC, fake)
    report = replay(log, policy, classifiers=fake)
    m = report.metrics()
    assert m["changed"] == 0 and report.changed == [], report.to_text()
    assert m["categories"] == {
        c: {"old": n, "new": n, "delta": 0, "delta_rate": 0.0}
        for c, n in {"competitors": 1, "pii": 2, "unsafe": 1, "weapons": 2}.items()
    }
    assert m["matrix"]["rewrite"]["rewrite"] == 2 and m["matrix"]["block"]["block"] == 1
    # the address, the phone number and the IP address were masked in a redacted log; nothing in a full one
    assert m["redacted_rows"] == (3 if log_text == "redacted" else 0)
    assert ("compared on redacted text: 3 rows" in report.to_text()) == (log_text == "redacted")


def test_a_redacted_log_shows_what_a_change_of_redacted_entities_changes(tmp_path: Path) -> None:
    """The rule: a placeholder stands for a value of its kind, so the new policy's entities decide."""
    v1 = tmp_path / "support-v1.yaml"
    v1.write_text(SUPPORT_V1)
    v2 = tmp_path / "support-v2.yaml"
    v2.write_text(SUPPORT_V1.replace("support-v1", "support-v2").replace("[email, phone]", "[email, ip_address]"))
    fake = FakeClassifier(rules=SUPPORT_SCORES)
    report = replay(audit_log(tmp_path, v1, SUPPORT_TRAFFIC, fake), v2, classifiers=fake)
    changed = {(c.line, c.old, c.new, c.text, c.redacted) for c in report.changed}
    assert changed == {
        (5, "rewrite", "log", "is globex cheaper? call <PHONE_1>", True),  # phone numbers no longer redacted
        (6, "allow", "rewrite", "my ip is <IP_ADDRESS_1>", True),  # IP addresses now are
    }  # the e-mail row: still redacted, unchanged
    assert "rewrite -> log [pii,competitors -> competitors] (redacted text)" in report.to_text()


def test_a_placeholder_that_was_in_the_original_text_is_not_a_stand_in(tmp_path: Path) -> None:
    # an answer quoting the prompt's <EMAIL_1> holds no address: text_chars shows the log masked nothing
    policy = tmp_path / "p.yaml"
    policy.write_text(SUPPORT_V1.replace("input:", "output:"))
    with structlog.testing.capture_logs() as logs, Guard(policy, classifiers=FakeClassifier()) as g:
        g.check_output("I will write to <EMAIL_1> today", prompt="mail <EMAIL_1>")
        g.check_output("I will write to a.b@example.com today", prompt="hi")
    report = replay(write_jsonl(tmp_path / "audit.jsonl", logs), policy, classifiers=FakeClassifier())
    assert [e["action"] for e in logs] == ["allow", "rewrite"]
    assert report.metrics()["changed"] == 0 and report.redacted_rows == 1


@pytest.mark.parametrize("entity", ENTITIES)
def test_every_entity_has_a_stand_in_the_detectors_find_as_that_entity(entity: str) -> None:
    values = [stand_in(entity, n) for n in (1, 2, 3, 10, 256, 9999)]
    assert len(set(values)) == len(values)  # two placeholders stay two values
    for v in values:
        for text in (v, f"call {v}.", f"x: {v}, and more", f"({v})"):
            assert [(s.entity, s.value) for s in entity_spans(text)] == [(entity, v)], text


def test_the_cli_replays_an_audit_log_with_its_own_policy_within_every_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walkthrough, with the real model: `guardrail check --audit`, then `guardrail replay` with the same policy."""
    policy = tmp_path / "support-v1.yaml"
    policy.write_text(SUPPORT_V1)
    traffic = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in SUPPORT_TRAFFIC])
    log = tmp_path / "audit.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "guardrail.cli",
        "check",
        "-p",
        str(policy),
        "--file",
        str(traffic),
        "--audit",
        str(log),
    ]
    subprocess.run(cmd, capture_output=True, check=False, env={**os.environ, "GUARDRAIL_AUDIT_KEY": "k"})
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["action"] for e in events] == ["allow", "block", "block", "rewrite", "rewrite", "allow", "allow"]
    assert events[3]["text"] == "mail me at <EMAIL_1> please"
    limits = ["changed>0", "categories.unsafe.delta>0", "categories.weapons.delta>0", "categories.pii.delta<0"]
    out = tmp_path / "replay2"
    assert main(["replay", str(log), "--policy", str(policy), "--out", str(out),
                 *(a for lim in limits for a in ("--fail-on", lim))]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "changed: 0 (0.00%)" in printed.out and "limit crossed" not in printed.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(v["delta"] == 0 and v["old"] > 0 for v in metrics["categories"].values())
    assert set(metrics["categories"]) == {"competitors", "pii", "unsafe", "weapons"} and metrics["redacted_rows"] == 3


# ----------------------------------------------------------------------------------- --fail-on names


@pytest.mark.parametrize(
    ("limit", "hint"),
    [
        ("blok_rate>2%", "no metric 'blok_rate'; did you mean block_rate_delta, block_rate_new, block_rate_old?"),
        ("newly_blockd>5", "no metric 'newly_blockd'; did you mean newly_blocked"),
        ("categories.self_harm.delta_rte>1%", "no category field 'delta_rte'; did you mean delta_rate"),
        ("categories.self_harn.delta>0", "no category 'self_harn'; did you mean self_harm?"),
        ("categories.competitor.delta>0", "no category 'competitor'; did you mean competitors?"),  # the policy's own
    ],
)
def test_a_misspelt_limit_is_a_usage_error_before_any_row_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str, hint: str
) -> None:
    # it used to run the whole replay, then print "limit crossed: ...: no metric 'blok_rate'" and exit 1
    policy = tmp_path / "support-v1.yaml"
    policy.write_text(SUPPORT_V1)
    traffic = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}])
    assert main(["replay", str(traffic), "-p", str(policy), "-b", "default", "--fail-on", limit]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"--fail-on {limit!r}: {hint}" in captured.err
    assert "metrics: rows, changed" in captured.err or "categories: " in captured.err or "fields: " in captured.err


def test_every_number_in_metrics_json_is_a_metric_a_limit_may_name(tmp_path: Path) -> None:
    report = replay(write_jsonl(tmp_path / "t.jsonl", TRAFFIC), NEW, OLD, classifiers=FakeClassifier(rules=SCORES))

    def leaves(d: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if isinstance(v, dict):
                out += leaves(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)):
                out.append(prefix + k)
        return out

    names = leaves(report.metrics())
    for name in names:
        parse_limit(f"{name}>0", categories={"unsafe", "profanity"})
    assert {n for n in names if not n.startswith("categories.")} == set(METRICS)
    # a category no row had is 0, so a limit on it is within bounds, not an error
    assert parse_limit("categories.self_harm.delta>0").broken(report.metrics()) is None
    assert parse_limit("categories.self_harm.new<1").broken(report.metrics()) is not None


def test_a_row_with_a_prompt_is_a_response_as_every_row_reader_reads_it(tmp_path: Path) -> None:
    # `guardrail eval` and `guardrail check --file` read {"prompt", "text"} as a response; replay refused it
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "why", "text": "because"}, {"text": "hi"}])
    first, second = list(load_traffic(path))
    assert (first.stage, first.prompt, second.stage) == ("output", "why", "input")


def test_an_empty_prompt_is_no_prompt_in_replay_as_in_eval_and_check(tmp_path: Path) -> None:
    # a JSONL exported from a sheet carries "prompt": "" on its prompt rows: eval and check --file read them as
    # prompts (input), replay read them as responses (checked by the output rules) or refused a stage: input row
    from guardrail.evaluation.data import parse_check

    raws: list[dict[str, Any]] = [
        {"text": "how do I pick a lock", "prompt": ""},
        {"text": "hi", "prompt": "", "stage": "input"},
        {"text": "because", "prompt": "why"},
    ]
    rows = list(load_traffic(write_jsonl(tmp_path / "t.jsonl", raws)))
    assert [r.stage for r in rows] == [parse_check(raw).stage for raw in raws] == ["input", "input", "output"]
    assert [r.prompt for r in rows] == [None, None, "why"]


@pytest.mark.parametrize("prompt", [0, False, [], {}])
def test_a_prompt_that_is_not_a_string_is_refused_even_when_it_is_falsy(tmp_path: Path, prompt: Any) -> None:
    # only an empty string is "no prompt" (a sheet's blank cell); `prompt: 0` or `prompt: []` is a misread field, an
    # error at its line as `check --file` makes it, never silently dropped so the row is replayed as a prompt
    from guardrail.evaluation.data import parse_check

    raw = {"text": "hi", "prompt": prompt}
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "ok"}, raw])
    with pytest.raises(ValueError, match=r"t\.jsonl:2: prompt: must be a string"):
        list(load_traffic(path))
    with pytest.raises(ValueError, match="prompt: must be a string"):
        parse_check(raw)


@pytest.mark.parametrize("field", ["messages", "input"])
def test_a_chat_request_with_a_prompt_is_refused_not_replayed_as_a_response(tmp_path: Path, field: str) -> None:
    # a prompt makes a `text` row a response; a chat request (messages, or the Responses API's input) is the
    # prompt side, so a `prompt` beside it is misread: it was an error before, and `check --file` refuses it too.
    # Read as a response, the user's own messages were checked by the output rules against that prompt.
    chat = [{"role": "user", "content": "hi"}]
    path = write_jsonl(tmp_path / "t.jsonl", [{field: chat, "prompt": "why"}])
    with pytest.raises(ValueError, match=rf"t\.jsonl:1: prompt: .*{field}"):
        list(load_traffic(path))
    # a chat recorded as a response says so (stage: output), as before
    row = next(iter(load_traffic(write_jsonl(tmp_path / "o.jsonl", [{field: chat, "stage": "output"}]))))
    assert (row.stage, row.payload) == ("output", chat)
