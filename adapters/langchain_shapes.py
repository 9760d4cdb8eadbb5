"""LangChain's messages in the shapes the one core reads, and back.

The core (``_core.GuardedCall``, ``_streams.ChatStream``) knows chat requests, ``ChatCompletion`` answers and
``ChatCompletionChunk`` streams. Rather than a second copy of what it does to them (input redaction where each text
sits, tool-call arguments masked value by value, ``restore=True``, the stream's hold-back), a LangChain call is
translated: its messages to chat dicts (rewrites mapped back onto the caller's own message objects, which keep their
ids and metadata), an ``AIMessage`` to a completion and the checked completion back onto that message, each
``AIMessageChunk`` to a chunk and each chunk the stream guard releases back to an ``AIMessageChunk``.

What cannot be read is refused with ``TypeError``, never passed on unchecked: a content block of an unknown type, an
``additional_kwargs`` entry that carries text the check does not read, a message of an unknown kind. Text the model
wrote beside its answer that cannot be put back where it sat (several reasoning blocks a redaction changed) is
dropped, not passed on unmasked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from openai.types.chat import ChatCompletion

from guardrail.call import CONTENT_FILTER

__all__ = [
    "CALL_BLOCKS",
    "SIDE_TEXT",
    "answer_of",
    "checked_message",
    "completion_of",
    "content_texts",
    "messages_of",
    "read_kwargs",
    "refuse",
    "reparsed",
    "request_messages",
    "rewritten_messages",
]

# content blocks that carry no text the check reads, which the core skips as the openai adapter skips an image
_MEDIA = frozenset({"image_url", "image", "audio", "input_audio", "file", "video"})
# blocks an assistant message carries besides its text: the model's own earlier calls and thoughts, sent back
_ASSISTANT_INPUT = frozenset({"tool_call", "tool_use", "reasoning", "thinking", "redacted_thinking"})
# an answer's blocks of text beside its text, by the key that holds it: checked as reasoning (``thinking_blocks``)
SIDE_TEXT = {"reasoning": "reasoning", "thinking": "thinking", "refusal": "refusal"}
# an answer's tool-call blocks: repeated from ``tool_calls`` (which are checked), rewritten from them
CALL_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "input_json_delta"})
# ``additional_kwargs`` of an answer that the check reads (or that repeat what it reads); any other key holding text
# is refused
_READ_KWARGS = frozenset({"refusal", "reasoning_content", "audio", "tool_calls", "function_call", "parsed"})


def refuse(what: str) -> TypeError:
    return TypeError(f"guardrail cannot read {what}; it refuses the call rather than pass it on unchecked")


# ---------------------------------------------------------------------------------------------- input


def messages_of(value: Any) -> list[BaseMessage]:
    """The messages of a chat model's input: a str, a ``PromptValue``, or a list of messages, (role, text)
    tuples, dicts or strings, as ``BaseChatModel`` reads them."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise TypeError(f"a chat model takes a str, a PromptValue or a list of messages, not {type(value).__name__}")


def _role(message: BaseMessage, i: int) -> str:
    if isinstance(message, ChatMessage):
        return message.role  # checked by the core: an unknown role is an error, never an unread message
    for kind, role in ((HumanMessage, "user"), (AIMessage, "assistant"), (SystemMessage, "system"),
                       (ToolMessage, "tool"), (FunctionMessage, "function")):  # fmt: skip
        if isinstance(message, kind):
            return role
    raise refuse(f"message {i}, a {type(message).__name__}")


def _input_content(content: Any, role: str, i: int) -> Any:
    """A message's content as the core reads it: text as it is; blocks that carry text are read, media are skipped
    (as the openai adapter skips images), an assistant's own calls and thoughts pass; any other block is refused."""
    if isinstance(content, str):
        return content
    parts: list[Any] = []
    for j, block in enumerate(content):
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type") if isinstance(block, Mapping) else None
        if isinstance(block, Mapping) and ("text" in block or kind in _MEDIA):
            parts.append(dict(block))
        elif isinstance(block, Mapping) and role == "assistant" and kind in _ASSISTANT_INPUT:
            parts.append({"type": kind})  # not read: the model's own earlier output, as the openai adapter
        else:
            raise refuse(f"message {i}'s content block {j} (type {kind!r})")
    return parts


def request_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The messages as chat dicts for the check (role, content, name); roles as the openai adapter reads them
    (a ``SystemMessage`` is the system prompt, a ``ToolMessage`` a tool's result)."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = _role(message, i)
        item: dict[str, Any] = {"role": role, "content": _input_content(message.content, role, i)}
        if name := _name(message):
            item["name"] = name
        out.append(item)
    return out


def _name(message: BaseMessage) -> Any:
    """A message's name as langchain-openai sends it: ``name``, else one in ``additional_kwargs`` (read there too,
    so that one is never sent unread)."""
    return message.name or message.additional_kwargs.get("name")


def rewritten_messages(
    messages: Sequence[BaseMessage], sent: Sequence[Mapping[str, Any]], checked: Sequence[Any]
) -> list[BaseMessage]:
    """``messages`` with the check's rewrites (``checked``, the dicts ``sent`` to the check as they came back) put
    where each text sat: a changed message is a copy with its new content and its name as the check left it (masked:
    ``EMAIL_1``, or None where it could not be masked), the others the caller's own objects."""
    if len(checked) != len(messages):
        raise RuntimeError("guardrail: a rewrite changed the number of messages")  # never sent half-mapped
    out: list[BaseMessage] = []
    for message, before, after in zip(messages, sent, checked, strict=True):
        new = after.get("content") if isinstance(after, Mapping) else getattr(after, "content", None)
        name = after.get("name") if isinstance(after, Mapping) else getattr(after, "name", None)
        if new == before["content"] and name == before.get("name"):
            out.append(message)
            continue
        update: dict[str, Any] = {}
        if name != before.get("name"):
            update["name"] = name
            if "name" in message.additional_kwargs:  # where langchain-openai reads it too
                kwargs = {k: v for k, v in message.additional_kwargs.items() if k != "name"}
                update["additional_kwargs"] = {**kwargs, "name": name} if name is not None else kwargs
        if new != before["content"]:
            if isinstance(message.content, list) and isinstance(new, list):  # the caller's blocks, text replaced
                new = [_block_as_checked(old, part) for old, part in zip(message.content, new, strict=True)]
            update["content"] = new
        out.append(message.model_copy(update=update))
    return out


def _block_as_checked(old: Any, part: Any) -> Any:
    """A content block as the check left it: a string as rewritten, a block with its text replaced; a block the
    check did not read (an image, an assistant's call) is the caller's own."""
    if isinstance(old, str):
        return part
    if isinstance(old, Mapping) and "text" in old and isinstance(part, Mapping) and "text" in part:
        return {**old, "text": part["text"]}
    if isinstance(old, Mapping) and isinstance(part, Mapping) and part != dict(old):
        return {**old, **part}  # a text file's data, masked where the check read it (guardrail._parts)
    return old


# ---------------------------------------------------------------------------------------------- answers


def content_texts(content: Any, is_call: Any, where: str) -> tuple[list[str], list[Mapping[str, Any]]]:
    """A message's (or a chunk's) text blocks, and its side-text blocks (reasoning, thinking); a tool call's block
    that ``is_call`` accepts is skipped (rewritten from the checked tool calls); any other block is refused
    (``where`` names it). The one reader of LangChain content, whole answers and streams alike."""
    if isinstance(content, str):
        return [content], []
    texts: list[str] = []
    side: list[Mapping[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, Mapping) else None
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block, Mapping) and kind in SIDE_TEXT and isinstance(block.get(SIDE_TEXT[kind]), str):
            side.append(block)
        elif not (isinstance(block, Mapping) and kind in CALL_BLOCKS and is_call(block)):
            raise refuse(f"{where} {j} (type {kind!r})")
    return texts, side


def _answer_parts(message: AIMessage) -> tuple[str | None, list[dict[str, Any]]]:
    """An answer's text and its side texts (reasoning, thinking, refusal blocks, as ``thinking_blocks``)."""
    call_ids = {c.get("id") for c in message.tool_calls} | {c.get("id") for c in message.invalid_tool_calls}
    texts, blocks = content_texts(
        message.content, lambda block: block.get("id") in call_ids, "the answer's content block"
    )
    side = [{"type": "thinking", "thinking": b[SIDE_TEXT[b["type"]]], "signature": b.get("signature")} for b in blocks]
    return ("".join(texts) if texts else None), side


def read_kwargs(extra: Mapping[str, Any], where: str) -> None:
    for key, value in extra.items():
        if key not in _READ_KWARGS and _has_text(value):
            raise refuse(f"the {where}'s additional_kwargs[{key!r}]")


def _has_text(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return bool(value)
    if isinstance(value, Mapping):
        return any(_has_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_text(v) for v in value)
    return False


def _calls(message: AIMessage) -> list[dict[str, Any]]:
    """The answer's tool calls (valid ones, then invalid ones) as chat tool calls, arguments as JSON text."""
    calls = [(c.get("id"), c["name"], json.dumps(c["args"], ensure_ascii=False)) for c in message.tool_calls]
    calls += [(c.get("id"), c.get("name") or "", c.get("args") or "") for c in message.invalid_tool_calls]
    return [
        {"id": ident or f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
        for i, (ident, name, args) in enumerate(calls)
    ]


def completion_of(message: AIMessage, model: str) -> ChatCompletion:
    """An answer as the core checks it: its text, and apart from it what it does (tool calls, refusal, reasoning,
    audio). ``TypeError`` for a part it cannot read."""
    read_kwargs(message.additional_kwargs, "answer")
    text, side = _answer_parts(message)
    extra = message.additional_kwargs
    body: dict[str, Any] = {"role": "assistant", "content": text}
    if calls := _calls(message):
        body["tool_calls"] = calls
    for key in ("refusal", "reasoning_content", "audio", "function_call"):
        if extra.get(key) is not None:
            body[key] = extra[key]
    if side:
        body["thinking_blocks"] = side
    finish = "length" if message.response_metadata.get("finish_reason") == "length" else "stop"
    return ChatCompletion.model_validate(
        {
            "id": message.id or "lc",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": body}],
        }
    )


def answer_of(completion: Any) -> AIMessage:
    """A refusal the core made (a blocked prompt) as the answer."""
    choice = completion.choices[0]
    return AIMessage(
        content=choice.message.content or "",
        id=completion.id,
        response_metadata={"finish_reason": choice.finish_reason, "model_name": completion.model},
    )


def checked_message(original: AIMessage, checked: Any, before: ChatCompletion) -> AIMessage:
    """``original`` as the check left it (``checked``, the completion ``before`` after the core's answer check):
    a block is the refusal alone; otherwise the text, the calls' arguments and the side texts are replaced where
    each sits, and what repeats the old text (``parsed``, logprobs) goes with it."""
    choice, was = checked.choices[0], before.choices[0].message
    m = choice.message
    if choice.finish_reason == CONTENT_FILTER:
        meta = {k: v for k, v in original.response_metadata.items() if k in ("model_name", "model_provider")}
        return AIMessage(
            content=m.content or "", id=original.id, response_metadata={**meta, "finish_reason": CONTENT_FILTER}
        )
    update: dict[str, Any] = {}
    extra = dict(original.additional_kwargs)
    meta = dict(original.response_metadata)
    if m.content != was.content:
        update["content"] = _with_text(original.content, m.content or "")
        meta.pop("logprobs", None)  # its tokens spell the text the model wrote
        if "parsed" in extra:
            extra["parsed"] = reparsed(type(extra["parsed"]), m.content or "")
    calls = [c.model_dump() for c in m.tool_calls or []]
    if calls != [c.model_dump() for c in was.tool_calls or []]:
        n = len(original.tool_calls)
        valid, invalid = calls[:n], calls[n:]
        update["tool_calls"] = [{**old, "args": _args(c)} for old, c in zip(original.tool_calls, valid, strict=True)]
        update["invalid_tool_calls"] = [
            {**old, "args": c["function"]["arguments"]}
            for old, c in zip(original.invalid_tool_calls, invalid, strict=True)
        ]
        if isinstance(update.get("content"), list) or isinstance(original.content, list):
            update["content"] = _with_calls(update.get("content", original.content), update["tool_calls"])
    if "tool_calls" in extra:
        extra["tool_calls"] = calls
    for key in ("refusal", "reasoning_content", "audio", "function_call"):
        value = getattr(m, key, None)
        if key in extra and value is not None:
            extra[key] = value.model_dump() if hasattr(value, "model_dump") else value
    side = getattr(m, "thinking_blocks", None) or []
    if side != (getattr(was, "thinking_blocks", None) or []):
        update["content"] = _with_side(update.get("content", original.content), side)
    return original.model_copy(update={**update, "additional_kwargs": extra, "response_metadata": meta})


def _args(call: Mapping[str, Any]) -> Any:
    """A masked call's arguments as LangChain holds them (a dict); ``TypeError`` if masking left them unparseable."""
    try:
        return json.loads(call["function"]["arguments"] or "{}")
    except ValueError:
        raise refuse("a tool call's arguments after masking (not JSON)") from None


def _with_text(content: Any, text: str) -> Any:
    """``content`` with ``text`` in place of its text: in its first text block (the other text blocks go, and
    citations into the old text)."""
    if isinstance(content, str):
        return text
    out: list[Any] = []
    placed = False
    for block in content:
        if isinstance(block, str) or (isinstance(block, Mapping) and isinstance(block.get("text"), str)):
            if not placed:
                kept = (
                    {k: v for k, v in block.items() if k not in ("annotations", "citations")}
                    if not isinstance(block, str)
                    else {"type": "text"}
                )
                out.append({**kept, "text": text})
                placed = True
            continue
        out.append(block)
    return out if placed else [{"type": "text", "text": text}, *out]


def _with_calls(content: Any, calls: Sequence[Mapping[str, Any]]) -> Any:
    """Tool-call blocks of the content rewritten from the masked calls (by id)."""
    if not isinstance(content, list):
        return content
    by_id = {c.get("id"): c for c in calls}
    out: list[Any] = []
    for block in content:
        if isinstance(block, Mapping) and block.get("type") in CALL_BLOCKS and block.get("id") in by_id:
            key = "input" if "input" in block else "args"
            block = {**block, key: by_id[block["id"]]["args"]}
            block.pop("partial_json", None)
        out.append(block)
    return out


def _with_side(content: Any, side: Sequence[Mapping[str, Any]]) -> Any:
    """The side-text blocks as the check left them: put back one for one; the masking cannot be placed (a
    changed count) or a block signed by its provider was changed: the blocks go, never passed on unmasked."""
    if not isinstance(content, list):
        return content
    blocks = [i for i, b in enumerate(content) if isinstance(b, Mapping) and b.get("type") in SIDE_TEXT]
    out = list(content)
    if len(blocks) != len(side):
        return [b for i, b in enumerate(out) if i not in blocks]
    for i, new in zip(blocks, side, strict=True):
        block = out[i]
        key = SIDE_TEXT[block["type"]]
        if block[key] != new["thinking"]:
            out[i] = None if block.get("signature") else {**block, key: new["thinking"]}
    return [b for b in out if b is not None]


def reparsed(kind: type[Any], text: str) -> Any:
    """A structured output's parsed value (of ``kind``: its schema's model, or a dict), parsed again from the checked
    text (``None`` when it no longer parses: the parser then refuses the answer rather than hand on what the text no
    longer says)."""
    try:
        if hasattr(kind, "model_validate_json"):
            return kind.model_validate_json(text)
        return json.loads(text)
    except ValueError:
        return None
