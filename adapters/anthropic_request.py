"""Reading an Anthropic Messages request as the chat messages the check reads, and writing the check's rewrite back.

The core reads chat messages (``guardrail.messages.extract``): a role and a content that is a string or a list of
parts with a ``text``. A Messages request keeps its text elsewhere too: the ``system`` parameter (a string or text
blocks), ``tool_result`` blocks (a string or blocks of their own) and the text of a plain-text ``document`` or a
``search_result`` a user message carries. So the request is read here into the chat shape, with the path of every
text in a plain copy of the request beside it:

- ``system`` becomes a system message (read under the policy's ``input.scope`` / ``system_context``, as the OpenAI
  adapter reads a system message);
- each message's ``tool_result`` blocks become ``tool`` messages before it (a tool's result is data, read as the
  OpenAI adapter reads a ``tool`` message), and the rest of it one message of its role whose parts are its texts;
- images, PDFs given as files or URLs, and the model's own turns' plumbing (``tool_use`` inputs, signed thinking,
  the server tools' results) are parts without text: skipped, as the OpenAI adapter skips image parts;
- any other block, or a field the check reads inside ``extra_body``, is refused before anything is sent
  (``UncheckedField``): a text guardrail cannot read must never pass as one it checked.

A rewrite (masked values, a rule's replacing message) goes back into a new copy of the request, each text at its
path; the copy, not the caller's objects, is what is sent (an iterable given as ``messages`` is read once).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .request_shapes import READ_FIELDS, UncheckedField, refuse_extra_body

__all__ = ["MessagesRequest", "plain"]

Path = tuple[str | int, ...]  # where a checked text sits in the request's copy: ("messages", 2, "content", 0, "text")

# blocks whose text is read, as parts of their message: text, and the text a user gives as a document or search result
_READ = frozenset({"text", "document", "search_result"})
# blocks without text to read: images and the model's own turns (its calls, signed thinking, its server tools'
# results), which the OpenAI adapter does not read in a request either (an assistant message's tool calls)
_SKIPPED = frozenset(
    {
        "image", "tool_use", "server_tool_use", "mcp_tool_use", "thinking", "redacted_thinking",
        "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
        "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
        "mcp_tool_result", "container_upload", "tool_reference",
    }
)  # fmt: skip
_FILE_SOURCES = frozenset({"base64", "url", "file"})  # a PDF (or a file) the model reads: skipped like an image
_TEXT_FIELDS = ("title", "context")  # a document's words besides its data, which the model reads too


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists (SDK models as the SDK sends them; iterables made lists): a copy that can be
    read, edited and sent without touching the caller's objects."""
    if isinstance(value, (str, bytes, bytearray, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if callable(getattr(value, "model_dump", None)):  # as anthropic's own serialiser dumps a model it is given
        return plain(value.model_dump(exclude_unset=True, mode="json", by_alias=True))
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return value


class MessagesRequest:
    """One request: ``payload`` (the chat messages the check reads), ``paths`` (per payload message, the path of its
    content when it is one string, or per part the path of its text, None for a part without one) and ``kwargs``
    (the request as it is sent: its ``messages`` and ``system`` plain copies)."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        refuse_extra_body(kwargs, READ_FIELDS | {"system"})
        self.kwargs = dict(kwargs)
        self.top: dict[str, Any] = {}
        for field in ("system", "messages"):
            if kwargs.get(field) is not None:
                self.top[field] = self.kwargs[field] = plain(kwargs[field])
        self.payload: list[dict[str, Any]] = []
        self.paths: list[Path | list[Path | None]] = []
        self._system(self.top.get("system"))
        messages = self.top.get("messages", [])
        if not isinstance(messages, list):
            raise UncheckedField(f"messages must be a list of messages, not {type(messages).__name__}")
        for i, message in enumerate(messages):
            self._message(message, ("messages", i))

    def rewritten(self, messages: Sequence[Any]) -> dict[str, Any]:
        """The request's fields with the check's ``messages`` (the payload, rewritten) put back where each text came
        from: new copies, so a request already on its way (``input.parallel``) is never changed under it."""
        top = copy.deepcopy(self.top)
        for paths, message in zip(self.paths, messages, strict=True):
            content = _get(message, "content")
            if not isinstance(paths, list):
                _set(top, paths, content)
                continue
            for path, part in zip(paths, content, strict=True):
                if path is not None:
                    _set(top, path, _get(part, "text"))
        return top

    # -- reading -----------------------------------------------------------------------------------

    def _system(self, system: Any) -> None:
        if system is None:
            return
        if isinstance(system, str):
            self._add("system", system, ("system",))
            return
        if not isinstance(system, list) or any(_get(b, "type") != "text" for b in system):
            raise UncheckedField("system must be a string or a list of text blocks; guardrail reads nothing else there")
        self._add_parts("system", [(b.get("text"), ("system", i, "text")) for i, b in enumerate(system)])

    def _message(self, message: Any, at: Path) -> None:
        if not isinstance(message, dict):
            raise UncheckedField(f"{_name(at)} must be a message (role and content), not {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            self._add(role, content, (*at, "content"))
            return
        if not isinstance(content, list):
            raise UncheckedField(f"{_name(at)}.content must be a string or a list of blocks")
        parts: list[tuple[Any, Path | None]] = []
        for j, block in enumerate(content):
            where = (*at, "content", j)
            if _kind(block, where) == "tool_result":  # a tool's result: read as a tool message, before its turn
                self._tool_result(block, where)
            else:
                parts += _block_texts(block, where)
        if parts:
            self._add_parts(role, parts)

    def _tool_result(self, block: dict[str, Any], at: Path) -> None:
        content = block.get("content")
        if content is None:
            return
        if isinstance(content, str):
            self._add("tool", content, (*at, "content"))
            return
        if not isinstance(content, list):
            raise UncheckedField(f"{_name(at)}.content must be a string or a list of blocks")
        parts: list[tuple[Any, Path | None]] = []
        for k, inner in enumerate(content):
            where = (*at, "content", k)
            if (kind := _kind(inner, where)) not in _READ | {"image", "tool_reference"}:
                raise UncheckedField(
                    f"{_name(where)} is a {kind!r} block in a tool result, which guardrail does not read"
                )
            parts += _block_texts(inner, where)
        self._add_parts("tool", parts)

    def _add(self, role: Any, text: Any, path: Path) -> None:
        self.payload.append({"role": role, "content": text})
        self.paths.append(path)

    def _add_parts(self, role: Any, parts: list[tuple[Any, Path | None]]) -> None:
        """A message of ``parts``: (text, its path) for a text; (a block's type, None) for a part without one."""
        self.payload.append(
            {"role": role, "content": [{"type": "text", "text": t} if p is not None else {"type": t} for t, p in parts]}
        )
        self.paths.append([p for _, p in parts])


def _block_texts(block: dict[str, Any], at: Path) -> list[tuple[Any, Path | None]]:
    """The texts of one block (not a tool result) as parts: (text, path), or (its type, None) when it has none."""
    kind = _kind(block, at)
    if kind == "text":
        return [(block.get("text"), (*at, "text"))]
    if kind in _SKIPPED:
        return [(kind, None)]
    if kind not in _READ:
        raise UncheckedField(
            f"{_name(at)} is a {kind!r} block, which guardrail does not read: it would reach the model unchecked "
            "(send its text as a text block, or use .unwrapped to bypass the guard deliberately)"
        )
    out: list[tuple[Any, Path | None]] = [
        (block[f], (*at, f)) for f in _TEXT_FIELDS if isinstance(block.get(f), str) and block[f]
    ]
    if kind == "search_result":
        return out + _inner_texts(block.get("content"), (*at, "content"))
    source = block.get("source")
    stype = _get(source, "type")
    if stype == "text" and isinstance(source, dict):
        return [*out, (source.get("data"), (*at, "source", "data"))]
    if stype == "content" and isinstance(source, dict):
        inner = source.get("content")
        if isinstance(inner, str):
            return [*out, (inner, (*at, "source", "content"))]
        return out + _inner_texts(inner, (*at, "source", "content"))
    if stype in _FILE_SOURCES:
        return [*out, (f"document ({stype})", None)]
    raise UncheckedField(f"{_name(at)} is a document with a {stype!r} source, which guardrail does not read")


def _inner_texts(content: Any, at: Path) -> list[tuple[Any, Path | None]]:
    """The text and image blocks a document's or a search result's content holds; anything else is refused."""
    if not isinstance(content, list):
        raise UncheckedField(f"{_name(at)} must be a list of blocks")
    out: list[tuple[Any, Path | None]] = []
    for k, inner in enumerate(content):
        where = (*at, k)
        if _kind(inner, where) not in ("text", "image"):
            raise UncheckedField(f"{_name(where)} is a {_kind(inner, where)!r} block, which guardrail does not read")
        out += _block_texts(inner, where)
    return out


def _kind(block: Any, at: Path) -> str:
    kind = _get(block, "type")
    if not isinstance(block, dict) or not isinstance(kind, str):
        raise UncheckedField(f"{_name(at)} must be a content block with a type")
    return kind


def _name(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _set(top: dict[str, Any], path: Path, value: Any) -> None:
    target: Any = top
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
