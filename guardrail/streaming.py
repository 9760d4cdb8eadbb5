"""Guarding a token stream: check windows as text arrives, hold back the tail until it is checked.

``StreamGuard`` is a small state machine with no I/O: ``feed(chunk)`` says whether a check is due
(and of which window), ``apply(decision)`` says what may be released, ``finish()`` asks for the final
full-text check. ``guard_stream`` / ``aguard_stream`` are the two drivers (sync and async differ
only by ``await``); every adapter and the decorator use them.

Guarantees:

- released text has always been inside a checked window: the first check happens once more than
  ``holdback_chars`` have arrived (so the first token waits for at most the hold-back plus one
  check), then every ``check_every_chars``;
- each window starts ``context_chars`` before the previous check point, so text split across chunk
  boundaries, or across two checks, is seen whole (anything up to ``context_chars`` long);
- the last ``holdback_chars`` are never released before a later check includes them, and a stream
  that ends is checked in full before its remainder is released;
- on a block nothing more is released; the driver ends the stream with the policy's message, in a
  chunk of its own, set apart from any released text (``set_apart``);
- PII redaction applies to released text; a span is never cut in half at the release point.
"""

from __future__ import annotations

import functools
import inspect
import unicodedata
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from guardrail.classifiers.patterns import Span, placeholders, redact
from guardrail.decision import Action, Decision, RuleAction
from guardrail.revealed import entity_spans

if TYPE_CHECKING:
    from guardrail.policy import Policy

__all__ = [
    "Release",
    "StreamGuard",
    "aclose_quietly",
    "aguard_stream",
    "arelay",
    "close_quietly",
    "ends_stream",
    "guard_stream",
    "relay",
    "set_apart",
]

T = TypeVar("T")
U = TypeVar("U")


def ends_stream(decision: Decision) -> bool:
    """A decision that stops a stream: a block, or a rewrite by a replacing rule (released text cannot
    be edited, so the rule's message ends the stream). Redaction alone does not stop it."""
    if decision.action is Action.BLOCK:
        return True
    return decision.action is Action.REWRITE and any(
        f.action is RuleAction.REWRITE and not f.shadow for f in decision.findings
    )


def set_apart(end: str, released: str) -> str:
    """The text that ends a stopped stream, set apart from what was already released: a refusal is
    never glued to a fragment ("SureSorry, I can't help with that.")."""
    return end if not released or released.endswith("\n") else "\n\n" + end


@dataclass(frozen=True, slots=True)
class Release:
    """What the caller may emit now: ``text`` (possibly empty); ``blocked`` when the stream must end."""

    text: str = ""
    blocked: Decision | None = None
    final: bool = False


@dataclass
class StreamGuard:
    check_every_chars: int = 200
    holdback_chars: int = 80
    context_chars: int = 1000
    redact_entities: frozenset[str] = frozenset()
    reserved: frozenset[str] = frozenset()  # the prompt's placeholders: never given to the answer's own values
    known: Mapping[str, str] = field(default_factory=dict)  # the user's masked values: they keep their placeholder
    buffer: str = ""
    released: int = 0  # characters of ``buffer`` already emitted
    checked: int = 0  # ``buffer`` up to here was inside a checked window
    decisions: list[Decision] = field(default_factory=list)
    done: bool = False
    _pending_end: int = 0
    _replacements: dict[str, str] = field(default_factory=dict)
    _sent: list[Span] = field(default_factory=list)  # the spans already released, masked
    _out_len: int = 0
    _tail: str = ""  # the last character released (to set a stream's end apart from it)

    @classmethod
    def for_policy(cls, policy: Policy) -> StreamGuard:
        """The stream settings of ``policy.output``, and the PII it redacts (unless in shadow mode)."""
        ents: set[str] = set()
        for r in policy.output.rules:
            if r.action is RuleAction.REDACT and r.mode != "shadow" and policy.mode != "shadow":
                ents |= set(r.entities or ())
        cfg = policy.output.stream
        return cls(cfg.check_every_chars, cfg.holdback_chars, redact_entities=frozenset(ents))

    def feed(self, chunk: str) -> str | None:
        """Add ``chunk``; returns the window to check now, or None."""
        if self.done:
            return None
        self.buffer += chunk
        unchecked = len(self.buffer) - self.checked
        first = self.checked == 0 and len(self.buffer) > self.holdback_chars
        if first or unchecked >= self.check_every_chars:
            return self._window()
        return None

    def finish(self) -> str:
        """The stream ended: the window for the final check (all text not yet released, with context)."""
        return self._window(start=0 if len(self.buffer) <= 4 * self.context_chars else None)

    def _window(self, start: int | None = None) -> str:
        self._pending_end = len(self.buffer)
        s = max(0, self.checked - self.context_chars) if start is None else start
        return self.buffer[s : self._pending_end]

    def apply(self, decision: Decision, *, final: bool = False) -> Release:
        """Record the decision of the last window; returns what may be released."""
        self.decisions.append(decision)
        if ends_stream(decision):
            self.done = True
            return Release(blocked=decision, final=True)
        self.checked = self._pending_end
        end = self._pending_end if final else max(self.released, self._pending_end - self.holdback_chars)
        text = self._take(end, final=final)
        if final:
            self.done = True
        return Release(text=text, final=final)

    def _take(self, end: int, *, final: bool) -> str:
        if end <= self.released:
            return ""
        if self.redact_entities:
            if not final:  # an entity is recognised only once whole: never release part of a run that may be one
                end = _run_start(self.buffer, end, self.released)
            spans = self._unsent_spans()
            for sp in spans:  # never cut a span in half: stop before it (or take all of it at the end)
                if sp.start < end < sp.end:
                    end = sp.end if final else sp.start
            if end <= self.released:
                return ""
            # The whole released prefix is redacted each time with the spans and placeholders already sent kept as
            # they were sent (a placeholder the model writes later must not renumber them): what went out never
            # changes, and the same value keeps its placeholder.
            self._sent += [sp for sp in spans if sp.end <= end]
            sent = {**self.known, **self._replacements}
            red, self._replacements = redact(self.buffer[:end], self._sent, reserved=self.reserved, known=sent)
            text = red[self._out_len :]
            self._out_len = len(red)
        else:
            text = self.buffer[self.released : end]
        self.released = end
        self._tail = text[-1:] or self._tail
        return text

    def _unsent_spans(self) -> list[Span]:
        """The entities of the text not yet released, and of its readings (an address sent encoded or spaced
        apart: what the whole answer, checked at once, would mask; guardrail.revealed), read with the run before
        it for context. A span that begins in what already went out (a reading the released text did not yet
        complete) is masked from the release point on: the rest of it never goes out."""
        lo = max(0, self.released - _LONGEST_RUN)
        out: list[Span] = []
        for sp in entity_spans(self.buffer[lo:], self.redact_entities):
            a, b = max(sp.start + lo, self.released), sp.end + lo
            if a < b:
                out.append(Span(sp.entity, a, b, self.buffer[a:b]))
        return out

    def end_text(self, end: str) -> str:
        """``end`` (a refusal, a rewrite's message) as the stream's last words, set apart from released text."""
        return set_apart(end, self._tail)

    @property
    def written(self) -> frozenset[str]:
        """The placeholders a part of the answer checked apart (calls, audio) never takes for a new value: the
        prompt's and the conversation's (``reserved``) and those the model wrote in its text."""
        return self.reserved | placeholders(self.buffer)

    @property
    def replacements(self) -> dict[str, str]:
        return dict(self._replacements)


Check = Callable[[str], Decision]
ACheck = Callable[[str], Awaitable[Decision]]


def _run_start(buffer: str, end: int, floor: int) -> int:
    """Where to stop a release at ``end`` so that it never cuts a run of characters that may still become an
    entity (a token longer than the hold-back, such as a JWT or a key, or digit groups split by single
    spaces, such as a card number or an IBAN): the start of the run that ``end`` falls in, not before
    ``floor``. A run that reaches the end of the buffer may go on in the next chunk, so it counts as cut."""
    if end < len(buffer) and not _joined(buffer, end):
        return end  # the run before ``end`` is over (whitespace follows it)
    if end == 0 or not _joined(buffer, end - 1):
        return end  # ``end`` is where a run starts: none of it is released
    i, stop = end, max(floor, end - _LONGEST_RUN)
    while i > stop and _joined(buffer, i - 1):
        i -= 1
    return i


# an entity is ASCII (every detector is) or reads as ASCII: CJK text, which has no spaces, is never held back as
# one run; a run longer than this is released anyway (keys and tokens are shorter; it bounds the walk on each
# release)
_LONGEST_RUN = 4096


def _joined(buffer: str, k: int) -> bool:
    """Whether ``buffer[k]`` belongs to a run: a printable ASCII character, one that a reading of the text reads as
    such or reads past (``_read_as_ascii``), or one space inside what may be one entity written in groups: after a
    digit or ")" ("(415) 555-2671", "4111 1111"), or between capitals and digits ("GB82 WEST 1234"). A space at the
    buffer's end after such a character may go on in the next chunk."""
    c = buffer[k]
    if c.isascii() and not c.isspace():
        return c.isprintable()
    if not c.isascii():
        return _read_as_ascii(c)
    if c != " " or k == 0:
        return False
    before = buffer[k - 1]
    if _spaced_apart(buffer, k):
        return True
    if not (before.isdigit() or before == ")" or (before.isascii() and before.isupper())):
        return False
    if k == len(buffer) - 1:
        return True
    after = buffer[k + 1]
    if before.isdigit() or before == ")":
        return after.isascii() and (after.isalnum() or after in "(+")
    return after.isascii() and (after.isdigit() or after.isupper())


@functools.lru_cache(maxsize=2048)
def _read_as_ascii(c: str) -> bool:
    """Whether the check finds a value through the non-ASCII ``c``: its readings (``guardrail.normalize``) fold it to
    printable ASCII (full-width "ＥＭＰ－１２", the Kelvin sign, ligatures) or read past it (a zero-width space, a
    combining mark). A value written so is masked whole by the check of the whole answer, so a stream holds it back
    as it holds back a plain one: released in part up to such a character, its head would go out unmasked."""
    if unicodedata.category(c) in ("Cf", "Mn", "Me"):
        return True
    folded = unicodedata.normalize("NFKC", c)
    return all(ch.isascii() and ch.isprintable() and not ch.isspace() for ch in folded)


def _spaced_apart(buffer: str, k: int) -> bool:
    """Whether the space at ``k`` parts what may be one value written spaced apart ("j o h n . d o e @ ...", hex
    pairs "62 6f 62 40"): it follows a word of one or two printable ASCII characters, or a word that ends in a mark
    and one letter where the reading of a spaced address may start ("**b", "mailto:b", "/u/b"; not "it's"), and one
    such character follows it (or the buffer ends, and it may come in the next chunk)."""
    word = 0
    while word < 3 and k - word - 1 >= 0 and _printable_ascii(buffer[k - word - 1]):
        word += 1
    marked_letter = (
        word == 3
        and buffer[k - 1].isalpha()
        and not _word_char(buffer[k - 2])
        and (buffer[k - 2] in ":=/" or not _word_char(buffer[k - 3]))
    )
    if word not in (1, 2) and not marked_letter:
        return False
    return k == len(buffer) - 1 or _printable_ascii(buffer[k + 1])


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _printable_ascii(c: str) -> bool:
    return c.isascii() and c.isprintable() and not c.isspace()


def guard_stream(chunks: Iterator[str], sg: StreamGuard, check: Check) -> Generator[Release, None, None]:
    for chunk in chunks:
        window = sg.feed(chunk)
        if window is not None:
            rel = sg.apply(check(window))
            if rel.text or rel.blocked:
                yield rel
            if rel.blocked:
                return
    if not sg.done:
        yield sg.apply(check(sg.finish()), final=True)


async def aguard_stream(chunks: AsyncIterator[str], sg: StreamGuard, check: ACheck) -> AsyncGenerator[Release, None]:
    async for chunk in chunks:
        window = sg.feed(chunk)
        if window is not None:
            rel = sg.apply(await check(window))
            if rel.text or rel.blocked:
                yield rel
            if rel.blocked:
                return
    if not sg.done:
        yield sg.apply(await check(sg.finish()), final=True)


# ------------------------------------------------------------------------------ whole streams


def relay(
    items: Iterable[T], take: Callable[[T], str], sg: StreamGuard, check: Check, emit: Callable[[Release], Iterable[U]]
) -> Generator[U, None, None]:
    """Guard a stream of items end to end, for every integration (adapters, decorator, proxy): ``take``
    the text of each item, check it in windows, ``emit`` what each release lets through (in the
    caller's own item type). The source is closed when the stream ends, stops or is abandoned."""

    def texts() -> Generator[str, None, None]:
        for item in items:
            if text := take(item):
                yield text

    source = texts()
    releases = guard_stream(source, sg, check)
    try:
        for rel in releases:
            yield from emit(rel)
    finally:
        releases.close()
        source.close()
        close_quietly(items)


async def arelay(
    items: AsyncIterable[T],
    take: Callable[[T], str],
    sg: StreamGuard,
    check: ACheck,
    emit: Callable[[Release], Iterable[U]],
) -> AsyncGenerator[U, None]:
    """:func:`relay` for async streams (the same steps, awaited)."""

    async def texts() -> AsyncGenerator[str, None]:
        async for item in items:
            if text := take(item):
                yield text

    source = texts()
    releases = aguard_stream(source, sg, check)
    try:
        async for rel in releases:
            for out in emit(rel):
                yield out
    finally:
        await releases.aclose()
        await source.aclose()
        await aclose_quietly(items)


def close_quietly(obj: Any) -> None:
    """Close a stream or generator nobody will read (``close()``), if it has one."""
    close = getattr(obj, "close", None)
    if callable(close):
        close()


async def aclose_quietly(obj: Any) -> None:
    """Close an async stream or generator (``aclose()``, or an awaitable ``close()``), if it has one."""
    close = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result
