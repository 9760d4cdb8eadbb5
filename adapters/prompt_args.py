"""Where a ``guardrail.protect``-decorated function's call carries its prompt (``guardrail.integrations``): a named
argument, or inside ``**kwargs`` / ``*args`` (a thin forwarder ``def chat(**kwargs)`` passes ``messages=`` through
them), and how a rewrite puts the checked prompt back there. Pure: no client is imported.
"""

from __future__ import annotations

import inspect
import numbers
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "CONFIG",
    "SYSTEM_ARGS",
    "Where",
    "check_prompt_arg",
    "find_prompt",
    "may_hold_text",
    "prompt_at",
    "put_prompt",
]

# where a call's prompt is: (argument name, None), or inside a variadic argument: (its name, key of **kwargs or
# index in *args)
Where = tuple[str, str | int | None]

# arguments that hold the developer's own configuration, not a user's text; the system prompt's names count as text
# when the policy reads system turns (input.scope: all), since then such text must be checked, not trusted
SYSTEM_ARGS = frozenset({"system", "system_prompt", "system_message", "instructions"})
CONFIG = SYSTEM_ARGS | frozenset(
    {"model", "model_name", "engine", "deployment", "user", "user_id", "session_id", "conversation_id", "stop",
     "tool_choice", "response_format", "reasoning_effort", "service_tier", "voice", "language", "locale", "api_key",
     "api_base", "base_url"}
)  # fmt: skip
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|data:|mailto:|urn:|tel:)\S*$")  # not "Q:how ..." or "Re:..."
# scripts written without spaces between words: Han, kana, Hangul, Thai, Lao, Khmer, Myanmar, Tibetan
_UNSPACED = re.compile("[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_ASKS = re.compile("[?？!！。؟¿¡;՞]")


def variadic(sig: inspect.Signature, kind: inspect._ParameterKind) -> str | None:
    return next((p.name for p in sig.parameters.values() if p.kind is kind), None)


def check_prompt_arg(sig: inspect.Signature, prompt_arg: str | None) -> None:
    """At decoration: ``prompt_arg`` names an argument, or a key the function's ``**kwargs`` may receive."""
    if prompt_arg is not None and prompt_arg not in sig.parameters and not variadic(sig, inspect.Parameter.VAR_KEYWORD):
        raise TypeError(f"protect: the function has no argument {prompt_arg!r}")


def find_prompt(
    sig: inspect.Signature,
    bound: inspect.BoundArguments,
    prompt_arg: str | None,
    fn_name: str = "the function",
    config: frozenset[str] = CONFIG,
) -> Where | None:
    """Where this call's prompt is: ``prompt_arg``, else ``messages`` / ``prompt`` (named, or passed through
    ``**kwargs``), else the one argument that may be a prompt: a messages list or a ``str`` (``*args`` and
    ``**kwargs`` looked into), a model's name beside another candidate not counting (a forwarder called like
    ``litellm.completion("gpt-4o-mini", messages)``). None when there is none: the caller refuses to run the function
    unchecked.

    Raises ``TypeError`` when several arguments may be the prompt (a question beside a history, even one named
    ``messages``; two texts): a guess would check one and run the other unchecked, so ``prompt_arg=`` must say which."""
    var_kw = variadic(sig, inspect.Parameter.VAR_KEYWORD)
    extra = bound.arguments.get(var_kw, {}) if var_kw else {}
    if prompt_arg is not None:
        if prompt_arg in sig.parameters:
            return prompt_arg, None
        return (var_kw, prompt_arg) if var_kw and prompt_arg in extra else None
    places = list(_places(sig, bound))
    found = [(w, v) for w, v in places if is_messages(v) or isinstance(v, str)]
    if len(found) > 1:  # beside another candidate, a model's name ("gpt-4o-mini", "openai/gpt-4.1") is not the prompt
        found = [(w, v) for w, v in found if not (isinstance(v, str) and _MODEL_NAME.fullmatch(v))]
    named: list[Where] = [(name, None) for name in ("messages", "prompt") if name in bound.arguments and name != var_kw]
    named += [(var_kw, name) for name in ("messages", "prompt") if var_kw and name in extra]
    if named:
        # a question beside a list named messages is as ambiguous as beside any other list; a token (a model, a user
        # id, "auto") or an argument named as configuration (system, instructions, model, user ...) is not a question
        others = [w for w, v in places if w != named[0] and _may_be_question(w, v, config)]
        if not others:
            return named[0]
        found = [(named[0], None), *((w, None) for w in others)]
    if len(found) > 1:
        which = ", ".join(_said(w) for w, _ in found)
        raise TypeError(
            f"guardrail.protect cannot tell which argument of this call of {fn_name}() is the prompt ({which} may "
            "each be): name it with protect(guard, prompt_arg=...) (an argument, or a key of **kwargs)"
        )
    return found[0][0] if found else None


def _may_be_question(where: Where, value: Any, config: frozenset[str]) -> bool:
    """Whether an argument beside a named ``messages``/``prompt`` may be a text the caller's user wrote: a messages
    list, or a text not in a configuration argument that has a space in it, or is written in a script that uses no
    spaces, or asks ("bomb?"). A word ("Zoë", "O'Brien"), an id, a key, a URL or a data URI is not a question."""
    if is_messages(value):
        return True
    name = where[1] if isinstance(where[1], str) else where[0]
    if name in SYSTEM_ARGS and name not in config:  # the policy reads system turns: any text given as one counts
        return value is not None and not isinstance(value, (bool, int, float))
    if not isinstance(value, str) or name in config:
        return False
    text = value.strip()
    if _URL.match(text):
        return False
    if any(c.isspace() or unicodedata.category(c) == "Cf" for c in text):  # zero-width spaces part words too
        return True
    return bool(_UNSPACED.search(text) or _ASKS.search(text))


# a model's name: one token of letters, digits and ".:@/_-" with a digit, "-" or "/" in it (a one-word prompt such as
# "hello" is not one, so it still counts as a candidate and an ambiguous call is refused, never guessed)
_MODEL_NAME = re.compile(r"[A-Za-z0-9._:@/-]*[0-9/-][A-Za-z0-9._:@/-]*")


def _places(sig: inspect.Signature, bound: inspect.BoundArguments) -> Iterator[tuple[Where, Any]]:
    """Every value the call passes, with where it is: named arguments, each ``*args`` item, each ``**kwargs`` value."""
    var_pos = variadic(sig, inspect.Parameter.VAR_POSITIONAL)
    var_kw = variadic(sig, inspect.Parameter.VAR_KEYWORD)
    for name, value in bound.arguments.items():
        if name == var_pos:
            yield from (((name, i), v) for i, v in enumerate(value))
        elif name == var_kw:
            yield from (((name, k), v) for k, v in value.items())
        else:
            yield (name, None), value


def _said(where: Where) -> str:
    name, key = where
    if key is None:
        return name
    return f"{key}=" if isinstance(key, str) else f"*{name}[{key}]"


def is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, Mapping) and "role" in m for m in value)


def may_hold_text(bound: inspect.BoundArguments) -> bool:
    """Whether any argument of the call (inside ``*args`` and ``**kwargs`` too) may carry text: anything but
    ``None``, numbers and booleans."""
    values: list[Any] = []
    for value in bound.arguments.values():
        values += (
            list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, tuple) else [value]
        )
    return any(v is not None and not isinstance(v, numbers.Number) for v in values)


def prompt_at(bound: inspect.BoundArguments, where: Where) -> Any:
    name, key = where
    if key is None:
        return bound.arguments.get(name)  # a named argument left to its default: None
    return bound.arguments[name][key]


def put_prompt(bound: inspect.BoundArguments, where: Where, prompt: Any) -> None:
    """The call's arguments with ``prompt`` where the prompt was (a copy of a variadic argument, changed)."""
    name, key = where
    if key is None:
        bound.arguments[name] = prompt
    elif isinstance(key, str):
        bound.arguments[name] = {**bound.arguments[name], key: prompt}
    else:
        args = list(bound.arguments[name])
        args[key] = prompt
        bound.arguments[name] = tuple(args)
