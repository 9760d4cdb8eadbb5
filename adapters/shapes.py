"""Responses in the client's own types: refusals, re-emitted stream chunks, replaced completion text.

An application that does not catch exceptions must keep working when guardrail steps in, so a
block is answered with an object of exactly the type the client would have returned: an OpenAI
``ChatCompletion`` (or litellm ``ModelResponse``) whose choice has ``finish_reason="content_filter"``
and the policy's message, a chunk with the same for streams, or a Responses API ``Response`` with
``status="incomplete"`` and ``incomplete_details.reason == "content_filter"``.

``flavour`` names the type family: ``"openai"`` (the ``openai`` package's pydantic models) or
``"litellm"`` (``litellm.ModelResponse`` / ``ModelResponseStream``). The modules are imported
inside the functions: by the time one is called, the client that needs it is already loaded.

This module builds chat answers; reading any answer is ``answer_text``'s job and building Responses answers
``response_shapes``'. It re-exports both, so the adapters ask ``shapes`` for all three.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from guardrail.answer_actions import STREAMED
from guardrail.call import CONTENT_FILTER

from .answer_text import (  # re-exported: what an answer says, for the adapters that ask shapes
    _ACTIONS,
    _get,
    _is_message,
    _put,
    action_texts_of,
    actions_text,
    annotation_titles,
    answer_kind,
    blocked_delta,
    content_text,
    item_action_text,
    parts_said,
    texts_of,
)
from .response_shapes import (
    _id,
    _set_response_text,
    refusal_response,
    refusal_response_events,
    response_text,
    text_delta_event,
)

__all__ = [
    "Flavour",
    "action_texts_of",
    "actions_text",
    "annotation_titles",
    "answer_kind",
    "blocked_delta",
    "content_free",
    "content_text",
    "item_action_text",
    "parts_said",
    "refusal_chunks",
    "refusal_completion",
    "refusal_response",
    "refusal_response_events",
    "replace_completion_text",
    "replace_completion_texts",
    "response_text",
    "text_chunk",
    "text_delta_event",
    "texts_of",
]

Flavour = Literal["openai", "litellm"]
T = TypeVar("T")


# ------------------------------------------------------------------------------ chat completions


def refusal_completion(flavour: Flavour, message: str, *, model: str | None, decision_id: str | None = None) -> Any:
    """A complete chat response carrying ``message`` with ``finish_reason="content_filter"``."""
    ident, created, model = _id("chatcmpl", decision_id), int(time.time()), model or "guardrail"
    if flavour == "litellm":
        from . import litellm_offline

        litellm_offline()
        import litellm

        resp = litellm.ModelResponse(
            id=ident,
            created=created,
            model=model,
            choices=[
                litellm.Choices(
                    index=0, finish_reason=CONTENT_FILTER, message=litellm.Message(role="assistant", content=message)
                )
            ],
        )
        resp.usage = litellm.Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
        return resp
    from openai.types.chat import ChatCompletion, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice

    return ChatCompletion(
        id=ident,
        object="chat.completion",
        created=created,
        model=model,
        choices=[
            Choice(
                index=0,
                finish_reason=CONTENT_FILTER,
                message=ChatCompletionMessage(role="assistant", content=message),
            )
        ],
    )


def text_chunk(
    flavour: Flavour,
    template: Any,
    text: str | None,
    *,
    finish_reason: str | None = None,
    role: str | None = None,
    model: str | None = None,
) -> Any:
    """A stream chunk with ``text`` as its delta content; id, model and created come from ``template``."""
    ident = getattr(template, "id", None) or _id("chatcmpl", None)
    created = getattr(template, "created", None) or int(time.time())
    model = getattr(template, "model", None) or model or "guardrail"
    if flavour == "litellm":
        from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

        return ModelResponseStream(
            id=ident,
            created=created,
            model=model,
            choices=[StreamingChoices(index=0, finish_reason=finish_reason, delta=Delta(content=text, role=role))],
        )
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

    return ChatCompletionChunk(
        id=ident,
        object="chat.completion.chunk",
        created=created,
        model=model,
        system_fingerprint=getattr(template, "system_fingerprint", None),
        choices=[Choice(index=0, finish_reason=finish_reason, delta=ChoiceDelta(content=text, role=role))],  # type: ignore[arg-type]
    )


def refusal_chunks(
    flavour: Flavour, message: str, *, model: str | None, template: Any = None, decision_id: str | None = None
) -> list[Any]:
    """The end of a blocked stream: one chunk with the message and ``finish_reason="content_filter"``."""
    if template is None:
        template = _Template(_id("chatcmpl", decision_id), int(time.time()), model or "guardrail")
        return [text_chunk(flavour, template, message, finish_reason=CONTENT_FILTER, role="assistant")]
    return [text_chunk(flavour, template, message, finish_reason=CONTENT_FILTER)]


class _Template:
    def __init__(self, id: str, created: int, model: str) -> None:
        self.id, self.created, self.model = id, created, model


def content_free(chunk: Any) -> Any | None:
    """A copy of ``chunk`` with only what a stream passes on besides its text (``answer_actions.STREAMED``: role, tool
    calls, refusal, audio; the finish reason, usage), or None when nothing of that is in it. Its text goes out apart,
    as checked; every other field of its deltas is dropped: reasoning (read with the text, never streamed) and any
    field guardrail does not read, so no delta field reaches the application unread. Upstream chunks are copied, never
    changed: litellm keeps them for its own logging."""
    choices = getattr(chunk, "choices", None) or []
    keeps = getattr(chunk, "usage", None) is not None or not choices
    for choice in choices:
        delta = getattr(choice, "delta", None)
        if getattr(choice, "finish_reason", None) is not None:
            keeps = True
        if any(getattr(delta, name, None) for name in STREAMED):
            keeps = True
    if not keeps:
        return None
    out = copy.deepcopy(chunk)
    for choice in getattr(out, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        for name in _fields(delta):
            if name not in STREAMED and _get(delta, name) is not None:
                _put(delta, name, None)  # None, not removed: code that reads ``delta.content`` finds it
        if getattr(choice, "logprobs", None) is not None:  # its tokens spell the text, which goes out apart
            choice.logprobs = None
    return out


def _fields(obj: Any) -> list[str]:
    """The fields ``obj`` (a delta: a dict, an SDK model or litellm's) carries: declared ones and extras."""
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        return list(obj)
    names = [*getattr(type(obj), "model_fields", {})]
    return names + [n for n in getattr(obj, "model_extra", None) or {} if n not in names]


def replace_completion_text(result: T, text: str, *, finish_reason: str | None = None, index: int = 0) -> T:
    """A copy of ``result`` whose text is ``text``: a ``str``, an OpenAI-shaped dict, a
    ``ChatCompletion``/``ModelResponse`` (choice ``index``), or a Responses API ``Response``."""
    return replace_completion_texts(
        result, {index: text}, finish_reason={index: finish_reason} if finish_reason else None
    )


def replace_completion_texts(
    result: T, texts: Mapping[int, str], *, finish_reason: Mapping[int, str] | None = None
) -> T:
    """Like :func:`replace_completion_text` for several choices at once (one copy). A replaced choice loses its
    ``logprobs``: their tokens spell the text the model wrote, which is no longer the text shown (a blocked or
    redacted answer would be readable there)."""
    reasons = dict(finish_reason or {})
    if isinstance(result, str):
        return texts.get(0, result)  # type: ignore[return-value]
    out = copy.deepcopy(result)
    if _is_message(out) and 0 in texts:
        _set_message_text(out, texts[0], blocked=reasons.get(0) == CONTENT_FILTER)
        return out
    if isinstance(out, dict):
        for i, text in texts.items():
            if out["choices"][i].get("logprobs") is not None:
                out["choices"][i]["logprobs"] = _emptied(out["choices"][i]["logprobs"])
            if "message" not in out["choices"][i]:  # a legacy text completion
                out["choices"][i]["text"] = text
                if i in reasons:
                    out["choices"][i]["finish_reason"] = reasons[i]
                continue
            message = out["choices"][i]["message"]
            message["content"] = text
            message.pop("parsed", None)  # a structured output parsed from the text that is gone
            message.pop("annotations", None)  # citations into the text that is gone (and their titles)
            if i in reasons:
                out["choices"][i]["finish_reason"] = reasons[i]
                if reasons[i] == CONTENT_FILTER:
                    for name in _ACTIONS:
                        message.pop(name, None)
        return out
    choices = getattr(out, "choices", None)
    if choices is not None:
        for i, text in texts.items():
            if getattr(choices[i], "logprobs", None) is not None:
                choices[i].logprobs = _emptied(choices[i].logprobs)
            if getattr(choices[i], "message", None) is None:  # a legacy text completion
                choices[i].text = text
                if i in reasons:
                    choices[i].finish_reason = reasons[i]
                continue
            choices[i].message.content = text
            for name in ("parsed", "annotations"):  # parsed from, or citing into, the text that is gone
                if getattr(choices[i].message, name, None) is not None:
                    setattr(choices[i].message, name, None)
            if i in reasons:
                choices[i].finish_reason = reasons[i]
                if reasons[i] == CONTENT_FILTER:
                    for name in _ACTIONS:
                        if getattr(choices[i].message, name, None) is not None:
                            setattr(choices[i].message, name, None)
        return out
    if isinstance(getattr(out, "output", None), list):
        _set_response_text(out, texts.get(0, ""), blocked=reasons.get(0) == CONTENT_FILTER)
        return out
    raise TypeError(f"cannot replace the text of a {type(result).__name__} (expected a chat completion or response)")


def _emptied(logprobs: Any) -> Any:
    """``logprobs`` (a copy's) with every per-token list emptied, in its own type: an application that asked for
    them still finds ``.content``, but no token of a text that is no longer the one shown."""
    if isinstance(logprobs, dict):
        return {k: [] if isinstance(v, list) else v for k, v in logprobs.items()}
    for name in ("content", "refusal", "tokens", "token_logprobs", "top_logprobs", "text_offset"):
        if isinstance(getattr(logprobs, name, None), list):
            setattr(logprobs, name, [])
    return logprobs


# what a blocked answer must not carry on: the actions (tool and function calls) and the audio of the
# answer that was blocked; the refusal replaces all of it
def _text_part(message: Any, text: str) -> Any:
    """A text part of the message's own type family (a dict for a dict)."""
    if isinstance(message, dict):
        return {"type": "text", "text": text}
    if getattr(message, "status", None) is not None and hasattr(message, "role"):  # an OpenAI Responses item
        from openai.types.responses import ResponseOutputText

        return ResponseOutputText(type="output_text", text=text, annotations=[])
    try:
        from anthropic.types import TextBlock  # type: ignore[import-not-found, unused-ignore]

        return TextBlock(type="text", text=text)
    except ImportError:  # pragma: no cover - an Anthropic Message without the anthropic package
        return {"type": "text", "text": text}


def _set_message_text(message: Any, text: str, *, blocked: bool) -> None:
    """Put ``text`` in a message's first text part, in place, and drop its other text parts: the order of the
    other parts stays (an agent sends its thinking back first). A blocked message keeps only that text part."""
    parts = list(_get(message, "content"))
    first = next((p for p in parts if isinstance(_get(p, "text"), str)), None)  # what content_text reads
    if first is None:
        first = _text_part(message, text)
        parts.insert(0, first)
    _put(first, "text", text)
    if isinstance(first, dict):
        first.pop("citations", None)  # they pointed into the text that is gone
    elif getattr(first, "citations", None) is not None:
        first.citations = None
    kept = [p for p in parts if p is first or (not blocked and not isinstance(_get(p, "text"), str))]
    _put(message, "content", kept)
    if blocked and (isinstance(message, dict) or hasattr(message, "stop_reason")):
        _put(message, "stop_reason", "refusal")
