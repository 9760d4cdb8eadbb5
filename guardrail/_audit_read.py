"""What a check read, for its audit event: a chat's texts, an answer's prompt, the system prompt, the routing context.

An audit event must carry what its decision was made on, or both its readers are misled. A chat's event once held
only the newest text, so a prompt injection blocked in a tool result read ``block jailbreak 'summarise the page'``
to a reviewer, and ``guardrail replay`` checked that one turn and reported ``block -> allow``; an answer's event had
no prompt (the output classifier judges an answer with its prompt); no event had the routing context, so a routed
request was replayed under the parent policy. This module gathers those pieces from the check's state as plain data
(:class:`Read`); :mod:`guardrail.audit`, the schema's one owner, decides how each is written under
``audit.log_text`` and within the size limits, and :mod:`guardrail.replay_traffic` reads them back. Apart from
:mod:`guardrail.audit` so that module stays about the event, not about the shapes of chat messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardrail.messages import Extracted, canonical_role
from guardrail.routing import RoutingContext, context_text

__all__ = ["Checked", "Read", "Said", "read_of"]


@dataclass(frozen=True, slots=True)
class Said:
    """One text a check read from a chat message: its content (``part``: the index of a list part, None for plain
    content) or, with ``name``, the message's name. ``index`` is the message's place in the request: replay needs it
    to tell consecutive turns of one role (read joined, as one text too) from turns with another between them.
    ``text`` None: the newest user turn, which had nothing to read (an image alone), yet is the turn the reader puts
    last; without it, the turn before would be read as the newest."""

    index: int
    role: str
    text: str | None
    part: int | None = None
    name: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    """What a check read besides the decision's main text (the event's ``text``)."""

    messages: tuple[Said, ...] | None = None  # a chat's texts, in request order; None: one plain text
    prompt: str | None = None  # output stage: the prompt the answer was judged with
    system: str | None = None  # input stage: the system prompt, only when the policy reads it (system_context)
    context: dict[str, str] = field(default_factory=dict)  # the routing context, as routes read it
    actions: bool = False  # an answer's tool calls (or refusal, transcript) were read too: those are not logged


class Checked(Protocol):
    """The parts of a check's state (``guardrail._decide.Pending``) that say what it read."""

    @property
    def stage(self) -> str: ...
    @property
    def extracted(self) -> Extracted | None: ...
    @property
    def payload(self) -> Any: ...
    @property
    def prompt(self) -> str | None: ...
    @property
    def context(self) -> RoutingContext: ...


def read_of(checked: Checked) -> Read:
    """What ``checked`` read: on the input stage the chat's texts and the system prompt the policy reads (the engine
    sets ``prompt`` to it only then), on the output stage the answer's texts (when it came as messages) and its
    prompt; on both the routing context the caller passed."""
    ex = checked.extracted
    messages: tuple[Said, ...] | None = None
    actions = False
    if ex is not None and ex.is_messages:
        said = [
            Said(i, role, text, j)
            for (i, j), role, text in zip(ex.locations, ex.roles, ex.texts, strict=True)
            if i >= 0  # an answer that only calls a tool has one empty text at -1: nothing was written there
        ]
        sent = _messages(checked.payload)
        for extra in ex.extra:
            if extra.name_of is not None and extra.name_of < len(sent):
                name = _get(sent[extra.name_of], "name")
                if isinstance(name, str):
                    said.append(Said(extra.name_of, _role(sent[extra.name_of]), name, name=True))
            elif not extra.joined:  # what an answer does besides its text (guardrail.answer_actions)
                actions = True
        users = [i for i, m in enumerate(sent) if _role(m) == "user"]
        if users and all(s.index != users[-1] for s in said):
            said.append(Said(users[-1], "user", None))
        messages = tuple(sorted(said, key=lambda s: (s.index, not s.name, -1 if s.part is None else s.part)))
    if checked.stage == "output":
        return Read(messages, prompt=checked.prompt, context=_context(checked.context), actions=actions)
    return Read(messages, system=checked.prompt, context=_context(checked.context))


def _context(context: RoutingContext) -> dict[str, str]:
    """The caller's routing context as routes compare it (``routing.context_text``), in the order given. A value no
    route can read is left out rather than refused: a policy with routes refused it before the check
    (``routing.select``), and one without routes never read it."""
    out: dict[str, str] = {}
    for key, value in (context or {}).items():
        if isinstance(key, str) and value is not None:
            try:
                out[key] = context_text(value)
            except TypeError:
                continue
    return out


def _messages(payload: Any) -> Sequence[Any]:
    if isinstance(payload, Mapping) and "role" in payload:
        return [payload]
    return payload if isinstance(payload, Sequence) and not isinstance(payload, (str, bytes, bytearray)) else []


def _role(message: Any) -> str:
    """A message's canonical role (the reader validated every message the check read; any other reads as none)."""
    try:
        return canonical_role(_get(message, "role"))
    except TypeError:
        return ""


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
