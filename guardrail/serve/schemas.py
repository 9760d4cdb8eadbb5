"""The service's request bodies (strict pydantic models) and the OpenAI moderation answer.

Requests are validated with ``extra="forbid"``, like policies: a misspelt field is a 422 that names
it, never a check that silently ran on nothing.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from guardrail.decision import Action, Decision, RuleAction
from guardrail.taxonomy import OPENAI_MODERATION_MAP, openai_moderation_scores

__all__ = ["CheckRequest", "ModerationRequest", "moderation_response", "moderation_texts"]

_STRICT = ConfigDict(extra="forbid", frozen=True)
ContextValue = StrictStr | StrictInt | StrictFloat | StrictBool


class CheckRequest(BaseModel):
    """``POST /v1/check``: a prompt (stage ``input``) or a completion (stage ``output``)."""

    model_config = _STRICT
    stage: Literal["input", "output"] = "input"
    text: StrictStr | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    prompt: StrictStr | list[dict[str, Any]] | None = None
    context: dict[str, ContextValue] | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> CheckRequest:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of `text` or `messages`")
        if self.prompt is not None and self.stage != "output":
            raise ValueError("`prompt` is the prompt a completion answers: only for stage `output`")
        return self

    @property
    def payload(self) -> str | list[dict[str, Any]]:
        return self.text if self.text is not None else list(self.messages or ())


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["text"]
    text: StrictStr


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["image_url"]


class ModerationRequest(BaseModel):
    """``POST /v1/moderations``, as OpenAI's API takes it: a string, a list of strings (one result
    each), or a list of text/image parts (one result; images are not scored)."""

    model_config = _STRICT
    input: StrictStr | list[StrictStr] | list[TextPart | ImagePart] = Field(union_mode="left_to_right")
    model: StrictStr | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ModerationRequest:
        if isinstance(self.input, list) and not self.input:
            raise ValueError("`input` is an empty list")
        return self


def moderation_texts(req: ModerationRequest) -> list[str]:
    """The texts to check, one per result."""
    if isinstance(req.input, str):
        return [req.input]
    if all(isinstance(p, str) for p in req.input):
        return [p for p in req.input if isinstance(p, str)]
    return ["\n".join(p.text for p in req.input if isinstance(p, TextPart))]


@functools.lru_cache(maxsize=16)
def _calibrated(model: str) -> dict[str, float]:
    """The input-stage thresholds the policy's model was calibrated with (0.5 when it has none)."""
    from guardrail.policy import DEFAULT_THRESHOLD, model_labels

    try:
        labels = model_labels(model) or {}
    except Exception:
        labels = {}
    return {
        i: (labels[i].threshold_for("input") if i in labels else DEFAULT_THRESHOLD)
        for ids in OPENAI_MODERATION_MAP.values()
        for i in ids
    }


def _result(decision: Decision, model: str) -> dict[str, Any]:
    scores = openai_moderation_scores(decision.scores)
    thresholds = _calibrated(model)
    acted = {f.category for f in decision.findings if not f.shadow and f.action is not RuleAction.REDACT}
    categories = {
        name: any(i in acted or decision.scores.get(i, 0.0) >= thresholds[i] for i in ids)
        for name, ids in OPENAI_MODERATION_MAP.items()
    }
    policy_acted = decision.action is Action.BLOCK or (
        decision.action is Action.REWRITE
        and any(not f.shadow and f.action is RuleAction.REWRITE for f in decision.findings)
    )
    return {
        "flagged": policy_acted or any(categories.values()),
        "categories": categories,
        "category_scores": {k: round(v, 6) for k, v in scores.items()},
        "category_applied_input_types": {name: ["text"] for name in OPENAI_MODERATION_MAP},
        "guardrail": {  # an extension: the policy's own verdict, so a client can see the check ran
            "decision_id": decision.id,
            "action": decision.action.value,
            "categories": [f.category for f in decision.findings if not f.shadow],
            "policy": decision.policy,
            "policy_hash": decision.policy_hash,
            "error": decision.error,
        },
    }


def moderation_response(decisions: list[Decision], model: str | None, policy_model: str) -> dict[str, Any]:
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": model or "omni-moderation-latest",
        "results": [_result(d, policy_model) for d in decisions],
    }
