"""Structured outputs (``chat.completions.parse``, ``responses.parse``) on the guarded OpenAI client.

A guarded ``parse`` is the guarded ``create`` with the SDK's own request conversion before the call
(:func:`create_kwargs`) and the SDK's own parser after the check (:func:`parsed`), so ``parsed``,
``output_parsed`` and ``parsed_arguments`` are read from the answer the application is handed: masked values,
and with ``restore=True`` the user's own (restored value by value: ``GuardedCall.json_text``). Two things make
the check read what the parser will read:

- the answer's JSON text is written out with its escapes decoded before the check (:func:`decoded`):
  ``"leak\\u0040corp.example"`` is an address, and ``"b\\u006fmb"`` a word, only once decoded;
- an answer the check left no longer the JSON document it was (a rule's replacing message; a value masked where
  only a number fits) is stopped as a block is, instead of failing in the parser with a ``ValidationError``.

A stopped chat answer raises the SDK's ``ContentFilterFinishReasonError``, as a provider's filter does under
``parse``. A stopped Responses answer is returned ``incomplete`` (reason ``content_filter``) with nothing parsed
(``output_parsed`` None), as ``responses.create`` returns it: the Responses parser has no such error.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from guardrail.call import CONTENT_FILTER

__all__ = ["create_kwargs", "decoded", "parsed"]


def _omit() -> Any:
    from openai import omit

    return omit


def create_kwargs(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``parse``'s arguments as ``create`` takes them, converted as the SDK's own ``parse`` converts them: a
    pydantic ``response_format`` / ``text_format`` becomes its JSON schema, and tools must be ones it can parse."""
    if kwargs.get("stream"):
        raise TypeError(f"{kind} parse does not stream; use create(stream=True)")
    out = dict(kwargs)
    if kind == "responses":
        from openai.lib._parsing._responses import type_to_text_format_param
        from openai.resources.responses.responses import _make_tools

        text_format = out.pop("text_format", _omit())
        if text_format is not _omit():
            text = dict(out.get("text") or {})
            if "format" in text:
                raise TypeError("Cannot mix and match text.format with text_format")
            out["text"] = {**text, "format": type_to_text_format_param(text_format)}
        if "tools" in out:
            out["tools"] = _make_tools(out["tools"])
        return out
    from openai.lib._parsing._completions import type_to_response_format_param, validate_input_tools

    validate_input_tools(kwargs.get("tools", _omit()))
    if "response_format" in out:
        out["response_format"] = type_to_response_format_param(out["response_format"])
    out["extra_headers"] = {"X-Stainless-Helper-Method": "chat.completions.parse", **(out.get("extra_headers") or {})}
    return out


def _json_parts(result: Any) -> list[tuple[Any, str]]:
    """Where the answer's texts sit: (the object holding it, its attribute), for a chat completion's choices and a
    Responses answer's output_text parts."""
    out: list[tuple[Any, str]] = []
    for choice in getattr(result, "choices", None) or []:
        if getattr(choice, "message", None) is not None:
            out.append((choice.message, "content"))
    for item in getattr(result, "output", None) or []:
        if getattr(item, "type", None) == "message":
            out += [(part, "text") for part in item.content or [] if getattr(part, "type", None) == "output_text"]
    return out


def decoded(result: Any) -> Any:
    """The upstream answer (the SDK's own object, edited in place) with each JSON text written out as its parser
    reads it, escapes decoded. Text that is not JSON is left as it is (the parser rejects it anyway)."""
    for holder, name in _json_parts(result):
        text = getattr(holder, name, None)
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                setattr(holder, name, json.dumps(json.loads(text), ensure_ascii=False))
    return result


def _is_json(text: Any) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def parsed(result: Any, kwargs: dict[str, Any]) -> Any:
    """The checked answer parsed by the SDK's own parser (see the module's docstring for a stopped one)."""
    if getattr(result, "choices", None) is not None:
        from openai.lib._parsing._completions import parse_chat_completion

        for choice in result.choices:
            content = getattr(getattr(choice, "message", None), "content", None)
            if isinstance(content, str) and choice.finish_reason != CONTENT_FILTER and not _is_json(content):
                choice.finish_reason = CONTENT_FILTER
        return parse_chat_completion(
            response_format=kwargs.get("response_format", _omit()),
            input_tools=kwargs.get("tools", _omit()),
            chat_completion=result,
        )
    from openai.lib._parsing._responses import parse_response
    from openai.resources.responses.responses import _make_tools

    reason = getattr(getattr(result, "incomplete_details", None), "reason", None)
    stopped = getattr(result, "status", None) == "incomplete" and reason == CONTENT_FILTER
    if not stopped and not all(_is_json(getattr(h, n, None)) for h, n in _json_parts(result)):
        from openai.types.responses.response import IncompleteDetails

        result.status, result.incomplete_details = "incomplete", IncompleteDetails(reason=CONTENT_FILTER)
        stopped = True
    return parse_response(
        text_format=_omit() if stopped else kwargs.get("text_format", _omit()),
        input_tools=_make_tools(kwargs.get("tools", _omit())),
        response=result,
    )
