"""A policy's rules against the classifiers that will score them, checked when a Guard takes the policy (at
construction and on each hot reload): every category a rule enforces, and every category it ``requires``, must be
scored on that stage, and ``input.data_categories`` must name categories the input stage knows. A typo or a
category the model scores only on the other stage fails closed here, with the rule's field, instead of a rule that
never fires. The loader checks the same against the model folder's heads (``policy validate``); this is the check
against the classifiers actually in use (an ensemble, a judge, a custom classifier).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from guardrail._context import warn_if_context_unread
from guardrail._shared_models import stage_labels
from guardrail.classifiers.base import Classifier
from guardrail.decision import RuleAction
from guardrail.errors import PolicyError
from guardrail.policy import Policy
from guardrail.taxonomy import Stage, stage_ids

__all__ = ["check_coverage"]


def check_coverage(policy: Policy, classifiers: Callable[[Policy], tuple[Classifier, ...]]) -> None:
    """Every category a policy enforces must be scored by some classifier on that stage (fail
    closed on typos, and on a category the model scores only on the other stage)."""
    clfs = classifiers(policy)
    stages: tuple[Stage, ...] = ("input", "output")
    for stage in stages:
        labels: set[str] = set()
        for clf in clfs:
            labels |= stage_labels(clf, stage)
        for i, rule in enumerate(policy.rules(stage)):
            if rule.action is not RuleAction.REDACT and not rule.is_match and rule.category not in labels:
                raise PolicyError(
                    f"category {rule.category!r} is not scored on the {stage} stage by the classifier(s) "
                    f"{', '.join(c.name for c in clfs)}",
                    file=policy.source,
                    field=f"{stage}.rules[{i}].category",
                )
            # a rule that requires a score no classifier gives would never fire, and say nothing
            for other in sorted(set(rule.requires or ()) - labels - set(policy.topics)):
                raise PolicyError(
                    f"rule on {rule.category!r} requires {other!r}, which the classifier(s) "
                    f"{', '.join(c.name for c in clfs)} do not score on the {stage} stage: it could never fire",
                    file=policy.source,
                    field=f"{stage}.rules[{i}].requires",
                )
    known = set(stage_ids("input")) | {r.category for r in policy.input.rules}
    for clf in clfs:
        known |= stage_labels(clf, "input")
    for i, cat in enumerate(policy.input.data_categories):  # a typo here would leave tool results unread
        if cat not in known:
            close = difflib.get_close_matches(cat, sorted(known), 1)
            raise PolicyError(
                f"unknown category {cat!r}",
                file=policy.source,
                field=f"input.data_categories[{i}]",
                suggestion=close[0] if close else None,
            )
    if policy.input.system_context:
        warn_if_context_unread(policy, clfs)
    for routed in policy.routed:  # a routed policy is held to the same check, at load time
        check_coverage(routed, classifiers)
