"""Re-emitting a guarded Anthropic Messages stream in the SDK's own event types.

``guardrail.streaming.relay`` decides what text may be released (the policy's ``output.stream`` windows and
hold-back, the one implementation every adapter uses); this class only translates, as ``_streams.ChatStream`` does
for chat chunks: ``take`` pulls the text out of each event, ``emit`` turns each release back into events.

- Text deltas are the text the guard checks. The text is sent in text blocks of guardrail's own (a block opened
  before released text, closed before the next other block): the upstream text blocks' start and stop events are
  not sent, nor their citation deltas (they quote text that a mask may have changed).
- Every other event keeps its place in the text: it is sent once the text before it is released, and after a check
  that read what it says (a thinking block's text, a tool call's input are checked with the text's windows).
- A tool call (``tool_use``, ``server_tool_use``, ``mcp_tool_use``) is held from its start, with everything after
  it, until the final check: only its whole input can be redacted (the policy's output redaction) and restored
  (``restore=True``); a blocked answer's calls are never sent. A server tool's result (web search or fetch, code
  execution, a text editor's view ...) arrives whole in its block's start: it is checked with the next window, and
  held the same way, to be masked where each string sits (``actions.edit_block``) or never sent.
- Thinking is masked as the whole-answer path masks it (never restored: it is signed): each block's deltas joined
  into one before they are sent, which costs nothing, since no text (so no check, no release) comes while a block
  of thinking streams. A value still readable after masking stops the stream, as in a call.
- Blocks are numbered in the order they are sent (``index``), as a client that assembles them expects.
- A block ends the stream with the refusal text, set apart from released text, and ``stop_reason="refusal"``.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from guardrail.streaming import Release, StreamGuard

from . import actions
from ._streams import _StreamState
from .answer_text import block_texts, unescape_json
from .anthropic_shapes import block_start, block_stop, message_end, text_delta
from .json_edits import Edit, edited

# the delta types this reader reads (text, a call's input, thinking), drops (citations) or passes as the opaque data
# they are (a thinking block's signature)
DELTAS = frozenset({"text_delta", "input_json_delta", "citations_delta", "thinking_delta", "signature_delta"})


def unread_delta(delta: Any) -> bool:
    """A delta of a kind this reader does not know that carries text (a beta ``compaction_delta``'s summary ...):
    refused, never relayed unread. One carrying only opaque data (``encrypted_content``) passes as it came."""
    dtype = delta.get("type") if isinstance(delta, dict) else getattr(delta, "type", "")
    return dtype not in DELTAS and bool(block_texts(delta))


if TYPE_CHECKING:
    from ._core import GuardedCall

__all__ = ["CALLS", "MessagesStream"]

CALLS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})  # blocks whose input is a call's arguments
_NOT_RESULTS = CALLS | {"text", "thinking", "redacted_thinking"}  # every other block is read whole (block_texts)


class MessagesStream(_StreamState):
    """The stream state of one guarded ``messages.create(stream=True)`` (see the module docstring)."""

    def __init__(self, gc: GuardedCall) -> None:
        super().__init__(gc)
        self.fed = 0  # characters of text taken so far (the stream guard's buffer)
        self.out = 0  # characters of it released so far
        # what waits to be sent, in order: (place in the text, 0 for an event / 1 for released text, arrival, item)
        self.pending: list[tuple[int, int, int, Any]] = []
        self._arrival = itertools.count()
        self.hold: Any = None  # the first event of a tool call: it and everything after it wait for the final check
        self.kinds: dict[int, str] = {}  # upstream block index -> its type
        self.index: dict[int, int] = {}  # upstream block index -> the index it is sent under
        self.next_index = 0
        self.open_text: int | None = None  # the index of guardrail's text block while it is open
        self.started = False  # message_start was sent

    # -- taking events -----------------------------------------------------------------------------

    def take(self, event: Any) -> str:
        text = self._take(event)
        self.fed += len(text)
        return text

    def _take(self, event: Any) -> str:
        kind = getattr(event, "type", None)
        if kind == "message_start" and getattr(getattr(event, "message", None), "content", None):
            raise TypeError("guardrail does not read a message_start event that carries content; refused, not passed")
        if kind == "content_block_start":
            block = event.content_block
            self.kinds[event.index] = btype = getattr(block, "type", "")
            if btype == "text":
                return str(getattr(block, "text", "") or "")  # its text (usually none) is text; the event is ours
            if btype in CALLS:
                given = getattr(block, "input", None)
                self.actions += f"\n{getattr(block, 'name', btype)}: " + (_json(given) if given else "")
                if self.hold is None:
                    self.hold = event
            elif btype == "thinking":
                self.actions += "\n" + str(getattr(block, "thinking", "") or "")
            elif btype != "redacted_thinking" and (texts := block_texts(block)):
                # a server tool's result (or a block of a new kind) arrives whole in its start: checked with the next
                # window, and held with what follows it, to be masked at the final check (or never sent)
                self.actions += "\n" + "\n".join(texts)
                if self.hold is None:
                    self.hold = event
        elif kind == "content_block_delta":
            delta = event.delta
            dtype = getattr(delta, "type", "")
            if unread_delta(delta):
                raise TypeError(f"guardrail does not read a {dtype!r} delta, which carries text; refused, not passed")
            if dtype == "text_delta":
                return str(delta.text)
            if dtype == "citations_delta":
                return ""  # a citation quotes the text a mask may change: not sent (see the module docstring)
            if dtype == "input_json_delta":
                self.actions += str(getattr(delta, "partial_json", "") or "")
            elif dtype == "thinking_delta":
                self.actions += str(getattr(delta, "thinking", "") or "")
        elif kind == "content_block_stop" and self.kinds.get(event.index) == "text":
            return ""
        elif kind == "error" and (texts := block_texts(event)):
            # the provider's error in the middle of a stream (the proxy relays it; the SDK raises it instead): its
            # message is checked with the next window and held to the final check, to be masked or never sent
            self.actions += "\n" + "\n".join(texts)
            if self.hold is None:
                self.hold = event
        self._place(self.fed, 0, event)
        return ""

    def _place(self, at: int, order: int, item: Any) -> None:
        bisect.insort(self.pending, (at, order, next(self._arrival), item), key=lambda p: p[:3])

    # -- emitting releases -------------------------------------------------------------------------

    def emit(self, rel: Release, sg: StreamGuard) -> Iterator[Any]:
        start, end = self.out, sg.released
        stop = None if rel.blocked is None else self.end_message(rel.blocked, sg)
        if stop is None and rel.final and self.hold is not None and not self._edit_held(sg):
            # personal data in a held call's input that cannot be masked where it sits: stopped, never leaked
            stop = sg.end_text(self.gc.call.refusal(sg.decisions[-1]))
        if stop is None and sg.redact_entities and not self._mask_thinking(sg):
            stop = sg.end_text(self.gc.call.refusal(sg.decisions[-1]))  # the same, in thinking
        text = self._text(rel, sg)
        if stop is not None:
            yield from self._stopped(stop, text)
            return
        if text:
            self._released(text, start, end)
        self.out = end
        if rel.final:
            self.hold = None
        # an event placed at the release's end waits while the restorer holds back a cut placeholder there
        upto = self.fed if rel.final else end - (1 if self.restorer.pending else 0)
        yield from self._due(upto)
        if rel.final:
            yield from self._close_text()

    def _released(self, text: str, start: int, end: int) -> None:
        """Released text into the queue, cut where events sit in it (when masking or restoring left its length as
        upstream sent it; otherwise whole, at its start)."""
        if len(text) != end - start:  # not cut by place: whole, at its start
            self._place(start, 1, text)
            return
        cuts = sorted({at for at, *_ in self.pending if start < at < end})
        for a, b in itertools.pairwise([start, *cuts, end]):
            self._place(a, 1, text[a - start : b - start])

    def _due(self, upto: int) -> Iterator[Any]:
        """What is queued up to ``upto`` in the text, in order, as events; a held call and what follows it wait."""
        while self.pending and self.pending[0][0] <= upto and self.pending[0][3] is not self.hold:
            _, order, _, item = self.pending.pop(0)
            yield from self._text_events(item) if order else self._event(item)

    def _text_events(self, text: str) -> Iterator[Any]:
        if self.open_text is None:
            self.open_text, self.next_index = self.next_index, self.next_index + 1
            yield block_start(self.open_text)
        yield text_delta(self.open_text, text)

    def _close_text(self) -> Iterator[Any]:
        if self.open_text is not None:
            yield block_stop(self.open_text)
            self.open_text = None

    def _event(self, event: Any) -> Iterator[Any]:
        """An upstream event as sent: after guardrail's text block is closed, under the index its block is sent."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.started = True
            yield event
            return
        if kind in ("content_block_delta", "content_block_stop") and event.index in self.index:
            yield _indexed(event, self.index[event.index])
            return
        yield from self._close_text()
        if kind == "content_block_start":
            self.index[event.index], self.next_index = self.next_index, self.next_index + 1
            event = _indexed(event, self.index[event.index])
        yield event

    def _stopped(self, message: str, text: str) -> Iterator[Any]:
        """The end of a stopped stream: the message's start if not yet sent, the text a restorer still held, then
        ``message`` in a text block and ``stop_reason="refusal"``. The blocked answer's queued and held events
        (its calls, its thinking) are never sent."""
        if not self.started:
            yield from (e for _, _, _, e in self.pending if getattr(e, "type", None) == "message_start")
            self.started = True
        self.pending, self.hold = [], None
        if text:
            yield from self._text_events(text)
        yield from self._text_events(message)
        yield from self._close_text()
        yield from message_end()

    # -- thinking ------------------------------------------------------------------------------------

    def _mask_thinking(self, sg: StreamGuard) -> bool:
        """The thinking waiting in ``pending`` (checked: every release follows a check that read it), each block's
        deltas joined into its first (a value cut between two deltas is neither found nor masked; a client joins
        them anyway) and redacted as the policy redacts the answer's text, numbered with it. A block of thinking is
        whole here: no text, so no check and no release, comes while it streams. Never restored: it is signed.
        False when a value to mask is still readable."""
        merged: dict[int, Any] = {}  # upstream index -> the one thinking delta of a block (a copy)
        kept: list[tuple[int, int, int, Any]] = []
        for at, order, n, event in self.pending:
            kind = getattr(event, "type", None)
            if order == 0 and kind == "content_block_delta" and getattr(event.delta, "type", "") == "thinking_delta":
                if event.index in merged:
                    merged[event.index].delta.thinking += event.delta.thinking
                    continue
                event = merged[event.index] = copy.deepcopy(event)
            kept.append((at, order, n, event))
        if not merged:
            return True
        self.pending = kept

        def read() -> str:
            return "\n".join(str(e.delta.thinking) for e in merged.values())

        def apply(edit: Edit, masking: bool) -> None:
            for event in merged.values():
                event.delta.thinking = edit(event.delta.thinking)

        taken = {**sg.known, **sg.replacements}
        own = actions.own_redaction(read(), sg.redact_entities, sg.written, taken)
        sg.known = {**sg.known, **own}  # the same value in the text (or a call) later takes the same placeholder
        return actions.mask_and_restore(apply, read, own, {})

    # -- held calls --------------------------------------------------------------------------------

    def _edit_held(self, sg: StreamGuard) -> bool:
        """The held calls' inputs, each joined into its first delta, redacted as the policy redacts the answer's text
        and restored (``restore=True``), in place in ``pending``; False when a value to mask is still readable."""
        start = next(i for i, p in enumerate(self.pending) if p[3] is self.hold)
        merged: dict[int, Any] = {}  # upstream index -> the one input delta of a call
        starts: list[Any] = []  # the held calls' blocks
        results: list[Any] = []  # the held server tools' results (and blocks of new kinds, an error), whole
        kept: list[tuple[int, int, int, Any]] = []
        for at, order, n, event in self.pending[start:]:
            kind, index = getattr(event, "type", None), getattr(event, "index", -1)
            if kind == "content_block_start" and self.kinds.get(index, "") in CALLS:
                event = copy.deepcopy(event)
                starts.append(event.content_block)
            elif kind == "content_block_start" and self.kinds.get(index, "") not in _NOT_RESULTS:
                event = copy.deepcopy(event)
                results.append(event.content_block)
            elif kind == "error":  # a held error's message, read and edited as a result is
                event = copy.deepcopy(event)
                results.append(event)
            elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "input_json_delta":
                if index in merged:
                    merged[index].delta.partial_json += event.delta.partial_json
                    continue
                event = merged[index] = copy.deepcopy(event)
            kept.append((at, order, n, event))
        self.pending[start:] = kept
        self.hold = kept[0][3]

        def read() -> str:
            texts = [f"{getattr(b, 'name', '')}: {_json(getattr(b, 'input', None))}" for b in starts]
            texts += [str(e.delta.partial_json) for e in merged.values()]
            return "\n".join([unescape_json("\n".join(texts)), *(t for b in results for t in block_texts(b))])

        def apply(edit: Edit, masking: bool) -> None:
            for block in starts:
                if getattr(block, "input", None):
                    block.input = edited(block.input, edit)
            for block in results:
                actions.edit_block(block, edit)
            for event in merged.values():
                event.delta.partial_json = edited(event.delta.partial_json, edit)

        taken = {**sg.known, **sg.replacements}
        own = actions.own_redaction(read(), sg.redact_entities, sg.written, taken)
        return actions.mask_and_restore(apply, read, own, self.gc.restore_map)


def _indexed(event: Any, index: int) -> Any:
    """``event`` under ``index`` (a copy when it changes: the upstream object is the caller's stream's)."""
    return event if event.index == index else event.model_copy(update={"index": index})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
