"""Streaming output guarding through the real openai client and the stub's SSE streams.

Properties (hypothesis): an unsafe phrase split across chunk boundaries in any way is never released
and the stream ends blocked; safe text is released whole, unchanged and in order; a placeholder cut
anywhere is restored. Each example runs through the sync and the async client, which must agree.
The first-token delay the guard adds is measured and printed, never asserted.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import openai
import pytest
from conftest import REFUSAL, make_guard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stub_server import StubServer

import guardrail
from guardrail import Blocked, Guard

SAFE_ALPHABET = "acdefghijklnopqrstuvwxyz ACDEFGHIJKL,.!?'\néü中"  # no b/m: cannot spell the unsafe phrase
PHRASE = "bomb"
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(text: str, cuts: set[int]) -> list[str]:
    points = [0, *sorted(c for c in cuts if 0 < c < len(text)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


def run_both(guard: Guard, stub: StubServer, pieces: list[str], prompt: str = "go", **options: Any) -> dict[str, Any]:
    """Stream ``pieces`` through the guarded sync and async clients; per mode the chunks or the exception."""
    stub.pieces = pieces
    messages = [{"role": "user", "content": prompt}]
    out: dict[str, Any] = {}
    client = guardrail.wrap(guard, openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0), **options)
    seen: list[Any] = []
    try:
        for chunk in client.chat.completions.create(model="m", messages=messages, stream=True):
            seen.append(chunk)
        out["sync"] = (seen, None)
    except Blocked as exc:
        out["sync"] = (seen, exc)
    finally:
        client.unwrapped.close()

    async def main() -> tuple[list[Any], Exception | None]:
        aseen: list[Any] = []
        raw = openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0)
        async with guardrail.wrap(guard, raw, **options) as ac:
            try:
                async for chunk in await ac.chat.completions.create(model="m", messages=messages, stream=True):
                    aseen.append(chunk)
            except Blocked as exc:
                return aseen, exc
        return aseen, None

    out["async"] = asyncio.run(main())
    return out


def content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def same(a: list[Any], b: list[Any]) -> bool:
    strip = [(c.choices[0].delta.content, c.choices[0].finish_reason) if c.choices else None for c in a]
    return strip == [(c.choices[0].delta.content, c.choices[0].finish_reason) if c.choices else None for c in b]


@PROPERTY
@given(
    data=st.data(),
    before=st.text(SAFE_ALPHABET, max_size=300),
    after=st.text(SAFE_ALPHABET, max_size=300),
    check_every=st.integers(1, 120),
    holdback=st.integers(len(PHRASE), 64),
    respond=st.sampled_from(["refusal", "raise"]),
)
def test_unsafe_phrase_split_anywhere_is_never_released(
    stub_server: StubServer, data: st.DataObject, before: str, after: str, check_every: int, holdback: int, respond: str
) -> None:
    text = before + PHRASE + after
    cuts = data.draw(st.sets(st.integers(1, len(text) - 1), max_size=80), label="cuts")
    guard = make_guard(respond=respond, check_every=check_every, holdback=holdback)
    try:
        results = run_both(guard, stub_server, split(text, cuts))
    finally:
        guard.close()
        stub_server.reset()
    for mode, (chunks, exc) in results.items():
        if respond == "raise":
            assert isinstance(exc, Blocked), mode
            released = content(chunks)
        else:
            assert exc is None, mode
            last = chunks[-1]
            released = content(chunks[:-1])
            ending = "\n\n" + REFUSAL if released and not released.endswith("\n") else REFUSAL  # set apart
            assert (last.choices[0].finish_reason, last.choices[0].delta.content) == ("content_filter", ending)
        assert before.startswith(released), mode  # nothing of the phrase, nothing after it, order kept
    assert same(results["sync"][0], results["async"][0])


@PROPERTY
@given(
    data=st.data(),
    text=st.text(SAFE_ALPHABET, min_size=1, max_size=500),
    check_every=st.integers(1, 120),
    holdback=st.integers(0, 64),
)
def test_safe_text_is_released_whole_and_in_order(
    stub_server: StubServer, data: st.DataObject, text: str, check_every: int, holdback: int
) -> None:
    cuts = data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=80), label="cuts")
    guard = make_guard(check_every=check_every, holdback=holdback)
    try:
        results = run_both(guard, stub_server, split(text, cuts))
    finally:
        guard.close()
        stub_server.reset()
    for chunks, exc in results.values():
        assert exc is None
        assert content(chunks) == text
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert same(results["sync"][0], results["async"][0])


@PROPERTY
@given(data=st.data(), head=st.text(SAFE_ALPHABET, max_size=60), tail=st.text(SAFE_ALPHABET, max_size=60))
def test_placeholders_cut_anywhere_are_restored(
    stub_server: StubServer, data: st.DataObject, head: str, tail: str
) -> None:
    prompt = f"{head} bob@example.com {tail} +1 415 555 0100 end"
    reply = f"You said: {head} <EMAIL_1> {tail} <PHONE_1> end"  # what the model saw, echoed
    cuts = data.draw(st.sets(st.integers(1, len(reply) - 1), max_size=60), label="cuts")
    guard = make_guard()
    try:
        results = run_both(guard, stub_server, split(reply, cuts), prompt=prompt, restore=True)
    finally:
        guard.close()
        stub_server.reset()
    for chunks, exc in results.values():
        assert exc is None
        assert content(chunks) == "You said: " + prompt


def test_first_token_delay(stub: StubServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Time to the first content chunk, unguarded vs guarded, with tokens at a fixed rate (printed)."""
    stub.chunk_chars, stub.delay = 4, 0.005  # 4 characters every 5 ms = 800 chars/s
    stub.reply = "All quiet on the garden front, the roses are fine and the tea is warm. " * 8
    raw = openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0)

    def first_token(client: Any) -> float:
        start = time.perf_counter()
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                elapsed = time.perf_counter() - start
                stream.close()
                return elapsed
        raise AssertionError("no content")

    rows = [("unguarded", statistics.median(first_token(raw) for _ in range(5)))]
    for every, hold in ((200, 80), (40, 16)):
        guard = make_guard(check_every=every, holdback=hold)
        client = guardrail.wrap(guard, raw)
        rows.append(
            (f"guarded check_every={every} holdback={hold}", statistics.median(first_token(client) for _ in range(5)))
        )
        guard.close()
    raw.close()
    with capsys.disabled():
        print("\nfirst-token latency (stub streams 4 chars / 5 ms; FakeClassifier):")
        for name, seconds in rows:
            print(f"  {name:<40} {seconds * 1000:7.1f} ms  (+{(seconds - rows[0][1]) * 1000:6.1f} ms)")


@given(released=st.text(max_size=40), end=st.text(min_size=1, max_size=40))
def test_a_stream_end_is_never_glued_to_released_text(released: str, end: str) -> None:
    """Whatever was released, the stream's last words start on a line of their own, unchanged otherwise."""
    from guardrail.streaming import set_apart

    out = set_apart(end, released)
    if released and not released.endswith("\n"):
        assert out == "\n\n" + end  # "Sure" + "Sorry..." never reads "SureSorry..."
    else:
        assert out == end  # nothing to set apart from: the message exactly


@PROPERTY
@given(
    data=st.data(),
    before=st.text(SAFE_ALPHABET, max_size=200),
    after=st.text(SAFE_ALPHABET, max_size=200),
    local=st.text("abcdefghijklmnopqrstuvwxyz0123456789.", min_size=1, max_size=120).filter(
        lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
    ),
    check_every=st.integers(1, 120),
    holdback=st.integers(0, 64),
)
def test_an_address_split_anywhere_is_never_released_in_part(
    stub_server: StubServer,
    data: st.DataObject,
    before: str,
    after: str,
    local: str,
    check_every: int,
    holdback: int,
) -> None:
    # an entity is recognised only once whole: one longer than the hold-back (or any, with a small one) was
    # released in part before it could be recognised, and the rest of its sentence was then dropped
    address = f"{local}@mail.example.org"
    text = f"{before} {address} {after}"
    cuts = data.draw(st.sets(st.integers(1, len(text) - 1), max_size=80), label="cuts")
    guard = make_guard(check_every=check_every, holdback=holdback)
    try:
        results = run_both(guard, stub_server, split(text, cuts))
    finally:
        guard.close()
        stub_server.reset()
    for chunks, exc in results.values():
        assert exc is None
        assert content(chunks) == f"{before} <EMAIL_1> {after}"
    assert same(results["sync"][0], results["async"][0])


def test_text_without_spaces_streams_before_the_end_under_output_redaction() -> None:
    # CJK text is one run of non-space characters: held back whole, it reached the client only at the end
    from guardrail.streaming import StreamGuard
    from guardrail.testing import FakeClassifier

    guard = Guard({"version": 1, "name": "t"}, classifiers=FakeClassifier())
    allow = guard.check_output("ok")
    sg = StreamGuard(check_every_chars=40, holdback_chars=16, redact_entities=frozenset({"email"}))
    released = ""
    for piece in ["这是一个关于天气和大海的平静的回答，没有任何有害的内容。"] * 20:
        window = sg.feed(piece)
        if window is not None:
            released += sg.apply(allow).text
    guard.close()
    assert len(released) > 200


@pytest.mark.parametrize("entity", ["(415) 555-2671", "GB82 WEST 1234 5698 7654 32", "4111 1111 1111 1111"])
@pytest.mark.parametrize("holdback", [0, 1, 4])
def test_entities_written_in_groups_are_never_released_in_part(entity: str, holdback: int) -> None:
    # at a small hold-back the area code of a phone number or the first groups of an IBAN went out first
    from guardrail.streaming import StreamGuard
    from guardrail.testing import FakeClassifier

    guard = Guard({"version": 1, "name": "t"}, classifiers=FakeClassifier())
    allow = guard.check_output("ok")
    text = f"Use {entity} for it. Thanks."
    sg = StreamGuard(check_every_chars=1, holdback_chars=holdback,
                     redact_entities=frozenset({"phone", "iban", "credit_card"}))  # fmt: skip
    out = ""
    for i in range(0, len(text), 3):
        if sg.feed(text[i : i + 3]) is not None:
            out += sg.apply(allow).text
    out += sg.apply(allow, final=True).text if not sg.done and sg.finish() is not None else ""
    guard.close()
    assert entity not in out and not any(group in out for group in entity.split(" ")[:2])


def streamed_as_checked_whole(stub_server: StubServer, text: str, every: int, holdback: int) -> str:
    """``text`` streamed through the real client (sync and async) and checked whole: the streams must deliver what
    the whole check wrote, the same both ways; returns that text."""
    guard = make_guard(check_every=every, holdback=holdback)
    try:
        results = run_both(guard, stub_server, split(text, set(range(3, len(text), 5))))
        whole = guard.check_output(text)
    finally:
        guard.close()
        stub_server.reset()
    for chunks, exc in results.values():
        assert exc is None
        assert content(chunks) == whole.text
    assert same(results["sync"][0], results["async"][0])
    return whole.text


ENCODED_ADDRESSES = {
    "base64": "Ym9iQGV4YW1wbGUuY29t",
    "hex": "626f62406578616d706c652e636f6d",
    "spaced hex": "62 6f 62 40 65 78 61 6d 70 6c 65 2e 63 6f 6d",
    "spaced": "b o b @ e x a m p l e . c o m",
    "long spaced": " ".join("christopher.alexander.robinson@university-example.com"),
    "url-encoded @": "bob%40example.com",
}


# stream settings: a check at every character with no hold-back, short windows, the usual ones
STREAM_SETTINGS = pytest.mark.parametrize(("every", "holdback"), [(1, 0), (7, 10), (40, 80)])


@pytest.mark.parametrize("form", list(ENCODED_ADDRESSES))
@STREAM_SETTINGS
def test_an_address_the_check_reads_decoded_is_masked_in_a_stream_too(
    stub_server: StubServer, form: str, every: int, holdback: int
) -> None:
    """The same answer checked whole was masked where the address sits (the check reads the decoded form); the
    stream masked only what it found in the raw text, so the encoded address went out as written. Spaced apart and
    longer than the hold-back, its start went out before it could be read, and the text after it came out garbled."""
    encoded = ENCODED_ADDRESSES[form]
    text = f"Write to {encoded} before Friday, and copy the team so that everyone knows about it."
    assert streamed_as_checked_whole(stub_server, text, every, holdback) == text.replace(encoded, "<EMAIL_1>")


MARKED_SPACED = {
    "(": "(b o b @ e x a m p l e . c o m)",
    "*": "*b o b @ e x a m p l e . c o m*",
    "**": "**b o b @ e x a m p l e . c o m**",
    '("': '("b o b @ e x a m p l e . c o m")',
    "curly": "“b o b @ e x a m p l e . c o m”",
    "-": "b o b @ e x a m p l e . c o m-",
    "mailto:": "mailto:b o b @ e x a m p l e . c o m",
    "label": "email:b o b @ e x a m p l e . c o m",
}


@pytest.mark.parametrize("mark", list(MARKED_SPACED))
@STREAM_SETTINGS
def test_a_spaced_address_beside_marks_streams_as_the_whole_check_masks_it(
    stub_server: StubServer, mark: str, every: int, holdback: int
) -> None:
    """Beside a bracket the spaced reading joined only the inner letters, so "(b <EMAIL_1> m)" went out; after two
    marks, a scheme or a label ("**b", "mailto:b") the first letter stayed out of the reading, so "mailto:b <EMAIL_1>"
    went out whole and streamed (a stream held back only words of one or two characters)."""
    text = f"Write to {MARKED_SPACED[mark]} before Friday, and copy the team so that everyone knows."
    whole = streamed_as_checked_whole(stub_server, text, every, holdback)
    assert "<EMAIL_1>" in whole and "e x a m p l e" not in whole
    if mark != "-":  # an address never ends in "-", so its last letter before one is not read as part of it
        assert "b o b" not in whole and "c o m" not in whole
        assert "b <EMAIL_1>" not in whole


def test_a_long_stream_keeps_what_it_sent_masked_as_sent() -> None:
    """Past 50,000 characters the readings are no longer computed over the whole text, so an address masked near the
    start stopped being a span, and the text released after it was sent a second time."""
    import base64

    from guardrail.streaming import StreamGuard
    from guardrail.testing import FakeClassifier

    guard = Guard({"version": 1, "name": "t"}, classifiers=FakeClassifier())
    allow = guard.check_output("ok")
    guard.close()
    blob = base64.b64encode(b"leak@corp.example").decode()
    text = f"Write to {blob} today. " + "lorem ipsum dolor sit amet " * 2000
    sg = StreamGuard(redact_entities=frozenset({"email"}))
    out = "".join(sg.apply(allow).text for i in range(0, len(text), 100) if sg.feed(text[i : i + 100]) is not None)
    sg.finish()
    out += sg.apply(allow, final=True).text
    assert out == text.replace(blob, "<EMAIL_1>")


def test_a_placeholder_the_model_writes_later_never_renumbers_what_was_sent() -> None:
    """Each release redacted the released text afresh, skipping numbers whose placeholder it now held: once the model
    wrote <EMAIL_9> itself, the address sent as <EMAIL_9> became <EMAIL_10>, the mapping no longer matched what went
    out, and the longer placeholder shifted the text released after it."""
    from guardrail.streaming import StreamGuard
    from guardrail.testing import FakeClassifier

    guard = Guard({"version": 1, "name": "t"}, classifiers=FakeClassifier())
    allow = guard.check_output("ok")
    guard.close()
    head = " ".join(f"a{n}@x.io" for n in range(1, 10)) + " are all. "
    text = head + "Reply to <EMAIL_9> and z@x.io at the end of the day."
    sg = StreamGuard(check_every_chars=10, holdback_chars=4, redact_entities=frozenset({"email"}))
    out = "".join(sg.apply(allow).text for i in range(0, len(text), 5) if sg.feed(text[i : i + 5]) is not None)
    sg.finish()
    out += sg.apply(allow, final=True).text
    sent = " ".join(f"<EMAIL_{n}>" for n in range(1, 10)) + " are all. "
    assert out == sent + "Reply to <EMAIL_9> and <EMAIL_10> at the end of the day."
    assert sg.replacements["<EMAIL_9>"] == "a9@x.io" and sg.replacements["<EMAIL_10>"] == "z@x.io"


_ADDRESSES = ["bob@example.com", "ann.lee@mail.example.org", "x@y.io"]


def _written(address: str, how: str) -> str:
    import base64

    return {"raw": address, "base64": base64.b64encode(address.encode()).decode(), "hex": address.encode().hex(),
            "spaced": " ".join(address)}[how]  # fmt: skip


_PIECES = st.one_of(
    st.sampled_from(["the", "a", "report", "is", "ready,", "I", "am", "ok.", "see", "to", "\n"]),
    st.builds(_written, st.sampled_from(_ADDRESSES), st.sampled_from(["raw", "base64", "hex", "spaced"])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(_PIECES, min_size=1, max_size=25),
    data=st.data(),
    every=st.integers(1, 60),
    holdback=st.integers(0, 40),
)
def test_a_stream_masks_exactly_what_the_whole_answer_masks_however_it_is_cut(
    words: list[str], data: st.DataObject, every: int, holdback: int
) -> None:
    """Addresses written raw, in base64, in hex or spaced apart, among short words (which a spaced run could be
    mistaken to continue): cut anywhere and released at any pace, the stream sends what the whole answer's redaction
    gives, placeholders and numbering included."""
    from guardrail.classifiers.patterns import redact
    from guardrail.revealed import entity_spans
    from guardrail.streaming import StreamGuard
    from guardrail.testing import FakeClassifier

    guard = Guard({"version": 1, "name": "t"}, classifiers=FakeClassifier())
    allow = guard.check_output("ok")
    guard.close()
    text = " ".join(words)
    cuts = data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=30), label="cuts")
    sg = StreamGuard(check_every_chars=every, holdback_chars=holdback, redact_entities=frozenset({"email"}))
    out = "".join(sg.apply(allow).text for piece in split(text, cuts) if sg.feed(piece) is not None)
    sg.finish()
    out += sg.apply(allow, final=True).text
    assert out == redact(text, entity_spans(text, {"email"}))[0]
