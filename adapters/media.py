"""Media generation (images, speech, video): the text prompt is checked on the input stage; the media is not.

A module of its own because the openai wrapper, the litellm wrapper and the LiteLLM proxy guardrail guard the same
calls the same way, and none of them needs the chat machinery (``_core.GuardedCall``: answers, streams,
placeholders to restore): an image, a sound or a video is not text, so only what the model is asked is read.

- **What is read**: the ``prompt`` of an image (``images.generate`` / ``edit``; litellm's ``image_generation`` /
  ``image_edit``) or a video (``videos.create``, ``remix``, ``edit``, ``extend``; litellm's ``video_generation`` ...),
  and speech's ``input`` (the text spoken) as the user's turn, with its ``instructions`` (how it is spoken) as a
  system prompt, read as ``input.scope`` reads one. One ``guardrail.call.Call`` checks it (``Call.send`` /
  ``asend``: the policy's ``input.parallel`` means here what it means for chat).
- **Block**: there is no refusal shape for a file, so a blocked prompt raises whatever ``on_block.respond`` says:
  ``guardrail.Blocked`` with the decision, as ``on_block: raise`` does for chat (the proxy: its HTTP 400). The
  upstream is never called (under ``input.parallel`` it was called already, and its answer is dropped).
- **The proxy**: ``pre_call`` checks and rewrites, ``during_call`` only blocks. The proxy's ``/images/generations``
  and ``/audio/speech`` call no ``during_call`` hook, so a ``during_call`` guardrail checks them in ``pre_call``
  (``PROXY_PRE_CALL_ONLY``), blocking only, as its mode says.
- **Rewrite**: the rewritten prompt is sent (a redaction's placeholders, or a rule's replacing message).
- **What it cannot read is refused** before anything is sent (``request_shapes.UncheckedField``, a ``TypeError``): a
  text field inside ``extra_body`` (the SDKs merge it over the checked one), a prompt that is not a string, or a
  text field the call does not read (``messages`` beside an image's ``prompt``), which a provider might read.
- **Outputs are not checked**: the image, sound or video comes back as the upstream sent it, and so does an image's
  ``revised_prompt`` (the provider's own rewrite of the prompt): left as it came.

``with_raw_response`` / ``with_streaming_response`` on these resources would send the prompt unchecked: they raise
``AttributeError``, as they do on the chat resources.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol

from guardrail.call import Call, Outcome
from guardrail.decision import Decision

from .answer_text import _get
from .request_shapes import WRITTEN_FIELDS, UncheckedField, refuse_extra_body

__all__ = [
    "LITELLM_CALLS",
    "OPENAI_RESOURCES",
    "PROXY_CALLS",
    "PROXY_PRE_CALL_ONLY",
    "MediaKind",
    "MediaRequest",
    "MediaResource",
    "asend",
    "by_name",
    "check_proxy_media",
    "guarded",
    "litellm_function",
    "proxy_unchecked",
    "send",
]

MediaKind = Literal["image", "speech", "video"]

# the text fields of each kind, in the order the check reads them, with the role each is read as
FIELDS: Final[Mapping[MediaKind, tuple[tuple[str, str], ...]]] = {
    "image": (("prompt", "user"),),
    "video": (("prompt", "user"),),
    "speech": (("instructions", "system"), ("input", "user")),
}
# openai's media resources: the methods that send a prompt, and the resources below them that have some
OPENAI_RESOURCES: Final[Mapping[str, tuple[Mapping[str, MediaKind], Mapping[str, Mapping[str, MediaKind]]]]] = {
    "images": ({"generate": "image", "edit": "image"}, {}),  # create_variation takes no prompt
    "audio": ({}, {"speech": {"create": "speech"}}),  # transcriptions and translations pass
    "videos": (
        {"create": "video", "create_and_poll": "video", "remix": "video", "edit": "video", "extend": "video"},
        {},
    ),
}
# litellm's media functions that send a prompt; each has an async twin, its name with an "a" in front (aspeech ...)
LITELLM_CALLS: Final[Mapping[str, MediaKind]] = {
    "image_generation": "image", "image_edit": "image", "speech": "speech", "video_generation": "video",
    "video_remix": "video", "video_edit": "video", "video_extension": "video",
}  # fmt: skip
# the LiteLLM proxy's call types for them (its CallTypes)
PROXY_CALLS: Final[Mapping[str, MediaKind]] = {
    **LITELLM_CALLS,
    **{"a" + name: kind for name, kind in LITELLM_CALLS.items()},
    "create_video": "video",
    "acreate_video": "video",
}
# the proxy's call types whose endpoint runs its pre_call hooks only, never during_call (/images/generations,
# /audio/speech): a during_call guardrail checks them in pre_call, or it would never see their prompt
PROXY_PRE_CALL_ONLY: Final = frozenset({"image_generation", "aimage_generation", "speech", "aspeech"})
_VIEWS = frozenset({"with_raw_response", "with_streaming_response"})
# the proxy's /images/generations hands the hooks its prompt as a chat message too, and afterwards sends the
# messages' text as the prompt
_PROMPT_AS_MESSAGES = frozenset({"image_generation", "aimage_generation"})


class MediaRequest:
    """One media request: the texts to check (``payload``, chat messages), and the request to send (``kwargs``).

    Raises :class:`UncheckedField` for a request it cannot read whole (see the module docstring), before anything
    is sent. A blocked prompt raises ``call.blocked(decision)`` (``guardrail.Blocked``; the proxy's HTTP 400)."""

    def __init__(self, call: Call, kind: MediaKind, kwargs: Mapping[str, Any]) -> None:
        self.call, self.kind = call, kind
        self.kwargs = dict(kwargs)
        self._as_messages = False  # a proxy's image request whose prompt is its messages too (from_proxy)
        refuse_extra_body(self.kwargs, WRITTEN_FIELDS)
        read = {field for field, _ in FIELDS[kind]}
        unread = sorted(f for f in WRITTEN_FIELDS if f not in read and _given(self.kwargs.get(f)))
        if unread:
            raise UncheckedField(
                f"a {kind} request does not read {unread[0]!r}, which a provider might: guardrail refuses it rather "
                f"than send it unchecked (pass the text as {' or '.join(sorted(read))})"
            )
        self.payload: list[dict[str, str]] = []
        self.sources: list[str] = []  # the field each text of the payload came from
        for field, role in FIELDS[kind]:
            value = self.kwargs.get(field)
            if not _given(value):
                continue
            if not isinstance(value, str):
                what = type(value).__name__
                raise UncheckedField(f"guardrail reads a {kind} request's {field!r} as a string, not a {what}")
            self.payload.append({"role": role, "content": value})
            self.sources.append(field)

    @classmethod
    def from_proxy(cls, call: Call, kind: MediaKind, call_type: str, data: Mapping[str, Any]) -> MediaRequest:
        """A LiteLLM proxy request (its ``data``): for an image, the text the proxy will send as the prompt (its
        ``messages`` joined, as the proxy joins them after the hooks) is the one checked and rewritten."""
        request = dict(data)
        messages = request.get("messages")
        joined = call_type in _PROMPT_AS_MESSAGES and isinstance(messages, list) and bool(messages)
        if joined:
            from litellm.litellm_core_utils.prompt_templates.common_utils import get_str_from_messages

            request["prompt"] = get_str_from_messages(request.pop("messages"))
        req = cls(call, kind, request)
        req._as_messages = joined
        return req

    def write_back(self, data: dict[str, Any]) -> None:
        """Put the request as rewritten into the proxy's ``data`` (the prompt's chat message too, if it has one)."""
        for field in self.sources:
            data[field] = self.kwargs[field]
        if self._as_messages:
            data["messages"] = [{"role": "user", "content": self.kwargs["prompt"]}]

    def apply(self, out: Outcome) -> None:
        """Put an input rewrite into the request: each text where it came from."""
        if out.text is None:
            return
        d = out.decision
        messages = list(d.messages) if d.messages is not None else [{"content": d.text}]
        for field, message in zip(self.sources, messages, strict=True):
            self.kwargs[field] = _get(message, "content")

    def stopped(self, out: Outcome) -> None:
        """A stop raises (a file has no refusal shape); under ``on_block: raise`` the ``Call`` has raised already."""
        if out.stop:
            raise self.call.blocked(out.decision)

    def outcome(self, d: Decision) -> Outcome:
        """What the input decision ``d`` means for this request: a block raises (``stopped``), else go on (for a
        caller that checks the prompt itself, as the proxy's hooks do, rather than through :func:`send`)."""
        out = self.call.outcome(d)
        self.stopped(out)
        return out


class _ProxyOwner(Protocol):  # the LiteLLM proxy guardrail, as check_proxy_media uses it
    guardrail_name: str | None

    def call_for(self, data: Mapping[str, Any]) -> Call: ...
    def record(self, data: dict[str, Any], d: Decision, hook: str) -> None: ...


def proxy_unchecked(e: UncheckedField, guardrail_name: str | None) -> Exception:
    """A proxy request it cannot read whole (a read field in extra_body ...): a 400."""
    from fastapi import HTTPException

    return HTTPException(status_code=400, detail={"error": str(e), "guardrail": guardrail_name})


async def check_proxy_media(
    owner: _ProxyOwner, data: dict[str, Any], kind: MediaKind, call_type: str, hook: str
) -> None:
    """A LiteLLM proxy hook's check of an image, speech or video request's prompt: a block is the proxy's HTTP 400
    whatever ``on_block.respond`` says (a file has no refusal shape; the passthrough answer is a chat completion);
    ``pre_call`` puts a rewrite into ``data``, ``during_call`` (too late to change the request) only records it."""
    try:
        req = MediaRequest.from_proxy(owner.call_for(data), kind, call_type, data)
    except UncheckedField as e:
        raise proxy_unchecked(e, owner.guardrail_name) from e
    if req.payload:
        d = await req.call.acheck_input(req.payload)
        owner.record(data, d, hook)
        out = req.outcome(d)  # a block raises the proxy's HTTP 400
        if hook == "pre_call" and out.text is not None:
            req.apply(out)
            req.write_back(data)


def _given(value: Any) -> bool:
    """A value the request sends: not None, "" or the SDK's ``NOT_GIVEN`` / ``omit`` (both falsy)."""
    return bool(value)


def send(req: MediaRequest, fn: Callable[..., Any]) -> Any:
    """Check the prompt, then call ``fn`` with the request as checked (rewritten); a block raises, ``fn`` uncalled."""
    if not req.payload:  # no text (the SDK says what is missing)
        return fn(**req.kwargs)
    out, result = req.call.send(req.payload, lambda: fn(**req.kwargs), req.apply)
    req.stopped(out)
    return result


async def asend(req: MediaRequest, fn: Callable[..., Any]) -> Any:
    """:func:`send` for async code (the same steps, awaited)."""
    if not req.payload:
        return await fn(**req.kwargs)
    out, result = await req.call.asend(req.payload, lambda: fn(**req.kwargs), req.apply)
    req.stopped(out)
    return result


def by_name(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments, every one by its name in ``fn``'s signature (``litellm.speech("tts-1", "hi")``), so the
    prompt is found and rewritten wherever it was passed."""
    if not args:
        return dict(kwargs)
    sig = inspect.signature(fn)
    out: dict[str, Any] = {}
    for name, value in sig.bind_partial(*args, **kwargs).arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TypeError(f"guardrail passes a media call's arguments by name; pass {name!r} by name")
        else:
            out[name] = value
    return out


def guarded(
    fn: Callable[..., Any],
    kind: MediaKind,
    new_call: Callable[[], Call],
    *,
    is_async: bool,
    signature: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """``fn`` with its prompt checked first (one ``Call`` per call); ``signature``: the function whose parameters
    name positional arguments (an async twin declared as ``*args, **kwargs`` names them by its sync one)."""
    named = signature or fn

    def request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> MediaRequest:
        return MediaRequest(new_call(), kind, by_name(named, args, kwargs))

    if is_async:

        async def aguarded(*args: Any, **kwargs: Any) -> Any:
            return await asend(request(args, kwargs), fn)

        return functools.wraps(fn)(aguarded)

    def sguarded(*args: Any, **kwargs: Any) -> Any:
        return send(request(args, kwargs), fn)

    return functools.wraps(fn)(sguarded)


def litellm_function(module: Any, name: str, new_call: Callable[[], Call]) -> Callable[..., Any] | None:
    """litellm's media function ``name`` (``image_generation``, ``aspeech`` ...) guarded, or None if it is not one."""
    sync = name[1:] if name.startswith("a") and name[1:] in LITELLM_CALLS else name
    kind = LITELLM_CALLS.get(sync)
    if kind is None:
        return None
    fn = getattr(module, name)
    # positional arguments are named by the function called, unless it names none (aimage_generation(*args,
    # **kwargs) hands them to image_generation): aimage_edit's order is not image_edit's (model before prompt)
    signature = fn if _names_its_arguments(fn) else getattr(module, sync, fn)
    return guarded(fn, kind, new_call, is_async=sync != name, signature=signature)


def _names_its_arguments(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s signature names a parameter that may be passed by position (not just ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in named for p in params)


class MediaResource:
    """An openai resource (``images``, ``audio``, ``audio.speech``, ``videos``) whose methods that send a prompt are
    guarded; ``with_raw_response`` / ``with_streaming_response`` raise; the rest is the resource's own."""

    def __init__(
        self,
        target: Any,
        path: str,
        new_call: Callable[[], Call],
        *,
        is_async: bool,
        methods: Mapping[str, MediaKind],
        children: Mapping[str, Mapping[str, MediaKind]] | None = None,
    ) -> None:
        self._target, self._path, self._new_call, self._is_async = target, path, new_call, is_async
        self._methods, self._children = methods, children or {}

    def __getattr__(self, name: str) -> Any:
        if name in _VIEWS:
            raise AttributeError(
                f"{self._path}.{name} is not available on a guardrail-wrapped client (it would bypass the guard: "
                f"the prompt would go unchecked); call {self._path}'s methods directly"
            )
        value = getattr(self._target, name)
        if name in self._methods:
            return guarded(value, self._methods[name], self._new_call, is_async=self._is_async)
        if name in self._children:
            path = f"{self._path}.{name}"
            return MediaResource(value, path, self._new_call, is_async=self._is_async, methods=self._children[name])
        return value

    def __repr__(self) -> str:
        return f"<guarded {self._path} {self._target!r}>"
