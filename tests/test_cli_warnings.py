"""`guardrail policy validate` says what is valid but almost surely not meant, without failing the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail.cli import main


def test_a_score_rule_at_threshold_zero_is_valid_but_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a new user's threshold: 0 validated silently and then blocked every prompt
    f = tmp_path / "zero.yaml"
    f.write_text(
        "version: 1\nname: zero\nextends: default\ninput:\n  rules:\n"
        "    - {category: unsafe, threshold: 0, action: block}\n",
        encoding="utf-8",
    )
    assert main(["policy", "validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"warn   {f}: input rule 'unsafe' (block) has threshold 0: it fires on every text" in out


def test_the_bundled_policies_validate_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", "default", "strict", "permissive", "monitor"]) == 0
    assert "warn" not in capsys.readouterr().out


def test_a_rule_at_threshold_zero_gated_by_requires_is_not_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # threshold 0 with `requires: {unsafe: 0.5}` fires only when unsafe reaches 0.5: "it fires on every text" is false
    f = tmp_path / "gated.yaml"
    f.write_text(
        "version: 1\nname: gated\nextends: default\ninput:\n  rules:\n"
        "    - {category: self_harm, threshold: 0, requires: {unsafe: 0.5}, action: block}\n"
        "    - {category: violence, threshold: 0, requires: {unsafe: 0}, action: log}\n",
        encoding="utf-8",
    )
    assert main(["policy", "validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert "'self_harm'" not in out
    assert f"warn   {f}: input rule 'violence' (log) has threshold 0: it fires on every text" in out


def test_a_kind_of_personal_data_no_redact_rule_names_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the bundled policies' pii rules list their entities: a kind defined in a policy extending one was never masked,
    # and validate said ok
    f = tmp_path / "own.yaml"
    text = "version: 1\nname: own\nextends: default\npii_entities:\n  employee_id: 'EMP-\\d{6}'\n"
    f.write_text(text, encoding="utf-8")
    assert main(["policy", "validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"warn   {f}: pii_entities 'employee_id' is masked by no redact rule" in out
    named = f.read_text() + "input:\n  rules:\n    - {category: pii, action: redact, entities: [email, employee_id]}\n"
    f.write_text(named, encoding="utf-8")
    assert main(["policy", "validate", str(f)]) == 0
    assert "warn" not in capsys.readouterr().out


def test_a_hold_back_too_short_for_the_names_and_addresses_an_output_masks_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # measured (session 24): streams cut into 1, 3 and 7 characters sent part of a name at hold-back 0, and an
    # address as two placeholders at 10; from 20 on, every value went out whole as one placeholder
    f = tmp_path / "names.yaml"
    body = (
        "version: 1\nname: names\noutput:\n  rules:\n    - {category: pii, action: redact, entities: [email, person]}\n"
        "  stream: {holdback_chars: 10}\n"
    )
    f.write_text(body, encoding="utf-8")
    assert main(["policy", "validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"warn   {f}: output.stream.holdback_chars 10 is shorter than a name or an address (person)" in out
    f.write_text(body.replace("holdback_chars: 10", "holdback_chars: 20"), encoding="utf-8")
    assert main(["policy", "validate", str(f)]) == 0
    assert "warn" not in capsys.readouterr().out
    f.write_text(body.replace("[email, person]", "[email]"), encoding="utf-8")  # no name masked: nothing to say
    assert main(["policy", "validate", str(f)]) == 0
    assert "warn" not in capsys.readouterr().out
