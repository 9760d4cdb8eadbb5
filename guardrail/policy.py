"""The policy: which categories to check on each stage, at what threshold, and what to do.

A policy is data, not code: frozen pydantic models with ``extra="forbid"`` (a misspelt key is an
error, never a silently disabled check), loaded from YAML with errors that name the file, line and
field and suggest the closest valid name. :func:`load_policy` is the one way in; it also resolves
what a file may leave implicit (``extends``, thresholds taken from the model's calibration, the
default PII entities) so the engine only ever sees concrete values. The YAML mechanics (line
numbers, duplicate keys, the ``extends`` merge) live in :mod:`guardrail._yaml`.

Three parts of the schema live beside their logic: keyword/pattern/allowlist rules
(:mod:`guardrail.custom_rules`, compiled here at load time), ``routes`` (:mod:`guardrail.routing`,
whose targets load with the policy) and ``classifiers`` (:mod:`guardrail.ensemble_policy`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import structlog
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guardrail import _yaml, metrics
from guardrail._yaml import BUNDLED_POLICIES, Locations, PathKey, bundled_policy_dir
from guardrail.decision import RuleAction
from guardrail.ensemble_policy import ClassifiersSpec
from guardrail.errors import PolicyError
from guardrail.routing import Route, resolve_routes, select
from guardrail.taxonomy import BY_ID, PII_ENTITIES, Stage, stage_ids

__all__ = [
    "BUNDLED_POLICIES",
    "DEFAULT_THRESHOLD",
    "Audit",
    "InputStage",
    "ModelLabel",
    "OnBlock",
    "OutputStage",
    "Policy",
    "PolicyReloader",
    "Rule",
    "StreamConfig",
    "bundled_policy_dir",
    "dump_policy",
    "load_policy",
    "model_labels",
    "policy_json_schema",
]

DEFAULT_THRESHOLD = 0.5  # used when the model ships no calibrated threshold for a head
_PKG_DIR = Path(__file__).resolve().parent
_FROZEN = ConfigDict(extra="forbid", frozen=True)
Mode = Literal["enforce", "shadow"]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
_CUSTOM_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")


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
        for i, entity in enumerate(self.entities or ()):
            if entity not in PII_ENTITIES:
                raise _fail(f"entities.{i}", f"unknown PII entity {entity!r}", _yaml.closest(entity, PII_ENTITIES))
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
        default=False, description="Give the system prompt to the classifier as context for the user's text."
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


class OnBlock(BaseModel):
    """What the caller gets when blocked: a refusal in the client's response shape, or ``Blocked``."""

    model_config = _FROZEN
    respond: Literal["refusal", "raise"] = Field(default="refusal", description="refusal | raise")
    message: str = Field(default="Sorry, I can't help with that.", description="The refusal text.")


class Audit(BaseModel):
    """How much of the checked text the audit log may contain."""

    model_config = _FROZEN
    log_text: Literal["none", "hash", "redacted", "full"] = Field(
        default="hash", description="none | hash | redacted | full"
    )
    hash_key_env: str = Field(
        default="GUARDRAIL_AUDIT_KEY",
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


class Policy(BaseModel):
    """A resolved policy. Build it with :func:`load_policy`, which also sets ``source``, ``hash``, ``files``."""

    model_config = _FROZEN
    version: Literal[1]
    name: str = Field(min_length=1, description="Shown in audit events and decisions.")
    description: str = ""
    model: str = Field(default="default", description="A bundled model name, or a path to a folder with labels.json.")
    fail_mode: Literal["closed", "open"] = Field(
        default="closed", description="Classifier error: closed = block, open = allow."
    )
    timeout_ms: Annotated[int, Strict(), Field(gt=0)] = Field(
        default=1500,
        description="Time budget of a short check, queueing included, on the reference machine (a 64-token check "
        "in 3 ms); scaled by this machine's speed measured at warm-up.",
    )
    timeout_per_1k_tokens_ms: Annotated[int, Strict(), Field(ge=0)] = Field(
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

    _source: str = PrivateAttr("<dict>")
    _routed: tuple[Policy, ...] = PrivateAttr(())
    _hash: str = PrivateAttr("")
    _files: tuple[Path, ...] = PrivateAttr(())

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

    def select(self, context: Mapping[str, str] | None, payload: Any = None) -> Policy:
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


class ModelLabel(BaseModel):
    """One head of a model, as its ``labels.json`` describes it (other keys there are ignored).

    Calibration may differ by stage (a prompt and a response score differently), so a per-stage
    ``thresholds`` entry wins over the single ``threshold``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    stages: tuple[Stage, ...] = ("input", "output")
    threshold: Probability = DEFAULT_THRESHOLD
    thresholds: dict[Stage, Probability] = {}

    def threshold_for(self, stage: Stage) -> float:
        return self.thresholds.get(stage, self.threshold)


def _model_dir(model: str) -> Path:
    return _yaml.expand(model) if _yaml.is_path_like(model) else _PKG_DIR / "models" / model


def model_labels(model: str) -> dict[str, ModelLabel] | None:
    """The heads of ``model`` by id from its ``labels.json``, or None when the folder has none.

    None means "no calibration to go on": callers fall back to the taxonomy ids and
    :data:`DEFAULT_THRESHOLD`. That is the case for the bundled model until it is trained.
    """
    path = _model_dir(model) / "labels.json"
    if not _yaml.is_file(path):
        return None
    try:
        raw = json.loads(_yaml.read_text(path))
    except json.JSONDecodeError as exc:
        raise PolicyError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    except RecursionError:
        raise PolicyError("JSON nested too deeply", file=str(path)) from None
    items = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise PolicyError('expected {"labels": [{"id": ..., "stages": [...], "threshold": ...}]}', file=str(path))
    labels: dict[str, ModelLabel] = {}
    for i, item in enumerate(items):
        try:
            label = ModelLabel.model_validate(item)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = _yaml.dotted(("labels", i, *err["loc"]))
            raise PolicyError(err["msg"], file=str(path), field=field) from None
        labels[label.id] = label
    return labels


def _bundled_models() -> list[str]:
    root = _PKG_DIR / "models"
    found = (
        [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))] if root.is_dir() else []
    )
    return sorted({"default", *found})


# --------------------------------------------------------------------------------------------- loading


def load_policy(source: str | os.PathLike[str] | Mapping[str, Any] | Policy | None = None) -> Policy:
    """Load, merge (``extends``), validate and resolve a policy; raise only :class:`PolicyError`.

    ``source`` is a bundled name (None means ``"default"``), a path to a YAML file, a mapping with
    the same shape, or a Policy (returned as is when it came from here, re-checked otherwise).
    Every policy its ``routes`` name is loaded too (see :mod:`guardrail.routing`).
    """
    return _load(source, ())


def _load(source: str | os.PathLike[str] | Mapping[str, Any] | Policy | None, chain: tuple[Path, ...]) -> Policy:
    try:
        if isinstance(source, Policy):
            if source.hash:
                return source
            source = source.model_dump(mode="json")
        if isinstance(source, Mapping):
            data, locs = _yaml.from_mapping(source, "<dict>")
            data, locs, files = _yaml.prepare(data, locs, "<dict>", Path.cwd(), ())
            origin = "<dict>"
        elif isinstance(source, str | os.PathLike) or source is None:
            path = _yaml.resolve_ref(source if source is not None else "default", Path.cwd(), None)
            data, locs, files = _yaml.load_file(path, ())
            origin = str(path)
        else:
            raise PolicyError(f"cannot load a policy from {type(source).__name__}; give a name, path or mapping")
        policy = _resolve(_validate(data, locs, origin), locs, origin)
        if policy.routes:
            real = Path(origin).resolve() if origin != "<dict>" else Path.cwd() / "<dict>"
            policy._routed = resolve_routes(policy, locs, origin, (*chain, real), _load)
            files = [*files, *(f for routed in policy._routed for f in routed.files if f not in files)]
    except RecursionError:
        raise PolicyError("policy is nested too deeply") from None
    except OSError as exc:  # last resort: file-system surprises must still be a PolicyError
        raise PolicyError(f"cannot load policy: {exc}") from None
    policy._source, policy._files = origin, tuple(files)
    policy._hash = hashlib.sha256(_canonical(policy).encode()).hexdigest()[:16]
    return policy


def _canonical(policy: Policy) -> str:
    return json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _model_at(path: PathKey) -> type[BaseModel] | None:
    cls: type[BaseModel] = Policy
    for part in path:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part)
        nested = [t for t in (field.annotation, *get_args(field.annotation)) if isinstance(t, type)] if field else []
        models = [t for t in nested if issubclass(t, BaseModel)]
        if not models:
            return None
        cls = models[0]
    return cls


def _validate(data: dict[str, Any], locs: Locations, origin: str) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also makes the real one "missing": report the cause, the unknown key, first.
        rank = {"extra_forbidden": 0, "missing": 2}
        errors = sorted(exc.errors(include_url=False), key=lambda e: rank.get(e["type"], 1))
        err, more = errors[0], len(errors) - 1
    ctx = err.get("ctx") or {}
    path: PathKey = tuple(err["loc"])
    suggestion: str | None = None
    shown = repr(err.get("input"))[:60]
    if err["type"] == "policy":
        path += tuple(int(p) if p.isdigit() else p for p in str(ctx["field"]).split("."))
        message, suggestion = err["msg"], ctx.get("suggestion")
    elif err["type"] == "extra_forbidden":
        model = _model_at(path[:-1])
        valid = list(model.model_fields) + (["extends"] if model is Policy else []) if model else []
        message = f"unknown key {path[-1]!r}" + (f" (valid here: {', '.join(valid)})" if valid else "")
        suggestion = _yaml.closest(path[-1], valid)
    elif err["type"] in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"unknown value {shown}; expected {ctx.get('expected')}"
        suggestion = _yaml.closest(err.get("input"), choices)
    elif err["type"] == "missing":
        message = f"required key {path[-1]!r} is missing"
    else:
        message = f"{err['msg']}, got {shown}"
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise _yaml.located_error(message, locs, path, origin, suggestion)


def _resolve(policy: Policy, locs: Locations, origin: str) -> Policy:
    """Check categories against the model's heads and fill in thresholds and default entities."""
    model = policy.model
    if not _yaml.is_path_like(model) and model not in (bundled := _bundled_models()):
        msg = f"unknown bundled model {model!r} (bundled: {', '.join(bundled)}; a folder path needs a '/')"
        raise _yaml.located_error(msg, locs, ("model",), origin, _yaml.closest(model, bundled))
    if _yaml.is_path_like(model) and not _yaml.is_file(_model_dir(model) / "labels.json"):
        raise _yaml.located_error(f"no labels.json in model folder {model!r}", locs, ("model",), origin)
    labels = model_labels(model)
    stages: dict[str, InputStage | OutputStage] = {}
    for stage in ("input", "output"):
        if labels is None:
            heads = dict.fromkeys(stage_ids(stage), DEFAULT_THRESHOLD)
        else:
            heads = {label.id: label.threshold_for(stage) for label in labels.values() if stage in label.stages}
        known = set(BY_ID) | set(labels or ())
        rules = []
        for i, rule in enumerate(policy.rules(stage)):
            path: PathKey = (stage, "rules", i, "category")
            if rule.action is RuleAction.REDACT:  # span-based: the pattern detector, not a model head
                rules.append(rule.model_copy(update={"entities": rule.entities or PII_ENTITIES}))
                continue
            if rule.is_match:  # keywords/patterns: any category name, no model head needed
                heads_req = [c for c in rule.requires or {} if c not in heads]
                if heads_req:
                    hint = _yaml.closest(heads_req[0], sorted(heads))
                    msg = f"unknown category {heads_req[0]!r} in requires for the {stage} stage"
                    raise _yaml.located_error(msg, locs, (stage, "rules", i, "requires"), origin, hint)
                rules.append(rule)
                continue
            if rule.category not in heads:
                if rule.category in known:
                    msg = f"category {rule.category!r} is not scored on the {stage} stage by model {model!r}"
                    raise _yaml.located_error(msg, locs, path, origin)
                hint = _yaml.closest(rule.category, sorted(heads)) or _yaml.closest(rule.category, sorted(known))
                other = f"; {hint!r} is not scored on the {stage} stage either" if hint and hint not in heads else ""
                msg = f"unknown category {rule.category!r} for the {stage} stage{other}"
                raise _yaml.located_error(msg, locs, path, origin, hint)
            for other in rule.requires or {}:
                if other not in heads:
                    hint = _yaml.closest(other, sorted(heads))
                    msg = f"unknown category {other!r} in requires for the {stage} stage"
                    raise _yaml.located_error(msg, locs, (stage, "rules", i, "requires"), origin, hint)
            threshold = heads[rule.category] if rule.threshold is None else rule.threshold
            rules.append(rule.model_copy(update={"threshold": threshold}))
        stages[stage] = getattr(policy, stage).model_copy(update={"rules": tuple(rules)})
    return policy.model_copy(update=stages)


# ------------------------------------------------------------------------------------ schema and dump


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy *file* (for editors): the model's schema plus the loader's shorthands."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "guardrail policy"
    props = schema["properties"]
    props["extends"] = {"type": "string", "description": "A bundled policy name or a path relative to this file."}
    props["on_block"] = {"anyOf": [props["on_block"], {"enum": ["refusal", "raise"]}], "description": "or: raise"}
    rule = schema["$defs"]["Rule"]["properties"]
    rule["category"] = {
        "anyOf": [{"enum": list(BY_ID)}, {"type": "string"}],
        "description": rule["category"]["description"],
    }
    rule["entities"]["anyOf"][0]["items"] = {"enum": list(PII_ENTITIES)}
    return schema


def dump_policy(policy: Policy) -> str:
    """The resolved policy as YAML (what ``guardrail policy show`` prints); it loads back to the same hash."""
    head = f"# {policy.name} (hash {policy.hash or 'unresolved'})"
    if policy.files:
        head += "\n# resolved from: " + " <- ".join(str(f) for f in policy.files)
    body = yaml.safe_dump(
        policy.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True, width=100
    )
    return f"{head}\n{body}"


# ---------------------------------------------------------------------------------------- hot reload

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None  # deleted or unreadable: a change, which the reload then reports
    return (st.st_mtime_ns, st.st_size, st.st_ino)  # inode: editors that save by rename


class PolicyReloader:
    """Serve the current policy of a file, reloading it when any file of its ``extends`` chain changes.

    No thread: :meth:`current` stats the files at most once per ``interval`` seconds, on the caller's
    thread, so an idle process does nothing. A broken edit never takes effect; the last good policy
    stays and ``guardrail.policy_reload_failed`` is logged once per broken version. Readers never wait:
    the lock covers only the swap of (policy, stamps).
    """

    def __init__(
        self, path: str | os.PathLike[str], interval: float = 0.5, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = load_policy(path)  # no last good policy yet: a broken file raises here
        self._stamps = {f: _stamp(f) for f in self._policy.files}
        self._next_check = clock() + interval

    def current(self) -> Policy:
        now = self._clock()
        if now < self._next_check:
            return self._policy
        self._next_check = now + self.interval
        before = {f: _stamp(f) for f in self._stamps}
        if before == self._stamps:
            return self._policy
        log = structlog.get_logger("guardrail")
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            with self._lock:
                self._stamps = before  # retry only after the next edit, not every interval
            metrics.observe_reload(False)
            log.warning("guardrail.policy_reload_failed", file=exc.file, line=exc.line, field=exc.field, error=str(exc))
            return self._policy
        # Stamps taken before reading, so an edit made during the load is seen next round.
        stamps = {f: before[f] if f in before else _stamp(f) for f in policy.files}
        with self._lock:
            self._policy, self._stamps = policy, stamps
        metrics.observe_reload(True)
        log.info("guardrail.policy_reloaded", name=policy.name, hash=policy.hash, file=policy.source)
        return policy
