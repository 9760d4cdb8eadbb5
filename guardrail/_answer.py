"""An answer given as messages (``Guard.check_output(messages)``), masked where its personal data sits.

A redaction rule on the output stage finds personal data in the answer's content and in what it does besides (tool
and function call arguments, refusal, audio transcript, reasoning, content parts read besides the text:
``guardrail.answer_actions``). The content is masked as any text is; the rest cannot be carried by a Decision's text,
so the Decision carries the answer's messages with each value replaced by its placeholder where it sits
(``Decision.messages``), numbered with the content's. A value written there in a form a plain replacement does not
reach (JSON-escaped, cut by markup) would still be sent: then the answer is blocked instead, never let through
unmasked. Apart from ``guardrail._decide`` so that step reads whole.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from guardrail.answer_actions import ACTION_FIELDS, PROVIDER_FIELDS, _get, mask_actions, unmasked
from guardrail.classifiers.patterns import Span
from guardrail.decision import Action, RuleAction
from guardrail.messages import _NAME_SEPARATORS, replace_texts
from guardrail.rules import Verdict

if TYPE_CHECKING:
    from guardrail._decide import Pending

__all__ = ["masked_answer"]

UNMASKABLE = "personal data in the answer's tool calls could not be masked where it sits: blocked"
# what a message does besides its text (``answer_actions.actions_text``): kept from a message object of no known kind,
# whose copy (``messages.replace_texts``) holds only its role and content
ACTIONS = (*ACTION_FIELDS, "annotations", PROVIDER_FIELDS)


def _plain(obj: Any) -> Any:
    """A copy of ``obj`` as plain dicts and lists (pydantic models dumped, other objects read by their attributes),
    so that masking edits the copy, never the caller's objects, and reaches calls given as objects."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj] if isinstance(obj, list) else tuple(_plain(v) for v in obj)
    if obj is None or isinstance(obj, (str, bytes, int, float, Enum)):
        return obj
    if hasattr(obj, "model_dump"):
        return _plain(obj.model_dump(exclude_none=True))
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return copy.deepcopy(obj)


def _name_unmasked(message: dict[str, Any], entities: frozenset[str]) -> bool:
    """Whether a message's name (read beside its text, its separators as spaces) still holds personal data."""
    from guardrail.classifiers.patterns import find_entities  # as answer_actions.unmasked: only when asked

    name = message.get("name")
    if not isinstance(name, str) or not name:
        return False
    return any(find_entities(n, entities) for n in (name, _NAME_SEPARATORS.sub(" ", name)))


def masked_answer(pending: Pending, result: Verdict, extra_spans: Sequence[Sequence[Span]]) -> Verdict:
    """``result`` for the output stage: a redaction that reached the answer's calls puts the masked messages on
    ``pending.answer``; one that cannot be made where the value sits becomes a block."""
    payload, ex = pending.payload, pending.extracted
    if pending.stage != "output" or payload is None or ex is None or result.action is not Action.REWRITE:
        return result
    if not result.redactions or not any(extra_spans):
        return result
    wanted = frozenset(e for f in result.findings if f.action is RuleAction.REDACT and not f.shadow for e in f.entities)
    has_content = bool(ex.locations) and ex.locations[0][0] >= 0  # an answer that only calls a tool has none
    shape = ex if has_content else replace(ex, texts=(), locations=())
    given = [payload] if isinstance(payload, Mapping) else list(payload)  # one message given alone is one message
    messages = [_plain(m) for m in replace_texts(given, shape, result.texts if has_content else ())]
    for m, original in zip(messages, given, strict=True):
        if not isinstance(original, Mapping) and not hasattr(original, "model_dump"):
            m.update({k: _plain(v) for k in ACTIONS if (v := _get(original, k)) is not None and k not in m})
    for m in messages:
        mask_actions(m, result.redactions)
    if any(unmasked(m, wanted) or _name_unmasked(m, wanted) for m in messages):
        message = pending.policy.on_block.message
        pending.notes.append(UNMASKABLE)
        return replace(result, action=Action.BLOCK, texts=(message,), message=message, redactions={})
    pending.answer = tuple(messages)
    return result
