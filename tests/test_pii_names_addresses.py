"""People's names, street addresses and AWS secret keys are masked where a redact rule asks for them.

What users rely on: ``entities: [person, address]`` masks "my name is Jane Doe" and "221B Baker Street" as
``<PERSON_1>`` and ``<ADDRESS_1>`` in prompts and answers, streamed or not, through the real openai client, and
``restore=True`` gives them back; benign look-alikes ("Dear Sir or Madam", "Dr. Pepper", "Name: string", "3 Main Street
businesses", "Route 66") stay as written. Names and addresses are found through cues, so they are masked only where
a rule names them: a rule that leaves ``entities`` out masks the kinds found by their format, as before, and the
bundled policies (which list theirs) decide every text as they did. An AWS secret access key is an ``api_key`` beside
its cue or its key id. Detection stays linear on hostile text, every span lies in the text, and masking twice changes
nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stub_server import StubServer
from test_streaming import content

import guardrail
from guardrail import Guard, PolicyError, load_policy
from guardrail.classifiers.patterns import find_entities, redact
from guardrail.scoring_form import scoring_form
from guardrail.taxonomy import BUILTIN_PII_ENTITIES, CUED_PII_ENTITIES, PII_ENTITIES
from guardrail.testing import FakeClassifier

CUED = ["person", "address"]


def found(text: str, entity: str) -> list[str]:
    return [s.value for s in find_entities(text, [entity])]


# ------------------------------------------------------------------------------------------------------- person
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hi, my name is Jane Doe and I need help with my taxes.", "Jane Doe"),
        ("My name is José García López.", "José García López"),
        ("I'm called Anne-Marie O'Brien.", "Anne-Marie O'Brien"),
        ("I am called Zoë", "Zoë"),
        ("her full name is Siobhan O’Neill, born 1990", "Siobhan O’Neill"),
        ("My name is Ludwig van Beethoven", "Ludwig van Beethoven"),
        ("My name is John F. Kennedy", "John F. Kennedy"),
        ("Name: Jane Doe\nAge: 42", "Jane Doe"),
        ("Patient name: Maria Rossi", "Maria Rossi"),
        ("- Full name: Ahmed Khan", "Ahmed Khan"),
        ("NAME: JANE DOE", "JANE DOE"),
        ("Name: John Smith Age: 42", "John Smith"),
        ('{"first_name": "Jane", "age": 42}', "Jane"),
        ("Dear Ms. Jane Doe,\nThank you for your letter.", "Jane Doe"),
        ("Dear John,\nI am writing to...", "John"),
        ("Dear Mr. Smith:", "Smith"),
        ("Please forward this to Mrs. Okafor today.", "Okafor"),
        ("The results from Dr. Chen's lab are in.", "Chen"),
        ("Prof. Dr. Müller hat geantwortet.", "Müller"),
        ("signed, Jane Doe", "Jane Doe"),
        ("See you soon.\n\nBest regards,\nJohn Smith\n", "John Smith"),
        ("contact Jane Doe at jane.doe@example.com for details", "Jane Doe"),
        ("call Bob Lee on +44 20 7946 0958", "Bob Lee"),
        ("From: Jane Doe <jane@example.com>", "Jane Doe"),
        ("Hola, me llamo Juan Pérez y tengo 20 años.", "Juan Pérez"),
        ("Bonjour, je m'appelle Marie Curie.", "Marie Curie"),
        ("Hallo, ich heiße Hans Müller.", "Hans Müller"),
        ("Mein Name ist Jürgen Weiß.", "Jürgen Weiß"),
        ("Ciao, mi chiamo Giulia Bianchi.", "Giulia Bianchi"),
        ("Olá, meu nome é João da Silva.", "João da Silva"),
        ("Sehr geehrter Herr Schmidt,", "Schmidt"),
        ("Liebe Grüße,\nAnna", "Anna"),
    ],
)
def test_a_name_after_a_cue_is_found_exactly(text: str, name: str) -> None:
    assert found(text, "person") == [name]


@pytest.mark.parametrize(
    "text",
    [
        "My name is irrelevant here.",
        "Dear Sir or Madam,",
        "Dear Sir,",
        "Dear Hiring Manager,",
        "Dear Team,\nplease review.",
        "the old Dear John letter",
        "I love Dr. Pepper and Dr. Who.",
        "class User:\n    name: str\nName: string",
        "Name: String",
        "name: build\non: push",
        "The name is Bond.",
        "Jane Doe said hello.",  # no cue: not looked for
        "I am Jane.",
        "ich heiße Sie herzlich willkommen",
        "Sehr geehrte Damen und Herren,",
        "Thanks, John Smith for the help",  # a sign-off ends its line
        "contact Jane Doe tomorrow about it",  # "contact ... at" only beside an e-mail or a phone number
        "Mr. and Mrs.",
        "5 Mulholland Dr. Los Angeles",  # the street, not a doctor
        "MY NAME IS JOHN",
        "Sr. Software Engineer needed",
    ],
)
def test_benign_text_with_a_cue_word_keeps_its_words(text: str) -> None:
    assert found(text, "person") == []


# ------------------------------------------------------------------------------------------------------ address
@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("I live at 221B Baker Street.", "221B Baker Street"),
        ("1600 Pennsylvania Avenue NW, Washington, DC 20500", "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
        ("Ship to 42 Elm St., Apt 4B, Springfield, IL 62704 by Friday", "42 Elm St., Apt 4B, Springfield, IL 62704"),
        ("10 Downing St, London SW1A 2AA", "10 Downing St, London SW1A 2AA"),
        ("Our office: 350 5th Avenue, New York, NY 10118.", "350 5th Avenue, New York, NY 10118"),
        ("290 Bremner Blvd, Toronto, ON M5V 3L9", "290 Bremner Blvd, Toronto, ON M5V 3L9"),
        ("Meet me at 123 Main St and then lunch", "123 Main St"),
        ("Meine Adresse: Hauptstraße 5, 10115 Berlin", "Hauptstraße 5, 10115 Berlin"),
        ("Berliner Straße 12", "Berliner Straße 12"),
        ("Karl-Marx-Allee 12, Berlin", "Karl-Marx-Allee 12"),
        ("Hauptstr. 5", "Hauptstr. 5"),
        ("Kalverstraat 1, 1012 NX Amsterdam", "Kalverstraat 1, 1012 NX Amsterdam"),
        ("J'habite au 12 rue de la Paix, 75002 Paris.", "12 rue de la Paix, 75002 Paris"),
        ("8 avenue des Champs-Élysées", "8 avenue des Champs-Élysées"),
        ("Calle Mayor 3, 28013 Madrid", "Calle Mayor 3, 28013 Madrid"),
        ("vivo en la calle de Alcalá 42", "calle de Alcalá 42"),
        ("Via Roma 10, 00184 Roma", "Via Roma 10, 00184 Roma"),
        ("Rua Augusta, 100", "Rua Augusta, 100"),
    ],
)
def test_a_street_address_is_found_with_the_rest_of_it(text: str, address: str) -> None:
    assert found(text, "address") == [address]


@pytest.mark.parametrize(
    "text",
    [
        "3 Main Street businesses closed last year",
        "Get your kicks on Route 66",
        "Take the 2nd road on the left",
        "Upgrade to version 1.2 Way faster",
        "She sang 5 Ave Maria settings",
        "Via Twitter 5 people replied",
        "Platz 3 belegt",
        "I have 2 Supreme Court Justices on speed dial",
        "ZIP 62704",  # a postcode alone is not an address
        "London SW1A 2AA",
        "Baker Street is in London",  # no house number
        "Chapter 3 Way Forward",
    ],
)
def test_counts_routes_and_postcodes_are_not_addresses(text: str) -> None:
    assert found(text, "address") == []


# ------------------------------------------------------------------------------------------------------ api_key
SECRET = "kQ9z/Xr2+Lm8Vt4Bn7Wc1Yp5Hd3Fs6Jg0Ea/PuRx"  # 40 characters, made up


@pytest.mark.parametrize(
    "text",
    [
        f'{{"AccessKeyId": "AKIAQ3EGZXB7PLMN4RTY", "SecretAccessKey": "{SECRET}"}}',
        f"Access key ID,Secret access key\nAKIAQ3EGZXB7PLMN4RTY,{SECRET}\n",
        f"[default]\naws_access_key_id = AKIAQ3EGZXB7PLMN4RTY\naws_secret_access_key = {SECRET}\n",
        f"export AWS_SECRET={SECRET}",
        f"secret access key: {SECRET}",
        f"creds: {SECRET} (id AKIAQ3EGZXB7PLMN4RTY)",
    ],
)
def test_an_aws_secret_access_key_is_masked_as_an_api_key(text: str) -> None:
    assert SECRET in found(text, "api_key")
    masked, _ = redact(text, find_entities(text))
    assert SECRET not in masked and "<API_KEY_" in masked


@pytest.mark.parametrize(
    "text",
    [
        f"base64 chunk: {SECRET}",  # no cue, no key id
        "secret access key: 0123456789abcdef0123456789abcdef01234567",  # a git hash: not random enough
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # the documentation's example
        f"secret access key: {SECRET}QQ",  # 42 characters: part of something else
    ],
)
def test_a_forty_character_run_without_its_cue_is_not_a_secret_key(text: str) -> None:
    assert [v for v in found(text, "api_key") if not v.startswith("AKIA")] == []


# ----------------------------------------------------------------------------------------------- the policy side
def write_policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(body, encoding="utf-8")
    return path


POLICY = """\
version: 1
name: names-and-addresses
input:
  rules:
    - {category: pii, action: redact, entities: [person, address, email]}
output:
  rules:
    - {category: pii, action: redact, entities: [person, address]}
  stream: {check_every_chars: 20, holdback_chars: 80}  # the default: longer than a name or an address
"""
PROMPT = "Hi, my name is Jane Doe. Please send the parcel to 221B Baker Street, London NW1 6XE, or mail a@example.com"
MASKED = "Hi, my name is <PERSON_1>. Please send the parcel to <ADDRESS_1>, or mail <EMAIL_1>"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_policy_that_names_person_and_address_masks_them_in_prompt_and_answer(tmp_path: Path, mode: str) -> None:
    answer = "Dear Ms. Jane Doe,\nyour parcel left for 221B Baker Street."
    with Guard(write_policy(tmp_path, POLICY), classifiers=FakeClassifier()) as g:
        if mode == "sync":
            d_in, d_out = g.check_input(PROMPT), g.check_output(answer, prompt=PROMPT)
        else:
            d_in = asyncio.run(g.acheck_input(PROMPT))
            d_out = asyncio.run(g.acheck_output(answer, prompt=PROMPT))
    assert d_in.text == MASKED
    assert set(d_in.findings[0].entities) == {"person", "address", "email"}
    assert d_out.text == "Dear Ms. <PERSON_1>,\nyour parcel left for <ADDRESS_1>."


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_through_the_openai_client_the_upstream_never_sees_them_and_restore_gives_them_back(
    stub: StubServer, tmp_path: Path, mode: str
) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    stub.reply = "Noted, <PERSON_1>: the parcel goes to <ADDRESS_1>."

    async def asked_async(g: Guard) -> Any:
        async with openai.AsyncOpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
            return await guardrail.wrap(g, raw, restore=True).chat.completions.create(model="m", messages=messages)

    with Guard(write_policy(tmp_path, POLICY), classifiers=FakeClassifier()) as g:
        if mode == "sync":
            with openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw:
                answer = guardrail.wrap(g, raw, restore=True).chat.completions.create(model="m", messages=messages)
        else:
            answer = asyncio.run(asked_async(g))
    sent = json.dumps(stub.completions()[-1].body, ensure_ascii=False)
    assert "Jane" not in sent and "Baker" not in sent and "<PERSON_1>" in sent and "<ADDRESS_1>" in sent
    assert answer.choices[0].message.content == "Noted, Jane Doe: the parcel goes to 221B Baker Street, London NW1 6XE."


def test_a_streamed_name_or_address_cut_anywhere_is_never_released_in_part(stub: StubServer, tmp_path: Path) -> None:
    text = "Dear Ms. Jane Doe,\nyour parcel went to 42 Elm St., Apt 4B, Springfield, IL 62704 today. " + "More. " * 30
    want = "Dear Ms. <PERSON_1>,\nyour parcel went to <ADDRESS_1> today. " + "More. " * 30
    got = {}
    with (
        Guard(write_policy(tmp_path, POLICY), classifiers=FakeClassifier()) as g,
        openai.OpenAI(base_url=stub.url, api_key="x", max_retries=0) as raw,
    ):
        for cut in range(1, len(text), 5):
            stub.reset()
            stub.pieces = [text[:cut], text[cut:]]
            stream = guardrail.wrap(g, raw).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "go"}], stream=True
            )
            got[cut] = content(list(stream))
    assert {cut: out for cut, out in got.items() if out != want} == {}


def test_a_rule_that_leaves_entities_out_masks_the_format_kinds_but_not_names_or_addresses(tmp_path: Path) -> None:
    body = "version: 1\nname: all\ninput:\n  rules:\n    - {category: pii, action: redact}\n"
    with Guard(write_policy(tmp_path, body), classifiers=FakeClassifier()) as g:
        d = g.check_input(PROMPT)
        rule = next(r for r in g.policy.input.rules if r.category == "pii")
    assert rule.entities == PII_ENTITIES
    assert d.text == PROMPT.replace("a@example.com", "<EMAIL_1>")
    assert [s.entity for s in find_entities(PROMPT)] == ["email"]  # "all" in the library too: named kinds only by name


def test_the_new_kinds_are_built_in_names_a_policy_may_use_but_not_redefine(tmp_path: Path) -> None:
    assert set(CUED_PII_ENTITIES) == set(CUED) and BUILTIN_PII_ENTITIES == PII_ENTITIES + CUED_PII_ENTITIES
    typo = POLICY.replace("[person, address, email]", "[persn, address]")
    with pytest.raises(PolicyError, match="person"):
        load_policy(write_policy(tmp_path, typo))
    clash = "version: 1\nname: c\npii_entities:\n  person: 'P-\\d{4}'\n"
    with pytest.raises(PolicyError, match="built-in"):
        load_policy(write_policy(tmp_path, clash))


@pytest.mark.parametrize("name", ["default", "strict", "permissive", "monitor"])
def test_the_bundled_policies_leave_names_and_addresses_as_written(name: str) -> None:
    with Guard(name, classifiers=FakeClassifier()) as g:
        d = g.check_input(PROMPT)
        kinds = {e for r in (*g.policy.input.rules, *g.policy.output.rules) for e in r.entities or ()}
    assert not kinds & set(CUED)
    assert "Jane Doe" in d.text and "221B Baker Street" in d.text


def test_the_classifiers_still_read_names_and_addresses_as_written() -> None:
    # what the model scores for every policy that does not redact them (the bundled ones): unchanged
    assert scoring_form(PROMPT) == PROMPT.replace("a@example.com", "EMAIL_1")


# ---------------------------------------------------------------------------------------------- property tests
HOSTILE = [
    "my name is " * 9000,
    "Dear " * 20000,
    "Mr. " * 25000,
    "Name: " + "Aa " * 33000,
    "Dr. " + "A" * 100000,
    "1 " * 50000,
    "12 " + "Aa " * 33000 + "Street",
    "Hauptstraße" * 9000 + " 5",
    "Calle " + "de " * 33000 + "Mayor 3",
    "A-" * 50000 + "straße 5",
    "/" * 100000,
    "AKIA" + "A1/+" * 25000,
    "contact " + "Jane " * 20000 + "at jane@example.com",
    "Best regards,\n" * 7000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_text_of_100k_characters_is_scanned_to_the_end(text: str) -> None:
    spans = find_entities(text, ["person", "address", "api_key"])
    assert all(text[s.start : s.end] == s.value for s in spans)


FRAGMENTS = [
    "my name is ", "Name: ", "Dear ", "Ms. ", "Dr. ", "signed, ", "contact ", " at ", "jane@example.com", "Jane ",
    "Doe", "O'Brien", "José", "-", "'", ",", ".", ":", "\n", " ", "42 ", "221B ", "Baker ", "Street", "St.", " Apt 4B",
    "rue ", "de la ", "Paix", "Calle ", "Mayor ", "Hauptstraße ", "5", ", ", "10115 ", "Berlin", "IL 62704",
    "SW1A 2AA", "businesses", "AKIAQ3EGZXB7PLMN4RTY ", SECRET, "secret access key: ", "x", "A",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@example(parts=["Dear "], times=18, noise="")  # found by hypothesis: "Dear Dear ..." read "Dear" as a name
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), max_size=40),
    times=st.integers(1, 2500),
    noise=st.text(max_size=30),
)
def test_spans_lie_in_the_text_and_masking_twice_changes_nothing(parts: list[str], times: int, noise: str) -> None:
    text = ("".join(parts) + noise) * (times if len(parts) < 4 else 1)
    spans = find_entities(text, [*CUED, "api_key", "email"])
    assert all(0 <= s.start < s.end <= len(text) and text[s.start : s.end] == s.value for s in spans)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    masked, mapping = redact(text, spans)
    again = find_entities(masked, [*CUED, "api_key", "email"])
    assert redact(masked, again)[0] == masked
    assert all(v in text for v in mapping.values())
