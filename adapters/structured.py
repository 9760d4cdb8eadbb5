"""Structured outputs (``chat.completions.parse``, ``responses.parse``) on the guarded OpenAI client.

A guarded ``parse`` is the guarded ``create`` with the SDK's own request conversion before the call and the
SDK's own parser after the check (:class:`Structured`), so ``parsed``,
``output_parsed`` and ``parsed_arguments`` are read from the answer the application is handed: masked values,
and with ``restore=True`` the user's own (restored value by value: ``GuardedCall.json_text``). Two things make
the check read what the parser will read:

- the answer's JSON text is written out with its escapes decoded before the check (:func:`decoded`):
  ``"leak\\u0040corp.example"`` is an address, and ``"b\\u006fmb"`` a word, only once decoded;
- an answer the check left no longer the JSON document it was (a rule's replacing message; a value masked where
  only a number fits) is stopped as a block is (``GuardedCall.json_text``), instead of failing in the parser with
  a ``ValidationError``; what upstream sent is the parser's to judge (a truncated answer raises the SDK's
  ``LengthFinishReasonError``, prose without a format is not parsed).

A stopped chat answer raises the SDK's ``ContentFilterFinishReasonError``, as a provider's filter does under
``parse``. A stopped Responses answer is returned ``incomplete`` (reason ``content_filter``) with nothing parsed
(``output_parsed`` None), as ``responses.create`` returns it: the Responses parser has no such error.
"""

from __future__ import annotations

import json
from typing import Any

from guardrail.call import CONTENT_FILTER

from .answer_text import unescape_json

__all__ = ["Structured"]


def _omit() -> Any:
    from openai import omit

    return omit


def _given(value: Any) -> bool:
    """Whether an argument was given (the SDK's own test: ``omit`` and ``NOT_GIVEN`` both mean "not given")."""
    from openai import NotGiven, Omit

    return not isinstance(value, NotGiven | Omit)


class Structured:
    """One ``parse`` call: its arguments as ``create`` takes them, converted once as the SDK's own ``parse``
    converts them (a pydantic ``response_format`` / ``text_format`` becomes its JSON schema; tools become ones
    the parser can read), and what the parser needs after the check."""

    def __init__(self, kind: str, kwargs: dict[str, Any]) -> None:
        if kwargs.get("stream"):
            raise TypeError(f"{kind} parse does not stream; use create(stream=True)")
        self.kind = kind
        self.tools: Any
        out = dict(kwargs)
        tools = out.get("tools", _omit())
        if _given(tools):
            tools = out["tools"] = list(tools)  # converted once: a generator is read once
        if kind == "responses":
            from openai.lib._parsing._responses import type_to_text_format_param
            from openai.resources.responses.responses import _make_tools

            self.format = out.pop("text_format", _omit())
            if _given(self.format):
                text = dict(out.get("text") or {})
                if "format" in text:
                    raise TypeError("Cannot mix and match text.format with text_format")
                out["text"] = {**text, "format": type_to_text_format_param(self.format)}
            self.tools = _make_tools(tools)
            if self.tools is not _omit():
                out["tools"] = self.tools
        else:
            from openai.lib._parsing._completions import type_to_response_format_param, validate_input_tools

            self.format = out.get("response_format", _omit())
            self.tools = validate_input_tools(tools)
            if "response_format" in out:
                out["response_format"] = type_to_response_format_param(self.format)
            helper = {"X-Stainless-Helper-Method": "chat.completions.parse"}
            out["extra_headers"] = {**helper, **(out.get("extra_headers") or {})}
        self.create_kwargs = out

    @property
    def has_format(self) -> bool:
        """Whether the answer's text is a JSON document the caller parses (a JSON format was asked for)."""
        plain = isinstance(self.format, dict) and self.format.get("type") == "text"
        return _given(self.format) and not plain

    def decoded(self, result: Any) -> Any:
        """The upstream answer (the SDK's own object, edited in place) with each JSON text written out as its
        parser reads it, escapes decoded; a text that does not parse (cut short) gets its ``\\uXXXX`` escapes
        decoded, so what it carries is checked too. Without a JSON format, the answer is left as it came."""
        if not self.has_format:
            return result
        for holder, name in _json_parts(result):
            text = getattr(holder, name, None)
            if isinstance(text, str):
                try:
                    setattr(holder, name, json.dumps(json.loads(text), ensure_ascii=False))
                except (ValueError, RecursionError):
                    setattr(holder, name, unescape_json(text))
        return result

    def parsed(self, result: Any) -> Any:
        """The checked answer parsed by the SDK's own parser (a stopped one: see the module's docstring)."""
        if self.kind != "responses":
            from openai.lib._parsing._completions import parse_chat_completion

            return parse_chat_completion(response_format=self.format, input_tools=self.tools, chat_completion=result)
        from openai.lib._parsing._responses import parse_response

        reason = getattr(getattr(result, "incomplete_details", None), "reason", None)
        stopped = getattr(result, "status", None) == "incomplete" and reason == CONTENT_FILTER
        return parse_response(text_format=_omit() if stopped else self.format, input_tools=self.tools, response=result)


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
