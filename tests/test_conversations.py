"""The per-conversation placeholder store (adapters/conversations.py), driven directly where an end-to-end test cannot
order events: its bound (the most recent keys only) evicting a conversation while one of its turns is open."""

from __future__ import annotations

from guardrail.adapters.conversations import Conversations


def _turn(store: Conversations, conversation: str, value: str) -> dict[str, str]:
    kwargs = {"conversation": conversation}
    _known, new, _messages = store.claim(kwargs, {"<EMAIL_1>": value}, ["mail <EMAIL_1>"], frozenset())
    return new


def test_a_stale_give_back_after_eviction_never_takes_another_values_claim() -> None:
    """A turn's claim outlived its conversation's entry (evicted); a new turn of that conversation claimed the same
    placeholder for another value; the old turn's give-back then took the new turn's claim, and the new turn's own
    give-back later left its value in the conversation although no turn that sent it was answered."""
    store = Conversations(size=1)
    old = _turn(store, "c1", "alice@x.org")
    _turn(store, "c2", "carol@x.org")  # evicts c1 and its open claims
    new = _turn(store, "c1", "bob@x.org")
    store.release({"conversation": "c1"}, old)  # stale: <EMAIL_1> is bob's now
    assert store.known({"conversation": "c1"}) == {"<EMAIL_1>": "bob@x.org"}
    store.release({"conversation": "c1"}, new)
    assert store.known({"conversation": "c1"}) == {}


def test_two_open_turns_sending_one_value_give_it_back_only_when_both_failed() -> None:
    store = Conversations()
    first, second = _turn(store, "c", "alice@x.org"), _turn(store, "c", "alice@x.org")
    store.release({"conversation": "c"}, first)
    assert store.known({"conversation": "c"}) == {"<EMAIL_1>": "alice@x.org"}
    store.release({"conversation": "c"}, second)
    assert store.known({"conversation": "c"}) == {}


def test_a_late_answer_after_eviction_never_overwrites_another_values_open_claim() -> None:
    store = Conversations(size=2)
    old = _turn(store, "c1", "alice@x.org")
    _turn(store, "c2", "carol@x.org")
    _turn(store, "c3", "dan@x.org")  # evicts c1
    new = _turn(store, "c1", "bob@x.org")
    store.remember({"conversation": "c1"}, {"id": "resp_old"}, old, old)  # the old turn's answer arrives late
    assert store.known({"conversation": "c1"}) == {"<EMAIL_1>": "bob@x.org"}
    store.release({"conversation": "c1"}, new)
    assert store.known({"conversation": "c1"}) == {}
