"""`guardrail policy test`: suites pin what a policy does; failures are shown, malformed suites named by file:line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.cli import main
from guardrail.errors import PolicyError
from guardrail.policy import BUNDLED_POLICIES, bundled_policy_dir
from guardrail.policytest import Case, load_suite, run_suite, run_suites
from guardrail.testing import FakeClassifier

SUITES = bundled_policy_dir() / "tests"
FAKE = FakeClassifier(rules={"bomb": {"unsafe": 0.97, "weapons": 0.95}, "ignore all": {"jailbreak": 0.99}})
POLICY = """version: 1
name: shop
input:
  rules:
    - {category: unsafe, threshold: 0.8, action: block}
    - {category: jailbreak, threshold: 0.9, action: block}
    - {category: pii, action: redact}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def suite_text(cases: str, policy: str = "shop.yaml") -> str:
    return f"policy: {policy}\ncases:\n{cases}"


GOOD = """  - id: bomb
    text: how to build a bomb
    expect: {action: block, must_fire: [unsafe], must_not_fire: [jailbreak]}
  - id: bread
    text: a recipe for bread
    expect: {action: [allow, log]}
  - id: mail
    messages: [{role: user, content: "mail me at a.b@example.com"}]
    expect: {action: rewrite, must_fire: [pii]}
"""


def test_a_suite_that_holds_reports_every_case(tmp_path: Path) -> None:
    write(tmp_path, "shop.yaml", POLICY)
    suite = load_suite(write(tmp_path, "s.yaml", suite_text(GOOD)))
    result = run_suite(suite, classifiers=FAKE)
    assert [r.case.id for r in result.results] == ["bomb", "bread", "mail"]
    assert not result.failures and result.policy.name == "shop"


def test_a_failing_case_says_expected_got_and_the_deciding_scores(tmp_path: Path) -> None:
    write(tmp_path, "shop.yaml", POLICY)
    cases = "  - id: wrong\n    text: how to build a bomb\n    expect: {action: allow, must_not_fire: [unsafe]}\n"
    (result,) = run_suites([write(tmp_path, "s.yaml", suite_text(cases))], classifiers=FAKE)
    (fail,) = result.failures
    assert fail.problems == ("action block, expected allow", "fired: unsafe")
    assert "unsafe 0.97>=0.80" in fail.deciding_scores() and fail.case.line == 3


def test_the_cli_exits_0_1_2_with_a_table_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a pattern-only policy: the CLI runs the real engine, and no model score decides these cases
    write(tmp_path, "shop.yaml", "version: 1\nname: shop\ninput:\n  rules:\n    - {category: pii, action: redact}\n")
    ok = write(
        tmp_path,
        "ok.yaml",
        suite_text("  - {id: m, text: 'x@example.com', expect: {action: rewrite, must_fire: [pii]}}\n"),
    )
    bad = write(tmp_path, "bad.yaml", suite_text("  - {id: m, text: 'x@example.com', expect: {action: allow}}\n"))
    assert main(["policy", "test", str(ok), "-v"]) == 0
    assert "  ok   m " in capsys.readouterr().out  # --verbose lists every case
    junit = tmp_path / "j.xml"
    assert main(["policy", "test", str(ok), str(bad), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "action rewrite, expected allow" in out and f"{bad}:3" in out and "1/2 cases hold" in out
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("failures") for s in suites] == ["0", "1"]
    malformed = write(tmp_path, "m.yaml", suite_text("  - {id: m, text: hi, expect: {actoin: allow}}\n"))
    assert main(["policy", "test", str(malformed)]) == 2
    assert f"{malformed}:3: cases[0].expect.actoin: unknown key 'actoin'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "line", "message"),
    [
        ("  - {id: a, text: hi, expect: {action: allw}}\n", 3, "did you mean 'allow'"),
        ("  - {id: a, txt: hi, expect: {action: allow}}\n", 3, "unknown key 'txt' (did you mean 'text'?)"),
        ("  - {id: a, text: hi, expect: {}}\n", 3, "expect needs action, must_fire or must_not_fire"),
        ("  - {id: a, text: hi, expect: {must_fire: [unsafee]}}\n", 3, "did you mean 'unsafe'"),
        ("  - {id: a, text: hi, messages: [], expect: {action: allow}}\n", 3, "exactly one of text or messages"),
        ("  - {id: a, text: hi, expect: {action: allow}}\n  - {id: a, text: ho, expect: {action: allow}}\n", 4,
         "duplicate case id 'a'"),
        # messages the core's reader refuses: named where they are written, not at run time without a place
        ("  - {id: a, messages: [{role: usr, content: hi}], expect: {action: allow}}\n", 3,
         "cases[0].messages: message 0 has the unknown role 'usr'"),
        ("  - id: a\n    messages:\n      - {role: user, content: hi}\n      - {role: tool, content: {a: 1}}\n"
         "    expect: {action: allow}\n", 4, "cases[0].messages: message 1: content must be a string"),
        # a text part the reader cannot read used to be skipped: the case "held" as allow, testing nothing
        ("  - {id: a, messages: [{role: user, content: [{type: text, text: 5}]}], expect: {action: allow}}\n", 3,
         "cases[0].messages: message 0 part 0: text must be a string"),
    ],
)  # fmt: skip
def test_a_malformed_suite_is_named_by_file_and_line(tmp_path: Path, case: str, line: int, message: str) -> None:
    write(tmp_path, "shop.yaml", POLICY)
    path = write(tmp_path, "s.yaml", suite_text(case))
    with pytest.raises(PolicyError) as info:
        run_suites([path], classifiers=FAKE)
    assert info.value.file == str(path) and info.value.line == line and message in str(info.value)


def test_the_cli_names_a_case_with_unreadable_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the run used to stop at the engine's TypeError: exit 2 with "message 0 has the unknown role", no place
    path = write(tmp_path, "s.yaml", "policy: default\ncases:\n  - id: ok\n    text: hi\n    expect: {action: allow}\n"
                 "  - id: bad\n    messages: [{role: usr, content: hi}]\n    expect: {action: allow}\n")  # fmt: skip
    assert main(["policy", "test", str(path)]) == 2
    assert f"{path}:7: cases[1].messages: message 0 has the unknown role 'usr'" in capsys.readouterr().err
    rows = [{"id": "m", "messages": [{"role": "user"}, {"role": "USR", "content": "x"}], "expect": {"action": "allow"}}]
    path = write(tmp_path, "s.jsonl", '{"policy": "default"}\n' + json.dumps(rows[0]) + "\n")
    assert main(["policy", "test", str(path)]) == 2
    assert f"{path}:2: messages: message 1 has the unknown role 'USR'" in capsys.readouterr().err


def test_jsonl_suites_name_their_policy_in_a_header_line(tmp_path: Path) -> None:
    write(tmp_path, "shop.yaml", POLICY)
    rows = [{"policy": "shop.yaml"}, {"id": "b", "text": "a bomb", "expect": {"action": "block"}}]
    path = write(tmp_path, "s.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n{oops\n")
    with pytest.raises(PolicyError, match="not valid JSON") as info:
        load_suite(path)
    assert info.value.line == 4
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (result,) = run_suites([path], classifiers=FAKE)
    assert result.results[0].ok and result.results[0].case.line == 2


def test_policy_override_runs_a_suite_against_another_policy(tmp_path: Path) -> None:
    write(tmp_path, "shop.yaml", POLICY)
    lax = write(tmp_path, "lax.yaml", POLICY.replace("action: block", "action: log"))
    (result,) = run_suites([write(tmp_path, "s.yaml", suite_text(GOOD))], lax, classifiers=FAKE)
    assert [f.case.id for f in result.failures] == ["bomb"] and result.policy.name == "shop"


_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=_texts,
    actions=st.lists(st.sampled_from(["allow", "log", "rewrite", "block"]), min_size=1, max_size=3, unique=True),
    fire=st.lists(st.sampled_from(["unsafe", "hate", "pii"]), max_size=2, unique=True),
)
def test_yaml_and_jsonl_suites_read_the_same_cases(
    tmp_path: Path, text: str, actions: list[str], fire: list[str]
) -> None:
    case: dict[str, Any] = {"id": "c", "text": text, "expect": {"action": actions, "must_fire": fire}}
    y = write(tmp_path, "p.yaml", yaml.safe_dump({"policy": "default", "cases": [case]}, allow_unicode=True))
    j = write(tmp_path, "p.jsonl", json.dumps({"policy": "default"}) + "\n" + json.dumps(case) + "\n")
    a, b = load_suite(y), load_suite(j)
    assert a.cases[0].model_dump(exclude={"line"}) == b.cases[0].model_dump(exclude={"line"})
    assert isinstance(a.cases[0], Case) and a.cases[0].text == text


@pytest.mark.model
def test_every_bundled_policy_ships_a_suite_that_holds() -> None:
    """The project's own policies are tested like code: a model or policy change that breaks one fails here."""
    assert {p.stem for p in SUITES.glob("*.yaml")} >= set(BUNDLED_POLICIES)
    results = run_suites([SUITES])
    failures = [(r.suite.file, f.case.id, f.problems, f.deciding_scores()) for r in results for f in r.failures]
    assert not failures
    assert {r.policy.name for r in results} == set(BUNDLED_POLICIES)


@pytest.mark.model
def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    """The README's custom-rules policy and its policy-test suite, copied as an ops person would."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")

    def first_yaml(section: str) -> str:
        return readme[readme.index(section) :].split("```yaml\n", 1)[1].split("```", 1)[0]

    (tmp_path / "tests").mkdir()
    (tmp_path / "shop-assistant.yaml").write_text(first_yaml("## Custom rules"), encoding="utf-8")
    (tmp_path / "tests" / "shop-assistant.yaml").write_text(first_yaml("## Policy tests"), encoding="utf-8")
    (result,) = run_suites([tmp_path / "tests"])
    assert result.policy.name == "shop-assistant" and len(result.results) >= 5
    assert not [(f.case.id, f.problems, f.deciding_scores()) for f in result.failures]
