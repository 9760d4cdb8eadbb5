"""A request's side of the shapes: the messages a chat or Responses request asks the check to read, and the
request rewritten with the check's messages (masked values, a rule's replacing message) put back where each
came from. ``_core.GuardedCall`` asks here; the answer's shapes are ``shapes``'.

Besides the messages (or ``input``), a request carries text the model reads in other fields: a chat request's
``prediction`` (predicted output) and litellm's ``user_continue_message`` (the user turn litellm inserts to keep
roles alternating) are checked as user turns too, and rewritten where they came from.

A Responses ``input`` holds items besides messages. Those whose text comes from outside the application and the
model (a tool's result, documents a search retrieved, a remote MCP server's tool listing: ``_DATA_ITEMS``, and
``*_call_output``) are read as tool messages, untrusted data as a chat request's tool results are, and masked where
each string sits; those the model wrote itself (``_MODEL_ITEMS``: its calls and reasoning, read as its answer when it
wrote them) are not read again; an item of a type guardrail does not know is read as data, every string in it.

One rule for ``extra_body``: the SDKs (openai, and litellm's, and the LiteLLM proxy for a body's ``extra_body``)
merge it over the named fields *after* the check, so a field the check reads that arrives there would replace the
checked one unseen. Such a request is refused before anything is sent (``UncheckedField``), never half-read.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from guardrail.answer_actions import block_fields, is_media_url

from . import shapes
from .answer_text import _get

__all__ = [
    "READ_FIELDS",
    "WRITTEN_FIELDS",
    "Kind",
    "Source",
    "UncheckedField",
    "input_payload",
    "refuse_extra_body",
    "rewritten",
    "with_turns",
]

Kind = Literal["chat", "responses"]
Source = tuple[str, int | None]  # where a checked message came from: ("input", index), ("instructions", None) ...

# the request fields whose text the check reads (and rewrites): the proxy puts each back into its request
WRITTEN_FIELDS = ("messages", "input", "instructions", "prompt", "prediction", "user_continue_message")
# every request field guardrail reads: the texts, and what decides how the answer is read (stream, choices) and
# which conversation's placeholders it restores
READ_FIELDS = frozenset({*WRITTEN_FIELDS, "stream", "n", "previous_response_id", "conversation"})
_EXTRA_DEPTH = 8  # nested ``extra_body`` levels looked into (a LiteLLM proxy reads a body's own ``extra_body``)
# Responses input items whose text comes from outside the application and the model, by type: the fields read, every
# string in them but plumbing (``answer_actions.block_fields``), as one tool message, a part per string
_DATA_ITEMS: dict[str, tuple[str, ...]] = {
    "mcp_call": ("output", "error"),  # an MCP tool's result (its arguments are the model's)
    "file_search_call": ("results",),  # the retrieved chunks: text, filename, attributes
    "mcp_list_tools": ("tools", "error"),  # a remote server's tool names, descriptions and schemas
    "code_interpreter_call": ("outputs",),  # its logs (its code is the model's)
    "tool_search_output": ("tools",),
    "program_output": ("result",),
    "mcp_approval_response": ("reason",),
}
# items the model wrote (read as its answer when it wrote them) or that carry no text: not read again
_MODEL_ITEMS = frozenset(
    {"function_call", "custom_tool_call", "reasoning", "web_search_call", "computer_call", "image_generation_call",
     "local_shell_call", "shell_call", "apply_patch_call", "mcp_approval_request", "tool_search_call", "program",
     "compaction", "compaction_trigger", "item_reference"}
)  # fmt: skip
# the plumbing of an item of a type guardrail does not know, besides a block's (``block_fields``)
_ITEM_PLUMBING = frozenset({"call_id", "status", "server_label", "approval_request_id", "container_id"})
Path = tuple[str | int, ...]


class UncheckedField(TypeError):
    """A request whose ``extra_body`` carries a field guardrail reads: the SDK would send that one in place of the
    checked one, so it is refused before anything is sent."""


def refuse_extra_body(kwargs: Mapping[str, Any], fields: Iterable[str] = READ_FIELDS) -> None:
    """Raise :class:`UncheckedField` when ``extra_body`` (at any nesting) carries one of ``fields`` (by default
    :data:`READ_FIELDS`; a media request passes the texts a model may read, ``WRITTEN_FIELDS``, since its ``n`` or
    ``stream`` decide nothing guardrail reads)."""
    fields = frozenset(fields)
    extra, path = kwargs.get("extra_body"), "extra_body"
    for _ in range(_EXTRA_DEPTH):
        if not isinstance(extra, Mapping):
            return
        found = sorted(k for k in extra if k in fields)
        if found:
            raise UncheckedField(
                f"{path} carries {found[0]!r}, a field guardrail checks: it would be sent in place of the checked "
                f"one, unchecked. Pass {found[0]!r} as the request's own field (a named argument, or the top level "
                "of the body), not inside extra_body"
            )
        extra, path = extra.get("extra_body"), f"{path}.extra_body"
    raise UncheckedField(f"extra_body is nested more than {_EXTRA_DEPTH} levels deep; guardrail does not read it")


def input_payload(kind: Kind, kwargs: dict[str, Any]) -> tuple[Any, list[Source]]:
    """The chat messages to check, and where each came from in the request (for rewrites). An ``input`` given as
    an iterator is made a list in ``kwargs`` (the check would use it up). Raises :class:`UncheckedField` for a
    request it cannot read whole (a read field inside ``extra_body``, a Responses ``input`` that is one dict)."""
    refuse_extra_body(kwargs)
    if kind == "chat":
        return _chat_payload(kwargs)
    items: list[Any] = []
    sources: list[Source] = []
    instructions, inp = kwargs.get("instructions"), kwargs.get("input")
    if isinstance(inp, (Mapping, bytes, bytearray)):  # the API takes a string or a list of items, nothing else
        raise UncheckedField(
            f"a Responses input must be a string or a list of items, not a {type(inp).__name__}: guardrail does not "
            "read it (put a single item in a list: input=[item])"
        )
    if isinstance(instructions, str) and instructions:
        items.append({"role": "system", "content": instructions})
        sources.append(("instructions", None))
    variables = _get(kwargs.get("prompt"), "variables")
    if isinstance(variables, Mapping):  # a stored prompt's variables: user text placed before the input
        for name, value in variables.items():
            text = value if isinstance(value, str) else _get(value, "text")  # or {"type": "input_text", ...}
            if isinstance(text, str) and text:
                items.append({"role": "user", "content": text})
                sources.append((f"variable:{name}", None))
    if isinstance(inp, str):
        items.append({"role": "user", "content": inp})
        sources.append(("input", None))
    elif isinstance(inp, Iterable) and not isinstance(inp, (bytes, Mapping)):
        inp = kwargs["input"] = list(inp)
        for i, item in enumerate(inp):
            if isinstance(_get(item, "role"), str):
                items.append(item)
                sources.append(("input", i))
            elif str(_get(item, "type") or "").endswith("_call_output"):
                # a tool's result (function_call_output ...): checked as a tool message, like chat's
                output = _tool_output_text(_get(item, "output"))
                if output:
                    items.append({"role": "tool", "content": output})
                    sources.append(("tool_output", i))
            elif leaves := _data_leaves(item):  # an MCP call's output, retrieved documents ...: a tool message too
                items.append({"role": "tool", "content": [{"type": "text", "text": t} for _, t in leaves]})
                sources.append(("tool_data", i))
    return items, sources


def _data_leaves(item: Any) -> list[tuple[Path, str]]:
    """Where an input item carries text from outside the application and the model, and the text: each string of its
    data fields (``_DATA_ITEMS``; every field of an item of a type guardrail does not know), in order. Read from
    the item as it is sent (an SDK model dumped), so the check's texts go back to the same places."""
    kind = _get(item, "type")
    if kind in _MODEL_ITEMS:
        return []
    plain = _sent(item)
    names = _DATA_ITEMS.get(str(kind)) or [n for n in block_fields(plain) if n not in _ITEM_PLUMBING]
    return [leaf for name in names if name in plain for leaf in _leaves(plain[name], (name,))]


def _leaves(value: Any, path: Path) -> list[tuple[Path, str]]:
    if isinstance(value, str):
        return [(path, value)] if value.strip() and not is_media_url(value) else []
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    if isinstance(value, dict):
        return [leaf for k in block_fields(value) for leaf in _leaves(value[k], (*path, k))]
    return []


def _sent(item: Any) -> dict[str, Any]:
    """An input item as the SDK sends it: a plain dict, a copy (the caller's item is never changed)."""
    if isinstance(item, Mapping):
        return copy.deepcopy(dict(item))
    dump = getattr(item, "model_dump", None)
    return dict(dump(exclude_unset=True, mode="json")) if callable(dump) else {}


def _put_leaves(item: Any, message: Any) -> dict[str, Any]:
    """``item`` (a copy) with the check's texts of ``message`` (its tool message, masked) back where each was read."""
    plain, parts = _sent(item), _get(message, "content")
    leaves = _data_leaves(item)
    if not isinstance(parts, list) or len(parts) != len(leaves):  # never: the check edits texts, not their number
        raise UncheckedField(f"guardrail cannot put the checked text of a {_get(item, 'type')!r} input item back")
    for (path, _), part in zip(leaves, parts, strict=True):
        at: Any = plain
        for key in path[:-1]:
            at = at[key]
        at[path[-1]] = _get(part, "text")
    return plain


def rewritten(kind: Kind, kwargs: dict[str, Any], sources: list[Source], messages: list[Any]) -> None:
    """Put the check's ``messages`` into the request ``kwargs``, each where its source says."""
    if kind == "chat":
        if not sources:
            kwargs["messages"] = messages
            return
        kwargs["messages"] = [m for (field, _), m in zip(sources, messages, strict=True) if field == "messages"]
        for (field, _), msg in zip(sources, messages, strict=True):
            if field != "messages":  # prediction, user_continue_message: their content, as checked
                kwargs[field] = {**dict(kwargs[field]), "content": _get(msg, "content")}
        return
    new_input = kwargs.get("input")
    new_input = list(new_input) if isinstance(new_input, Iterable) and not isinstance(new_input, str) else new_input
    for (field, index), msg in zip(sources, messages, strict=True):
        if field == "instructions":
            kwargs["instructions"] = _get(msg, "content")
        elif field.startswith("variable:"):
            prompt = dict(kwargs["prompt"])
            name, text = field.partition(":")[2], _get(msg, "content")
            old = prompt["variables"][name]
            new = text if isinstance(old, str) else {**dict(old), "text": text}
            prompt["variables"] = {**prompt["variables"], name: new}
            kwargs["prompt"] = prompt
        elif field == "tool_data":
            assert isinstance(new_input, list) and index is not None
            if [_get(p, "text") for p in _get(msg, "content") or []] != [t for _, t in _data_leaves(new_input[index])]:
                new_input[index] = _put_leaves(new_input[index], msg)  # unchanged items keep their own type
        elif field == "tool_output":
            assert isinstance(new_input, list) and index is not None
            old_output = _get(new_input[index], "output")
            text = _get(msg, "content")
            if text != shapes.content_text(old_output):  # unchanged outputs keep their shape (parts, images)
                new_input[index] = {**dict(new_input[index]), "output": text}
        elif index is None:
            new_input = _get(msg, "content")
        else:
            assert isinstance(new_input, list)
            new_input[index] = msg
    kwargs["input"] = new_input


def with_turns(kind: Kind, kwargs: Mapping[str, Any], answer: str, turn: str) -> dict[str, Any]:
    """A copy of the request ``kwargs`` with two turns after its own: ``answer`` as the assistant's and ``turn`` as
    the user's (``adapters.reask``). A Responses ``input`` given as a string becomes its user item first. Chat
    messages that end with the assistant's turn (a prefill, which ``answer`` continues) keep it last: ``answer``
    goes back as that turn continued, then ``turn``, then the prefill again, so the new answer continues it too and
    the roles still alternate (as the Messages API requires)."""
    added = [{"role": "assistant", "content": answer}, {"role": "user", "content": turn}]
    if kind == "chat":
        messages = list(kwargs.get("messages") or [])
        last = messages[-1] if messages else None
        prefill = _get(last, "role") == "assistant" and not _get(last, "tool_calls")
        continued = _continued(_get(last, "content"), answer) if prefill else None
        if last is not None and continued is not None:
            added = [{**_plain(last), "content": continued}, added[1], last]
            messages = messages[:-1]
        return {**kwargs, "messages": [*messages, *added]}
    inp = kwargs.get("input")
    items = [{"role": "user", "content": inp}] if isinstance(inp, str) else list(inp or [])
    return {**kwargs, "input": [*items, *added]}


def _continued(prefill: Any, answer: str) -> Any:
    """A prefill's content (a string or text parts) with the ``answer`` that continued it; None for any other."""
    if isinstance(prefill, str):
        return prefill + answer
    if isinstance(prefill, (list, tuple)) and prefill and all(_get(p, "type") == "text" for p in prefill):
        return [*prefill, {"type": "text", "text": answer}]
    return None


def _plain(message: Any) -> dict[str, Any]:
    """A message as a dict (an SDK model as it is sent)."""
    if isinstance(message, Mapping):
        return dict(message)
    dump = getattr(message, "model_dump", None)
    return dict(dump(exclude_unset=True, mode="json")) if callable(dump) else {"role": "assistant"}


def _chat_payload(kwargs: dict[str, Any]) -> tuple[Any, list[Source]]:
    """A chat request's messages, with its other texts the model reads as user turns: ``prediction``'s content
    before them, and ``user_continue_message`` where litellm inserts it (after a conversation that ends with
    an assistant's turn; else before the messages). Sources only when there are such texts."""
    messages = kwargs.get("messages") or []
    extras: list[tuple[str, str | None]] = []
    for field in ("prediction", "user_continue_message"):
        value = kwargs.get(field)
        if value is None:
            continue
        text = shapes.content_text(_get(value, "content"))
        if text is None and _get(value, "content") is not None:
            raise UncheckedField(f"guardrail cannot read {field}'s content (a string or a list of text parts)")
        if text:
            extras.append((field, text))
    if not extras:
        return messages, []
    if not isinstance(messages, (list, tuple)):
        return messages, []  # not messages the check can read: it refuses them itself
    messages = kwargs["messages"] = list(messages)
    before = [(f, t) for f, t in extras if f == "prediction" or _ends_with_user(messages)]
    after = [(f, t) for f, t in extras if (f, t) not in before]
    items: list[Any] = [{"role": "user", "content": t} for _, t in before]
    sources: list[Source] = [(f, None) for f, _ in before]
    items += messages
    sources += [("messages", i) for i in range(len(messages))]
    items += [{"role": "user", "content": t} for _, t in after]
    sources += [(f, None) for f, _ in after]
    return items, sources


def _ends_with_user(messages: list[Any]) -> bool:
    role = _get(messages[-1], "role") if messages else None
    return isinstance(role, str) and role.lower() in ("user", "human")


def _tool_output_text(output: Any) -> str | None:
    """The text of a tool's result: a string, text parts, or a shell's ``[{stdout, stderr}]``."""
    text = shapes.content_text(output)
    if text is not None or not isinstance(output, list):
        return text
    found = [v for part in output for key in ("stdout", "stderr", "output") if isinstance(v := _get(part, key), str)]
    return "\n".join(found) or None
