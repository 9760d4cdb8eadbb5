"""What the classifiers read (the engine, calibration, red-team and training alike): a text folded as a reader sees it
(``scan_form``), with personal data and secrets as bare typed names and a policy's own kinds as made-up values of
their pattern (``scoring_form``). Split from :mod:`guardrail.messages`, which reads messages; it re-exports both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence

from guardrail.classifiers import custom_entity_samples
from guardrail.classifiers.patterns import ENTITIES, Span, bare_placeholders, find_entities, placeholders, redact
from guardrail.classifiers.patterns import restore as restore_values
from guardrail.unseen import drop_stray_marks, drop_unseen

__all__ = ["scan_form", "scoring_form"]

_SURROGATE = re.compile("[\ud800-\udfff]")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # C0 controls but tab, newline, carriage return


def scan_form(text: str) -> str:
    """The form the classifier sees: NFKC-folded (full-width and stylised letters become plain ones),
    unseen characters dropped and tag characters decoded (``guardrail.unseen``), over-striking marks on
    Latin letters dropped, control characters turned into spaces. Obfuscation with invisible characters or
    look-alike letters is a cheap jailbreak; the original text is what travels on. Lone surrogates (valid in
    JSON, not in UTF-8; the tokenizer refused them, which under fail open let any text through) become U+FFFD."""
    text = unicodedata.normalize("NFKC", drop_unseen(_SURROGATE.sub("\ufffd", text)))
    return _CONTROL.sub(" ", drop_stray_marks(text))


def scoring_form(text: str, spans: Sequence[Span] | None = None, avoid: Collection[str] = frozenset()) -> str:
    """What classifiers see (engine, calibration, red-team and training alike): personal data and
    secrets as bare typed names (``EMAIL_1``), then ``scan_form``.

    A concrete e-mail address carries no safety signal the detector does not already give, but it
    sways a small model (bundled model: "Please email the invoice to jane.doe@example.com" scored
    unsafe 0.945, with the address replaced 0.017), and an external judge should never receive the
    values. The angle brackets of the caller-facing placeholders are dropped here, also from
    placeholders already in the text (an upstream redaction): markup-like tokens read as injection
    to the model ("email me at <EMAIL_1>": jailbreak 0.914; "email me at EMAIL_1": 0.048).

    ``avoid``: values (casefolded) masked in the other texts shown with this one (an answer and its prompt go to a
    judge in one request): no stand-in here is one of them.
    """
    ss = find_entities(text, ENTITIES) if spans is None else spans  # the built-in kinds: the same in any process
    red, mapping = redact(text, ss) if ss else (text, {})
    return scan_form(bare_placeholders(_stand_ins(red, mapping, avoid)))


def _stand_ins(red: str, mapping: Mapping[str, str], avoid: Collection[str] = frozenset()) -> str:
    """A policy's own kinds (``pii_entities``) shown as a sample value of their pattern, not as a placeholder: the
    model never saw ``EMPLOYEE_ID_1`` in training and read it as an attack ("status for EMP-123456 please": allowed
    as written, jailbreak 0.92 with the placeholder), while a made-up value of the same shape reads as the real one
    did and still keeps it from the classifiers (an LLM judge included).

    Placeholders already in the text (a masked answer the user quotes back) get one too. A sample is never one of
    the values masked (a fixed pattern's only value is the secret itself; ``EMP-100000`` is the sample for
    ``<EMPLOYEE_ID_1>``), never another placeholder's, and never holds a built-in kind (an address the model would
    read as one): such a placeholder stays.

    Names and addresses (``person``, ``address``) keep their placeholder (session 24, bundled model, each text
    alone; tests/test_cued_scoring.py): on the 350 dev and held-out rows that hold one, the placeholder flagged 138
    of 179 harmful prompts and 30 of 98 benign ones, made-up names 117 and 19, the text as written 126 and 17; on 12
    benign templates x 10 names under the default policy, 0, 30 and 16 of 120 were blocked (all 80 harmful ones
    each way). Over both, the placeholder catches the most and flags the fewest."""
    taken = {v.casefold() for v in mapping.values()} | set(avoid)  # the values masked, then the stand-ins chosen
    subs: dict[str, str] = {}
    for held in sorted(placeholders(red), key=_number):
        kind, _, number = held[1:-1].rpartition("_")
        if kind.lower() in ENTITIES:
            continue
        n = int(number)
        for m in range(n, n + _TRIES):  # the next values of the pattern when this one is taken
            value = custom_entity_samples.sample(kind.lower(), m)
            if value is None:
                break
            if value.casefold() not in taken and not find_entities(value, ENTITIES):
                subs[held] = value
                taken.add(value.casefold())
                break
    return restore_values(red, subs) if subs else red


_TRIES = 16


def _number(held: str) -> tuple[str, int]:
    kind, _, number = held[1:-1].rpartition("_")
    return kind, int(number)
