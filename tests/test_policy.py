"""Policy loading: bundled files, errors that point at file:line:field, extends, reload, schema."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from guardrail.decision import RuleAction
from guardrail.errors import PolicyError
from guardrail.policy import (
    BUNDLED_POLICIES,
    DEFAULT_THRESHOLD,
    Policy,
    Rule,
    bundled_policy_dir,
    dump_policy,
    load_policy,
    model_labels,
    policy_json_schema,
)
from guardrail.policy_reload import PolicyReloader
from guardrail.taxonomy import HARM_IDS, PII_ENTITIES

HEAD = "version: 1\nname: t\n"


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, name: str = "p.yaml") -> PolicyError:
    path = write(tmp_path, text, name)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


def calibrated(category: str) -> float:
    labels = model_labels("default")
    return labels[category].threshold if labels else DEFAULT_THRESHOLD


# ------------------------------------------------------------------------------------ bundled files


@pytest.mark.parametrize("name", BUNDLED_POLICIES)
def test_every_bundled_policy_loads_resolved(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert policy.source == str(bundled_policy_dir() / f"{name}.yaml")
    assert policy.files[0] == bundled_policy_dir() / f"{name}.yaml"
    assert len(policy.hash) == 16 and int(policy.hash, 16) >= 0
    for rule in (*policy.input.rules, *policy.output.rules):
        if rule.action is RuleAction.REDACT:
            assert rule.threshold is None and rule.entities
        else:
            assert isinstance(rule.threshold, float) and 0.0 <= rule.threshold <= 1.0


def test_none_and_default_are_the_bundled_default() -> None:
    assert load_policy(None) == load_policy("default") == load_policy(bundled_policy_dir() / "default.yaml")


def test_default_policy_rules_and_calibrated_thresholds() -> None:
    policy = load_policy()
    assert [(r.category, r.action.value, r.requires) for r in policy.input.rules] == [
        ("self_harm", "block", {"unsafe": 0.5}),  # a method request: refused with help lines
        ("unsafe", "block", None),
        ("jailbreak", "block", None),
        ("sexual_minors", "block", None),
        ("hate", "block", None),
        ("harassment", "block", None),
        ("threat", "block", None),
        ("sexual", "block", None),
        ("weapons", "block", None),
        ("controlled_substances", "block", None),
        ("criminal_planning", "block", None),
        ("self_harm", "rewrite", None),  # a disclosure: answered with care
        ("pii", "redact", None),
        ("profanity", "log", None),
    ]
    got = {r.category: r for r in policy.input.rules}  # the last rule of a category
    assert got["unsafe"].threshold == calibrated("unsafe")
    assert got["criminal_planning"].threshold == calibrated("criminal_planning")
    assert got["sexual_minors"].threshold == 0.2  # below the calibrated default on purpose
    assert all(r.message and "988" in r.message for r in policy.input.rules if r.category == "self_harm")
    assert got["pii"].entities == ("email", "phone", "credit_card", "iban", "us_ssn", "api_key", "private_key")
    assert [(r.category, r.action.value) for r in policy.output.rules] == [
        ("harmful_response", "block"),
        ("pii", "redact"),
    ]
    assert policy.on_block.respond == "refusal" and policy.audit.log_text == "hash"
    assert policy.fail_mode == "closed" and policy.mode == "enforce"


def test_strict_lowers_thresholds_reads_all_user_turns_and_tools_and_blocks_outputs() -> None:
    policy = load_policy("strict")
    assert policy.input.scope == "untrusted" and policy.input.data_categories == ("jailbreak", "unsafe")
    blocks = {r.category: r.threshold for r in policy.input.rules if r.action is RuleAction.BLOCK}
    assert set(HARM_IDS) - {"pii", "self_harm"} <= set(blocks)
    assert all(t is not None and 0.2 <= t <= 0.5 for t in blocks.values())
    default = load_policy()  # strict never acts later than default where default blocks or rewrites
    for stage in ("input", "output"):
        mine = {(r.category, r.action, tuple(sorted(r.requires or {}))): r for r in getattr(policy, stage).rules}
        for r in getattr(default, stage).rules:
            if r.action not in (RuleAction.BLOCK, RuleAction.REWRITE) or r.threshold is None:
                continue
            strict_rule = mine[(r.category, r.action, tuple(sorted(r.requires or {})))]
            assert strict_rule.threshold is not None and strict_rule.threshold <= r.threshold, (stage, r.category)
            for cat, at in (r.requires or {}).items():
                assert (strict_rule.requires or {})[cat] <= at, (stage, r.category, cat)
    out = {r.category for r in policy.output.rules if r.action is RuleAction.BLOCK}
    assert {"harmful_response", "unsafe", "violence", "weapons"} <= out
    pii = next(r for r in policy.input.rules if r.category == "pii")
    assert pii.entities == PII_ENTITIES  # omitted entities mean all of them


def test_permissive_blocks_only_clear_harm_and_jailbreaks() -> None:
    policy = load_policy("permissive")
    rules = (*policy.input.rules, *policy.output.rules)
    blocking = {(r.category, r.threshold) for r in rules if r.action is not RuleAction.LOG}
    assert blocking == {("unsafe", 0.9), ("jailbreak", calibrated("jailbreak"))}


def test_monitor_is_shadow_and_fails_open() -> None:
    policy = load_policy("monitor")
    assert policy.mode == "shadow" and policy.fail_mode == "open"
    assert policy.input.rules == load_policy("default").input.rules
    assert not any(policy.enforces(r) for r in (*policy.input.rules, *policy.output.rules))
    assert all(load_policy("default").enforces(r) for r in load_policy("default").input.rules)


def test_rule_level_shadow_is_not_enforced(tmp_path: Path) -> None:
    policy = load_policy(
        write(tmp_path, HEAD + "input:\n  rules:\n    - {category: hate, action: block, mode: shadow}\n")
    )
    (rule,) = policy.input.rules
    assert rule.mode == "shadow" and not policy.enforces(rule)


def test_bundled_files_validate_against_the_json_schema() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in BUNDLED_POLICIES:
        data = yaml.safe_load((bundled_policy_dir() / f"{name}.yaml").read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(data)), name
    assert "extends" in schema["properties"]
    assert list(validator.iter_errors({"version": 1, "name": "x", "inptu": {}}))
    assert not list(validator.iter_errors({"version": 1, "name": "x", "on_block": "raise"}))


def test_dump_loads_back_to_the_same_policy(tmp_path: Path) -> None:
    for name in BUNDLED_POLICIES:
        policy = load_policy(name)
        again = load_policy(write(tmp_path, dump_policy(policy)))
        assert again.model_dump() == policy.model_dump() and again.hash == policy.hash
        assert policy.to_yaml() == dump_policy(policy)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "field", "suggestion"),
    [
        (HEAD + "inptu: {}\n", 3, "inptu", "input"),
        (
            HEAD + "input:\n  rules:\n    - category: hate\n      treshold: 0.5\n",
            6,
            "input.rules[0].treshold",
            "threshold",
        ),
        (HEAD + "input:\n  rules:\n    - {category: hate, action: blok}\n", 5, "input.rules[0].action", "block"),
        (HEAD + "input:\n  scope: last_usr\n", 4, "input.scope", "last_user"),
        (
            HEAD + "input:\n  rules:\n    - {category: jailbrake, action: block}\n",
            5,
            "input.rules[0].category",
            "jailbreak",
        ),
        (HEAD + "output:\n  stream:\n    holdbak_chars: 3\n", 5, "output.stream.holdbak_chars", "holdback_chars"),
        (HEAD + "audit:\n  log_text: redact\n", 4, "audit.log_text", "redacted"),
        (HEAD + "on_block: rais\n", 3, "on_block.respond", "raise"),
        (HEAD + "timout_ms: 100\n", 3, "timout_ms", "timeout_ms"),
        (HEAD + "model: defualt\n", 3, "model", "default"),
        (
            HEAD + "input:\n  rules:\n    - category: pii\n      action: redact\n      entities:\n        - email\n"
            "        - phnoe\n",
            9,
            "input.rules[0].entities[1]",
            "phone",
        ),
    ],
)
def test_unknown_names_point_at_file_line_field_and_suggest(
    tmp_path: Path, text: str, line: int, field: str, suggestion: str
) -> None:
    err = load_error(tmp_path, text)
    assert (err.file, err.line, err.field, err.suggestion) == (str(tmp_path / "p.yaml"), line, field, suggestion)
    assert str(err).startswith(f"{tmp_path / 'p.yaml'}:{line}: {field}: ")


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            HEAD + "input:\n  rules:\n    - {category: hate, threshold: 1.5, action: block}\n",
            5,
            "input.rules[0].threshold",
            "less than",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: hate, threshold: '0.5', action: block}\n",
            5,
            "input.rules[0].threshold",
            "number",
        ),
        (HEAD + "timeout_ms: fast\n", 3, "timeout_ms", "integer"),
        (HEAD + "timeout_ms: yes\n", 3, "timeout_ms", "integer"),
        (HEAD + "timeout_ms: 0\n", 3, "timeout_ms", "greater than"),
        (HEAD + "input: [1, 2]\n", 3, "input", "dictionary"),
        ("name: t\n", 1, "version", "version: 1"),
        ("version: 2\nname: t\n", 1, "version", "unsupported version"),
        ("version: true\nname: t\n", 1, "version", "unsupported version"),
        ("version: 1\n", 1, "name", "missing"),
        (HEAD + "name: u\n", 3, "name", "duplicate key"),
        (
            HEAD + "input:\n  rules:\n    - {category: hate, action: redact}\n",
            5,
            "input.rules[0].action",
            "only on category 'pii'",
        ),
        (HEAD + "input:\n  rules:\n    - {category: hate, action: rewrite}\n", 5, "input.rules[0].message", "needs a"),
        (
            HEAD + "input:\n  rules:\n    - {category: hate, action: block, entities: [email]}\n",
            5,
            "input.rules[0].entities",
            "only apply",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: pii, action: redact, threshold: 0.5}\n",
            5,
            "input.rules[0].threshold",
            "no threshold",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: hate, action: block}\n    - {category: hate, action: log}\n",
            6,
            "input.rules[1].category",
            "two rules",
        ),
        (
            HEAD + "output:\n  rules:\n    - {category: jailbreak, action: block}\n",
            5,
            "output.rules[0].category",
            "not scored on the output",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: refusal, action: log}\n",
            5,
            "input.rules[0].category",
            "not scored on the input",
        ),
        # fields that load but could never do anything: refused, not silently ignored
        (
            HEAD + "input:\n  rules:\n    - {category: unsafe, action: log, message: 'Blocked!'}\n",
            5,
            "input.rules[0].message",
            "a log rule never shows its message",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: pii, action: redact, message: hidden}\n",
            5,
            "input.rules[0].message",
            "a redact rule never shows its message",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: unsafe, action: block, word_boundaries: false}\n",
            5,
            "input.rules[0].word_boundaries",
            "applies to keywords only",
        ),
        (
            HEAD + "input:\n  rules:\n    - {category: c, patterns: ['ab+'], action: log, word_boundaries: false}\n",
            5,
            "input.rules[0].word_boundaries",
            "applies to keywords only",
        ),
        (HEAD + "extends: strcit\n", 3, "extends", "unknown bundled policy"),
        (HEAD + "extends: ./missing.yaml\n", 3, "extends", "file not found"),  # the child's line
        (HEAD + "extends: ./\n", 3, "extends", "directory"),
        (HEAD + "extends: [default]\n", 3, "extends", "policy name or a path"),
        (HEAD + "input:\n  scope: all\n  scope: last_user\n", 5, "input.scope", "duplicate key"),
        (HEAD + "input: {rules: [{category: hate, action: block]}\n", 3, None, "YAML syntax error"),
        (HEAD + "input:\n  rules:\n  - category: x\n   action: block\n", 6, None, "YAML syntax error"),
        ("- version: 1\n", 1, None, "top level must be a mapping"),
        ("just a sentence\n", 1, None, "top level must be a mapping"),
        ("", 1, None, "empty"),
        ("# only a comment\n", 1, None, "no YAML document"),
        ("version: 1\n---\nname: t\n", 2, None, "YAML syntax error"),
        (HEAD + "a: &x [*x]\n", 3, "a[0]", "recursive"),
        (HEAD + "x: !!python/object:os.system {}\n", 3, "x", "YAML tag"),
        (HEAD + "timeout_ms: !!int abc\n", 3, "timeout_ms", "invalid value"),
        (HEAD + "? [a, b]\n: 1\n", 3, None, "plain names"),
    ],
)
def test_bad_files_raise_policy_error_at_the_spot(
    tmp_path: Path, text: str, line: int | None, field: str | None, words: str
) -> None:
    err = load_error(tmp_path, text)
    assert words in err.message
    assert err.line == line and err.field == field
    assert err.file and err.file.endswith(".yaml")


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert info.value.file == str(missing) and "not found" in info.value.message
    with pytest.raises(PolicyError, match="directory"):
        load_policy(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"version: 1\x00\x01\x02")
    with pytest.raises(PolicyError, match="binary"):
        load_policy(tmp_path / "bin.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "latin.yaml")
    assert "UTF-8" in info.value.message and info.value.line == 2
    (tmp_path / "big.yaml").write_bytes(b"#" * (2 << 20))
    with pytest.raises(PolicyError, match="larger"):
        load_policy(tmp_path / "big.yaml")


def test_unknown_bundled_name_and_wrong_source_type() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("strcit")
    assert info.value.suggestion == "strict"
    with pytest.raises(PolicyError):
        load_policy(42)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="keys must be strings"):
        load_policy({"version": 1, "name": "x", 3: 4})  # type: ignore[dict-item]


def test_extends_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "extends: b.yaml\n", "a.yaml")
    write(tmp_path, HEAD + "extends: ./a.yaml\n", "b.yaml")
    err = load_error(tmp_path, HEAD + "extends: a.yaml\n", "c.yaml")
    assert err.file == str(tmp_path / "b.yaml") and err.line == 3 and err.field == "extends"
    assert "cycle" in err.message and "a.yaml -> " in err.message
    self_cycle = load_error(tmp_path, HEAD + "extends: self.yaml\n", "self.yaml")
    assert "cycle" in self_cycle.message


def test_errors_in_an_inherited_value_point_at_the_parent_file(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "input:\n  rules:\n    - {category: hate, action: blok}\n", "base.yaml")
    err = load_error(tmp_path, "version: 1\nname: child\nextends: base.yaml\ntimeout_ms: 100\n", "child.yaml")
    assert (err.file, err.line, err.field) == (str(tmp_path / "base.yaml"), 5, "input.rules[0].action")
    # ... and in the child's own values at the child, even for a rule that moved into the parent's slot (named as
    # the child numbers it: its first rule, not the merged list's second)
    write(
        tmp_path,
        HEAD + "input:\n  rules:\n    - {category: hate, action: block}\n    - {category: sexual, action: log}\n",
        "base.yaml",
    )
    err = load_error(
        tmp_path,
        "version: 1\nname: c\nextends: base.yaml\ninput:\n  rules:\n"
        "    - {category: sexual, threshold: 2, action: log}\n",
        "child.yaml",
    )
    assert (err.file, err.line, err.field) == (str(tmp_path / "child.yaml"), 6, "input.rules[0].threshold")


# --------------------------------------------------------------------------------------------- extends


def test_extends_replaces_rules_by_category_and_appends_the_rest(tmp_path: Path) -> None:
    child = write(
        tmp_path,
        "version: 1\nname: support-bot\nextends: default\ntimeout_ms: 100\non_block: raise\n"
        "input:\n  rules:\n    - {category: unsafe, threshold: 0.85, action: block}\n"
        "    - {category: violence, threshold: 0.4, action: block}\n",
    )
    policy, base = load_policy(child), load_policy("default")
    assert [r.category for r in policy.input.rules] == [r.category for r in base.input.rules] + ["violence"]
    i = next(k for k, r in enumerate(base.input.rules) if r.category == "unsafe")
    assert policy.input.rules[i] == Rule(category="unsafe", threshold=0.85, action=RuleAction.BLOCK)
    rest = [k for k in range(len(base.input.rules)) if k != i]
    assert [policy.input.rules[k] for k in rest] == [base.input.rules[k] for k in rest]
    assert policy.output == base.output and policy.input.scope == base.input.scope
    assert policy.timeout_ms == 100 and policy.fail_mode == "closed"
    assert policy.on_block.respond == "raise" and policy.on_block.message == base.on_block.message
    assert policy.name == "support-bot" and policy.description == ""  # identity is not inherited
    assert policy.files == (child, bundled_policy_dir() / "default.yaml")
    assert policy.hash != base.hash


def test_extends_chain_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, "version: 1\nname: base\nextends: strict\naudit: {log_text: none}\n", "sub/base.yaml")
    write(tmp_path, "version: 1\nname: mid\nextends: sub/base.yaml\nfail_mode: open\n", "mid.yaml")
    policy = load_policy(write(tmp_path, "version: 1\nname: top\nextends: ./mid.yaml\nmode: shadow\n", "top.yaml"))
    assert (policy.audit.log_text, policy.fail_mode, policy.mode, policy.input.scope) == (
        "none",
        "open",
        "shadow",
        "untrusted",
    )
    assert [f.name for f in policy.files] == ["top.yaml", "mid.yaml", "base.yaml", "strict.yaml", "default.yaml"]


def test_mapping_and_policy_sources() -> None:
    data: dict[str, Any] = {"version": 1, "name": "inline", "extends": "default", "input": {"scope": "all"}}
    policy = load_policy(data)
    assert policy.source == "<dict>" and policy.input.scope == "all"
    assert policy.input.rules == load_policy("default").input.rules
    assert policy.files == (bundled_policy_dir() / "default.yaml",)
    assert load_policy(policy) is policy
    raw = Policy(version=1, name="direct", input={"rules": [{"category": "hate", "action": "block"}]})  # type: ignore[arg-type]
    assert raw.input.rules[0].threshold is None and raw.hash == ""
    checked = load_policy(raw)
    assert checked.input.rules[0].threshold == calibrated("hate") and checked.hash


DESIGN_EXAMPLE = """\
version: 1
name: support-bot
extends: default            # inherit, then override
fail_mode: closed           # a classifier that errors or times out: closed = block, open = allow + log
timeout_ms: 250
input:
  scope: last_user          # last_user | all_user | all
  rules:
    - {category: unsafe,    threshold: 0.85, action: block}
    - {category: self_harm, threshold: 0.50, action: rewrite, message: "..."}
    - {category: jailbreak, threshold: 0.90, action: block}
    - {category: pii, action: redact, entities: [email, phone, credit_card, iban, ip_address, api_key]}
    - {category: profanity, threshold: 0.70, action: log, mode: shadow}
output:
  rules:
    - {category: harmful_response, threshold: 0.70, action: block}
  stream: {check_every_chars: 200, holdback_chars: 80}
on_block: {respond: refusal, message: "Sorry, I can't help with that."}   # or: raise
audit: {log_text: redacted}  # none | hash | redacted | full
"""


def test_the_design_doc_example_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, DESIGN_EXAMPLE))
    rules = {r.category: r for r in policy.input.rules}
    assert rules["unsafe"].threshold == 0.85 and rules["profanity"].mode == "shadow"
    assert rules["pii"].entities == ("email", "phone", "credit_card", "iban", "ip_address", "api_key")
    assert policy.audit.log_text == "redacted"


def test_yaml_merge_keys_and_shorthands(tmp_path: Path) -> None:
    text = (
        HEAD
        + "input:\n  rules:\n    - {<<: &b {action: block, threshold: 0.4}, category: hate}\n"
        + "    - {<<: *b, category: violence, threshold: 0.6}\n"
        + "on_block: raise\n"
    )
    policy = load_policy(write(tmp_path, text))
    assert [(r.category, r.threshold) for r in policy.input.rules] == [("hate", 0.4), ("violence", 0.6)]
    assert policy.on_block.respond == "raise"


# ------------------------------------------------------------------------------ model labels and thresholds


def make_model(folder: Path, labels: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")
    return folder


def test_threshold_none_resolves_to_the_models_calibration_and_custom_categories(tmp_path: Path) -> None:
    make_model(
        tmp_path / "models" / "mine",
        [
            {"id": "unsafe", "stages": ["input", "output"], "threshold": 0.73},
            {"id": "toxicity", "stages": ["input"], "threshold": 0.61},
            {"id": "harmful_response", "stages": ["output"]},
            {"id": "hate", "stages": ["input", "output"], "threshold": 0.4, "thresholds": {"output": 0.35}},
        ],
    )
    text = (
        HEAD + "model: models/mine\ninput:\n  rules:\n    - {category: unsafe, action: block}\n"
        "    - {category: toxicity, action: log}\n    - {category: pii, action: redact}\n"
        "output:\n  rules:\n    - {category: harmful_response, action: block}\n"
        "    - {category: unsafe, threshold: 0.2, action: log}\n    - {category: hate, action: block}\n"
    )
    policy = load_policy(write(tmp_path, text))
    assert policy.model == str(tmp_path / "models" / "mine")  # relative to the policy file
    assert [r.threshold for r in policy.input.rules] == [0.73, 0.61, None]
    assert [r.threshold for r in policy.output.rules] == [DEFAULT_THRESHOLD, 0.2, 0.35]  # per-stage calibration
    labels = model_labels(policy.model)
    assert labels is not None and labels["toxicity"].stages == ("input",)

    err = load_error(
        tmp_path, HEAD + "model: models/mine\ninput:\n  rules:\n    - {category: violence, action: block}\n"
    )
    assert err.field == "input.rules[0].category" and "not scored on the input stage" in err.message
    err = load_error(tmp_path, HEAD + "model: models/mine\ninput:\n  rules:\n    - {category: toxicty, action: log}\n")
    assert (err.line, err.suggestion) == (6, "toxicity") and "unknown category" in err.message
    err = load_error(
        tmp_path, HEAD + "model: models/mine\noutput:\n  rules:\n    - {category: toxicity, action: log}\n"
    )
    assert "not scored on the output stage" in err.message


def test_without_labels_json_the_taxonomy_and_default_threshold_apply(tmp_path: Path) -> None:
    make_model(tmp_path / "bare", [])
    (tmp_path / "bare" / "labels.json").unlink()
    assert model_labels(str(tmp_path / "bare")) is None
    policy = load_policy(write(tmp_path, HEAD + "output:\n  rules:\n    - {category: dna_follows, action: log}\n"))
    assert policy.output.rules[0].threshold == calibrated("dna_follows")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "invalid JSON"),
        ('{"labels": 3}', "expected"),
        ('{"labels": [{"id": "x", "threshold": 7}]}', "less than"),
        ('{"labels": [{"id": "x", "stages": ["both"]}]}', "input"),
    ],
)
def test_bad_labels_json_is_a_policy_error_naming_it(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "labels.json").write_text(content, encoding="utf-8")
    err = load_error(tmp_path, HEAD + "model: ./m\n")
    assert err.file == str(tmp_path / "m" / "labels.json") and words in err.message


def test_model_folder_must_exist_with_labels(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "model: ./nowhere\n")
    assert (err.field, err.line) == ("model", 3) and "labels.json" in err.message


# ------------------------------------------------------------------------------------------ hot reload


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def edit(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))  # coarse-mtime file systems


def test_reload_edit_break_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nname: v1\nextends: default\n")
    clock = Clock()
    reloader = PolicyReloader(path, interval=0.5, clock=clock)
    first = reloader.current()
    assert first.name == "v1"

    edit(path, "version: 1\nname: v2\nextends: default\n")
    assert reloader.current() is first  # not before the interval has passed
    clock.now += 0.6
    with capture_logs() as logs:
        second = reloader.current()
    assert second.name == "v2"
    assert logs == [
        {
            "event": "guardrail.policy_reloaded",
            "log_level": "info",
            "name": "v2",
            "hash": second.hash,
            "file": str(path),
        }
    ]

    edit(path, "version: 1\nname: v3\nextends: default\ninput: {scope: everything}\n")
    clock.now += 0.6
    with capture_logs() as logs:
        assert reloader.current() is second
        clock.now += 0.6
        assert reloader.current() is second  # logged once per broken version, not every interval
    assert len(logs) == 1
    (event,) = logs
    assert event["event"] == "guardrail.policy_reload_failed" and event["log_level"] == "warning"
    assert (event["file"], event["line"], event["field"]) == (str(path), 4, "input.scope")
    assert "everything" in event["error"]

    edit(path, "version: 1\nname: v4\nextends: default\ninput: {scope: all}\n")
    clock.now += 0.6
    fixed = reloader.current()
    assert fixed.name == "v4" and fixed.input.scope == "all"
    clock.now += 0.6
    assert reloader.current() is fixed  # unchanged files: no reload


def test_reload_watches_the_whole_extends_chain_and_deleted_files(tmp_path: Path) -> None:
    base = write(tmp_path, "version: 1\nname: base\ntimeout_ms: 100\n", "base.yaml")
    path = write(tmp_path, "version: 1\nname: child\nextends: base.yaml\n")
    reloader = PolicyReloader(path, interval=0)
    assert reloader.current().timeout_ms == 100
    edit(base, "version: 1\nname: base\ntimeout_ms: 200\n")
    assert reloader.current().timeout_ms == 200
    base.unlink()
    with capture_logs() as logs:
        assert reloader.current().timeout_ms == 200
    assert logs[0]["event"] == "guardrail.policy_reload_failed"
    # the deleted parent is named, at the extends line of the file that needs it
    assert (logs[0]["file"], logs[0]["line"], logs[0]["field"]) == (str(path), 3, "extends")
    assert str(base) in logs[0]["error"] and "not found" in logs[0]["error"]


def test_reload_really_waits_for_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nname: a\n")
    reloader = PolicyReloader(path, interval=0.3)
    edit(path, "version: 1\nname: b\n")
    assert reloader.current().name == "a"
    threading.Event().wait(0.35)
    assert reloader.current().name == "b"


def test_reload_under_concurrent_readers(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nname: n0\n")
    reloader = PolicyReloader(path, interval=0)
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(reloader.current().name)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(1, 20):
        edit(path, f"version: 1\nname: n{i}\n" if i % 3 else "version: 1\nname: [broken\n")
    stop.set()
    for t in threads:
        t.join()
    assert seen and all(name.startswith("n") for name in seen)


def test_initial_broken_file_raises(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        PolicyReloader(write(tmp_path, "version: 3\n"))


# -------------------------------------------------------------------------------------- property tests

KEYS = [
    "version",
    "name",
    "extends",
    "input",
    "output",
    "rules",
    "category",
    "threshold",
    "action",
    "scope",
    "mode",
    "entities",
    "message",
    "stream",
    "on_block",
    "respond",
    "audit",
    "log_text",
    "model",
    "fail_mode",
    "timeout_ms",
]
WORDS = [
    "default",
    "strict",
    "block",
    "redact",
    "rewrite",
    "log",
    "pii",
    "unsafe",
    "hate",
    "email",
    "shadow",
    "raise",
    "all_user",
    "1",
    "0.5",
    "../x.yaml",
    "p.yaml",
    "/dev/null",
    "~",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True),
    st.sampled_from(WORDS),
    st.text(max_size=8),
)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)
policy_like = st.fixed_dictionaries(
    {"version": st.sampled_from([1, 1, 1, 2, "1"])},
    optional={k: structures for k in ("name", "extends", "input", "output", "on_block", "audit", "mode", "model")},
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def only_policy_errors(load: Any) -> None:
    with contextlib.suppress(PolicyError):
        assert isinstance(load(), Policy)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_raises_only_policy_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    only_policy_errors(lambda: load_policy(path))


@FUZZ
@given(data=st.one_of(structures, policy_like))
def test_random_structures_raise_only_policy_error(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    only_policy_errors(lambda: load_policy(path))
    if isinstance(data, dict):
        only_policy_errors(lambda: load_policy(data))


@FUZZ
@given(
    name=st.sampled_from(BUNDLED_POLICIES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "dup_line", "swap_lines", "replace"]),
            st.integers(0, 10**6),
            st.integers(0, 40),
            st.sampled_from(WORDS + KEYS + [":", "-", " ", "\n", "  ", "{", "[", "&a", "*a", "'", '"', "\t", "#"]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_bundled_files_raise_only_policy_error(
    tmp_path: Path, name: str, edits: list[tuple[str, int, int, str]]
) -> None:
    text = (bundled_policy_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    for op, pos, size, word in edits:
        pos %= len(text) + 1
        lines = text.split("\n")
        i, j = pos % len(lines), (pos + size) % len(lines)
        if op == "delete":
            text = text[:pos] + text[pos + size :]
        elif op == "insert":
            text = text[:pos] + word + text[pos:]
        elif op == "dup_line":
            text = "\n".join(lines[: i + 1] + lines[i:])
        elif op == "swap_lines":
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            text = text[:pos] + word + text[pos + max(size, 1) :]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    only_policy_errors(lambda: load_policy(path))


def test_a_child_that_switches_unsupported_language_to_log_still_loads(tmp_path: Path) -> None:
    # the parent's message is inherited; it means nothing under log, and must not stop the child loading
    (tmp_path / "parent.yaml").write_text(
        "version: 1\nname: parent\nunsupported_language: {action: block, message: Please write in English.}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "version: 1\nname: child\nextends: ./parent.yaml\nunsupported_language:\n  action: log\n"
    )
    assert load_policy(tmp_path / "child.yaml").unsupported_language.action == "log"


def _expert_policy(tmp_path: Path, path: str) -> Path:
    """A policy file whose second expert (line 7) is imported from ``path``."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "version: 1\nname: p\nextends: default\nclassifiers:\n  experts:\n"
        "    - {name: bundled, type: model}\n"
        f"    - {{name: mine, type: import, path: '{path}'}}\n",
        encoding="utf-8",
    )
    return f


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, init: str) -> None:
    """A package ``name`` on sys.path whose ``__init__`` is ``init``, with a ``safety.make`` factory."""
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(init, encoding="utf-8")
    (pkg / "safety.py").write_text("def make(**kw): ...\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_imported_expert_whose_module_cannot_be_found_is_an_error_at_its_line(tmp_path: Path) -> None:
    # `guardrail policy validate` said ok, and the first check failed with "cannot import" and no file or line
    f = _expert_policy(tmp_path, "mycompany_nowhere.safety:make_classifier")
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    e = err.value
    assert e.file == str(f) and e.line == 7 and e.field == "classifiers.experts[1].path"
    assert "mycompany_nowhere.safety" in str(e)


def test_an_error_in_an_extending_file_names_the_rule_as_that_file_numbers_it(tmp_path: Path) -> None:
    # the child's only rule was reported as input.rules[14]: its place in the merged list, not in the file
    f = tmp_path / "child.yaml"
    f.write_text(
        "version: 1\nname: c\nextends: default\ninput:\n  rules:\n    - {category: unsafe, action: block}\n"
        "    - {category: unsafee, action: block}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    assert (err.value.file, err.value.line, err.value.field) == (str(f), 7, "input.rules[1].category")


def test_an_imported_expert_from_a_module_already_loaded_without_a_spec_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a module that is there but has no import spec (a script's __main__, a module made at run time) imports fine
    # (importlib.import_module returns it); the load-time check must not call it missing
    import sys
    import types

    mod = types.ModuleType("made_at_run_time_expert")
    mod.__spec__ = None
    monkeypatch.setitem(sys.modules, "made_at_run_time_expert", mod)
    f = _expert_policy(tmp_path, "made_at_run_time_expert:make")
    assert [e.name for e in load_policy(f).classifiers.experts] == ["bundled", "mine"]


def test_an_imported_expert_whose_package_fails_to_import_is_a_policy_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # finding `brokenpkg.safety` imports `brokenpkg`: an exception there (not an ImportError) escaped load_policy,
    # and `guardrail policy validate` ended in a traceback
    _package(tmp_path, monkeypatch, "brokenpkg_for_review", "raise RuntimeError('boom at import')\n")
    f = _expert_policy(tmp_path, "brokenpkg_for_review.safety:make")
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    e = err.value
    assert (e.file, e.line, e.field) == (str(f), 7, "classifiers.experts[1].path")
    assert "boom at import" in str(e)


@pytest.mark.parametrize("path", [":Factory", "json:", " :Factory"])
def test_an_imported_expert_path_without_a_module_or_a_factory_is_a_policy_error_at_its_line(
    tmp_path: Path, path: str
) -> None:
    # `:Factory` skipped the load-time check (no module to look for) and failed at the first check with no line
    # ("Empty module name"); `json:` named no factory (getattr(json, "") at the first check)
    f = _expert_policy(tmp_path, path)
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    e = err.value
    assert (e.file, e.line, e.field) == (str(f), 7, "classifiers.experts[1].path")
    assert "package.module:Factory" in str(e)


def test_an_imported_expert_whose_package_misses_a_dependency_names_the_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the package is there; what is missing is what its __init__ imports: "no module 'pkg.safety' here" sent the
    # reader looking for the wrong thing
    _package(tmp_path, monkeypatch, "needs_a_dep_for_review", "import no_such_dependency_for_review\n")
    f = _expert_policy(tmp_path, "needs_a_dep_for_review.safety:make")
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    assert (err.value.line, err.value.field) == (7, "classifiers.experts[1].path")
    assert "no_such_dependency_for_review" in str(err.value)


def test_an_imported_expert_whose_package_raises_a_plain_import_error_names_that_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a package that says what it needs (`raise ImportError("... needs torch")`, a bare ImportError whose name is
    # None) is there: "no module 'pkg.safety' here (is its package installed?)" hid its own message
    pkg = tmp_path / "says_what_it_needs_for_review"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('this package needs torch: pip install it[torch]')\n")
    (pkg / "safety.py").write_text("def make(**kw): ...\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = _expert_policy(tmp_path, "says_what_it_needs_for_review.safety:make")
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    assert (err.value.line, err.value.field) == (7, "classifiers.experts[1].path")
    assert "needs torch" in str(err.value) and "no module" not in str(err.value)
    # a package that is not installed at all is still "not here"
    f.write_text(f.read_text().replace("says_what_it_needs_for_review", "not_installed_for_review"))
    with pytest.raises(PolicyError, match=r"no module 'not_installed_for_review\.safety' here"):
        load_policy(f)
