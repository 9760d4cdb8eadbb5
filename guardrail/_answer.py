"""An answer given as messages (``Guard.check_output(messages)``), masked where its personal data sits.

A redaction rule on the output stage finds personal data in the answer's content and in what it does besides (tool
and function call arguments, refusal, audio transcript, reasoning: ``guardrail.answer_actions``). The content is
masked as any text is; the rest cannot be carried by a Decision's text, so the Decision carries the answer's messages
with each value replaced by its placeholder where it sits (``Decision.messages``), numbered with the content's. A
value written there in a form a plain replacement does not reach (JSON-escaped, cut by markup) would still be sent:
then the answer is blocked instead, never let through unmasked. Apart from ``guardrail._decide`` so that step reads
whole.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING

from guardrail.answer_actions import mask_actions, unmasked
from guardrail.decision import Action, RuleAction
from guardrail.messages import replace_texts
from guardrail.rules import Verdict

if TYPE_CHECKING:
    from guardrail._decide import Pending

__all__ = ["masked_answer"]

UNMASKABLE = "personal data in the answer's tool calls could not be masked where it sits: blocked"


def masked_answer(pending: Pending, result: Verdict) -> Verdict:
    """``result`` for the output stage: a redaction that reached the answer's calls puts the masked messages on
    ``pending.answer``; one that cannot be made where the value sits becomes a block."""
    payload, ex = pending.payload, pending.extracted
    if pending.stage != "output" or payload is None or ex is None or result.action is not Action.REWRITE:
        return result
    if not result.redactions or not any(pending.extra_spans):
        return result
    wanted = frozenset(e for f in result.findings if f.action is RuleAction.REDACT and not f.shadow for e in f.entities)
    has_content = bool(ex.locations) and ex.locations[0][0] >= 0  # an answer that only calls a tool has none
    shape = ex if has_content else replace(ex, texts=(), locations=())
    messages = copy.deepcopy(replace_texts(payload, shape, result.texts if has_content else ()))
    for m in messages:
        mask_actions(m, result.redactions)
    if any(unmasked(m, wanted) for m in messages):
        message = pending.policy.on_block.message
        pending.notes.append(UNMASKABLE)
        return replace(result, action=Action.BLOCK, texts=(message,), message=message, redactions={})
    pending.answer = tuple(messages)
    return result
