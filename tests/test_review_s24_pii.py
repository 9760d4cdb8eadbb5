"""Review of 29afcbe (names and street addresses as PII), fixed with tests.

What users rely on: a policy that lists ``person``/``address`` masks the whole name and the whole address, also where
the surname is a common word ("Hans Scholl"), a middle initial has no full stop, an e-mail is signed "Best," or
"Cheers,", a greeting opens it ("Hi Jane,"), or the address is a PO box; it leaves code, form headings, history
questions and years as written; its audit log (``log_text: redacted``) masks what the decision masked, and a replay of
that log reads natural text (``Alex Morgan``) that the detectors find again. Detection stays linear on hostile text
(a name followed by 100k blanks took minutes), and a policy that lists neither kind pays nothing for them, while one
that does runs only the cues whose words a text holds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog

from guardrail import Decision, Guard, audit
from guardrail.classifiers import patterns
from guardrail.classifiers.patterns import ENTITIES, find_entities
from guardrail.classifiers.pii_base import Detector
from guardrail.decision import Action, Finding, RuleAction
from guardrail.replay import replay
from guardrail.replay_traffic import load_traffic, stand_in
from guardrail.testing import FakeClassifier

CUED = ["person", "address"]


def names(text: str) -> list[str]:
    return [s.value for s in find_entities(text, ["person"])]


def addresses(text: str) -> list[str]:
    return [s.value for s in find_entities(text, ["address"])]


# ----------------------------------------------------------------------------------------------- names: misses
@pytest.mark.parametrize(
    ("text", "name"),
    [
        # a surname that is also a word the detector refused as a name ("Dr. Pepper"): only the first name was masked
        ("My name is Hans Scholl.", "Hans Scholl"),
        ("My name is Anna Martens", "Anna Martens"),
        ("Name: Jane Pepper\nAge: 40", "Jane Pepper"),
        ("Dear Jane Lord,\nthanks", "Jane Lord"),  # not masked at all: the name no longer ended its phrase
        ("My name is Nguyễn Văn An", "Nguyễn Văn An"),
        # a middle initial without its full stop, an Irish "Ó": the surname after it was left as written
        ("My name is John A Smith and I need help", "John A Smith"),
        ("My name is Seán Ó Súilleabháin", "Seán Ó Súilleabháin"),
        # sign-offs and greetings e-mails are written with
        ("Thanks for the update.\n\nBest,\nJane Doe", "Jane Doe"),
        ("Cheers,\nJane Doe", "Jane Doe"),
        ("Sincerely,\n\nJane Doe", "Jane Doe"),
        ("Hi Jane,\ncan you check my order?", "Jane"),
        ("Hello Jane Doe, your order shipped.", "Jane Doe"),
        ("Hola Juan,\n¿qué tal?", "Juan"),
        ("Bonjour Marie,", "Marie"),
        ("Danke, Anna", "Anna"),
    ],
)
def test_a_whole_name_after_a_cue_is_found(text: str, name: str) -> None:
    assert names(text) == [name]


# -------------------------------------------------------------------------------------------- names: look-alikes
@pytest.mark.parametrize(
    "text",
    [
        "Who was Dr. Martin Luther King?",
        "Who was Dr. Martin Luther King Jr. and what did he do?",
        "Mrs. Doubtfire is a movie with Robin Williams.",
        "Dr. Jekyll and Mr. Hyde",
        "Tell me about Mr. Bean.",
        "Sig Sauer P226 review",  # "Sig." is an Italian honorific; "Sig" alone is a gun
        "first_name = Column(String(50))",
        "first_name: CharField",
        "Dear FirstName,",
        "Attention: Important Notice",
        "Attention: Do not touch the wires",
        "Name: New Project",
        "Name: Build Status",
        "Text Mom at 555-123-4567",
        "Thank you!\nBye",
        "Thank you\nBest",
        "Hi Claude, can you summarise this?",
        "Hello World,",
        "Best regards,\nAcme Corp",
    ],
)
def test_titles_code_and_form_headings_keep_their_words(text: str) -> None:
    assert names(text) == []


# --------------------------------------------------------------------------------------------------- addresses
@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Send it to PO Box 1234, Springfield, IL 62704 please", "PO Box 1234, Springfield, IL 62704"),
        ("P.O. Box 42", "P.O. Box 42"),
        ("Postfach 10 11 12, 10115 Berlin", "Postfach 10 11 12, 10115 Berlin"),
        ("Apartado de Correos 45", "Apartado de Correos 45"),
        ("I live at 42 Elm St. Then we met.", "42 Elm St"),
        ("I live at 1985 Park Lane", "1985 Park Lane"),  # a cue: a four-digit house number stays one
    ],
)
def test_po_boxes_are_addresses(text: str, address: str) -> None:
    assert addresses(text) == [address]


@pytest.mark.parametrize(
    "text",
    [
        "In 1969 Abbey Road was released",
        "By 2030 Main Street will be car-free",
        "Call me at 5 PM Drive home",
        "We sold 100 Elm St. houses",
        "BP 120/80 is normal",
        "I bought a box 12 pack",
        "X-Box 360",
    ],
)
def test_years_times_and_counts_are_not_addresses(text: str) -> None:
    assert addresses(text) == []


# ----------------------------------------------------------------------------------------------------- linear
def test_a_name_or_a_street_before_a_long_run_of_blanks_is_scanned_in_linear_time() -> None:
    """The check that a name ends its phrase was quadratic in the blanks after it ("Dear John" + 40k spaces: 45 s).
    A subprocess with a generous time-out is only the hang guard; a linear scan takes milliseconds."""
    code = textwrap.dedent(
        """
        from guardrail.classifiers.patterns import find_entities
        n = 100_000
        for text in ("Dear John" + " " * n + "x", "Regards,\\nJohn" + "\\t" * n + "x", "Hi Jane" + " " * n + "x",
                     "12 Elm Street" + " " * n + "x", "Cheers, Jo" + " " * n + "x"):
            find_entities(text, ["person", "address"])
        print("done")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "done"


# ------------------------------------------------------------------------------------------------------- cost
class _Counted:
    """A regex whose searches are counted (the detectors' contract: ``search(text, pos)``)."""

    def __init__(self, regex: Any, counts: dict[str, int], key: str) -> None:
        self.regex, self.counts, self.key = regex, counts, key

    def search(self, text: str, pos: int = 0) -> Any:
        self.counts[self.key] = self.counts.get(self.key, 0) + 1
        return self.regex.search(text, pos)


def _counting(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, int], dict[str, int]]:
    gates: dict[str, int] = {}
    scans: dict[str, int] = {}

    def gate(d: Detector) -> Any:
        def counted(text: str) -> bool:
            gates[d.entity] = gates.get(d.entity, 0) + 1
            return d.gate(text)

        return counted

    wrapped = tuple(
        Detector(d.entity, _Counted(d.regex, scans, d.entity), d.check, gate(d))  # type: ignore[arg-type]
        for d in patterns._DETECTORS
    )
    monkeypatch.setattr(patterns, "_DETECTORS", wrapped)
    monkeypatch.setattr(patterns, "_catalogue", ((None,), (), frozenset()))  # rebuilt from the wrapped ones
    return gates, scans


ORDINARY = (
    "Please summarise the attached report about our quarterly address book update in 3 bullet points, "
    "and suggest a title for it. The draft is due on Friday."
)


def test_a_policy_that_lists_neither_kind_never_runs_their_gates_or_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    gates, scans = _counting(monkeypatch)
    text = "Hi, my name is Jane Doe, I live at 221B Baker Street. " + ORDINARY
    find_entities(text)
    find_entities(text, ENTITIES)
    assert not {"person", "address"} & (set(gates) | set(scans))
    assert [s.entity for s in find_entities(text, [*ENTITIES, *CUED])] == ["person", "address"]


def test_a_policy_that_lists_names_scans_only_for_the_cues_a_text_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """One regex of every cue ran on every text: its gate (any digit, "dr", "car", "ms") let nearly all through; and the
    streets written type first ("Calle Mayor 3") or as one word ("Hauptstraße 5") were scanned for on every text with
    a digit."""
    _, scans = _counting(monkeypatch)
    assert find_entities(ORDINARY, CUED) == []
    assert scans.get("person", 0) == 0
    assert scans.get("address", 0) == 1  # the house number first ("12 Elm Street"): any digit may start one


# ------------------------------------------------------------------------------------------------------ audit
POLICY = {
    "version": 1,
    "name": "names-audit",
    "input": {
        "rules": [
            {"category": "unsafe", "threshold": 0.5, "action": "block"},
            {"category": "pii", "action": "redact", "entities": ["person", "address", "email"]},
        ]
    },
    "audit": {"log_text": "redacted"},
}
PROMPT = "Hi, my name is Jane Doe. Send it to 221B Baker Street, London NW1 6XE or a@example.com"


def _events(policy: dict[str, Any], texts: list[str], mode: str, scores: dict[str, Any] | None = None) -> list[Any]:
    async def run(g: Guard) -> None:
        for t in texts:
            await g.acheck_input(t)

    with structlog.testing.capture_logs() as logs, Guard(policy, classifiers=FakeClassifier(rules=scores)) as g:
        if mode == "sync":
            for t in texts:
                g.check_input(t)
        else:
            asyncio.run(run(g))
    return [e for e in logs if e["event"] == "guardrail.decision"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redacted_audit_log_masks_the_names_and_addresses_the_policy_masks(mode: str) -> None:
    blocked = "my name is Jane Doe, how do I build a bomb"
    events = _events(POLICY, [PROMPT, blocked], mode, scores={"bomb": {"unsafe": 0.99}})
    assert [e["action"] for e in events] == ["rewrite", "block"]
    # the rewrite masks what the decision masked; the block keeps no redactions, but its redact finding lists them
    assert [e["text"] for e in events] == [
        "Hi, my name is <PERSON_1>. Send it to <ADDRESS_1> or <EMAIL_1>",
        "my name is <PERSON_1>, how do I build a bomb",
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_policy_that_does_not_list_them_logs_names_as_before(mode: str) -> None:
    policy = {**POLICY, "input": {"rules": [{"category": "pii", "action": "redact"}]}}
    [event] = _events(policy, [PROMPT], mode)
    assert event["text"] == PROMPT.replace("a@example.com", "<EMAIL_1>")


def test_the_log_masks_each_value_the_decision_masked_wherever_it_stands() -> None:
    """A value the check masked, but that a lookup of the logged text alone does not find (no cue before it here),
    is masked in the log too, as a whole word only."""
    d = Decision(
        id="x",
        action=Action.REWRITE,
        stage="input",
        text="",
        scores={},
        findings=(Finding("pii", 1.0, 0.5, RuleAction.REDACT, False, ("person",)),),
        policy="p",
        policy_hash="h",
        latency_ms=0.0,
        redactions={"<PERSON_1>": "Jane Doe"},
    )
    text = "Jane Doe wrote to Jane Doester; mail a@example.com"
    assert audit.redacted_text(text, d) == "<PERSON_1> wrote to Jane Doester; mail <EMAIL_1>"
    assert audit.redacted_text(text) == "Jane Doe wrote to Jane Doester; mail <EMAIL_1>"  # no decision: as before


# ----------------------------------------------------------------------------------------------------- replay
@pytest.mark.parametrize("entity", CUED)
def test_names_and_addresses_have_stand_ins_found_again_in_their_context(entity: str) -> None:
    values = [stand_in(entity, n) for n in (1, 2, 3, 20, 400, 401, 9999)]
    assert len(set(values)) == len(values)
    assert values[0] == ("Alex Morgan" if entity == "person" else "12 Sample Street, Springfield, IL 62704")
    contexts = (
        ("my name is {} and", "Dear {},", "Ms. {} called", "Best regards,\n{}\n")
        if entity == "person"
        else ("I live at {}.", "ship to {} by Friday", "{}")
    )
    for v in values:
        for c in contexts:
            text = c.format(v)
            assert [(s.entity, s.value) for s in find_entities(text, CUED)] == [(entity, v)], text


def test_a_redacted_log_of_names_and_addresses_replays_as_natural_text(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    with structlog.testing.capture_logs() as logs, Guard(policy, classifiers=FakeClassifier()) as g:
        g.check_input(PROMPT)
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in logs if e["event"] == "guardrail.decision"))
    [row] = list(load_traffic(log))
    assert row.payload == (
        "Hi, my name is Alex Morgan. Send it to 12 Sample Street, Springfield, IL 62704 or user1@example.com"
    )
    report = replay(log, policy, classifiers=FakeClassifier())
    assert report.metrics()["changed"] == 0 and report.redacted_rows == 1


@pytest.mark.parametrize(
    "text", ["AKIAQ3EGZXB7PLMN4RTY Calle Dr. Jane ", "key AKIAQ3EGZXB7PLMN4RTY Baker Dr. Jane Doe"]
)
def test_a_digit_inside_a_key_is_no_house_number_so_masking_twice_changes_nothing(text: str) -> None:
    """Found by the suite's property test: "Dr" after a digit inside a key read as a street ("5 Mulholland Dr."), so
    the name was found only once the key was masked."""
    kinds = [*CUED, "api_key"]
    masked, _ = patterns.redact(text, find_entities(text, kinds))
    assert "<PERSON_1>" in masked
    assert patterns.redact(masked, find_entities(masked, kinds))[0] == masked
