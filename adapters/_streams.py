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

import bisect
import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from guardrail.decision import Decision
from guardrail.streaming import Release, StreamGuard

from . import actions, audio, response_events, shapes
from .answer_text import _get, unescape_json
from .response_events import (
    ACTION_DELTAS,
    ACTION_DONE,
    DONE_EVENTS,
    FINAL_RESPONSES,
    lifecycle_or_message,
    text_part,
)
from .restorer import Restorer

if TYPE_CHECKING:
    from ._core import GuardedCall

__all__ = ["ChatStream", "ResponsesStream", "Restorer"]  # Restorer: adapters.restorer

_ACTION_CONTEXT = 200  # characters of already checked action text shown again with new action text


def _item_key(item: Any, output_index: Any) -> str | int | None:
    """What names a Responses output item across events: its id, or where a compatible server sends none, its
    place in the output. Never "" (one empty id would make every id-less final item count as already read)."""
    item_id = _get(item, "id")
    if item_id:
        return str(item_id)
    return output_index if isinstance(output_index, int) else None


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
        actions = unescape_json(self.actions[start:])
        return f"{window}\n{actions}" if window else actions

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

    def __init__(self, gc: GuardedCall, *, edits_audio: bool = False) -> None:
        super().__init__(gc)
        self.template: Any = None
        self.calls: list[Any] = []  # tool and function-call deltas, held whole until the final check
        # audio deltas, held until the final check when the answer's transcript may be edited (output redaction,
        # restore=True): only the whole transcript can be, and masking must also take the sound away
        self.edits_audio = edits_audio
        self.audio: list[Any] = []

    def take(self, chunk: Any) -> str:
        choices = getattr(chunk, "choices", None) or []
        if any(getattr(c, "index", 0) for c in choices):  # one choice only: stream=True with n > 1 is refused
            raise TypeError("guardrail guards streams of one choice: a chunk of another choice is refused, not passed")
        if self.template is None and choices:
            self.template = chunk
        text = "".join(shapes.content_text(getattr(getattr(c, "delta", None), "content", None)) or "" for c in choices)
        for c in choices:
            self.actions += shapes.actions_text(getattr(c, "delta", None))
        rest = shapes.content_free(chunk)
        if rest is not None:
            closing = not choices or getattr(chunk, "usage", None) is not None
            closing = closing or any(getattr(c, "finish_reason", None) for c in choices)
            if actions.has_calls(rest):  # sent whole after the final check, redacted and restored
                self.calls.append(rest)
                rest = actions.without_calls(rest)
            if rest is not None and self.edits_audio and audio.has_audio(rest):  # the rest goes as before
                self.audio.append(audio.only_audio(rest))
                rest = audio.without_audio(rest)
            if rest is not None:
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
            # one numbering for the answer: the calls join the text's, the audio both (actions.own_redaction)
            taken = {**sg.known, **sg.replacements}
            calls: Any = self._whole_calls(sg, taken) if self.calls else []
            sound = (
                audio.edit_held_audio(self.audio, sg.redact_entities, self.gc.restore_map, sg.written, taken)
                if self.audio
                else []
            )
            if calls is None or sound is None:  # personal data that cannot be masked where it sits: never leaked
                message = sg.end_text(self.gc.call.refusal(sg.decisions[-1]))
                yield from shapes.refusal_chunks(flavour, message, model=self.gc.model, template=self.template)
                return
            if calls:
                yield calls
            yield from sound
            yield from self._drain(self.trailer)

    def _whole_calls(self, sg: StreamGuard, taken: dict[str, str]) -> Any | None:
        """The held calls as one delta, their arguments redacted as the policy redacts the answer's text and
        restored (``restore=True``); None when a value to mask is still readable after masking."""
        merged = actions.merge_calls(self.calls)
        self.calls = []
        delta = merged.choices[0].delta

        def read() -> str:
            return unescape_json(shapes.actions_text(delta))

        own = actions.own_redaction(read(), sg.redact_entities, sg.written, taken)
        apply = lambda edit, masking: actions.edit_message(delta, edit, masking=masking)  # noqa: E731
        return merged if actions.mask_and_restore(apply, read, own, self.gc.restore_map) else None


class ResponsesStream(_StreamState):
    """Responses API stream events: text deltas are guarded, the other events re-emitted around them."""

    def __init__(self, gc: GuardedCall, *, edits_audio: bool = False) -> None:
        super().__init__(gc)
        self.template: Any = None
        self.base: Any = None  # the latest full response object seen (created / in_progress)
        self.streamed: dict[str, str] = {}  # action text streamed per item (arguments, refusal ...)
        self.emitted: dict[tuple[str, int], str] = {}
        # Every event keeps its place in the text: it is sent once the text before it is released (so an answer
        # of several message items or parts keeps its order), and text is sent under the delta it came from.
        self.fed = 0  # characters of text taken so far (the stream guard's buffer)
        self.out = 0  # characters of that buffer released so far
        self.pending: list[tuple[int, Any]] = []  # (place in the text, event) not sent yet
        self.segments: list[tuple[int, Any]] = []  # (where a text part starts, its first delta)
        self.seqs: list[tuple[int, int]] = []  # (where each upstream delta ends, its sequence number)
        # A tool call, or the answer's audio, is held until the final check: it is the blocked answer's action if
        # later text is blocked, and only whole arguments (a whole transcript) can be redacted and restored. From its
        # first event on, everything (its events, the text after it) is held.
        self.hold: Any = None  # the first such event
        self.held: list[tuple[str, int, int]] = []  # released text held back: (text, start, end)
        # audio is held only when it may need editing (the policy redacts personal data, or restore has values to
        # put back); otherwise it streams as it comes, each event after the check that read the transcript before it
        self.edits_audio = edits_audio
        self.seen_items: set[str | int] = set()  # the items their own events streamed (``_item_key``)

    def _key(self, template: Any = None) -> tuple[str, int]:
        t = self.template if template is None else template
        return (getattr(t, "item_id", ""), getattr(t, "content_index", 0))

    def take(self, event: Any) -> str:
        kind = response_events.event_kind(event)
        item_id = str(getattr(event, "item_id", "") or "")
        if kind in ACTION_DELTAS and isinstance(getattr(event, "delta", None), str):
            self.actions += event.delta
            self.streamed[item_id] = self.streamed.get(item_id, "") + event.delta
        elif kind in ACTION_DONE:  # an action no delta streamed (or streamed otherwise) is checked whole
            self._whole(item_id, next((getattr(event, a, None) for a in ACTION_DONE[kind]), None))
        elif kind.startswith("response.content_part.") and not text_part(getattr(event, "part", None)):
            self._whole(item_id, "\n".join(shapes.parts_said([event.part])))  # a refusal's, reasoning_text's ... text
        elif kind == "response.output_item.done" and _get(getattr(event, "item", None), "type") == "message":
            self._whole(str(_get(event.item, "id") or ""), "\n".join(shapes.parts_said(_get(event.item, "content"))))
        elif kind == "response.output_item.done":
            item = event.item  # any tool item, whole: what its deltas did not already show is checked here
            whole = shapes.item_action_text(item)
            done_id = str(_get(item, "id") or "")
            if whole and not (self.streamed.get(done_id) and self.streamed[done_id] in whole):
                self.actions += "\n" + whole
        elif kind == "response.output_item.added" and getattr(getattr(event, "item", None), "type", "") != "message":
            self.actions += f"\n{getattr(event.item, 'name', None) or getattr(event.item, 'type', '')}: "
        elif kind == "response.output_text.annotation.added":  # a citation's title, shown beside the text
            self.actions += "".join("\n" + t for t in shapes.annotation_titles([getattr(event, "annotation", None)]))
        elif kind in FINAL_RESPONSES:  # items no event streamed (a compatible server's): read here, or never
            output = _get(getattr(event, "response", None), "output") or []
            for at, item in enumerate(output):  # a message's parts besides its text, which no delta streams
                if _get(item, "type") == "message":
                    self._whole(str(_item_key(item, at)), "\n".join(shapes.parts_said(_get(item, "content"))))
            unseen = [item for at, item in enumerate(output) if self._unseen(item, at)]
            for item in unseen:
                self.actions += "\n" + (shapes.item_action_text(item) or "")
            if self.hold is None and any(_get(i, "type") != "reasoning" for i in unseen):
                self.hold = event  # a tool call: masked at the last check, or never sent
        if kind in ("response.output_item.added", "response.output_item.done"):
            seen = _item_key(getattr(event, "item", None), getattr(event, "output_index", None))
            if seen is not None:
                self.seen_items.add(seen)
        if kind == "response.output_text.delta":
            key = self._key(event)
            if not self.segments or self._key(self.segments[-1][1]) != key:
                self.segments.append((self.fed, event))
            self.seqs.append((self.fed + len(event.delta), getattr(event, "sequence_number", 0)))
            self.template = event
            self.fed += len(event.delta)
            return str(event.delta)
        if getattr(event, "response", None) is not None and kind in ("response.created", "response.in_progress"):
            self.base = event.response
            self.gc.answered(event.response)  # a later request may continue from it
        tool = _get(getattr(event, "item", None), "type") not in ("message", "reasoning")
        audio = kind in response_events.AUDIO_EVENTS and self.edits_audio
        if self.hold is None and ((kind == "response.output_item.added" and tool) or audio):
            self.hold = event  # a tool call or the answer's audio: masked at the last check, or never sent
        self.pending.append((self.fed, event))
        return ""

    def _unseen(self, item: Any, at: int) -> bool:
        """A final response's non-message item (at ``at`` in its output) that no item event streamed, so nothing
        has read it yet."""
        return _get(item, "type") != "message" and _item_key(item, at) not in self.seen_items

    def _whole(self, item_id: str, full: Any) -> None:
        """An action's whole text, from a done event or a part's frame: checked unless its deltas showed it."""
        if isinstance(full, str) and full and full != self.streamed.get(item_id, ""):
            self.actions += "\n" + full
            self.streamed[item_id] = full

    def emit(self, rel: Release, sg: StreamGuard) -> Iterator[Any]:
        start, end = self.out, sg.released
        stop = None if rel.blocked is None else self.end_message(rel.blocked, sg)
        if stop is None and rel.final and self.hold is not None and not self._edit_held(sg):
            # personal data in a held call or transcript that cannot be masked where it sits: stopped, never leaked
            stop = sg.end_text(self.gc.call.refusal(sg.decisions[-1]))
        text = self._text(rel, sg)
        if stop is not None:  # only the response's lifecycle, its message and the text before what is held go first
            at = next((a for a, e in self.pending if e is self.hold), None)
            if at is not None:
                text = text[: max(0, at - start)]
                end = min(end, max(at, start))
            yield from (self._patched(e) for e in self._due(start) if lifecycle_or_message(e))
            self.pending, self.held = [], []
        if rel.final and stop is None and self.hold is not None:  # the final check passed: send it all
            self.hold, held, self.held = None, self.held, []
            for h_text, h_start, h_end in held:
                yield from self._pieces(h_text, h_start, h_end)
        if text and self.hold is not None and stop is None:
            at = next(a for a, e in self.pending if e is self.hold) if self.held == [] else start
            if at < end and len(text) == end - start and start < at:  # send what comes before the call
                yield from self._pieces(text[: at - start], start, at)
                text, start = text[at - start :], at
            if at < end or self.held:
                self.held.append((text, start, end))
                text = ""
        if text:
            yield from self._pieces(text, start, end)
        self.out = end
        if stop is not None:
            yield from self._refusal(stop)
            return
        # an event placed at the release's end waits while the restorer holds back a cut placeholder there
        upto = self.fed if rel.final else end - (1 if self.restorer.pending else 0)
        yield from (self._patched(e) for e in self._due(upto))

    def _refusal(self, message: str) -> Sequence[Any]:
        return shapes.refusal_response_events(
            message,
            model=self.gc.model,
            template=self.template,
            base=self.base,
            text_before="".join(self.emitted.values()),
            sequence_number=getattr(self.template, "sequence_number", 0) + 1,
        )

    def _edit_held(self, sg: StreamGuard) -> bool:
        """The held tool and audio events redacted and restored (``response_events.edit_held_events``); False when a
        value to mask is still readable after masking."""
        i = next(i for i, (_, e) in enumerate(self.pending) if e is self.hold)
        places = [at for at, _ in self.pending[i:]]
        held = [e for _, e in self.pending[i:]]
        taken = {**sg.known, **sg.replacements}
        edited = response_events.edit_held_events(held, sg.redact_entities, self.gc.restore_map, sg.written, taken)
        if edited is None:
            return False
        self.pending[i:] = [(places[k], e) for k, e in edited]
        return True

    def _due(self, upto: int) -> list[Any]:
        """The held events whose place in the text is at or before ``upto``, in their order; taken out. While a
        tool call or the audio is held, it and every event after it wait."""
        due: list[Any] = []
        for i, (at, e) in enumerate(self.pending):
            if at > upto or e is self.hold:
                self.pending = self.pending[i:]
                return due
            due.append(e)
        self.pending = []
        return due

    def _pieces(self, text: str, start: int, end: int) -> Iterator[Any]:
        """``text`` (the buffer's ``start:end``, released) as deltas of the parts it belongs to, each after the
        events placed before it. Where redaction or restoring changed its length, it cannot be cut by place:
        it goes as one delta of the part it starts in."""
        places = {at for at, _ in self.segments} | {at for at, _ in self.pending}  # parts start, events sit
        cuts = sorted(at for at in places if start < at < end) if len(text) == end - start else []
        bounds = [start, *cuts, end]
        for a, b in itertools.pairwise(bounds):
            yield from (self._patched(e) for e in self._due(a))
            piece = text[a - start : b - start] if cuts else text
            template = next((t for at, t in reversed(self.segments) if at <= a), self.template)
            key = self._key(template)
            self.emitted[key] = self.emitted.get(key, "") + piece
            # the sequence number of the upstream delta that held the piece's last character
            i = bisect.bisect_left(self.seqs, (b, -1))
            seq = self.seqs[min(i, len(self.seqs) - 1)][1] if self.seqs else 0
            yield shapes.text_delta_event(template, piece, seq)

    def _patched(self, event: Any) -> Any:
        """Done/completed events repeat the full text: make them say what was actually released (also when
        they carry text no delta streamed: that text was never checked). Unchanged events stay as they are.
        Parts may be objects (openai) or dicts (litellm's proxy events)."""
        kind = response_events.event_kind(event)
        if kind in DONE_EVENTS:
            if not any(text != new for _, text, new in self._text_parts(event, kind)):
                return event
            event = copy.deepcopy(event)
            for part, _, new in self._text_parts(event, kind):  # logprobs spell the text the model wrote: they go
                if isinstance(part, dict):
                    part["text"] = new
                    if part.get("logprobs"):
                        part["logprobs"] = []
                else:
                    part.text = new
                    if getattr(part, "logprobs", None):
                        part.logprobs = []
            return event
        if getattr(event, "response", None) is not None and kind in ("response.completed", "response.incomplete"):
            released = "".join(self.emitted.values())
            if shapes.response_text(event.response) != released:
                event = copy.copy(event)
                event.response = shapes.replace_completion_text(event.response, released)
        return event

    def _text_parts(self, event: Any, kind: str) -> list[tuple[Any, str, str]]:
        """The output_text parts a done event carries: (part, its text, the text released for it)."""
        item = getattr(event, "item", None)
        item_id = str(getattr(event, "item_id", None) or _get(item, "id") or "")
        if kind == "response.output_text.done":
            parts = [event]
        elif kind == "response.content_part.done":
            parts = [getattr(event, "part", None)]
        else:
            parts = list(_get(item, "content") or [])
        out = []
        for i, part in enumerate(parts):
            text = getattr(part, "text", None) if not isinstance(part, dict) else part.get("text")
            if (part is event or text_part(part)) and isinstance(text, str):
                index = int(getattr(event, "content_index", None) or i)
                out.append((part, text, self.emitted.get((item_id, index), "")))
        return out
