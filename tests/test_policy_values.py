"""Values a policy file may hold that were accepted and then broke the guard at run time (helper-138's review):
a name with a line break took the check service down (h11 refuses the header it goes in), a time-out of
9999999999999 ms killed the watchdog thread and blocked every check, an empty hash-key variable name was kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail import Action, Guard, PolicyError, load_policy
from guardrail.testing import FakeClassifier


def _error(tmp_path: Path, text: str) -> PolicyError:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    return err.value


def test_a_name_folded_onto_two_lines_is_refused_with_its_line_and_the_one_line_name(tmp_path: Path) -> None:
    err = _error(tmp_path, "version: 1\nname: >\n  support bot\n")
    assert (err.line, err.field, err.suggestion) == (2, "name", "support bot")
    assert "one line" in err.message


@given(st.text(min_size=1, max_size=20).filter(lambda s: any(ord(c) < 0x20 or ord(c) == 0x7F for c in s)))
def test_no_name_with_a_control_character_loads(name: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policy({"version": 1, "name": name})
    assert err.value.field == "name"


@pytest.mark.parametrize("key", ["timeout_ms", "timeout_per_1k_tokens_ms"])
def test_a_time_out_over_ten_minutes_is_refused(tmp_path: Path, key: str) -> None:
    err = _error(tmp_path, f"version: 1\nname: t\n{key}: 9999999999999\n")
    assert (err.line, err.field) == (3, key) and "600000" in err.message


def test_the_longest_time_out_checks_as_usual() -> None:
    policy = {"version": 1, "name": "t", "timeout_ms": 600_000, "timeout_per_1k_tokens_ms": 600_000}
    policy["input"] = {"rules": [{"category": "unsafe", "action": "block"}]}
    with Guard(policy, classifiers=FakeClassifier({"unsafe": 0.1})) as guard:
        assert guard.check_input("hello there").action is Action.ALLOW


@pytest.mark.parametrize("env", ["", "MY KEY", "1KEY"])
def test_the_hash_key_variable_must_be_a_variable_name(tmp_path: Path, env: str) -> None:
    err = _error(tmp_path, f"version: 1\nname: t\naudit:\n  hash_key_env: '{env}'\n")
    assert err.field == "audit.hash_key_env"


def test_a_number_yaml_kept_as_text_gets_its_plain_spelling(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e-1 (no dot before the e) as the string '1e-1': the error said only "a valid number"."""
    err = _error(
        tmp_path, "version: 1\nname: t\ninput:\n  rules:\n    - {category: unsafe, threshold: 1e-1, action: block}\n"
    )
    assert (err.line, err.field, err.suggestion) == (5, "input.rules[0].threshold", "0.1")
    assert "plain number" in err.message


def test_top_level_x_keys_hold_anchors_and_are_ignored(tmp_path: Path) -> None:
    """The docker-compose convention: an x- key is a place for anchors used below; it changes nothing."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: t\nx-strict: &strict {category: unsafe, threshold: 0.4, action: block}\n"
        "input:\n  rules:\n    - *strict\n",
        encoding="utf-8",
    )
    plain = load_policy({"version": 1, "name": "t", "input": {"rules": [
        {"category": "unsafe", "threshold": 0.4, "action": "block"}]}})  # fmt: skip
    assert load_policy(path).hash == plain.hash
    err = _error(tmp_path, "version: 1\nname: t\ninput:\n  x-strict: 1\n")  # only at the top level
    assert err.field == "input.x-strict"
