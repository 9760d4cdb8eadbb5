"""Where a chat message's content part keeps the text a model reads, by its type; and a rewritten text put back.

The promise (README, "whatever its type says"): a part that carries text is read, or refused. A provider reads text
in more places than a ``text`` key, and litellm forwards them: a ``document`` part's plain-text source (to Anthropic
as it is), a ``file`` part whose data URL is text/plain (to Gemini as inline text). Read as parts "without text",
they reached the model unchecked. So, for every part:

- its ``text`` and ``refusal``, whatever its type (an attacker picks the type: "TEXT", a made-up one);
- a ``document``'s title, context and source: ``text`` data, ``content`` (a string or text blocks), ``base64`` data
  of a textual media type (``guardrail._data_url``); a ``url`` / ``file`` source is not fetched (unread, noted);
- a media part's inline bytes (``file``, ``input_file``, ``image_url``, ``input_image``, ``image``, ``audio``,
  ``video`` ...): a data URL or raw base64 whose stated media type is textual is decoded and read; images, audio,
  video and PDFs are skipped (noted in the audit event), as they always were; URLs and file ids are not fetched;
- any other part that holds anything besides its ``type`` is refused (``InvalidMessages``), as the LangChain adapter
  refuses a block of an unknown type: a text the check cannot find must never pass as a part without one. But for
  an assistant's turn: the model's own output sent back (its calls, signed thinking, a provider's blocks) is skipped,
  as the adapters skip it in a request, and in an answer ``guardrail.answer_actions`` reads every string of such a
  part beside its text.

Each text comes with its :class:`At` (its keys in the part, and how it was encoded), so a masked value replaces the
very text that was read, encoded back as it came: the provider never gets the unmasked value of a rewrite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guardrail._data_url import Encoding, decoded, encode, guess_type
from guardrail.errors import InvalidMessages

__all__ = ["At", "part_texts", "put_text"]

Key = str | int


@dataclass(frozen=True, slots=True)
class At:
    """Where in its part a text sits (``keys``, from the part down) and, for bytes given inline, how it was
    encoded (written back the same way)."""

    keys: tuple[Key, ...]
    encoding: Encoding | None = None


# keys holding a part's text whatever its type (the Assistants API's text is {"value": ...})
_TEXT_KEYS = ("text", "refusal")
# media parts, and the media type their inline bytes are when nothing says otherwise (None: a file, unknown)
_MEDIA: dict[str, str | None] = {
    "image_url": "image/*", "input_image": "image/*", "image": "image/*", "input_audio": "audio/*",
    "audio": "audio/*", "audio_url": "audio/*", "input_audio_url": "audio/*", "video": "video/*",
    "video_url": "video/*", "input_video": "video/*", "file": None, "input_file": None,
}  # fmt: skip
_PAYLOAD_KEYS = ("file_data", "data", "base64", "url", "file_url", "image_url", "video_url", "audio_url")
_TYPE_KEYS = ("format", "mime_type", "media_type", "content_type")
_ANY_ROLE = frozenset({"tool_reference", "container_upload"})  # a tool's name, a file id: nothing to read
_PLUMBING = frozenset({"type", "cache_control"})  # what a part without text may hold


def part_texts(part: Any, where: str, role: str) -> tuple[list[tuple[str, At]], str | None]:
    """The texts of one part, each with where it sits; and, when it has none, the label that notes it skipped
    (None when it had texts). ``InvalidMessages`` (naming ``where``) for a part that holds text the check cannot
    read."""
    found: list[tuple[str, At]] = []
    for key in _TEXT_KEYS:
        value = _get(part, key)
        if value is None:
            continue
        if isinstance(value, (str, bytes, bytearray)):
            found.append((_str(value), At((key,))))
        elif isinstance(inner := _get(value, "value"), str):
            found.append((inner, At((key, "value"))))
        else:
            raise InvalidMessages(f"{where}: {key} must be a string, not {type(value).__name__}")
    raw = _get(part, "type")
    kind = raw.strip().lower() if isinstance(raw, str) else None
    if kind == "document":
        found += _document(part, where)
    elif kind in _MEDIA:
        found += _media(part, kind, where)
    elif found or role == "assistant" or kind in _ANY_ROLE:
        pass  # an assistant's turn is the model's own output: its calls, signed thinking (an answer's: answer_actions)
    elif set(_fields(part)) - _PLUMBING:
        raise InvalidMessages(
            f"{where}: a part of type {raw!r}, which guardrail does not read: it would reach the model unchecked "
            "(send its text as a text part, or use .unwrapped to bypass the guard deliberately)"
        )
    return found, None if found else (raw if isinstance(raw, str) and raw else type(part).__name__)


def put_text(part: dict[str, Any], at: At, new: str, old: str) -> None:
    """``new`` where ``at`` says in ``part`` (a plain copy of the caller's part); each container on the way is
    copied first, so the caller's nested objects are never changed. Bytes given inline are encoded back as they
    came, and only when the text changed (re-encoding an unchanged one could change its bytes)."""
    if at.encoding is not None:
        if new == old:
            return
        value: Any = encode(at.encoding, new)
    else:
        value = new
    target: Any = part
    for key in at.keys[:-1]:
        child = _copy(target[key])
        target[key] = child
        target = child
    target[at.keys[-1]] = value


def _document(part: Any, where: str) -> list[tuple[str, At]]:
    """A document's title and context (the model reads them with it), and its source's text."""
    out = [(_str(v), At((k,))) for k in ("title", "context") if isinstance(v := _get(part, k), (str, bytes)) and v]
    source = _get(part, "source")
    stype = _get(source, "type")
    if stype == "text":
        data = _get(source, "data")
        if not isinstance(data, (str, bytes, bytearray)):
            raise InvalidMessages(f"{where}: a document's text source must hold a string, not {type(data).__name__}")
        return [*out, (_str(data), At(("source", "data")))]
    if stype == "content":
        return out + _content_source(_get(source, "content"), where)
    if stype == "base64":
        data = _get(source, "data")
        if not isinstance(data, str):
            raise InvalidMessages(f"{where}: a document's base64 source must hold a string")
        got = decoded(data, _types(source), None, f"{where} (document)")
        return out + ([(got[0], At(("source", "data"), got[1]))] if got else [])
    if stype in ("url", "file"):
        return out  # fetched by the provider, never by the check: unread (documented, as the Anthropic adapter)
    raise InvalidMessages(f"{where}: a document with a {stype!r} source, which guardrail does not read")


def _content_source(content: Any, where: str) -> list[tuple[str, At]]:
    """A document's ``content`` source: a string, or text blocks (images skipped); anything else is refused."""
    if isinstance(content, (str, bytes, bytearray)):
        return [(_str(content), At(("source", "content")))]
    if not isinstance(content, Sequence):
        raise InvalidMessages(f"{where}: a document's content source must be a string or a list of blocks")
    out: list[tuple[str, At]] = []
    for k, block in enumerate(content):
        if isinstance(block, (str, bytes, bytearray)):
            out.append((_str(block), At(("source", "content", k))))
            continue
        texts, _ = part_texts(block, f"{where} (document block {k})", "user")
        out += [(t, At(("source", "content", k, *a.keys), a.encoding)) for t, a in texts]
    return out


def _media(part: Any, kind: str, where: str) -> list[tuple[str, At]]:
    """The text a media part's inline bytes carry: in the part itself (LangChain's and the Responses API's flat
    blocks), in its object named after its type (``file``, ``image_url`` ...) and in an Anthropic-style ``source``."""
    default = _MEDIA[kind]
    out: list[tuple[str, At]] = []
    for prefix in ((), (kind,), ("source",)):
        holder = _get(part, prefix[0]) if prefix else part
        if prefix and isinstance(holder, str):  # "image_url": "data:..."
            got = decoded(holder, (), default, where)
            out += [(got[0], At(prefix, got[1]))] if got else []
            continue
        if holder is None or isinstance(holder, (bytes, bytearray, int, float, Sequence)):
            continue
        declared = _types(holder)
        for key in _PAYLOAD_KEYS:
            value = _get(holder, key)
            if prefix == () and key == kind:  # the part's own object ("image_url": {...}): read as a holder
                continue
            if isinstance(value, (bytes, bytearray, Mapping, list, tuple)):
                raise InvalidMessages(f"{where}: {key} must be a string (a URL, a data URL or base64)")
            if isinstance(value, str):
                got = decoded(value, declared, default, where)
                out += [(got[0], At((*prefix, key), got[1]))] if got else []
    return out


def _types(holder: Any) -> list[str]:
    """The media types stated for bytes (``format`` and its aliases, which litellm lets override a data URL's own;
    else what the file's name says)."""
    stated = [t for k in _TYPE_KEYS if isinstance(t := _get(holder, k), str) and "/" in t]
    return stated or [t for t in (guess_type(_get(holder, "filename")),) if t]


def _fields(part: Any) -> list[str]:
    if isinstance(part, Mapping):
        return [str(k) for k, v in part.items() if v is not None]
    if callable(dump := getattr(part, "model_dump", None)):
        return [str(k) for k, v in dump().items() if v is not None]
    return [k for k, v in vars(part).items() if v is not None] if hasattr(part, "__dict__") else []


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if callable(dump := getattr(value, "model_dump", None)):
        return dump(exclude_none=True)
    return {}  # an object holding a text's ``value`` (the Assistants API's shape): a dict of it, as it is sent


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _str(value: str | bytes | bytearray) -> str:
    """Bytes are decoded as UTF-8 with invalid sequences replaced (``messages.to_text``)."""
    return bytes(value).decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else value
