"""Re-emitting a guarded stream in the client's own chunk or event types.

``guardrail.streaming`` decides *what text* may be released; the classes here only translate: they
pull the text out of each upstream item (``take``) and turn each ``Release`` back into items of the
same type (``emit``). Items that carry no text (the role chunk, tool-call deltas, the finish
reason, usage; Responses lifecycle events) are held and sent with the next release, those that
close the stream only after the final check, so nothing arrives out of order with the text.

Both classes are pure (no I/O) and shared by the sync and async drivers in ``_core`` and by the
LiteLLM proxy hook.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from guardrail.classifiers.patterns import restore
from guardrail.decision import Decision
from guardrail.streaming import Release, StreamGuard

from . import shapes

if TYPE_CHECKING:
    from ._core import GuardedCall

__all__ = ["ChatStream", "ResponsesStream", "Restorer"]

_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z0-9_]{0,40}\Z")
_ACTION_CONTEXT = 200  # characters of already checked action text shown again with new action text


class Restorer:
    """Maps input placeholders in released text back to the originals (``restore=True``).

    A placeholder can be cut between two releases (``<EMA`` | ``IL_1>``), so an unfinished one at
    the end of a release is held until the next. Placeholders that output redaction created
    (``exclude``) are never mapped back: they hide data the model produced, not the user's own.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        self.pending = ""

    def feed(self, text: str, exclude: Mapping[str, str] | None = None) -> str:
        if not self.mapping:
            return text
        s = self.pending + text
        m = _PARTIAL_PLACEHOLDER.search(s)
        cut = m.start() if m else len(s)
        self.pending = s[cut:]
        return self._restore(s[:cut], exclude)

    def flush(self, exclude: Mapping[str, str] | None = None) -> str:
        s, self.pending = self.pending, ""
        return self._restore(s, exclude)

    def _restore(self, text: str, exclude: Mapping[str, str] | None) -> str:
        if not text:
            return text
        mapping = {k: v for k, v in self.mapping.items() if not exclude or k not in exclude}
        return restore(text, mapping)


class _StreamState:
    def __init__(self, gc: GuardedCall) -> None:
        self.gc = gc
        self.queue: list[Any] = []  # text-free items to send with the next release
        self.trailer: list[Any] = []  # items that close the stream: sent after the final check
        self.restorer = Restorer(gc.restore_map)
        # what the answer does besides its text (tool-call arguments, a refusal, an audio transcript), as it
        # streams: never released as text, but checked with the text's next window, so each held action item
        # has been checked before the release that sends it (every release follows a check)
        self.actions = ""
        self._actions_checked = 0

    def with_actions(self, window: str) -> str:
        """The window to check: the text's window, then the action text not yet checked (with a little of
        the checked part before it, so that a word cut between two deltas is read whole)."""
        if len(self.actions) == self._actions_checked:
            return window
        start = max(0, self._actions_checked - _ACTION_CONTEXT)
        self._actions_checked = len(self.actions)
        return f"{window}\n{self.actions[start:]}" if window else self.actions[start:]

    def _drain(self, items: list[Any]) -> Iterator[Any]:
        while items:
            yield items.pop(0)

    def _text(self, rel: Release, sg: StreamGuard) -> str:
        out = self.restorer.feed(rel.text, sg.replacements) if rel.text else ""
        if rel.final or rel.blocked is not None:
            out += self.restorer.flush(sg.replacements)
        return out

    def end_message(self, d: Decision, sg: StreamGuard) -> str:
        """The text that ends a stopped stream (what the Call says the decision means: the refusal, or
        ``Blocked`` raised; a replacing rewrite's message), set apart from the text already released."""
        return sg.end_text(self.gc.call.outcome(d, stream=True).text or "")


class ChatStream(_StreamState):
    """Chat completion chunks (``ChatCompletionChunk`` or litellm ``ModelResponseStream``)."""

    def __init__(self, gc: GuardedCall) -> None:
        super().__init__(gc)
        self.template: Any = None

    def take(self, chunk: Any) -> str:
        choices = getattr(chunk, "choices", None) or []
        if self.template is None and choices:
            self.template = chunk
        text = "".join(shapes.content_text(getattr(getattr(c, "delta", None), "content", None)) or "" for c in choices)
        for c in choices:
            self.actions += _delta_actions(getattr(c, "delta", None))
        rest = shapes.content_free(chunk)
        if rest is not None:
            closing = not choices or getattr(chunk, "usage", None) is not None
            closing = closing or any(getattr(c, "finish_reason", None) for c in choices)
            (self.trailer if closing else self.queue).append(rest)
        return text

    def emit(self, rel: Release, sg: StreamGuard) -> Iterator[Any]:
        flavour = self.gc.flavour
        if rel.blocked is not None:  # the blocked answer's tool calls never reach the client
            self.queue = [c for c in self.queue if not shapes.blocked_delta(c)]
        yield from self._drain(self.queue)
        text = self._text(rel, sg)
        if text:
            yield shapes.text_chunk(flavour, self.template, text, model=self.gc.model)
        if rel.blocked is not None:
            message = self.end_message(rel.blocked, sg)
            yield from shapes.refusal_chunks(flavour, message, model=self.gc.model, template=self.template)
            return
        if rel.final:
            yield from self._drain(self.trailer)


_DONE_EVENTS = ("response.output_text.done", "response.content_part.done", "response.output_item.done")
# Responses events that stream what the answer does besides its text
_ACTION_DELTAS = frozenset(
    {
        "response.function_call_arguments.delta", "response.custom_tool_call_input.delta", "response.refusal.delta",
        "response.audio.transcript.delta", "response.reasoning_summary_text.delta",
    }
)  # fmt: skip


def _delta_actions(delta: Any) -> str:
    """The action text of one chat delta: tool-call names and argument fragments, refusal, audio transcript."""
    out = ""
    for call in getattr(delta, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        name, args = getattr(fn, "name", None), getattr(fn, "arguments", None)
        out += (f"\n{name}: " if name else "") + (args or "")
    fn = getattr(delta, "function_call", None)
    if fn is not None:
        name = getattr(fn, "name", None)
        out += (f"\n{name}: " if name else "") + (getattr(fn, "arguments", None) or "")
    refusal = getattr(delta, "refusal", None)
    transcript = getattr(getattr(delta, "audio", None), "transcript", None)
    if transcript is None and isinstance(getattr(delta, "audio", None), dict):
        transcript = delta.audio.get("transcript")
    return out + "".join(t for t in (refusal, transcript) if isinstance(t, str))


def _lifecycle_or_message(event: Any) -> bool:
    """Whether a held Responses event may precede a refusal: the response's own lifecycle and the message
    item's frames do; function calls, tool calls and their arguments (the blocked answer's actions) do not."""
    kind = str(getattr(event, "type", ""))
    if kind in ("response.created", "response.in_progress", "response.queued"):
        return True
    if kind.startswith("response.output_item."):
        return getattr(getattr(event, "item", None), "type", None) == "message"
    return kind.startswith("response.content_part.")


class ResponsesStream(_StreamState):
    """Responses API stream events: text deltas are guarded, the other events re-emitted around them."""

    def __init__(self, gc: GuardedCall) -> None:
        super().__init__(gc)
        self.template: Any = None
        self.base: Any = None  # the latest full response object seen (created / in_progress)
        self.started = False
        self.upstream: dict[tuple[str, int], str] = {}
        self.emitted: dict[tuple[str, int], str] = {}

    def _key(self) -> tuple[str, int]:
        t = self.template
        return (getattr(t, "item_id", ""), getattr(t, "content_index", 0))

    def take(self, event: Any) -> str:
        kind = getattr(event, "type", "")
        if kind in _ACTION_DELTAS and isinstance(getattr(event, "delta", None), str):
            self.actions += event.delta
        elif kind == "response.output_item.added" and getattr(getattr(event, "item", None), "type", "") != "message":
            self.actions += f"\n{getattr(event.item, 'name', None) or getattr(event.item, 'type', '')}: "
        if kind == "response.output_text.delta":
            self.template, self.started = event, True
            key = self._key()
            self.upstream[key] = self.upstream.get(key, "") + event.delta
            return str(event.delta)
        if getattr(event, "response", None) is not None and kind in ("response.created", "response.in_progress"):
            self.base = event.response
        if kind in _DONE_EVENTS or kind in ("response.completed", "response.incomplete"):
            self.started = True  # they repeat the text: held to the end, and made to say what was released
        (self.trailer if self.started else self.queue).append(event)
        return ""

    def emit(self, rel: Release, sg: StreamGuard) -> Iterator[Any]:
        if rel.blocked is not None:  # only the response's lifecycle and its message go before the refusal
            self.queue = [e for e in self.queue if _lifecycle_or_message(e)]
        yield from self._drain(self.queue)
        text = self._text(rel, sg)
        seq = getattr(self.template, "sequence_number", 0)
        if text:
            key = self._key()
            self.emitted[key] = self.emitted.get(key, "") + text
            yield shapes.text_delta_event(self.template, text, seq)
        if rel.blocked is not None:
            message = self.end_message(rel.blocked, sg)
            yield from shapes.refusal_response_events(
                message,
                model=self.gc.model,
                template=self.template,
                base=self.base,
                text_before="".join(self.emitted.values()),
                sequence_number=seq + 1,
            )
            return
        if rel.final:
            for event in self._drain(self.trailer):
                yield self._patched(event)

    def _patched(self, event: Any) -> Any:
        """Done/completed events repeat the full text: make them say what was actually released (also when
        they carry text no delta streamed: that text was never checked). Unchanged events stay as they are."""
        kind = getattr(event, "type", "")
        if kind in _DONE_EVENTS and self._says_other_text(event, kind):
            event = copy.deepcopy(event)
            item_id = str(getattr(event, "item_id", None) or getattr(getattr(event, "item", None), "id", ""))
            parts = [event] if kind == "response.output_text.done" else []
            if kind == "response.content_part.done":
                parts = [event.part]
            elif kind == "response.output_item.done":
                parts = list(getattr(event.item, "content", None) or [])
            for i, part in enumerate(parts):
                index = int(getattr(event, "content_index", i))
                if getattr(part, "type", "output_text") in ("output_text", "response.output_text.done"):
                    part.text = self.emitted.get((item_id, index), "")
            return event
        if getattr(event, "response", None) is not None and kind in ("response.completed", "response.incomplete"):
            released = "".join(self.emitted.values())
            if shapes.response_text(event.response) != released:
                event = copy.copy(event)
                event.response = shapes.replace_completion_text(event.response, released)
        return event

    def _says_other_text(self, event: Any, kind: str) -> bool:
        item_id = str(getattr(event, "item_id", None) or getattr(getattr(event, "item", None), "id", ""))
        if kind == "response.output_text.done":
            parts = [event]
        elif kind == "response.content_part.done":
            parts = [event.part]
        else:
            parts = list(getattr(getattr(event, "item", None), "content", None) or [])
        for i, part in enumerate(parts):
            index = int(getattr(event, "content_index", i))
            text = getattr(part, "text", None)
            if isinstance(text, str) and text != self.emitted.get((item_id, index), ""):
                return True
        return False
