"""The policy schema: frozen pydantic models for a policy and its parts, and its YAML dump.

A policy is data, not code: every model here is frozen with ``extra="forbid"`` (a misspelt key is an
error, never a silently disabled check), and validators reject what cannot be enforced (a redact
rule on a category without spans, a rewrite without its text, a pattern that is not linear-time).
What a file may leave implicit (thresholds from the model's calibration, default PII entities) is
filled in by :func:`guardrail.policy.load_policy`, the one way in; this module only says what a
valid policy *is*, so the loader, the CLI's ``policy schema`` (``guardrail.policy_schema``) and editors read one
definition.
Everything here is re-exported by :mod:`guardrail.policy`, the import path to use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, field_validator, model_validator
from pydantic_core import PydanticCustomError

from guardrail import _yaml
from guardrail.classifiers import custom_entities
from guardrail.classifiers.model_info import DEFAULT_THRESHOLD, ModelLabel
from guardrail.decision import RuleAction
from guardrail.ensemble_policy import ClassifiersSpec
from guardrail.routing import Route, RoutingContext, select
from guardrail.taxonomy import BUILTIN_PII_ENTITIES, BY_ID, Stage

__all__ = [
    "DEFAULT_THRESHOLD",
    "Audit",
    "InputStage",
    "ModelLabel",
    "OnBlock",
    "OutputStage",
    "Policy",
    "Reask",
    "Rule",
    "StreamConfig",
    "UnsupportedLanguage",
    "dump_policy",
]

_FROZEN = ConfigDict(extra="forbid", frozen=True)
MAX_TIMEOUT_MS = 600_000  # ten minutes: "no time-out" is a hang nobody is told of; a larger wait overflows
Mode = Literal["enforce", "shadow"]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
_CUSTOM_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")
REASK_MESSAGE = "Your previous answer was withheld because it was flagged as {categories}. Answer the original \
request again without that content."


def _fail(field: str, message: str, suggestion: str | None = None) -> PydanticCustomError:
    """A validation error that ``load_policy`` maps to ``PolicyError(field=..., suggestion=...)``."""
    return PydanticCustomError("policy", message, {"field": field, "suggestion": suggestion})


class Rule(BaseModel):
    """One check: when ``category`` scores at or above ``threshold``, do ``action``.

    ``redact`` rules are span-based (the pattern detector finds the text to mask), so they exist only
    for ``pii`` and carry no threshold; after loading, every other rule has a concrete threshold.
    """

    model_config = _FROZEN
    category: str = Field(description="Category id scored on this stage (see `guardrail taxonomy`).")
    threshold: Probability | None = Field(
        default=None, description="Score (0-1) at which the rule fires; omit to use the model's calibrated default."
    )
    action: RuleAction = Field(description="block | rewrite | redact | log")
    message: str | None = Field(
        default=None, description="rewrite: the replacement text; block: overrides on_block.message for this rule."
    )
    mode: Mode = Field(default="enforce", description="shadow: record the finding but never act on it.")
    entities: tuple[str, ...] | None = Field(
        default=None, description="redact only: which PII/secret kinds to mask (default: all)."
    )
    requires: dict[str, Probability] | None = Field(
        default=None,
        description="Other categories that must also score at or above the given thresholds for this rule to "
        "fire, e.g. {unsafe: 0.5}: a self_harm rule that blocks only method requests, beside one that rewrites.",
    )

    keywords: tuple[str, ...] | None = Field(
        default=None,
        description="Fire when any of these words or phrases occurs (case-folded, normalised text): a ban list.",
    )
    patterns: tuple[str, ...] | None = Field(
        default=None, description="Fire when any of these regular expressions matches (RE2 syntax, linear time)."
    )
    word_boundaries: bool = Field(default=True, description="keywords match whole words only (default).")
    allow: tuple[str, ...] | None = Field(
        default=None, description="Exact phrases (the whole text) exempt from this rule; each exemption is audited."
    )
    allow_patterns: tuple[str, ...] | None = Field(
        default=None, description="Patterns matching the whole text that exempt it from this rule (audited)."
    )

    @property
    def is_match(self) -> bool:
        """A keyword/pattern rule: it fires on a match in the text, not on a model score."""
        return bool(self.keywords or self.patterns)

    @model_validator(mode="after")
    def _check_custom(self) -> Rule:
        from guardrail.custom_rules import check_pattern

        for key in ("keywords", "patterns", "allow", "allow_patterns"):
            items = getattr(self, key)
            if items is not None and (not items or any(not i.strip() for i in items)):
                raise _fail(key, f"{key} must be a non-empty list of non-empty strings")
        if not self.word_boundaries and not self.keywords:  # (true is the default, and what dumps write)
            raise _fail(
                "word_boundaries", "word_boundaries applies to keywords only, and this rule has none; remove it"
            )
        if (self.is_match or self.allow or self.allow_patterns) and self.action is RuleAction.REDACT:
            raise _fail("action", "redact is span-based; keyword, pattern and allow lists take block|rewrite|log")
        if self.is_match:
            if self.threshold is not None:
                raise _fail("threshold", "a keyword/pattern rule fires on a match and takes no threshold; remove it")
            if not _CUSTOM_CATEGORY.fullmatch(self.category):
                raise _fail("category", "a custom category is snake_case (letters, digits, _), e.g. competitors")
        for key in ("patterns", "allow_patterns"):
            for j, pattern in enumerate(getattr(self, key) or ()):
                why = check_pattern(pattern)
                if why is not None:
                    raise _fail(f"{key}.{j}", f"bad pattern {pattern!r}: {why}")
        return self

    @model_validator(mode="after")
    def _check_action(self) -> Rule:
        if self.action is RuleAction.REDACT:
            if self.category != "pii":
                raise _fail("action", "redact works only on category 'pii' (only PII detection gives spans)")
            if self.threshold is not None:
                raise _fail("threshold", "redact rules are span-based and take no threshold; remove it")
        elif self.entities is not None:
            raise _fail("entities", "entities only apply to action 'redact'")
        if self.action is RuleAction.REWRITE and not (self.message and self.message.strip()):
            raise _fail("message", "rewrite needs a non-empty message (the replacement text)")
        if self.message is not None and self.action in (RuleAction.LOG, RuleAction.REDACT):
            # accepted, it would look like a refusal someone sees; nobody ever would
            why = "only block and rewrite rules show a message"
            raise _fail("message", f"a {self.action.value} rule never shows its message ({why}); remove it")
        for i, entity in enumerate(self.entities or ()):  # a policy's own (pii_entities) are checked as it resolves
            if entity not in BUILTIN_PII_ENTITIES and not custom_entities.NAME.fullmatch(entity):
                hint = _yaml.closest(entity, BUILTIN_PII_ENTITIES)
                raise _fail(f"entities.{i}", f"unknown PII entity {entity!r}", hint)
        if self.entities is not None and (not self.entities or len(set(self.entities)) != len(self.entities)):
            raise _fail("entities", "entities must be a non-empty list without repeats (omit it for all)")
        return self

    def fires(self, score: float) -> bool:
        """The comparison every engine must use: at or above the threshold (never above a None)."""
        return self.threshold is not None and score >= self.threshold


def _unique_categories(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """One rule per category and stage, except rules told apart by ``requires`` (a conditional rule)."""
    seen: set[tuple[str, tuple[tuple[str, float], ...], bool]] = set()
    for i, rule in enumerate(rules):
        key = (rule.category, tuple(sorted((rule.requires or {}).items())), rule.is_match)
        if key in seen:
            raise _fail(f"{i}.category", f"category {rule.category!r} has two rules on this stage; keep one")
        seen.add(key)
    return rules


class StreamConfig(BaseModel):
    """How a streamed completion is checked: every N characters, holding back the last M unseen."""

    model_config = _FROZEN
    check_every_chars: Annotated[int, Strict(), Field(gt=0)] = Field(
        default=200, description="Check after this many chars."
    )
    holdback_chars: Annotated[int, Strict(), Field(ge=0)] = Field(
        default=80, description="Chars kept from the client until checked, so a cut-off never shows a half-unsafe tail."
    )


class InputStage(BaseModel):
    """Rules for prompts, and which turns of a conversation they read."""

    model_config = _FROZEN
    scope: Literal["untrusted", "last_user", "all_user", "all"] = Field(
        default="untrusted",
        description="untrusted (every user turn, plus tool results and documents for injection) | last_user | "
        "all_user | all",
    )
    data_categories: tuple[str, ...] = Field(
        default=("jailbreak",),
        description="scope untrusted: the categories checked on tool results and retrieved documents (injection).",
    )
    system_context: bool = Field(
        default=False,
        description="Read a checked text that reaches the model's gate again with the system prompt as context; "
        "that reading raises only jailbreak (the model's labels.json `context_reading`).",
    )
    rules: tuple[Rule, ...] = ()
    parallel: Annotated[bool, Strict()] = Field(
        default=False,
        description="Start the upstream call while the prompt is checked (hides the check's latency); nothing "
        "from upstream reaches the caller before the check passes, and a block cancels the upstream request.",
    )

    _unique = field_validator("rules")(_unique_categories)


class OutputStage(BaseModel):
    """Rules for completions, and how streams are windowed."""

    model_config = _FROZEN
    rules: tuple[Rule, ...] = ()
    stream: StreamConfig = StreamConfig()

    _unique = field_validator("rules")(_unique_categories)


class Reask(BaseModel):
    """A blocked answer asked for again: the request as sent, then the answer and ``message`` (adapters.reask)."""

    model_config = _FROZEN
    attempts: Annotated[int, Strict(), Field(ge=0, le=3)] = Field(default=0, description="0 (never: default) to 3.")
    message: str = Field(default=REASK_MESSAGE, min_length=1, description="The user's turn; {categories}: why.")


class OnBlock(BaseModel):
    """What the caller gets when blocked: a refusal in the client's response shape, or ``Blocked`` (or a ``reask``)."""

    model_config = _FROZEN
    respond: Literal["refusal", "raise"] = Field(default="refusal", description="refusal | raise")
    message: str = Field(default="Sorry, I can't help with that.", description="The refusal text.")
    reask: Reask = Reask()


class Audit(BaseModel):
    """How much of the checked text the audit log may contain."""

    model_config = _FROZEN
    log_text: Literal["none", "hash", "redacted", "full"] = Field(
        default="hash", description="none | hash | redacted | full"
    )
    hash_key_env: str = Field(
        default="GUARDRAIL_AUDIT_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",  # an environment variable's name
        description="log_text: hash: the environment variable holding the deployment's HMAC key.",
    )


class UnsupportedLanguage(BaseModel):
    """What to do with text in a script the model was not measured on (its labels.json lists the scripts).

    ``log`` (default): score it as usual and add an ``unsupported_language`` finding naming the script;
    ``block``: refuse it (with ``message`` or on_block.message); ``allow``: do not act on the model's
    scores for it (pattern rules such as PII redaction still apply), and record the finding.
    """

    model_config = _FROZEN
    action: Literal["log", "block", "allow"] = Field(default="log", description="log | block | allow")
    message: str | None = Field(default=None, description="block: the refusal text (default: on_block.message).")
    # a message with log or allow is kept, not refused: a policy that extends one whose action is block and switches
    # it to log inherits the parent's message, and must still load


class Policy(BaseModel):
    """A resolved policy. Build it with :func:`load_policy`, which also sets ``source``, ``hash``, ``files``."""

    model_config = _FROZEN
    version: Literal[1]
    name: str = Field(
        min_length=1, max_length=200, description="Shown in audit events, decisions and x-guardrail-policy headers."
    )
    description: str = ""
    model: str = Field(default="default", description="A bundled model name, or a path to a folder with labels.json.")
    fail_mode: Literal["closed", "open"] = Field(
        default="closed", description="Classifier error: closed = block, open = allow."
    )
    timeout_ms: Annotated[int, Strict(), Field(gt=0, le=MAX_TIMEOUT_MS)] = Field(
        default=1500,
        description="Time budget of a short check, queueing included, on the reference machine (a 64-token check "
        "in 3 ms); scaled by this machine's speed measured at warm-up.",
    )
    timeout_per_1k_tokens_ms: Annotated[int, Strict(), Field(ge=0, le=MAX_TIMEOUT_MS)] = Field(
        default=200, description="Extra budget per 1,000 tokens of text (scaled the same way): long texts get time."
    )
    max_chars: Annotated[int, Strict(), Field(gt=0)] = Field(
        default=200_000, description="Longer texts: engine's rule."
    )
    mode: Mode = Field(default="enforce", description="shadow: record every rule, enforce none.")
    input: InputStage = InputStage()
    output: OutputStage = OutputStage()
    on_block: OnBlock = OnBlock()
    audit: Audit = Audit()
    unsupported_language: UnsupportedLanguage = UnsupportedLanguage()
    classifiers: ClassifiersSpec | None = Field(
        default=None, description="The experts that score (an ensemble with Hedge weights); default: `model` alone."
    )
    routes: tuple[Route, ...] = Field(
        default=(), description="Ordered: the first route whose `match` fits the request's context picks the policy."
    )
    topics: dict[str, str] = Field(
        default_factory=dict,
        description="Categories written in plain language, judged by the policy's LLM judge: name -> what a text "
        "on the topic does, e.g. medical_advice: 'asks for a diagnosis, a dose or a treatment'. Rules use the name.",
    )
    pii_entities: dict[str, str] = Field(
        default_factory=dict,
        description="Your own personal data for `redact` rules: name -> pattern (one run of printable ASCII, "
        "case-insensitive; needs google-re2), masked as <NAME_1>, e.g. employee_id: 'EMP-\\d{6}'.",
    )

    _source: str = PrivateAttr("<dict>")
    _routed: tuple[Policy, ...] = PrivateAttr(())
    _hash: str = PrivateAttr("")
    _files: tuple[Path, ...] = PrivateAttr(())
    _entities: custom_entities.Lease | None = PrivateAttr(None)  # its pii_entities are in force while it lives

    @field_validator("name")
    @classmethod
    def _one_line(cls, name: str) -> str:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            msg = f"{name!r} holds a line break or control character; a name is one line (it is sent in HTTP headers)"
            raise _fail("", msg, name.strip() if name.strip() and name.strip().isprintable() else None)
        return name

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, topics: dict[str, str]) -> dict[str, str]:
        for name, description in topics.items():
            if name in BY_ID:
                raise _fail(f"{name}", f"{name!r} is a category of the taxonomy; a topic needs a name of its own")
            if not _CUSTOM_CATEGORY.fullmatch(name):
                raise _fail(f"{name}", f"topic name {name!r}: snake_case (letters, digits, _), e.g. medical_advice")
            if not description.strip() or len(description) > 1000:
                raise _fail(f"{name}", "describe the topic in one to a few sentences (1 to 1,000 characters)")
        return topics

    @field_validator("pii_entities")
    @classmethod
    def _check_entities(cls, defined: dict[str, str]) -> dict[str, str]:
        for name, pattern in defined.items():
            if name in BUILTIN_PII_ENTITIES:
                raise _fail(f"{name}", f"{name!r} is a built-in entity; give yours another name")
            if not custom_entities.NAME.fullmatch(name):
                raise _fail(f"{name}", f"entity name {name!r}: lowercase letters and single underscores (employee_id)")
            why = custom_entities.pattern_problem(pattern) if pattern.strip() else "it is empty"
            if why is None:
                why = custom_entities.placeholder_problem(pattern, (*BUILTIN_PII_ENTITIES, *defined))
            if why is not None:
                raise _fail(f"{name}", f"bad pattern {pattern!r} for entity {name!r}: {why}")
        return defined

    @property
    def source(self) -> str:
        """The file the policy was loaded from, or ``"<dict>"``."""
        return self._source

    @property
    def hash(self) -> str:
        """16 hex chars of sha256 over the canonical JSON: the same rules give the same hash anywhere."""
        return self._hash

    @property
    def routed(self) -> tuple[Policy, ...]:
        """The loaded target of each route, in ``routes`` order."""
        return self._routed

    def select(self, context: RoutingContext, payload: Any = None) -> Policy:
        """The policy that decides a request with this ``context`` (this one when no route matches)."""
        return select(self, context, payload)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the ``extends`` chain (child first), then of the routed policies: what a hot reload watches."""
        return self._files

    def rules(self, stage: Stage) -> tuple[Rule, ...]:
        return self.input.rules if stage == "input" else self.output.rules

    def enforces(self, rule: Rule) -> bool:
        """False when the rule or the whole policy is in shadow mode (record, never act)."""
        return self.mode == "enforce" and rule.mode == "enforce"

    def to_yaml(self) -> str:
        return dump_policy(self)


# ------------------------------------------------------------------------------------ dump


def dump_policy(policy: Policy) -> str:
    """The resolved policy as YAML (what ``guardrail policy show`` prints); it loads back to the same hash."""
    head = f"# {policy.name} (hash {policy.hash or 'unresolved'})"
    if policy.files:
        head += "\n# resolved from: " + " <- ".join(str(f) for f in policy.files)
    body = yaml.safe_dump(
        policy.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True, width=100
    )
    return f"{head}\n{body}"
