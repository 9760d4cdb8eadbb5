"""Policy evaluation semantics, as properties over arbitrary scores and rule sets."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from guardrail.classifiers.patterns import find_entities
from guardrail.decision import Action, RuleAction
from guardrail.rules import evaluate

CATS = ["unsafe", "jailbreak", "self_harm", "hate", "profanity"]


@dataclass(frozen=True)
class R:
    category: str
    threshold: float | None
    action: RuleAction
    message: str | None = None
    mode: str = "enforce"
    entities: tuple[str, ...] | None = None


rule_st = st.builds(
    R,
    category=st.sampled_from(CATS),
    threshold=st.floats(0, 1),
    action=st.sampled_from([RuleAction.BLOCK, RuleAction.REWRITE, RuleAction.LOG]),
    message=st.sampled_from([None, "replaced"]),
    mode=st.sampled_from(["enforce", "shadow"]),
)
scores_st = st.dictionaries(st.sampled_from(CATS), st.floats(0, 1), min_size=0, max_size=len(CATS))


@given(st.lists(rule_st, max_size=6), scores_st, st.booleans())
def test_findings_are_exactly_the_rules_at_or_over_threshold(
    rules: list[R], scores: dict[str, float], shadow_all: bool
) -> None:
    v = evaluate(rules, scores, ["text"], [()], shadow_all=shadow_all, block_message="no")
    expected = [r for r in rules if r.category in scores and scores[r.category] >= (r.threshold or 0.0)]
    assert [(f.category, f.threshold) for f in v.findings] == [(r.category, r.threshold) for r in expected]
    assert all(f.shadow == (shadow_all or r.mode == "shadow") for f, r in zip(v.findings, expected, strict=True))


@given(st.lists(rule_st, max_size=6), scores_st)
def test_strongest_enforced_action_wins(rules: list[R], scores: dict[str, float]) -> None:
    v = evaluate(rules, scores, ["text"], [()], block_message="no")
    enforced = [f.action.decision_action for f in v.findings if not f.shadow]
    assert v.action.strength == max((a.strength for a in enforced), default=0)
    if v.action is Action.ALLOW or v.action is Action.LOG:
        assert v.texts == ("text",)
    if v.action is Action.BLOCK:
        assert v.texts[-1] in ("no", "replaced")


@given(st.lists(rule_st, max_size=6), scores_st)
def test_policy_wide_shadow_never_changes_the_text(rules: list[R], scores: dict[str, float]) -> None:
    v = evaluate(rules, scores, ["text"], [()], shadow_all=True)
    assert v.action is Action.ALLOW and v.texts == ("text",)
    assert v.shadow_action.strength == max((f.action.decision_action.strength for f in v.findings), default=0)


def test_rewrite_message_beats_redaction() -> None:
    text = "mail bob@example.com"
    rules = [R("pii", None, RuleAction.REDACT), R("self_harm", 0.5, RuleAction.REWRITE, "support")]
    v = evaluate(rules, {"self_harm": 0.9}, [text], [find_entities(text)])
    assert v.action is Action.REWRITE and v.texts == ("support",)


def test_redaction_numbers_placeholders_across_several_texts() -> None:
    texts = ["a@x.io and b@y.io", "again a@x.io"]
    v = evaluate([R("pii", None, RuleAction.REDACT)], {}, texts, [find_entities(t) for t in texts])
    assert v.texts == ("<EMAIL_1> and <EMAIL_2>", "again <EMAIL_1>")
    assert v.redactions == {"<EMAIL_1>": "a@x.io", "<EMAIL_2>": "b@y.io"}


def test_redact_rule_limited_to_its_entities() -> None:
    text = "bob@example.com 192.168.1.20"
    v = evaluate([R("pii", None, RuleAction.REDACT, entities=("ip_address",))], {}, [text], [find_entities(text)])
    assert v.texts == ("bob@example.com <IP_ADDRESS_1>",)


def test_missing_score_never_fires() -> None:
    v = evaluate([R("unsafe", 0.0, RuleAction.BLOCK)], {}, ["x"], [()])
    assert v.action is Action.ALLOW and v.findings == ()
