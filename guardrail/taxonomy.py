"""Category ids of the guardrail taxonomy and their mappings to other taxonomies.

Ids are snake_case and stable: policies, audit logs and model label maps name them, so renaming
one is a breaking change. The base is the Aegis critical taxonomy plus what each stage needs
(``jailbreak`` on input; ``harmful_response``/``refusal`` and the Do-Not-Answer response classes on
output). What belongs in each category is defined by TAXONOMY.md (the labelling guide), not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Stage = Literal["input", "output"]
STAGES: Final[tuple[Stage, ...]] = ("input", "output")


@dataclass(frozen=True, slots=True)
class Category:
    """One taxonomy entry: its id, a one-line meaning and the stages a classifier scores it on."""

    id: str
    description: str
    stages: tuple[Stage, ...]
    aegis: str | None = None
    openai: tuple[str, ...] = ()
    llama_guard: str | None = None


_BOTH: Final[tuple[Stage, ...]] = ("input", "output")

HARM_CATEGORIES: Final[tuple[Category, ...]] = (
    Category("hate", "demeaning a protected group", _BOTH, "Hate/Identity Hate", ("hate", "hate/threatening"), "S10"),
    Category("harassment", "abuse aimed at a person", _BOTH, "Harassment", ("harassment",)),
    Category("threat", "intent to harm someone", _BOTH, "Threat", ("harassment/threatening",)),
    Category(
        "violence",
        "violence, its glorification or instructions",
        _BOTH,
        "Violence",
        ("violence", "violence/graphic"),
        "S1",
    ),
    Category("sexual", "sexual content between adults", _BOTH, "Sexual", ("sexual",), "S12"),
    Category("sexual_minors", "any sexual content involving minors", _BOTH, "Sexual (minor)", ("sexual/minors",), "S4"),
    Category(
        "self_harm",
        "suicide, self-injury, eating disorders",
        _BOTH,
        "Suicide and Self Harm",
        ("self-harm", "self-harm/intent", "self-harm/instructions"),
        "S11",
    ),
    Category(
        "weapons",
        "guns, explosives, CBRN, illegal weapons",
        _BOTH,
        "Guns/Illegal Weapons",
        ("illicit/violent",),
        "S9",
    ),
    Category(
        "controlled_substances",
        "drugs, regulated substances",
        _BOTH,
        "Controlled/Regulated Substances",
        ("illicit",),
    ),
    Category(
        "criminal_planning",
        "planning or confessing crimes, fraud, malware",
        _BOTH,
        "Criminal Planning/Confessions",
        ("illicit",),
        "S2",
    ),
    Category("pii", "exposing private data about people", _BOTH, "PII/Privacy", (), "S7"),
    Category("profanity", "swearing, obscenity", _BOTH, "Profanity"),
)

SPECIAL_CATEGORIES: Final[tuple[Category, ...]] = (
    Category("unsafe", "any harmful category above (binary head)", _BOTH, "Unsafe", ("flagged",), "unsafe"),
    Category("jailbreak", "attempt to override instructions or safety", ("input",)),
    Category("harmful_response", "the response complies with a harmful request", ("output",), None, (), "unsafe"),
    Category("refusal", "the response declines the request", ("output",)),
)

# Do-Not-Answer's six response classes (Wang et al., 2023), scored on the output stage as a
# softmax group: the index in this tuple is the paper's action label 0-5.
RESPONSE_CLASSES: Final[tuple[Category, ...]] = (
    Category("dna_refuses", "refuses or says it cannot assist", ("output",)),
    Category("dna_refutes", "refutes the opinion or premise of the prompt", ("output",)),
    Category("dna_both_sides", "gives a balanced, dual-perspective answer", ("output",)),
    Category("dna_disclaimer", "answers with a disclaimer or caution", ("output",)),
    Category("dna_cannot_know", "says it cannot know or is not able to answer", ("output",)),
    Category("dna_follows", "follows the instruction directly", ("output",)),
)

ALL_CATEGORIES: Final[tuple[Category, ...]] = HARM_CATEGORIES + SPECIAL_CATEGORIES + RESPONSE_CLASSES
BY_ID: Final[dict[str, Category]] = {c.id: c for c in ALL_CATEGORIES}
HARM_IDS: Final[tuple[str, ...]] = tuple(c.id for c in HARM_CATEGORIES)
RESPONSE_CLASS_IDS: Final[tuple[str, ...]] = tuple(c.id for c in RESPONSE_CLASSES)

# Category pseudo-id used by policy rules that redact detected PII/secret spans; it is scored by
# the pattern detector, not by a model head.
PII_ENTITIES: Final[tuple[str, ...]] = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "ip_address",
    "us_ssn",
    "api_key",
    "private_key",
)
# Kinds found through the words around them ("my name is", "Dear ...", a street type beside a house number), not by
# a format of their own: masked only where a redact rule names them. A rule that leaves ``entities`` out masks
# PII_ENTITIES (and the policy's own kinds), and those are also what the classifiers always read masked; a name or a
# street is personal only in context ("Who was Dr. King?", "What is at 1600 Pennsylvania Avenue?"), so masking
# them unasked would cost answers, and would change what the classifiers read.
CUED_PII_ENTITIES: Final[tuple[str, ...]] = ("person", "address")
# Every built-in kind a policy may name in ``entities``.
BUILTIN_PII_ENTITIES: Final[tuple[str, ...]] = PII_ENTITIES + CUED_PII_ENTITIES


def stage_ids(stage: Stage) -> tuple[str, ...]:
    """Ids a classifier scores on ``stage``, in taxonomy order."""
    return tuple(c.id for c in ALL_CATEGORIES if stage in c.stages)


# Do-Not-Answer: harm type (second level of its taxonomy) -> our ids. Risk areas alone are too
# coarse ("Malicious Uses" spans fraud, weapons and drugs), so the mapping is on the harm type.
DO_NOT_ANSWER_HARM_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "Adult Content": ("sexual",),
    "Social stereotypes and unfair discrimination": ("hate",),
    "Toxic language (hate speech)": ("hate", "harassment"),
    "Mental Health or Overreliance Crisis": ("self_harm",),
    "Treat Chatbot as a Human": (),
    "Compromise privacy by leaking or inferring private information (person/individual)": ("pii",),
    "Risks from leaking or inferring sensitive information (organization/gov)": ("criminal_planning",),
    "Assisting illegal activities": ("criminal_planning",),
    "Nudging or advising users to perform unethical or unsafe actions": (),
    "Reducing the cost of disinformation campaigns": (),
    "Causing material harm by disseminating misinformation e.g. in medicine or law": (),
    "Disseminating false or misleading information": (),
}

# OpenAI moderation category -> our id (for comparing with, or importing, OpenAI-labelled data).
OPENAI_TO_GUARDRAIL: Final[dict[str, str]] = {
    name: c.id for c in HARM_CATEGORIES + SPECIAL_CATEGORIES for name in c.openai if c.id != "unsafe"
}
LLAMA_GUARD_TO_GUARDRAIL: Final[dict[str, str]] = {
    c.llama_guard: c.id for c in HARM_CATEGORIES if c.llama_guard is not None
}
AEGIS_TO_GUARDRAIL: Final[dict[str, str]] = {c.aegis: c.id for c in HARM_CATEGORIES + SPECIAL_CATEGORIES if c.aegis}

# OpenAI's moderation categories (omni-moderation), in the API's order. `guardrail serve` answers
# POST /v1/moderations in this shape: each category's score is the maximum score of the ids mapped to
# it (OPENAI_MODERATION_MAP). A parent takes its subcategories' ids too (OpenAI's "illicit" covers
# "illicit/violent", so `weapons` counts toward both); subcategories the taxonomy does not split
# (hate/threatening, self-harm/intent, self-harm/instructions, violence/graphic) repeat their
# parent's id. `unsafe`, `jailbreak` and `pii` have no OpenAI category: they can still block, which
# sets `flagged` (see the README's mapping table).
OPENAI_MODERATION_CATEGORIES: Final[tuple[str, ...]] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
OPENAI_MODERATION_MAP: Final[dict[str, tuple[str, ...]]] = {
    name: tuple(c.id for c in HARM_CATEGORIES if any(o == name or o.startswith(name + "/") for o in c.openai))
    for name in OPENAI_MODERATION_CATEGORIES
}


def openai_moderation_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Our scores as OpenAI moderation ``category_scores`` (0.0 where no mapped id was scored)."""
    return {
        name: max((scores[i] for i in ids if i in scores), default=0.0) for name, ids in OPENAI_MODERATION_MAP.items()
    }
