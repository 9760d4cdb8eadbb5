"""Placeholders across a server-side conversation (``previous_response_id``, ``conversation``).

With the Responses API the provider keeps the earlier turns: a request sends only its new input, so the guard
no longer sees the placeholders earlier turns sent. Numbered afresh, this turn's address became ``<EMAIL_1>``,
which the stored history already used for another one: the model could no longer tell the two people apart,
and ``restore=True`` put the new address wherever the model meant the old one. So a wrapped client remembers,
per response and per conversation, the placeholders its requests sent (placeholder -> value, the user's own
values, kept in memory only, for the most recent ``SIZE`` keys; not for ``store=False`` requests). A request that
continues one joins its numbering: a value sent before keeps its placeholder, a new one takes a free number, and
``restore=True`` restores the earlier turns' placeholders too. ``responses.retrieve`` and ``cancel`` read the
answer with what its request sent.

Two turns of one ``conversation`` sent at once share its history on the provider's side, so each claims its
placeholders when it numbers them, before it is sent (``claim``): the second one numbered sees the first one's
values and gives its own new ones the next free numbers (before, both numbered alone: both sent <EMAIL_2>, for two
different people). Turns continuing one ``previous_response_id`` at once are forks, not a shared history: each
numbers from what the response it continues sent.

A claim stays open until the turn is answered (``remember`` confirms what it sent) or fails (``release`` gives it
back). A placeholder that two open turns both sent is given back only when neither was answered: before, the turn
that claimed it first and then failed removed it, although the other turn had sent it into the history.

Not covered: the placeholders an answer gave its own values are not remembered (the model's stored history holds
those values in full); the LiteLLM proxy keeps no store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from guardrail.classifiers.patterns import renumbered, restore

from .answer_text import _get
from .json_edits import edited

__all__ = ["Conversations", "joined"]

SIZE = 4096


class Conversations:
    """What one wrapped client remembers of its server-side conversations (thread-safe, bounded)."""

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._sent: OrderedDict[str, dict[str, str]] = OrderedDict()
        # per conversation key: placeholder -> how many turns sent it and are not yet answered (a confirmed one,
        # sent by a turn that was answered, is not here and is never given back)
        self._open: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def known(self, kwargs: Mapping[str, Any]) -> dict[str, str]:
        """The placeholders earlier turns of the conversation ``kwargs`` continues sent (empty when it is new or
        forgotten)."""
        out: dict[str, str] = {}
        with self._lock:
            for key in _keys(kwargs):
                sent = self._sent.get(key)
                if sent is not None:
                    self._sent.move_to_end(key)
                    out.update(sent)
        return out

    def claim(
        self, kwargs: Mapping[str, Any], redactions: Mapping[str, str], messages: list[Any], written: frozenset[str]
    ) -> tuple[dict[str, str], dict[str, str], list[Any]]:
        """This turn's input redaction numbered against what the conversation sent so far, read and claimed at once
        (under the lock): returns (the placeholders earlier turns sent, this turn's redaction, its messages). The
        redaction is recorded under the ``conversation`` at once, so a turn of it numbered meanwhile takes other
        numbers; not for ``store=False`` requests, which are never part of the stored history."""
        with self._lock:
            known: dict[str, str] = {}
            for key in _keys(kwargs):
                known.update(self._sent.get(key, {}))
            new, messages = (
                joined(redactions, known, messages, written) if known and redactions else (dict(redactions), messages)
            )
            if new and kwargs.get("store") is not False:
                keys = _keys(kwargs, previous=False)
                for key in keys:
                    held, sent = self._open.setdefault(key, {}), self._sent.get(key, {})
                    for placeholder, value in new.items():
                        if sent.get(placeholder) != value or placeholder in held:  # new, or still only claimed
                            held[placeholder] = held.get(placeholder, 0) + 1
                self._record(keys, new)
            return known, new, messages

    def release(self, kwargs: Mapping[str, Any], claimed: Mapping[str, str]) -> None:
        """A claimed turn that was never sent (its request failed): the placeholders it claimed leave the
        conversation once no other open turn sent them and no answered turn did, so ``restore=True`` never puts
        back a value the provider's history does not hold, nor loses one it does."""
        with self._lock:
            for key in _keys(kwargs, previous=False):
                held, sent = self._open.get(key, {}), self._sent.get(key)
                for placeholder, value in claimed.items():
                    if placeholder not in held or sent is None or sent.get(placeholder) != value:
                        continue  # confirmed by an answered turn, never claimed here, or now another value's
                    held[placeholder] -= 1
                    if held[placeholder] <= 0:  # no open turn left that sent it, and no answered one
                        del held[placeholder]
                        del sent[placeholder]

    def remember(
        self, kwargs: Mapping[str, Any], response: Any, sent: Mapping[str, str], confirmed: Mapping[str, str]
    ) -> None:
        """After a turn: what it sent (``sent``, with the earlier turns'), under its response's id and under the
        conversation it belongs to; ``confirmed``, what it claimed, is in the history for good."""
        if kwargs.get("store") is False:  # an answer not stored can never be continued
            return
        ident = _get(response, "id")
        keys = _keys(kwargs, previous=False) + ([f"response:{ident}"] if isinstance(ident, str) and ident else [])
        with self._lock:
            for key in keys:
                held, known = self._open.get(key, {}), self._sent.get(key, {})
                for placeholder, value in confirmed.items():
                    if known.get(placeholder) == value:
                        held.pop(placeholder, None)
            for key in keys:  # never over a placeholder an open turn now holds for another value (after eviction)
                held, known = self._open.get(key, {}), self._sent.get(key, {})
                mine = {k: v for k, v in sent.items() if k not in held or known.get(k) == v}
                if mine:
                    self._record([key], mine)

    def _record(self, keys: list[str], sent: Mapping[str, str]) -> None:
        """``sent`` joined to what each key holds, the most recent keys kept (called under the lock)."""
        for key in keys:
            self._sent[key] = {**self._sent.get(key, {}), **sent}
            self._sent.move_to_end(key)
        while len(self._sent) > self._size:
            gone, _ = self._sent.popitem(last=False)
            self._open.pop(gone, None)


def joined(
    redactions: Mapping[str, str], known: Mapping[str, str], messages: list[Any], written: frozenset[str]
) -> tuple[dict[str, str], list[Any]]:
    """This turn's input redaction (``redactions``, placeholder -> value, and the ``messages`` it wrote) made to
    agree with what the conversation sent before (``known``): a value sent before keeps its placeholder, a new
    one moves off the numbers ``known`` holds and those the user wrote (``written``). The placeholders in the
    messages are renamed in one pass."""
    new = renumbered(redactions, known, written)
    by_value = {v: k for k, v in new.items()}
    renames = {old: by_value[v] for old, v in redactions.items() if by_value.get(v, old) != old}
    if not renames:
        return new, messages
    return new, [_renamed(m, renames) for m in messages]


def _renamed(value: Any, renames: Mapping[str, str]) -> Any:
    """``value`` with its placeholders renamed in every string, as raw text: a placeholder holds no character JSON
    escapes, so a document stays valid, and none is skipped (a JSON-aware edit keeps keys that would collide)."""
    if isinstance(value, str):
        return restore(value, renames)
    if isinstance(value, dict):
        return {k: _renamed(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, renames) for v in value]
    return edited(value, lambda text: restore(text, renames))  # an SDK model: its string fields


def _keys(kwargs: Mapping[str, Any], *, previous: bool = True) -> list[str]:
    keys = []
    conversation = kwargs.get("conversation")
    ident = conversation if isinstance(conversation, str) else _get(conversation, "id")
    if isinstance(ident, str) and ident:
        keys.append(f"conversation:{ident}")
    previous_id = kwargs.get("previous_response_id")
    if previous and isinstance(previous_id, str) and previous_id:
        keys.append(f"response:{previous_id}")
    return keys
