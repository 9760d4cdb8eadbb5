"""Reading an answer, whatever its type (a chat completion, a Responses answer, a Messages answer, a dict or an SDK
model): its texts, what it does besides (tool calls, refusal, audio, reasoning) as the check reads them, and the
field access that works on both dicts and models. ``shapes`` re-exports it; this module builds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from guardrail.answer_actions import (
    ACTION_FIELDS,
    PROVIDER_FIELDS,
    actions_text,
    annotation_titles,
    block_fields,
    block_texts,
    unescape_json,
)

from .response_shapes import response_text, text_part

__all__ = ["MESSAGE_CALLS", "action_texts_of", "actions_text", "annotation_titles", "answer_kind", "block_fields",
           "block_texts", "blocked_delta", "content_text", "item_action_text", "parts_said", "texts_of",
           "unescape_json"]  # fmt: skip


# what a chat message or delta carries besides its content (``guardrail.answer_actions``, the one list): a blocked
# answer loses all of it, and a blocked stream drops the held chunks that carry any of it
_ACTIONS = (*ACTION_FIELDS, PROVIDER_FIELDS)


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
    """A choice whose message guardrail reads whole: text, or parts that each have a type (a part's ``text`` is read as
    the answer's, every other string it carries as what the answer says besides: ``answer_actions.part_fields``)."""
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
    """What a Messages API answer does besides its text: its tool calls (name and input as JSON), its thinking, its
    text blocks' citations and what its server tools brought back (:func:`block_texts`), as one text."""
    found: list[str] = []
    for part in _get(result, "content"):
        kind = _get(part, "type")
        if kind in MESSAGE_CALLS:
            args = _get(part, "input")
            found.append(f"{_get(part, 'name')}: " + unescape_json(json.dumps(args, ensure_ascii=False, default=str)))
        elif kind == "thinking" and isinstance(thought := _get(part, "thinking"), str):
            found.append(thought)
        elif kind == "refusal" and isinstance(refused := _get(part, "refusal"), str):
            found.append(refused)
        elif kind == "text":
            found += block_texts(_get(part, "citations"))
        elif kind not in _OPAQUE_BLOCKS:
            found += block_texts(part)
    return _joined(found)


# Messages answer blocks whose input is a call's arguments
MESSAGE_CALLS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Messages answer blocks with nothing to read: signed reasoning the provider encrypted
_OPAQUE_BLOCKS = frozenset({"redacted_thinking"})


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
                found += parts_said(_get(item, "content"))
            elif (text := item_action_text(item)) is not None:
                found.append(text)
        return [_joined(found)]
    if _is_message(result):
        return [_message_actions(result)]
    return []


def parts_said(parts: Any) -> list[str]:
    """What a Responses message's parts say besides the answer's text (``response_shapes.text_part``, the one
    predicate, says which parts are that text): a text part's citation titles, and every string of any other part (a
    refusal, a compatible server's ``reasoning_text`` ...), read as :func:`block_texts` reads a block."""
    found: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        found += annotation_titles(_get(part, "annotations")) if text_part(part) else block_texts(part)
    return found


# an item's plumbing, and what the model did not write: images (base64), retrieved documents, tool listings. A code
# interpreter's ``outputs`` (its logs, the files it made) are read: the application shows them as the answer's, as a
# Messages answer's code execution stdout is read (``block_texts``)
_ITEM_PLUMBING = frozenset(
    {"id", "call_id", "status", "type", "name", "encrypted_content", "result", "results", "partial_image_b64",
     "tools", "image_url"}
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
