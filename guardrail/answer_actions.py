"""What an answer's message does besides its text, as the check reads it: tool and function calls, refusal, audio
transcript, reasoning, citation titles, and every string of a content part whose text is not its ``text``. The one
reading of it: ``Guard.check_output`` on messages and every adapter's answer (``guardrail.adapters.answer_text``) ask
here, so a tool call's arguments are checked the same way everywhere.

It is also the one list of *where* an answer carries text besides its content (the field names below): the check
reads each field, masking edits each where it sits (:func:`mask_actions` here, ``adapters.actions`` for the adapters'
answers), a blocked answer loses them all (``adapters.shapes``), and a stream passes on only the fields of
:data:`STREAMED` (``adapters.shapes.content_free``). A field added here is read, masked and dropped everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ACTION_FIELDS", "CALL_FIELDS", "PROVIDER_FIELDS", "REASONING_BLOCKS", "SAID_FIELDS", "STREAMED", "actions_text",
    "annotation_titles", "block_fields", "block_texts", "is_media_url", "mask_actions", "part_fields", "unescape_json",
    "unmasked",
]  # fmt: skip

# A chat message's (or one stream delta's) calls: their arguments (JSON documents) are read and edited value by value
CALL_FIELDS = ("tool_calls", "function_call")
# strings the model wrote beside its content: a refusal, and reasoning under each name providers give it (DeepSeek's
# and litellm's ``reasoning_content``; OpenRouter's, Groq's, newer vLLM's and Ollama's ``reasoning``)
SAID_FIELDS = ("refusal", "reasoning_content", "reasoning")
# lists of reasoning blocks, each read whole (:func:`block_texts`): litellm's Anthropic-style ``thinking_blocks`` and
# OpenRouter's ``reasoning_details`` (``reasoning.text``'s text, ``reasoning.summary``'s summary; the data of a
# ``reasoning.encrypted`` one is opaque). A block with a signature is never restored into (the provider would refuse it)
REASONING_BLOCKS = ("thinking_blocks", "reasoning_details")
# every field of a chat message that carries what the model wrote besides its content (``audio``: its transcript)
ACTION_FIELDS = (*CALL_FIELDS, "audio", *SAID_FIELDS, *REASONING_BLOCKS)
# litellm's Message and Delta keep the fields of a provider's answer litellm has no name for here (OpenRouter's
# ``reasoning``, ``reasoning_details`` ...): read and masked as the message's own fields
PROVIDER_FIELDS = "provider_specific_fields"
# the delta fields a chat stream passes on besides its text, each after the check that read it: its role, its calls
# (held whole, masked), its refusal and its audio. Every other field is dropped from the chunks it passes on: reasoning
# (read with the text's windows, never streamed), citations (their URLs are not read) and fields guardrail does not know
STREAMED = ("role", *CALL_FIELDS, "refusal", "audio")

# the plumbing of a block or a part, which no one reads as text (ids, opaque or encrypted data, kinds, codes)
_BLOCK_PLUMBING = frozenset(
    {"type", "id", "tool_use_id", "caller", "encrypted_content", "encrypted_index", "signature", "file_id",
     "media_type", "error_code", "file_type", "retrieved_at"}
)  # fmt: skip
# blocks whose ``data`` is bytes or ciphertext, not text: a base64 source (a PDF), signed reasoning a provider encrypted
_OPAQUE_DATA = frozenset({"base64", "redacted_thinking", "reasoning.encrypted"})
# content parts that hold media, which the check does not read (as ``guardrail.messages`` skips them in a prompt)
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file", "input_image", "input_file", "image", "audio"})


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def unescape_json(text: str) -> str:
    """``text`` with JSON ``\\uXXXX`` escapes decoded: what an application reads out of tool arguments,
    where an escaped word would otherwise slip past the check."""
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\u" in text else text


def block_fields(block: Any) -> list[str]:
    """The fields of a block (a Messages answer's block, a reasoning block, a content part, or what one holds) that
    may carry text the caller reads: every field but its plumbing, and but opaque ``data`` (a base64 source's bytes,
    encrypted reasoning: no text to read or mask)."""
    if isinstance(block, Mapping):
        names = list(block)
    else:
        names = [*getattr(type(block), "model_fields", {})]
        names += [n for n in getattr(block, "model_extra", None) or {} if n not in names]
    opaque = _get(block, "type") in _OPAQUE_DATA
    return [n for n in names if n not in _BLOCK_PLUMBING and not (n == "data" and opaque)]


def block_texts(value: Any) -> list[str]:
    """Every string a block carries that the caller reads, escapes decoded: a server tool's result (web search titles
    and URLs, a fetched page's text, code execution's stdout and stderr, an MCP tool's content, their error messages
    ...), a citation (the quoted text, its title and URL), a reasoning block, and any block of a kind guardrail does
    not know. Media (:func:`is_media_url`) is not text. What ``adapters.actions.edit_block`` edits, field for field."""
    if isinstance(value, str):
        return [unescape_json(value)] if value and not is_media_url(value) else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in block_texts(v)]
    if isinstance(value, Mapping) or hasattr(type(value), "model_fields"):
        return [t for name in block_fields(value) for t in block_texts(_get(value, name))]
    return []


def is_media_url(text: str) -> bool:
    """A base64 ``data:`` URL of an image, a sound, a video or a PDF: media, which the check does not read (as in a
    prompt). Any other string is read as it is, a data URL of text included."""
    return ";base64," in text[:200] and _MEDIA_URL.match(text) is not None


_MEDIA_URL = re.compile(r"data:(?:(?:image|audio|video)/|application/pdf[;,])", re.IGNORECASE)


def part_fields(part: Any) -> list[str]:
    """The fields of a chat content part read as what the answer says besides its text: none of a media part; every
    field of any other part (:func:`block_fields`) but the ``text`` that is the answer's own (``content_text``). A
    refusal part's refusal, Mistral's ``{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}``, a
    ``{"type": "reasoning", "reasoning": ...}`` part: read, never passed over because their text is elsewhere."""
    if isinstance(part, str) or _get(part, "type") in _MEDIA_PARTS:
        return []
    text = isinstance(_get(part, "text"), str)
    return [n for n in block_fields(part) if not (text and n == "text")]


def _said(message: Any) -> list[str]:
    """What ``message`` says besides its content and calls, field by field, in the order :func:`actions_text` reads."""
    content = _get(message, "content")
    parts = content if isinstance(content, list) else []
    found: list[Any] = [_get(message, "refusal")]
    found += [t for p in parts for name in part_fields(p) for t in block_texts(_get(p, name))]
    found += [_get(_get(message, "audio"), "transcript"), *(_get(message, n) for n in SAID_FIELDS if n != "refusal")]
    found += annotation_titles(_get(message, "annotations"))
    found += [t for name in REASONING_BLOCKS for t in block_texts(_get(message, name) or [])]
    found += block_texts(_get(message, PROVIDER_FIELDS) or {})  # litellm's: every string the provider sent there
    return [t for t in found if isinstance(t, str) and t]


def _calls(message: Any) -> list[Any]:
    calls = [_get(c, "function") or _get(c, "custom") for c in _get(message, "tool_calls") or []]
    if (fn := _get(message, "function_call")) is not None:
        calls.append(fn)
    return calls


def _call_text(fn: Any) -> str:
    name, args = _get(fn, "name"), _get(fn, "arguments") or _get(fn, "input") or ""
    return (f"\n{name}: " if name else "") + (args if isinstance(args, str) else json.dumps(args, default=str))


def actions_text(message: Any) -> str:
    """What a chat message, or one stream delta, does besides its text: each tool or function call as
    ``"\nname: arguments"`` (a delta that continues a call carries only an argument fragment, and gets no
    name), then each of its other texts on a line of its own: its refusal, the parts of its content whose text is not
    under ``text`` (a refusal part, a thinking part ...), its audio transcript, its reasoning (every field of
    :data:`SAID_FIELDS` and :data:`REASONING_BLOCKS`), its citations' titles, and the same fields under litellm's
    ``provider_specific_fields``. A text read once is not read again (litellm repeats a provider's ``reasoning`` as
    ``reasoning_content``). Arguments sent as objects are written as JSON."""
    out = "".join(_call_text(fn) for fn in _calls(message))
    seen: set[str] = set()
    for text in _said(message):
        if text not in seen:
            seen.add(text)
            out += ("\n" if out else "") + text  # apart: a value at the end of one field is not run into the next
    return out


def annotation_titles(annotations: Any) -> list[str]:
    """The titles of an answer's citations (chat ``url_citation``, a Responses part's annotations): text the model
    wrote or chose that the application shows beside the answer, so it is read as part of what the answer says."""
    titles: list[str] = []
    for annotation in annotations if isinstance(annotations, list) else []:
        for source in (annotation, _get(annotation, "url_citation")):
            if isinstance(title := _get(source, "title"), str) and title:
                titles.append(title)
    return titles


def mask_actions(message: dict[str, Any], redactions: Mapping[str, str]) -> dict[str, Any]:
    """``message`` (a plain dict the caller owns: edited in place, and returned) with each value of ``redactions``
    (placeholder -> value) replaced by its placeholder wherever :func:`actions_text` reads it: tool and function call
    arguments (each string of arguments sent as objects), refusal, reasoning (the fields and the blocks), the parts of
    its content read besides its text, audio transcript (its sound emptied when changed: it would still say the
    value), citation titles, litellm's provider fields, and its name. The core's masking of an answer given as
    messages (``Guard.check_output``); a value written differently there (JSON-escaped) stays, and :func:`unmasked`
    finds it."""
    pairs = sorted(((v, k) for k, v in redactions.items() if v), key=lambda p: -len(p[0]))

    def masked(value: Any) -> Any:  # arguments sent as objects are masked in each string they hold
        if isinstance(value, str):
            for original, placeholder in pairs:
                value = value.replace(original, placeholder)
            return value
        if isinstance(value, dict):
            return {k: masked(v) for k, v in value.items()}
        return [masked(v) for v in value] if isinstance(value, (list, tuple)) else value

    def edit(obj: Any, key: str) -> bool:
        if isinstance(obj, dict) and isinstance(value := obj.get(key), (str, dict, list, tuple)):
            obj[key] = new = masked(value)
            return bool(new != value)
        return False

    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            edit(call.get("function") or call.get("custom"), "arguments")
            edit(call.get("custom"), "input")
    edit(message.get("function_call"), "arguments")
    edit(message, "name")  # read beside the message's text (``messages.extract``)
    for name in SAID_FIELDS:
        edit(message, name)
    content = message.get("content")
    for part in content if isinstance(content, list) else []:
        for name in part_fields(part):
            edit(part, name)
    for block in [b for name in REASONING_BLOCKS for b in message.get(name) or []]:
        for name in block_fields(block):
            edit(block, name)
    edit(message, PROVIDER_FIELDS)
    for annotation in message.get("annotations") or []:  # citation titles: read as what the answer says
        edit(annotation, "title")
        edit(annotation.get("url_citation") if isinstance(annotation, dict) else None, "title")
    if edit(audio := message.get("audio"), "transcript") and isinstance(audio, dict) and audio.get("data"):
        audio["data"] = ""
    return message


def unmasked(message: Any, entities: frozenset[str]) -> bool:
    """Whether what ``message`` does besides its text still holds personal data of ``entities``."""
    from guardrail.classifiers.patterns import find_entities

    said = unescape_json(actions_text(message))
    return bool(said) and bool(find_entities(said, entities))
