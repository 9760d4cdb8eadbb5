"""The text a file's bytes carry when a message part gives them inline: a ``data:`` URL or raw base64.

A part that says "file" or "image" may still be text the model reads: litellm sends
``{"type": "file", "file": {"file_data": "data:text/plain;base64,..."}}`` to Gemini as ``inline_data`` of type
text/plain, and a document's base64 source of type text/csv to Bedrock as a document. Skipped as media, such a text
reached the model unchecked. So the payload is decoded and read whenever any media type the part states for it is
textual (the data URL's own, or a ``format`` / ``mime_type`` / ``media_type`` / ``content_type`` beside it, which
litellm lets override the URL's: either may be the one the provider reads). Images, audio, video and PDFs are media
the check does not read (as before, and as documented); any other type (a Word file, ``application/octet-stream``)
carries what the check cannot read, and is refused rather than passed on.

Decoding is bounded and strict, and every failure is an ``InvalidMessages`` naming the part, never a skipped part:
a payload over :data:`MAX_DECODED_BYTES` (decoded, it would be over the default policy's ``max_chars`` anyway, and
decoding it costs memory before any check), base64 that does not decode, bytes that are not UTF-8 (``_text`` says
when a stated single-byte charset reads them instead, and why no other charset does), and text holding NUL
characters (UTF-16 without a byte-order mark reads as letters between NULs: a text nobody would score as written).
A rewritten text (masked values, a rule's message) is encoded back the way it came (:class:`Encoding`), so the
provider reads the masked text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import mimetypes
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from guardrail.errors import InvalidMessages

__all__ = ["MAX_DECODED_BYTES", "Encoding", "decoded", "encode", "guess_type", "is_url", "media_kind", "texts_in"]

MAX_DECODED_BYTES = 1_048_576  # 1 MiB: the HTTP service's default body limit; the default max_chars is 200,000

# application/* types whose bytes are text a model reads (besides text/*, and any +json / +xml / +yaml suffix)
_TEXT_APPLICATION = frozenset(
    {
        "json", "x-ndjson", "ndjson", "jsonl", "x-jsonlines", "xml", "yaml", "x-yaml", "toml", "x-toml", "csv",
        "x-csv", "javascript", "x-javascript", "ecmascript", "typescript", "x-typescript", "sql", "x-sql", "graphql",
        "x-sh", "x-shellscript", "x-python", "x-python-code", "x-perl", "x-ruby", "x-php", "x-httpd-php", "rtf",
        "x-tex", "x-latex", "x-www-form-urlencoded", "markdown", "x-markdown", "x-subrip", "x-ipynb+json",
    }
)  # fmt: skip
_MEDIA_TOP = ("image/", "audio/", "video/")  # sound and pictures: not read, as image parts never were
_MEDIA_APPLICATION = frozenset({"application/pdf"})  # read by the model as a document; documented as unread
_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_B64_SPACE = re.compile(r"[ \t\r\n]+")

Kind = Literal["text", "media", "unknown"]


def media_kind(media_type: str) -> Kind:
    """Whether a media type's bytes are ``text`` the check reads, ``media`` it does not (images, audio, video,
    PDFs), or ``unknown``: a file whose text the check cannot read (refused)."""
    essence = media_type.split(";", 1)[0].strip().lower()
    if essence.endswith(("+json", "+xml", "+yaml")) or essence.startswith(("text/", "message/")):
        return "text"  # an SVG is XML: text the model may read, whatever it says it pictures
    top, _, sub = essence.partition("/")
    if top == "application" and sub in _TEXT_APPLICATION:
        return "text"
    if essence.startswith(_MEDIA_TOP) or essence in _MEDIA_APPLICATION:
        return "media"
    return "unknown"


def is_url(value: str) -> bool:
    """A URL (``https://``, ``gs://`` ...): the provider fetches what it names; the check never does (unread)."""
    return bool(_URL.match(value))


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a decoded text was carried, to write a rewritten one back the same way: ``prefix`` (the data URL's
    header, through its comma; empty for raw base64), ``form`` (base64, URL-safe base64 or percent-encoding),
    whether the base64 was padded, and the codec its bytes were read with."""

    prefix: str
    form: Literal["base64", "urlsafe", "percent"]
    padded: bool
    codec: str


def decoded(value: str, declared: Iterable[str], default: str | None, where: str) -> tuple[str, Encoding] | None:
    """The text ``value`` carries, and how (None: media the check does not read, or a URL it never fetches).

    ``value`` is a URL, a data URL (anywhere in a string that is not a URL, as litellm finds one) or raw base64;
    ``declared`` are the media types stated beside it; ``default`` is what the part's type implies when nothing is
    stated (an image part's bytes are an image). ``InvalidMessages`` (naming ``where``) for a payload that is text
    but cannot be read, or of a type whose text the check cannot read."""
    if is_url(value):  # litellm fetches an http(s) URL itself, even one whose path says "data:"
        return None
    at = value.find("data:")
    prefix, header, payload = "", "", value
    if at >= 0:
        comma = value.find(",", at)
        if comma < 0:
            raise InvalidMessages(f"{where}: a data URL without a comma, which guardrail cannot read")
        prefix, header, payload = value[: comma + 1], value[at + 5 : comma], value[comma + 1 :]
    fields = [f.strip() for f in header.split(";")] if header else []
    b64 = at < 0 or bool(fields and fields[-1].lower() == "base64")
    params = [f for f in fields if "=" in f]
    own = fields[0] if fields and "/" in fields[0] else ("text/plain" if at >= 0 else "")  # RFC 2397's default
    types = [t for t in (own, *declared) if t] or ([default] if default else [])
    kinds = [media_kind(t) for t in types]
    if "text" not in kinds:
        if kinds and all(k == "media" for k in kinds):
            return None
        named = ", ".join(repr(t) for t in types) or "no media type"
        raise InvalidMessages(
            f"{where}: a file of {named}, whose text guardrail cannot read: it would reach the model unchecked "
            "(send its text as a text part, or use .unwrapped to bypass the guard deliberately)"
        )
    textual = next(t for t, k in zip(types, kinds, strict=True) if k == "text")
    charset = _charset([*params, *textual.split(";")[1:]])
    data, form, padded = _bytes(payload, b64, where)
    text, codec = _text(data, charset, where)
    return text, Encoding(prefix, form, padded, codec)


def encode(enc: Encoding, text: str) -> str:
    """``text`` carried as ``enc`` says (a character its charset lacks becomes ``?``: masked values are ASCII
    placeholders, so only a rule's own message can hold one)."""
    data = text.encode(enc.codec, errors="replace")
    if enc.form == "percent":
        return enc.prefix + urllib.parse.quote_from_bytes(data, safe="")
    out = (base64.urlsafe_b64encode(data) if enc.form == "urlsafe" else base64.b64encode(data)).decode("ascii")
    return enc.prefix + (out if enc.padded else out.rstrip("="))


def texts_in(value: str) -> list[str]:
    """The text a data URL of a textual type carries, or nothing: a best-effort reading that never raises (for
    the placeholders already in a conversation, ``messages.prompt_placeholders``)."""
    if "data:" not in value:
        return []
    try:
        got = decoded(value, (), None, "")
    except InvalidMessages:
        return []
    return [got[0]] if got else []


def guess_type(filename: object) -> str | None:
    """The media type a file name implies (``notes.txt``: text/plain), for raw base64 stated by name only."""
    return mimetypes.guess_type(filename)[0] if isinstance(filename, str) and filename else None


def _charset(params: list[str]) -> str | None:
    for p in params:
        name, _, val = p.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"'):
            return val.strip().strip('"').lower()
    return None


def _bytes(payload: str, b64: bool, where: str) -> tuple[bytes, Literal["base64", "urlsafe", "percent"], bool]:
    if not b64:
        if len(payload) > 3 * MAX_DECODED_BYTES:
            raise _too_big(where)
        data = urllib.parse.unquote_to_bytes(payload)
        if len(data) > MAX_DECODED_BYTES:
            raise _too_big(where)
        return data, "percent", False
    if len(payload) > 2 * (MAX_DECODED_BYTES // 3 * 4):  # refused before any work on it (line breaks allowed)
        raise _too_big(where)
    compact = _B64_SPACE.sub("", payload)
    if len(compact) // 4 * 3 > MAX_DECODED_BYTES:
        raise _too_big(where)
    urlsafe = ("-" in compact or "_" in compact) and not ("+" in compact or "/" in compact)
    padded = compact.endswith("=")
    body = compact.rstrip("=")
    if len(body) % 4 == 1:
        raise InvalidMessages(f"{where}: its base64 does not decode (a cut-off payload), so guardrail cannot read it")
    body += "=" * (-len(body) % 4)
    try:
        data = base64.b64decode(body.translate(_FROM_URLSAFE) if urlsafe else body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessages(f"{where}: its base64 does not decode ({exc}), so guardrail cannot read it") from None
    return data, "urlsafe" if urlsafe else "base64", padded


_FROM_URLSAFE = str.maketrans("-_", "+/")


def _text(data: bytes, charset: str | None, where: str) -> tuple[str, str]:
    """The bytes' text, and the codec to write a rewrite back with. UTF-8 (a UTF-8 byte-order mark kept), whatever
    charset is stated: a provider may ignore the charset, and a stated ``utf-16`` or EBCDIC one made ASCII words
    read as gibberish to the check alone. A stated single-byte charset that keeps ASCII as it is (ISO-8859-1,
    windows-1252 ...) reads bytes that are not UTF-8, but only when UTF-8 would find nothing in them but ASCII: a
    reader of UTF-8 then sees the same words, never a text that reading hid."""
    try:
        codec = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        single = _single_byte(charset)
        lenient = data.decode("utf-8", errors="replace")
        try:
            if single is None or any(c >= "\x80" and c != "\ufffd" for c in lenient):
                raise exc
            codec, text = single, data.decode(single)
        except UnicodeDecodeError as bad:
            raise InvalidMessages(
                f"{where}: its bytes are not UTF-8 text{f' (nor {single})' if single else ''}: {bad.reason} at byte "
                f"{bad.start}, which guardrail cannot read (send text files as UTF-8)"
            ) from None
    if "\x00" in text:
        raise InvalidMessages(
            f"{where}: its text holds NUL characters (UTF-16 without a byte-order mark?), so guardrail cannot read it"
        )
    return text, codec


# single-byte charsets that keep ASCII as it is: each byte one character, no escapes, no shifts (by codecs' name)
_SINGLE_BYTE = frozenset(
    {"koi8-r", "koi8-u", "mac-roman", *(f"iso8859-{n}" for n in range(1, 17) if n != 12),
     *(f"cp{n}" for n in range(1250, 1259))}
)  # fmt: skip


def _single_byte(charset: str | None) -> str | None:
    """``charset``'s codec name if it is one of :data:`_SINGLE_BYTE` (ISO-8859-x, windows-125x, KOI8 ...); else
    None: UTF-16, UTF-7, Shift-JIS, EBCDIC, ``unicode_escape`` (which reads ``\\bomb`` as a backspace and "omb"), an
    unknown name."""
    try:
        name = codecs.lookup(charset).name if charset else None
    except (LookupError, ValueError, TypeError):
        return None
    return name if name in _SINGLE_BYTE else None


def _too_big(where: str) -> InvalidMessages:
    return InvalidMessages(
        f"{where}: a file over {MAX_DECODED_BYTES:,} bytes, which guardrail does not decode to read (send it as "
        "text parts, within the policy's max_chars)"
    )
