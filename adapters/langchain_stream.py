"""A LangChain model's stream in the chunks the one stream guard reads, and back.

Each ``AIMessageChunk`` becomes a ``ChatCompletionChunk`` for ``_streams.ChatStream`` (which holds back text until a
check has read it, holds tool-call deltas until the final check masks them, and ends a blocked stream with the
refusal), and each chunk it releases becomes an ``AIMessageChunk`` again. The LangChain chunk's own metadata (id,
response metadata, usage, its place in the stream) rides along in an extra field of the translated chunk, so a
re-emitted chunk keeps it. Streamed reasoning is checked with the answer and, as chat reasoning deltas are in the
core, not passed on; a block of an unknown type is refused (``TypeError``). A structured output's ``parsed`` value
is never passed on as the model sent it: its chunk is read again from the checked text. A model that answers a stream
whole (``disable_streaming``) streams that answer as one last chunk (``whole_chunk``).
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from openai.types.chat import ChatCompletionChunk

from guardrail.call import CONTENT_FILTER

from .langchain_shapes import SIDE_TEXT, content_texts, read_kwargs

__all__ = ["LCOrigin", "chunk_of", "message_chunk", "whole_chunk"]

LCOrigin = "lc_origin"  # the extra field of a translated chunk that keeps the LangChain chunk's own metadata


def chunk_of(chunk: AIMessageChunk, model: str) -> ChatCompletionChunk:
    """A streamed ``AIMessageChunk`` as the core's stream guard reads it; its own metadata rides along
    (``LCOrigin``) for the way back. A chunk that ends the stream (finish reason, usage, the last) is a closing
    chunk, sent after the final check."""
    read_kwargs({k: v for k, v in chunk.additional_kwargs.items() if k != "parsed"}, "stream chunk")
    texts, blocks = content_texts(
        chunk.content, lambda _block: bool(chunk.tool_call_chunks), "a streamed content block"
    )
    side = [b[SIDE_TEXT[b["type"]]] for b in blocks]  # checked with the answer, never passed on (as chat reasoning)
    delta: dict[str, Any] = {"content": "".join(texts) or None}
    extra = chunk.additional_kwargs
    if isinstance(extra.get("reasoning_content"), str):
        side.append(extra["reasoning_content"])
    if side:
        delta["reasoning_content"] = "\n".join(side)
    for key in ("refusal", "function_call"):
        if extra.get(key):
            delta[key] = extra[key]
    if chunk.tool_call_chunks:
        delta["tool_calls"] = [
            {"index": c.get("index") if c.get("index") is not None else k, "id": c.get("id"), "type": "function",
             "function": {"name": c.get("name"), "arguments": c.get("args") or ""}}
            for k, c in enumerate(chunk.tool_call_chunks)
        ]  # fmt: skip
    meta = chunk.response_metadata
    position = getattr(chunk, "chunk_position", None)  # langchain-core 1.x; a 0.3 chunk has none
    # the parsed structured output a model sends after the text (``additional_kwargs["parsed"]``) is never passed on:
    # its chunk closes the stream (sent after the final check), its value parsed again from the text as checked
    parsed = chunk.additional_kwargs.get("parsed") is not None
    closing = bool(meta.get("finish_reason")) or chunk.usage_metadata is not None or position == "last" or parsed
    origin = {
        "id": chunk.id,
        "response_metadata": dict(meta),
        "usage_metadata": chunk.usage_metadata,
        "chunk_position": position,
        "blocks": not isinstance(chunk.content, str),
        "parsed": parsed,
    }
    return ChatCompletionChunk.model_validate(
        {
            "id": chunk.id or "lc",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if closing else None}],
            LCOrigin: origin,
        }
    )


def message_chunk(chunk: Any, blocks: bool) -> AIMessageChunk:
    """A chunk the stream guard released, as an ``AIMessageChunk``: its text (as a text block when the model
    streams blocks), its masked calls, and the metadata of the LangChain chunk it came from. The refusal that
    ends a stopped stream says ``finish_reason: content_filter`` and is the last chunk."""
    origin = getattr(chunk, LCOrigin, None) or {}
    choice = chunk.choices[0] if chunk.choices else None
    delta = choice.delta if choice is not None else None
    text = (delta.content if delta is not None else None) or ""
    content: Any = text if not blocks else [{"type": "text", "text": text}] if text else []
    extra: dict[str, Any] = {}
    for key in ("refusal", "function_call"):
        value = getattr(delta, key, None)
        if value:
            extra[key] = value.model_dump() if hasattr(value, "model_dump") else value
    calls = [
        tool_call_chunk(
            name=c.function.name if c.function else None,
            args=c.function.arguments if c.function else None,
            id=c.id,
            index=c.index,
        )
        for c in (delta.tool_calls if delta is not None else None) or []
    ]
    meta = dict(origin.get("response_metadata") or {})
    usage, position = origin.get("usage_metadata"), origin.get("chunk_position")
    if calls or "function_call" in extra:  # held calls, merged: the chunks they came from pass on their own metadata
        meta, usage, position = {}, None, None
    if choice is not None and choice.finish_reason == CONTENT_FILTER:
        meta, position = {"finish_reason": CONTENT_FILTER}, "last"
    return AIMessageChunk(
        content=content,
        id=origin.get("id") or chunk.id,
        additional_kwargs=extra,
        response_metadata=meta,
        usage_metadata=usage,
        tool_call_chunks=calls,
        chunk_position=position,
    )


def whole_chunk(message: AIMessage) -> AIMessageChunk:
    """The answer of a model that answers whole when asked to stream (``disable_streaming``, LangChain's fallback for
    a model without ``_stream``) as the one, last chunk of its stream: its tool calls as call chunks."""
    valid = [(c["name"], json.dumps(c["args"], ensure_ascii=False), c.get("id")) for c in message.tool_calls]
    invalid = [(c.get("name"), c.get("args"), c.get("id")) for c in message.invalid_tool_calls]
    return AIMessageChunk(
        content=message.content,
        id=message.id,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        tool_call_chunks=[
            tool_call_chunk(name=name, args=args, id=ident, index=i)
            for i, (name, args, ident) in enumerate([*valid, *invalid])
        ],
        chunk_position="last",
    )
