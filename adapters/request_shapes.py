"""A request's side of the shapes: the messages a chat or Responses request asks the check to read, and the
request rewritten with the check's messages (masked values, a rule's replacing message) put back where each
came from. ``_core.GuardedCall`` asks here; the answer's shapes are ``shapes``'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from . import shapes
from .answer_text import _get

__all__ = ["Kind", "Source", "input_payload", "rewritten"]

Kind = Literal["chat", "responses"]
Source = tuple[str, int | None]  # where a checked message came from: ("input", index), ("instructions", None) ...


def input_payload(kind: Kind, kwargs: dict[str, Any]) -> tuple[Any, list[Source]]:
    """The chat messages to check, and where each came from in the request (for rewrites). An ``input`` given as
    an iterator is made a list in ``kwargs`` (the check would use it up)."""
    if kind == "chat":
        return kwargs.get("messages") or [], []
    items: list[Any] = []
    sources: list[Source] = []
    instructions, inp = kwargs.get("instructions"), kwargs.get("input")
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
    return items, sources


def rewritten(kind: Kind, kwargs: dict[str, Any], sources: list[Source], messages: list[Any]) -> None:
    """Put the check's ``messages`` into the request ``kwargs``, each where its source says."""
    if kind == "chat":
        kwargs["messages"] = messages
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


def _tool_output_text(output: Any) -> str | None:
    """The text of a tool's result: a string, text parts, or a shell's ``[{stdout, stderr}]``."""
    text = shapes.content_text(output)
    if text is not None or not isinstance(output, list):
        return text
    found = [v for part in output for key in ("stdout", "stderr", "output") if isinstance(v := _get(part, key), str)]
    return "\n".join(found) or None
