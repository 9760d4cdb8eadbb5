"""Policy rules applied to scores: the decision logic, pure and synchronous, written once.

Semantics (DESIGN.md §4):

- a rule fires when its score is **at or above** its threshold (a threshold of 1.0 fires only on a
  certain score; 0.0 always fires) and every category in its ``requires`` is at or above the threshold
  given there; a ``redact`` rule fires when the pattern detector finds one of
  its entities;
- every firing rule becomes a Finding, enforced or not;
- ``mode: shadow`` (on the rule or the whole policy) records the finding without enforcing it;
- the strongest enforced action wins: block > rewrite/redact > log > allow; among rewrites, a
  rule's replacement message wins over redaction (the text is replaced whole), and the first such
  rule in policy order gives the message;
- a block's message is the firing rule's ``message`` or else the policy's ``on_block.message``;
- a keyword/pattern rule fires (score 1.0) when one of its entries occurs in the normalised text
  (:mod:`guardrail.custom_rules`); its finding lists the entries found;
- an allowlisted text (an ``allow`` phrase, or an ``allow_patterns`` match, whole) does not fire the
  rule; a shadow ``allowlisted`` finding naming the category and the entry records the exemption for
  the audit log. A keyword rule is exempt when every text it reads is allowlisted; a score rule,
  given each text's own scores (``units``), fires only on a text or reading that is not (an
  answer's tool call beside an allowlisted answer text, a long name beside an allowlisted message).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from guardrail.classifiers.patterns import Span, masked_repeats, redact
from guardrail.custom_rules import allowlist, keyword_matcher, normalise, pattern_matcher
from guardrail.decision import Action, Finding, RuleAction

__all__ = ["ALLOWLISTED", "RuleLike", "Verdict", "evaluate", "strongest"]

ALLOWLISTED = "allowlisted"  # the finding that audits an exemption: entities = (category, allow entry)


class RuleLike(Protocol):
    @property
    def category(self) -> str: ...
    @property
    def threshold(self) -> float | None: ...
    @property
    def action(self) -> RuleAction: ...
    @property
    def message(self) -> str | None: ...
    @property
    def mode(self) -> str: ...
    @property
    def entities(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    findings: tuple[Finding, ...]
    texts: tuple[str, ...]
    message: str | None = None
    redactions: dict[str, str] = field(default_factory=dict)
    shadow_action: Action = Action.ALLOW


def strongest(findings: Sequence[Finding]) -> Action:
    return max((f.action.decision_action for f in findings), key=lambda a: a.strength, default=Action.ALLOW)


Judged = Literal["always", "hits", "never"]  # when an allowlist must exempt a reading too (evaluate's also)
# one scored unit for evaluate's ``units``: the texts (indices into texts + also) an allowlist must exempt for it to be
# exempt, and the unit's own highest score per category
Unit = tuple[tuple[int, ...], Mapping[str, float]]


def evaluate(
    rules: Sequence[RuleLike],
    scores: Mapping[str, float],
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    *,
    shadow_all: bool = False,
    block_message: str = "",
    only: Sequence[frozenset[str] | None] | None = None,
    reserved: frozenset[str] = frozenset(),
    also: Sequence[tuple[str, int, Judged]] = (),
    units: Sequence[Unit] | None = None,
    also_spans: Sequence[Sequence[Span]] = (),
) -> Verdict:
    """Apply ``rules`` to ``scores`` (max over ``texts``); ``spans[i]`` are the PII spans of ``texts[i]``;
    ``only[i]``, when given, the categories ``texts[i]`` may raise (a tool result: injection only), which
    keyword/pattern rules and allowlists respect as the engine's scores already do; ``reserved``, placeholders a
    redaction must not give to these texts' values (the prompt's, on the output stage). ``also``: more readings
    keyword and pattern rules match, each ``(text, owner, judged)`` read as a reading of ``texts[owner]``, and
    ``judged`` says when an allowlist must exempt it too: ``"never"`` for texts joined where a request was split
    (a banned word cut in two is still found; its parts are judged), ``"always"`` for what is scored as a text of
    its own (an answer's tool calls, a long name: an allowlisted answer text must not let its tool call through),
    ``"hits"`` for a message's handle, judged only where the rule's keywords or patterns hit it (a per-user handle
    could never be on an allowlist, but a banned word in it must not ride on an allowlisted message). ``units``,
    when given: each scored text or reading's own scores, so that a score rule's allowlist judges each apart (an
    allowlisted answer text exempts itself, and its tool call fires the rule only on the call's own score; a
    harmless long name no longer undoes an allowlisted message); without them, the rule is exempt only when every
    text is allowlisted. ``also_spans``, when given (one per ``also`` reading): the personal data found in each,
    which fires a redact rule and is numbered with the texts' (the redactions mapping covers both)."""
    findings: list[Finding] = []
    fired: list[tuple[RuleLike, Finding]] = []
    normalised: list[tuple[str, ...]] = []
    owners = (*range(len(texts)), *(o for _, o, _ in also))
    always: Judged = "always"
    judged: tuple[Judged, ...] = (*(always for _ in texts), *(j for _, _, j in also))

    def norm() -> tuple[str, ...]:  # computed once, and only when a custom rule needs it
        if not normalised:
            normalised.append(tuple(normalise(t) for t in (*texts, *(t for t, _, _ in also))))
        return normalised[0]

    def norm_for(category: str, rule: RuleLike | None = None) -> tuple[str, ...]:
        """The normalised texts that may raise ``category``: every reading (no ``rule``: for matching), else those an
        allowlist must exempt for ``rule``."""
        keep = [
            (rule is None or j == "always" or (j == "hits" and bool(_match(rule, (t,)))))
            and (only is None or o >= len(only) or only[o] is None or category in only[o])
            for t, o, j in zip(norm(), owners, judged, strict=True)
        ]
        return tuple(t for t, k in zip(norm(), keep, strict=True) if k)

    for rule in rules:
        shadow = shadow_all or rule.mode == "shadow"
        threshold = 0.5 if rule.threshold is None else float(rule.threshold)
        if rule.action is RuleAction.REDACT:
            allowed = set(rule.entities) if rule.entities else None
            every = (*spans, *also_spans)
            found = sorted({s.entity for ss in every for s in ss if allowed is None or s.entity in allowed})
            if not found:
                continue
            f = Finding(rule.category, 1.0, threshold, rule.action, shadow, tuple(found))
        else:
            requires = getattr(rule, "requires", None)
            if requires and any(scores.get(c, -1.0) < float(t) for c, t in requires.items()):
                continue
            if getattr(rule, "is_match", False):  # keywords/patterns on the normalised text
                hits = _match(rule, norm_for(rule.category))
                if not hits:
                    continue
                score, threshold = 1.0, 1.0
            else:
                got = scores.get(rule.category)
                if got is None or got < threshold:
                    continue
                score, hits = got, ()
            has_allow = getattr(rule, "allow", None) or getattr(rule, "allow_patterns", None)
            if has_allow and units is not None and not getattr(rule, "is_match", False):
                exemption, score = _exempt_units(rule, norm(), units, threshold, score)
            else:
                exemption = _exempt(rule, norm_for(rule.category, rule)) if has_allow else None
            if exemption is not None:  # an allowlisted text: recorded (audited), never acted on
                findings.append(Finding(ALLOWLISTED, float(score), threshold, RuleAction.LOG, True, exemption))
                continue
            f = Finding(rule.category, float(score), threshold, rule.action, shadow, hits)
        findings.append(f)
        fired.append((rule, f))

    enforced = [(r, f) for r, f in fired if not f.shadow]
    action = strongest([f for _, f in enforced])
    shadow_action = strongest([f for f in findings])
    out_texts = tuple(texts)
    message: str | None = None
    redactions: dict[str, str] = {}
    if action is Action.BLOCK:
        message = next((r.message for r, f in enforced if f.action is RuleAction.BLOCK and r.message), block_message)
        out_texts = (message,) if len(texts) <= 1 else (*texts[:-1], message)
    elif action is Action.REWRITE:
        replacement = next((r.message for r, f in enforced if f.action is RuleAction.REWRITE and r.message), None)
        if replacement is not None:
            message = replacement
            out_texts = (replacement,) if len(texts) <= 1 else (*texts[:-1], replacement)
        else:
            wanted = {e for _, f in enforced if f.action is RuleAction.REDACT for e in f.entities}
            # readings of their own (``also_spans``: an answer's tool calls) are numbered with the texts, one value one
            # placeholder; the caller masks them where they sit
            extra = [t for t, _, _ in also] if also_spans else []
            masked, redactions = _redact_all((*texts, *extra), (*spans, *also_spans), wanted, reserved)
            out_texts = masked[: len(texts)]
    return Verdict(action, tuple(findings), out_texts, message, redactions, shadow_action)


def _match(rule: RuleLike, texts: Sequence[str]) -> tuple[str, ...]:
    """The keywords and patterns of ``rule`` found in any of ``texts``, in policy order."""
    found: dict[str, None] = {}
    keywords, patterns = getattr(rule, "keywords", None), getattr(rule, "patterns", None)
    km = keyword_matcher(tuple(keywords), bool(getattr(rule, "word_boundaries", True))) if keywords else None
    pm = pattern_matcher(tuple(patterns)) if patterns else None
    for t in texts:
        for m in (km, pm):
            if m is not None:
                found.update(dict.fromkeys(m.hits(t)))
    return tuple(found)


def _exempt(rule: RuleLike, texts: Sequence[str]) -> tuple[str, ...] | None:
    """``(category, entry)`` when every non-empty text is allowlisted for ``rule``, else None."""
    phrases, patterns = getattr(rule, "allow", None), getattr(rule, "allow_patterns", None)
    if not phrases and not patterns:
        return None
    al = allowlist(tuple(phrases or ()), tuple(patterns or ()))
    entries = [al.exempts(t) for t in texts if t]
    if not entries or any(e is None for e in entries):
        return None
    return (rule.category, str(entries[-1]))


def _exempt_units(
    rule: RuleLike, texts: Sequence[str], units: Sequence[Unit], threshold: float, score: float
) -> tuple[tuple[str, ...] | None, float]:
    """Judged per unit: ``((category, entry), score)`` when every unit whose own score reaches ``threshold`` is
    allowlisted (each text it reads is: empty, or an ``allow`` phrase or ``allow_patterns`` match whole); else
    ``(None, the highest such score of a unit that is not)``, the score the rule fires with."""
    al = allowlist(tuple(getattr(rule, "allow", None) or ()), tuple(getattr(rule, "allow_patterns", None) or ()))
    entry: object = None
    firing = -1.0
    for members, got in units:
        own = got.get(rule.category)
        if own is None or own < threshold:
            continue
        entries = [al.exempts(texts[m]) for m in members if m < len(texts) and texts[m]]
        if entries and all(e is not None for e in entries):
            entry = entries[-1]
        else:
            firing = max(firing, own)
    if firing >= threshold or entry is None:  # a unit that is not allowlisted fires (or no unit explains the score)
        return None, firing if firing >= threshold else score
    return (rule.category, str(entry)), score


def _separator(texts: Sequence[str]) -> str:
    """A line no text holds: texts are redacted joined by it and cut apart at it again. A fixed sentinel could be
    written into a text (a fetched page), which then cut the request at the wrong places: the page's own words became
    the user's message and the user's question was lost (helper-137). A random one cannot be guessed in advance."""
    while True:
        sep = f"\n\ue000{secrets.token_hex(8)}\ue000\n"
        if not any(sep in t for t in texts):
            return sep


def _redact_all(
    texts: Sequence[str], spans: Sequence[Sequence[Span]], wanted: set[str], reserved: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Redact several texts as one, so a value gets one placeholder across the whole request."""
    sep = _separator(texts)
    joined: list[Span] = []
    bounds: list[tuple[int, int]] = []
    offset = 0
    for text, ss in zip(texts, spans, strict=True):
        joined += [Span(s.entity, s.start + offset, s.end + offset, s.value) for s in ss if s.entity in wanted]
        bounds.append((offset, offset + len(text)))
        offset += len(text) + len(sep)
    text = sep.join(texts)  # a name or an address one text says is masked wherever it stands whole in the others
    # a repeat is masked only where it stands inside one text: never across the line that parts two
    inside = [s for s in masked_repeats(text, joined) if any(a <= s.start and s.end <= b for a, b in bounds)]
    red, mapping = redact(text, inside, reserved=reserved)
    parts = tuple(red.split(sep))
    if len(parts) != len(texts):  # cannot happen (no text holds sep, no span crosses it): never send texts shifted
        raise ValueError("redaction moved the boundary between two texts")
    return parts, mapping
