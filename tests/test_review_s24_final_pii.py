"""Final review of session 24's names and addresses: what the earlier reviews (test_review_s24_pii.py,
test_review_s24_names.py) missed.

- A name or an address found through its cue was masked only there: "My name is Jane Doe. Jane Doe is my legal name"
  went upstream with the second one as written, through the real openai client, streamed or not, while the redacted
  audit log of a rewrite masked both (so the log said it was masked); a block's or a shadow rule's log kept it.
- Ordinary text: a list of sign-offs ("Sincerely,\\nWarmly,\\nPeace,") was masked as names, and English words that
  end like a street ("Spring 2024", "Engineering 101", "The Roaring 20s") as addresses (found on alpaca-eval answers).
- The detectors' shared state (the gates' lower-cased text) gives the same spans from many threads as from one.
- ``masked_repeats``: a name one of several texts redacted joined says is masked in the others, whole.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import structlog
from stub_server import StubServer

import guardrail
from guardrail import Guard
from guardrail.classifiers import pii_names
from guardrail.classifiers.patterns import find_entities, masked_repeats, redact
from guardrail.testing import FakeClassifier

CUED = ["person", "address"]
POLICY: dict[str, Any] = {
    "version": 1,
    "name": "final-review",
    "input": {
        "rules": [
            {"category": "unsafe", "threshold": 0.5, "action": "block"},
            {"category": "pii", "action": "redact", "entities": ["person", "address", "email"]},
        ]
    },
    "output": {
        "rules": [{"category": "pii", "action": "redact", "entities": ["person", "address"]}],
        "stream": {"check_every_chars": 20, "holdback_chars": 80},
    },
    "audit": {"log_text": "redacted"},
}
REPEATED = "My name is Jane Doe. Jane Doe is my legal name; ship to 221B Baker Street, London NW1 6XE."
REPEATED_MASKED = "My name is <PERSON_1>. <PERSON_1> is my legal name; ship to <ADDRESS_1>."


def values(text: str, kinds: list[str] = CUED) -> list[tuple[str, str]]:
    return [(s.entity, s.value) for s in find_entities(text, kinds)]


# ------------------------------------------------------------------------------------------------ repeated values
@pytest.mark.parametrize(
    ("text", "want"),
    [
        (REPEATED, [("person", "Jane Doe"), ("person", "Jane Doe"), ("address", "221B Baker Street, London NW1 6XE")]),
        ("Dear Anna,\nAnna, your order is in.", [("person", "Anna"), ("person", "Anna")]),
        ("Jane Doe wrote this. Best regards,\nJane Doe", [("person", "Jane Doe"), ("person", "Jane Doe")]),
        # whole words only, case as written
        ("My name is Jane Doe; Jane Doester and jane doe are others.", [("person", "Jane Doe")]),
    ],
)
def test_a_name_or_an_address_found_once_is_found_wherever_it_stands_whole(
    text: str, want: list[tuple[str, str]]
) -> None:
    assert values(text) == want
    masked, _ = redact(text, find_entities(text, CUED))
    assert redact(masked, find_entities(masked, CUED))[0] == masked  # masking twice changes nothing


def _ask(stub: StubServer, mode: str, stream: bool, messages: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    async def asked_async(g: Guard) -> str:
        async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
            client = guardrail.wrap(g, raw, restore=True)
            r = await client.chat.completions.create(model="m", messages=messages, stream=stream)
            if stream:
                return "".join([c.choices[0].delta.content or "" async for c in r if c.choices])
            return str(r.choices[0].message.content)

    with structlog.testing.capture_logs() as logs, Guard(POLICY, classifiers=FakeClassifier()) as g:
        if mode == "async":
            out = asyncio.run(asked_async(g))
        else:
            with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
                r = guardrail.wrap(g, raw, restore=True).chat.completions.create(
                    model="m", messages=messages, stream=stream
                )
                if stream:
                    out = "".join(c.choices[0].delta.content or "" for c in r if c.choices)
                else:
                    out = str(r.choices[0].message.content)
    return out, [e for e in logs if e["event"] == "guardrail.decision"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_through_the_openai_client_a_repeated_name_never_reaches_the_upstream_and_comes_back_restored(
    stub: StubServer, mode: str, stream: bool
) -> None:
    stub.reply = "Noted, <PERSON_1>: the parcel goes to <ADDRESS_1>."
    out, events = _ask(stub, mode, stream, [{"role": "user", "content": REPEATED}])
    sent = json.dumps(stub.completions()[-1].body, ensure_ascii=False)
    assert "Jane" not in sent and "Baker" not in sent
    assert stub.completions()[-1].body["messages"][0]["content"] == REPEATED_MASKED
    assert out == "Noted, Jane Doe: the parcel goes to 221B Baker Street, London NW1 6XE."
    logged = json.dumps([e.get("text") for e in events], ensure_ascii=False)
    assert "Jane" not in logged and "Baker" not in logged


@pytest.mark.parametrize("shadow", [False, True], ids=["enforced", "shadow"])
def test_a_blocked_or_shadow_redacted_log_masks_a_repeated_name(shadow: bool) -> None:
    rule = {"category": "pii", "action": "redact", "entities": CUED, **({"mode": "shadow"} if shadow else {})}
    policy = {**POLICY, "input": {"rules": [POLICY["input"]["rules"][0], rule]}}
    texts = ["My name is Jane Doe. Jane Doe asks: bomb", REPEATED]
    with (
        structlog.testing.capture_logs() as logs,
        Guard(policy, classifiers=FakeClassifier(rules={"bomb": {"unsafe": 0.99}})) as g,
    ):
        for t in texts:
            g.check_input(t)
    events = [e for e in logs if e["event"] == "guardrail.decision"]
    assert [e["action"] for e in events] == ["block", "allow" if shadow else "rewrite"]
    assert [e["text"] for e in events] == ["My name is <PERSON_1>. <PERSON_1> asks: bomb", REPEATED_MASKED]


def test_texts_redacted_joined_mask_a_name_one_of_them_says_in_the_others_whole() -> None:
    """``masked_repeats`` for ``rules._redact_all``: "Jane Doe" from the first turn masked in the last, and whole where
    a reading of parts joined with nothing found only "Jane" (the last turn's spans as that reading spread them)."""
    sep = "\n\ue000\ue001\ue000\n"
    first, last = "My name is Jane Doe.", "Is Jane Doe a nice name? Mail a@example.com"
    joined = sep.join([first, last])
    spans = [*find_entities(first, [*CUED, "email"])]
    offset = len(first) + len(sep)
    half = find_entities("My name is Jane Doe.Jane", CUED)[-1]  # the joined reading's "Jane" (cut by the glue)
    assert half.value == "Jane"
    spans += [type(half)("person", offset + 3, offset + 7, "Jane")]
    spans += [type(s)(s.entity, s.start + offset, s.end + offset, s.value) for s in find_entities(last, ["email"])]
    red, mapping = redact(joined, masked_repeats(joined, spans))
    assert red.split(sep) == ["My name is <PERSON_1>.", "Is <PERSON_1> a nice name? Mail <EMAIL_1>"]
    assert mapping == {"<PERSON_1>": "Jane Doe", "<EMAIL_1>": "a@example.com"}


# ----------------------------------------------------------------------------------------------- ordinary text
@pytest.mark.parametrize(
    "text",
    [
        "Sincerely, \n\nSincerely, \nBest, \nPeace, \nCordially, \n Regards, \n\nTake care, \n\nWarmly, \n\nYours",
        "Thanks,\nCheers,\nLove,\n",
        "We launch in Spring 2024.",
        "I loved Spring 2023, it was great",
        "Take Engineering 101 and Physics 2.",
        "[The Roaring 20s and the Jazz Age]",
        "Monitoring 2, Scoring 3",
        "String 5.",
        "Offering 3.",
    ],
)
def test_sign_off_lists_and_english_words_before_a_number_are_neither_names_nor_addresses(text: str) -> None:
    assert values(text) == []


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Best regards,\nJohn Smith", ("person", "John Smith")),
        ("Sincerely,\nPeace Okafor", ("person", "Peace Okafor")),  # a first word that is a sign-off, then a name
        ("Kaiserring 5, 68161 Mannheim", ("address", "Kaiserring 5, 68161 Mannheim")),
        ("Wir wohnen am Westring 12.", ("address", "Westring 12")),
        ("Kurt-Schumacher-Ring 4", ("address", "Kurt-Schumacher-Ring 4")),
        ("Kölner Ring 5", ("address", "Kölner Ring 5")),
        ("Vesterbrogade 1", ("address", "Vesterbrogade 1")),
    ],
)
def test_names_after_sign_offs_and_ring_streets_are_still_found(text: str, want: tuple[str, str]) -> None:
    assert values(text) == [want]


# ---------------------------------------------------------------------------------------------- thread safety
CONCURRENT = [
    "My name is Jane Doe. Best regards,\nJohn Smith",
    "Dear Ms. Anna Berg,\nsee 12 rue de la Paix, 75002 Paris",
    "Liebe Grüße,\nAnna",
    "Mit freundlichen Grüßen\nHans Müller",
    "contact Bob Lee at bob@example.com",
    "NAME: JANE DOE",
    "the build is green; nothing personal here at all",
    "Hi Jen,\nI hope you're well.",
    "Via Roma 10, 00184 Roma",
    "PO Box 1234, Springfield, IL 62704",
]


def test_concurrent_lookups_on_different_texts_find_what_serial_ones_do() -> None:
    """The gates share one lower-cased text (``pii_names._lower``); switching threads as often as possible, every
    lookup from eight threads finds what it finds alone, and each gate answers for its own text."""
    texts = [f"{t}\n\n(ref {i})" for i in range(40) for t in CONCURRENT]
    serial = [values(t) for t in texts]
    gates = list(pii_names._GATES.values())
    gated = [[gate(t) for gate in gates] for t in texts]
    start = threading.Barrier(8)

    def both(t: str) -> tuple[list[tuple[str, str]], list[bool]]:
        return values(t), [gate(t) for gate in gates]

    def run(chunk: list[str]) -> list[tuple[list[tuple[str, str]], list[bool]]]:
        start.wait()
        return [both(t) for t in chunk]

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(8) as ex:
            chunks = [texts[k::8] for k in range(8)]
            results = list(ex.map(run, chunks))
    finally:
        sys.setswitchinterval(old)
    for k, chunk_results in enumerate(results):
        for j, (found, gate_results) in enumerate(chunk_results):
            i = k + 8 * j
            assert (found, gate_results) == (serial[i], gated[i]), texts[i]
    assert sum(bool(s) for s in serial) == 9 * 40  # all but the one without personal data
