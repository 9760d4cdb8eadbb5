"""Responses in the client's own types: refusals, re-emitted stream chunks, replaced completion text.

An application that does not catch exceptions must keep working when guardrail steps in, so a
block is answered with an object of exactly the type the client would have returned: an OpenAI
``ChatCompletion`` (or litellm ``ModelResponse``) whose choice has ``finish_reason="content_filter"``
and the policy's message, a chunk with the same for streams, or a Responses API ``Response`` with
``status="incomplete"`` and ``incomplete_details.reason == "content_filter"``.

``flavour`` names the type family: ``"openai"`` (the ``openai`` package's pydantic models) or
``"litellm"`` (``litellm.ModelResponse`` / ``ModelResponseStream``). The modules are imported
inside the functions: by the time one is called, the client that needs it is already loaded.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from guardrail.call import CONTENT_FILTER

__all__ = [
    "Flavour",
    "action_texts_of",
    "actions_text",
    "answer_kind",
    "blocked_delta",
    "content_free",
    "content_text",
    "item_action_text",
    "refusal_chunks",
    "refusal_completion",
    "refusal_response",
    "refusal_response_events",
    "replace_completion_text",
    "replace_completion_texts",
    "text_chunk",
    "text_delta_event",
    "texts_of",
]

Flavour = Literal["openai", "litellm"]
T = TypeVar("T")


def _id(prefix: str, decision_id: str | None) -> str:
    return f"{prefix}-guardrail-{decision_id or uuid.uuid4().hex}"


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
    """A copy of ``chunk`` without its text content, or None when nothing else (role, tool calls,
    finish reason, usage, refusal) is left in it. Upstream chunks are copied, never changed:
    litellm keeps them for its own logging."""
    choices = getattr(chunk, "choices", None) or []
    keeps = getattr(chunk, "usage", None) is not None or not choices
    for choice in choices:
        delta = getattr(choice, "delta", None)
        if getattr(choice, "finish_reason", None) is not None:
            keeps = True
        for name in ("role", "tool_calls", "function_call", "refusal", "audio"):
            if getattr(delta, name, None):
                keeps = True
    if not keeps:
        return None
    out = copy.deepcopy(chunk)
    for choice in getattr(out, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        if delta is not None and getattr(delta, "content", None) is not None:
            delta.content = None
    return out


def replace_completion_text(result: T, text: str, *, finish_reason: str | None = None, index: int = 0) -> T:
    """A copy of ``result`` whose text is ``text``: a ``str``, an OpenAI-shaped dict, a
    ``ChatCompletion``/``ModelResponse`` (choice ``index``), or a Responses API ``Response``."""
    return replace_completion_texts(
        result, {index: text}, finish_reason={index: finish_reason} if finish_reason else None
    )


def replace_completion_texts(
    result: T, texts: Mapping[int, str], *, finish_reason: Mapping[int, str] | None = None
) -> T:
    """Like :func:`replace_completion_text` for several choices at once (one copy)."""
    reasons = dict(finish_reason or {})
    if isinstance(result, str):
        return texts.get(0, result)  # type: ignore[return-value]
    out = copy.deepcopy(result)
    if _is_message(out) and 0 in texts:
        _set_message_text(out, texts[0], blocked=reasons.get(0) == CONTENT_FILTER)
        return out
    if isinstance(out, dict):
        for i, text in texts.items():
            if "message" not in out["choices"][i]:  # a legacy text completion
                out["choices"][i]["text"] = text
                if i in reasons:
                    out["choices"][i]["finish_reason"] = reasons[i]
                continue
            message = out["choices"][i]["message"]
            message["content"] = text
            message.pop("parsed", None)  # a structured output parsed from the text that is gone
            if i in reasons:
                out["choices"][i]["finish_reason"] = reasons[i]
                if reasons[i] == CONTENT_FILTER:
                    for name in _ACTIONS:
                        message.pop(name, None)
        return out
    choices = getattr(out, "choices", None)
    if choices is not None:
        for i, text in texts.items():
            if getattr(choices[i], "message", None) is None:  # a legacy text completion
                choices[i].text = text
                if i in reasons:
                    choices[i].finish_reason = reasons[i]
                continue
            choices[i].message.content = text
            if getattr(choices[i].message, "parsed", None) is not None:  # parsed from the text that is gone
                choices[i].message.parsed = None
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


# what a blocked answer must not carry on: the actions (tool and function calls) and the audio of the
# answer that was blocked; the refusal replaces all of it
_ACTIONS = ("tool_calls", "function_call", "audio", "refusal", "reasoning_content", "thinking_blocks")


def blocked_delta(chunk: Any) -> bool:
    """Whether a text-free stream chunk carries part of the answer's actions (a tool-call or function-call
    delta, audio): a blocked stream drops such chunks instead of sending them before its refusal."""
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        if any(getattr(delta, name, None) for name in _ACTIONS):
            return True
    return False


def texts_of(result: Any) -> list[str | None]:
    """The text of a response, per choice: the one reading of "the text of an answer" for every
    integration. A ``str``; a chat completion (``ChatCompletion``, litellm ``ModelResponse``, or the
    same as a dict): each choice's ``message.content`` (``None`` where a choice has no text, e.g. tool
    calls); a Responses API ``Response``: all its ``output_text`` as one. Anything else: ``[]``."""
    if isinstance(result, str):
        return [result]
    choices = _get(result, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str):
        return [_choice_text(ch) for ch in choices]
    if isinstance(_get(result, "output"), list):
        return [response_text(result)]
    if _is_message(result):
        return [content_text(_get(result, "content"))]
    return []


def answer_kind(result: Any) -> Literal["text", "chat", "responses", "message"] | None:
    """Which answer shape ``result`` is, when guardrail can read all of its text and actions; None otherwise (a
    dict shaped like a Responses answer, a choice with neither a message nor a text, a message whose content
    is not text or parts ...). Callers that cannot read an answer must refuse it, not pass it on."""
    if isinstance(result, str):
        return "text"
    choices = _get(result, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str):
        return "chat" if choices and all(_readable_choice(ch) for ch in choices) else None
    if not isinstance(result, Mapping) and isinstance(getattr(result, "output", None), list):
        return "responses"
    if _is_message(result) and all(not isinstance(p, str) and _get(p, "type") for p in _get(result, "content")):
        return "message"
    return None


def _readable_choice(choice: Any) -> bool:
    if isinstance(_get(choice, "text"), str) and _get(choice, "message") is None:  # a legacy text completion
        return True
    message = _get(choice, "message")
    if message is None or isinstance(message, str):
        return False
    content = _get(message, "content")
    return (
        content is None
        or isinstance(content, str)
        or (isinstance(content, Sequence) and all(not isinstance(p, str) and _get(p, "type") for p in content))
    )


def _is_message(result: Any) -> bool:
    """An Anthropic Messages API answer (what LiteLLM's proxy returns on ``/v1/messages``)."""
    return _get(result, "type") == "message" and isinstance(_get(result, "content"), list)


def _message_actions(result: Any) -> str | None:
    """What a Messages API answer does besides its text: its tool calls (name and input as JSON) and its
    thinking, as one text."""
    found: list[str] = []
    for part in _get(result, "content"):
        kind = _get(part, "type")
        if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            args = _get(part, "input")
            found.append(f"{_get(part, 'name')}: " + unescape_json(json.dumps(args, ensure_ascii=False, default=str)))
        elif kind == "thinking" and isinstance(thought := _get(part, "thinking"), str):
            found.append(thought)
        elif kind == "refusal" and isinstance(refused := _get(part, "refusal"), str):
            found.append(refused)
    return _joined(found)


def _choice_text(choice: Any) -> str | None:
    """A chat choice's ``message.content``, or a legacy text completion's ``text``."""
    message = _get(choice, "message")
    if message is None and isinstance(text := _get(choice, "text"), str):
        return text
    return content_text(_get(message, "content"))


def action_texts_of(result: Any) -> list[str | None]:
    """What an answer says besides its text, per choice (aligned with :func:`texts_of`): its tool and
    function calls (name and arguments), its refusal and its audio transcript, as one text; None where there
    is none. Checked apart from the text: a block stops the whole choice, actions included."""
    if isinstance(result, str):
        return [None]
    choices = _get(result, "choices")
    if isinstance(choices, Sequence) and not isinstance(choices, str):
        return [unescape_json(a.strip()) or None for a in (actions_text(_get(ch, "message")) for ch in choices)]
    output = _get(result, "output")
    if isinstance(output, list):
        found: list[str] = []
        for item in output:
            kind = _get(item, "type")
            if kind == "message":
                found += [r for part in _get(item, "content") or [] if isinstance(r := _get(part, "refusal"), str)]
            elif (text := item_action_text(item)) is not None:
                found.append(text)
        return [_joined(found)]
    if _is_message(result):
        return [_message_actions(result)]
    return []


# an item's plumbing, and what the model did not write: images (base64), retrieved documents, tool listings
_ITEM_PLUMBING = frozenset(
    {"id", "call_id", "status", "type", "name", "encrypted_content", "result", "results", "partial_image_b64",
     "tools", "image_url", "outputs"}
)  # fmt: skip


def item_action_text(item: Any) -> str | None:
    """What a non-message Responses output item says, as text to check: a reasoning item's summary and text,
    any tool call's own content (function, custom, shell, computer, patch, MCP ...) as JSON without its plumbing
    or blobs, escapes decoded. None for a message (its text is checked as text) or an empty item."""
    kind = _get(item, "type")
    if kind == "message":
        return None
    if kind == "reasoning":
        parts = [*(_get(item, "summary") or []), *(_get(item, "content") or [])]
        return _joined([t for part in parts if isinstance(t := _get(part, "text"), str)])
    data = item.model_dump() if hasattr(item, "model_dump") else dict(item) if isinstance(item, Mapping) else {}
    kept = {k: v for k, v in data.items() if k not in _ITEM_PLUMBING and v not in (None, "", [], {})}
    if not kept:
        return None
    # escapes are decoded in each string before it is written out: written first, an escape inside a string value
    # (arguments are a JSON string) gets its backslash escaped too, and "leak\\u0040corp.example" stayed unread
    return f"{_get(item, 'name') or kind}: " + json.dumps(_unescaped(kept), ensure_ascii=False, default=str)


def _unescaped(value: Any) -> Any:
    if isinstance(value, str):
        return unescape_json(value)
    if isinstance(value, dict):
        return {k: _unescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    return value


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def unescape_json(text: str) -> str:
    """``text`` with JSON ``\\uXXXX`` escapes decoded: what an application reads out of tool arguments,
    where an escaped word would otherwise slip past the check."""
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\u" in text else text


def actions_text(message: Any) -> str:
    """What a chat message, or one stream delta, does besides its text: each tool or function call as
    ``"\nname: arguments"`` (a delta that continues a call carries only an argument fragment, and gets no
    name), then its refusal, audio transcript and reasoning (``reasoning_content``, ``thinking_blocks``).
    Arguments sent as objects are written as JSON."""
    out = ""
    calls = [_get(c, "function") or _get(c, "custom") for c in _get(message, "tool_calls") or []]
    if (fn := _get(message, "function_call")) is not None:
        calls.append(fn)
    for fn in calls:
        name, args = _get(fn, "name"), _get(fn, "arguments") or _get(fn, "input") or ""
        out += (f"\n{name}: " if name else "") + (args if isinstance(args, str) else json.dumps(args, default=str))
    for text in (
        _get(message, "refusal"),
        _get(_get(message, "audio"), "transcript"),
        _get(message, "reasoning_content"),
    ):
        if isinstance(text, str) and text:
            out += text
    for block in _get(message, "thinking_blocks") or []:  # litellm's reasoning, as Anthropic-style blocks
        if isinstance(thought := _get(block, "thinking"), str):
            out += thought
    return out


def _joined(texts: list[str]) -> str | None:
    return "\n".join(texts) if texts else None


def content_text(content: Any) -> str | None:
    """The text of a message's or a delta's ``content``: a string, or the text parts of a list of parts
    (some OpenAI-compatible servers answer ``[{"type": "text", "text": ...}]``); None when it holds no text."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        parts = [t for part in content if isinstance(t := _get(part, "text"), str)]
        return "".join(parts) if parts else None
    return None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _put(obj: Any, key: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


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


# ------------------------------------------------------------------------------ Responses API


def response_text(response: Any) -> str:
    """All ``output_text`` of a Responses API response (what ``Response.output_text`` returns)."""
    parts: list[str] = []
    for item in getattr(response, "output", None) or []:
        if getattr(item, "type", None) == "message":
            for part in getattr(item, "content", None) or []:
                if getattr(part, "type", None) == "output_text":
                    parts.append(part.text)
    return "".join(parts)


def _set_response_text(response: Any, text: str, *, blocked: bool) -> None:
    """Put ``text`` in the first output_text part and drop the others (the text is one whole now)."""
    placed = False
    for item in response.output:
        if getattr(item, "type", None) != "message":
            continue
        kept = []
        for part in item.content:
            if getattr(part, "type", None) != "output_text":
                kept.append(part)
            elif not placed:
                part.text, placed = text, True
                part.annotations = []
                if getattr(part, "parsed", None) is not None:  # a structured output parsed from the old text
                    part.parsed = None
                kept.append(part)
        item.content = kept
    if not placed:
        response.output.append(_message_item(text))
    if blocked:  # the refusal replaces the whole answer: its tool and function calls and other parts go too
        response.output = [item for item in response.output if getattr(item, "type", None) == "message"]
        for item in response.output:
            item.content = [part for part in item.content if getattr(part, "type", None) == "output_text"]
        _mark_incomplete(response)


def _message_item(text: str, item_id: str | None = None) -> Any:
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    return ResponseOutputMessage(
        id=item_id or f"msg_guardrail_{uuid.uuid4().hex}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def _mark_incomplete(response: Any) -> None:
    from openai.types.responses.response import IncompleteDetails

    response.status = "incomplete"
    response.incomplete_details = IncompleteDetails(reason=CONTENT_FILTER)


def refusal_response(
    message: str, *, model: str | None, base: Any = None, text_before: str = "", decision_id: str | None = None
) -> Any:
    """A Responses API ``Response`` carrying ``message``, marked incomplete for ``content_filter``.
    ``base`` (an upstream response, e.g. from ``response.created``) supplies id, model and settings."""
    from openai.types.responses import Response

    if base is not None and not isinstance(base, Response):  # litellm's ResponsesAPIResponse (the proxy)
        try:
            base = Response.model_validate(base.model_dump())
        except Exception:  # a shape the openai type does not take: a fresh response instead
            base = None
    if base is not None:
        out = copy.deepcopy(base)
        out.output = [_message_item(text_before + message)]
        _mark_incomplete(out)
        return out
    resp = Response(
        id=_id("resp", decision_id),
        object="response",
        created_at=float(int(time.time())),
        model=model or "guardrail",
        output=[_message_item(message)],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        status="completed",
    )
    _mark_incomplete(resp)
    return resp


def text_delta_event(template: Any, text: str, sequence_number: int) -> Any:
    """A ``response.output_text.delta`` event for ``text``, placed like ``template`` (item, part)."""
    from openai.types.responses import ResponseTextDeltaEvent

    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        delta=text,
        item_id=getattr(template, "item_id", None) or f"msg_guardrail_{uuid.uuid4().hex}",
        output_index=getattr(template, "output_index", 0),
        content_index=getattr(template, "content_index", 0),
        logprobs=[],
        sequence_number=sequence_number,
    )


def refusal_response_events(
    message: str,
    *,
    model: str | None,
    template: Any = None,
    base: Any = None,
    text_before: str = "",
    sequence_number: int = 0,
    decision_id: str | None = None,
    opening: bool = False,
) -> Sequence[Any]:
    """The end of a blocked Responses stream: the message as a text delta, then ``response.incomplete``. A
    stream that opened no message item of its own (``template`` None: a tool-only answer) first gets one, so
    the delta has an item and a part to land in, and with ``opening`` (a stream stopped before it started: a
    blocked prompt) ``response.created`` before that: the openai SDK's stream helper raises on a delta without."""
    from openai.types.responses import (
        ResponseContentPartAddedEvent,
        ResponseCreatedEvent,
        ResponseIncompleteEvent,
        ResponseOutputItemAddedEvent,
        ResponseOutputText,
    )

    final = refusal_response(message, model=model, base=base, text_before=text_before, decision_id=decision_id)
    head: list[Any] = []
    if opening:
        started = final.model_copy(update={"status": "in_progress", "output": [], "incomplete_details": None})
        head.append(ResponseCreatedEvent(type="response.created", response=started, sequence_number=sequence_number))
        sequence_number += 1
    if getattr(template, "item_id", None) is None:
        item = _message_item("", f"msg_guardrail_{uuid.uuid4().hex}")
        item.status, item.content = "in_progress", []
        template = ResponseContentPartAddedEvent(
            type="response.content_part.added", item_id=item.id, output_index=0, content_index=0,
            part=ResponseOutputText(type="output_text", text="", annotations=[]), sequence_number=sequence_number + 1,
        )  # fmt: skip
        added = ResponseOutputItemAddedEvent(
            type="response.output_item.added", output_index=0, item=item, sequence_number=sequence_number
        )
        head, sequence_number = [*head, added, template], sequence_number + 2
    return [
        *head,
        text_delta_event(template, message, sequence_number),
        ResponseIncompleteEvent(type="response.incomplete", response=final, sequence_number=sequence_number + 1),
    ]
