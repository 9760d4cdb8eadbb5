"""The policy: which categories to check on each stage, at what threshold, and what to do.

A policy is data, not code: frozen pydantic models with ``extra="forbid"`` (a misspelt key is an
error, never a silently disabled check), loaded from YAML with errors that name the file, line and
field and suggest the closest valid name. :func:`load_policy` is the one way in; it also resolves
what a file may leave implicit (``extends``, thresholds taken from the model's calibration, the
default PII entities) so the engine only ever sees concrete values. The YAML mechanics (line
numbers, duplicate keys, the ``extends`` merge) live in :mod:`guardrail._yaml`.

This module is the import path for everything about policies: loading lives here, hot reload in
:mod:`guardrail.policy_reload`, the schema (the models, their JSON Schema and YAML dump) in
:mod:`guardrail.policy_models`, and every public name of the schema is re-exported here. Three parts of the schema
live beside their logic: keyword/pattern/allowlist rules (:mod:`guardrail.custom_rules`, compiled at load time),
``routes`` (:mod:`guardrail.routing`, whose targets load with the policy) and ``classifiers``
(:mod:`guardrail.ensemble_policy`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from guardrail import _yaml
from guardrail._yaml import BUNDLED_POLICIES, Locations, PathKey, bundled_policy_dir
from guardrail.classifiers import custom_entities
from guardrail.classifiers.model_info import LabelsFileError, parse_heads
from guardrail.decision import RuleAction
from guardrail.errors import PolicyError
from guardrail.policy_models import (
    DEFAULT_THRESHOLD,
    Audit,
    InputStage,
    ModelLabel,
    OnBlock,
    OutputStage,
    Policy,
    Reask,
    Rule,
    StreamConfig,
    dump_policy,
)
from guardrail.policy_models import (
    UnsupportedLanguage as UnsupportedLanguage,  # not in __all__, but importable from here as before
)
from guardrail.policy_schema import policy_json_schema
from guardrail.routing import resolve_routes
from guardrail.taxonomy import BUILTIN_PII_ENTITIES, BY_ID, PII_ENTITIES, stage_ids

__all__ = [
    "BUNDLED_POLICIES",
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
    "bundled_policy_dir",
    "dump_policy",
    "load_policy",
    "model_labels",
    "policy_json_schema",
]

_PKG_DIR = Path(__file__).resolve().parent


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
        return parse_heads(_yaml.read_text(path))[1]
    except LabelsFileError as exc:
        raise PolicyError(exc.message, file=str(path), line=exc.line, field=exc.field) from None


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
        _register_entities(policy, locs, origin)
    except RecursionError:
        raise PolicyError("policy is nested too deeply") from None
    except OSError as exc:  # last resort: file-system surprises must still be a PolicyError
        raise PolicyError(f"cannot load policy: {exc}") from None
    policy._source, policy._files = origin, tuple(files)
    policy._hash = hashlib.sha256(_canonical(policy).encode()).hexdigest()[:16]
    return policy


def _check_topics(policy: Policy, labels: Mapping[str, Any] | None, locs: Locations, origin: str) -> None:
    """A topic is judged by an LLM judge asked on every check: name it under ``classifiers.experts`` (not only as
    ``escalate.to``, which is asked only when the others are unsure, so a topic would go unjudged)."""
    spec = policy.classifiers
    known = {*stage_ids("input"), *stage_ids("output"), *policy.topics}
    for i, expert in enumerate(spec.experts if spec is not None else ()):
        for j, category in enumerate(expert.categories or ()):
            if category not in known:  # a typo would leave the judge silent on what the policy meant
                msg = f"unknown category or topic {category!r} for judge {expert.name!r}"
                where = ("classifiers", "experts", i, "categories", j)
                raise _yaml.located_error(msg, locs, where, origin, _yaml.closest(category, sorted(known)))
    if not policy.topics:
        return
    for name in policy.topics:
        if labels is not None and name in labels:
            msg = f"{name!r} is a category of model {policy.model!r}; a topic needs a name of its own"
            raise _yaml.located_error(msg, locs, ("topics", name), origin)
    escalated = spec.escalate.to if spec is not None and spec.escalate is not None else None
    judges = [e for e in spec.experts if e.type == "judge" and e.name != escalated] if spec is not None else []
    if not judges:
        msg = "topics are judged by an LLM: add a judge expert asked on every check under classifiers.experts "
        msg += "({name: judge, type: judge, model: <a litellm model>}), not only as escalate.to"
        raise _yaml.located_error(msg, locs, ("topics",), origin)
    for name in policy.topics:
        if not any(j.categories is None or name in j.categories for j in judges):
            msg = f"no judge asked on every check is asked about topic {name!r} (add it to a judge's categories)"
            raise _yaml.located_error(msg, locs, ("topics", name), origin)


def _register_entities(policy: Policy, locs: Locations, origin: str) -> None:
    """The policy's own entities become detectors while it is in use (last, once all of it is valid: a broken
    reload changes none). Each is registered as the file that wrote its line defines it: a child that inherits a
    definition through ``extends`` means what its parent's file means, and follows that file's edits."""
    if not policy.pii_entities:
        return
    defined = {
        name: (pattern, _yaml.where(locs, ("pii_entities", name), origin)[0])
        for name, pattern in policy.pii_entities.items()
    }
    try:
        policy._entities = custom_entities.register(defined)
    except ValueError as exc:
        name = str(exc).partition(":")[0]
        raise _yaml.located_error(str(exc), locs, ("pii_entities", name), origin) from None


def _canonical(policy: Policy) -> str:
    data = policy.model_dump(mode="json")
    for key in ("topics", "pii_entities"):  # added later: left out when empty, so an unchanged policy keeps its hash
        if not data.get(key):
            data.pop(key, None)
    if not data["on_block"]["reask"]["attempts"]:  # added later too: off (the default) is left out
        del data["on_block"]["reask"]
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
    # top-level keys starting "x-" hold YAML anchors for the rest of the file (the docker-compose convention)
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
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
        path += tuple(int(p) if p.isdigit() else p for p in str(ctx["field"]).split(".") if p)
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
        number = _as_number(err.get("input")) if err["type"] in ("float_type", "int_type") else None
        if number is not None:  # YAML 1.1 reads 1e-1 (no dot before the e) as text
            message += "; YAML read it as text, so write it as a plain number"
            suggestion = number
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise _yaml.located_error(message, locs, path, origin, suggestion)


def _as_number(value: Any) -> str | None:
    """The plain-number spelling of a string YAML kept as text though it reads as a number ("1e-1" -> "0.1")."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return repr(int(number)) if number.is_integer() and "e" not in repr(number) else repr(number)


def _import_problem(path: str) -> str | None:
    """Why an import expert's ``path`` (``package.module:Factory``) cannot be imported, or None when its module can be
    found (without running it; its parent packages are imported). One already imported counts whatever its spec
    (``__main__`` of a script, a module made at run time has none: ``find_spec`` raises); a parent package that fails
    as it is imported (its own error, or a dependency it imports that is missing) is a problem, not a traceback."""
    module, _, factory = path.partition(":")
    if not module.strip() or not factory.strip():  # import_module("") / getattr(m, "") at the first check, no line
        return f"path {path!r} names no {'module' if not module.strip() else 'factory'}: package.module:Factory"
    if module in sys.modules:
        return None
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError as exc:  # the module's own package is missing (not found), or one its package imports
        # only the import system's ModuleNotFoundError for the module or a parent says "not here"; a bare ImportError
        # (name None: a package's own `raise ImportError("pkg needs torch")`) is that package's real problem
        mine = isinstance(exc, ModuleNotFoundError) and exc.name is not None
        if not (mine and (module == exc.name or module.startswith(f"{exc.name}."))):
            return f"importing {module!r} failed: {type(exc).__name__}: {exc}"
        found = False
    except ValueError:
        found = False
    except Exception as exc:  # a parent package's own error at import (RuntimeError, SyntaxError ...)
        return f"importing {module!r} failed: {type(exc).__name__}: {exc}"
    return None if found else f"no module {module!r} here (is its package installed, or on PYTHONPATH?)"


def _resolve(policy: Policy, locs: Locations, origin: str) -> Policy:
    """Check categories against the model's heads and fill in thresholds and default entities."""
    model = policy.model
    if not _yaml.is_path_like(model) and model not in (bundled := _bundled_models()):
        msg = f"unknown bundled model {model!r} (bundled: {', '.join(bundled)}; a folder path needs a '/')"
        raise _yaml.located_error(msg, locs, ("model",), origin, _yaml.closest(model, bundled))
    if _yaml.is_path_like(model) and not _yaml.is_file(_model_dir(model) / "labels.json"):
        raise _yaml.located_error(f"no labels.json in model folder {model!r}", locs, ("model",), origin)
    for i, expert in enumerate(policy.classifiers.experts if policy.classifiers is not None else ()):
        problem = _import_problem(str(expert.path)) if expert.type == "import" else None
        if problem is not None:  # found here, at load, not at the first check with no line
            msg = f"expert {expert.name!r}: {problem}"
            raise _yaml.located_error(msg, locs, ("classifiers", "experts", i, "path"), origin)
    labels = model_labels(model)
    _check_topics(policy, labels, locs, origin)
    stages: dict[str, InputStage | OutputStage] = {}
    for stage in ("input", "output"):
        if labels is None:
            heads = dict.fromkeys(stage_ids(stage), DEFAULT_THRESHOLD)
        else:
            heads = {label.id: label.threshold_for(stage) for label in labels.values() if stage in label.stages}
        heads |= dict.fromkeys(policy.topics, DEFAULT_THRESHOLD)  # judged on both stages by the policy's judge
        known = set(BY_ID) | set(labels or ())
        rules = []
        for i, rule in enumerate(policy.rules(stage)):
            path: PathKey = (stage, "rules", i, "category")
            if rule.action is RuleAction.REDACT:  # span-based: the pattern detector, not a model head
                defined = (*BUILTIN_PII_ENTITIES, *policy.pii_entities)
                for j, entity in enumerate(rule.entities or ()):
                    if entity not in defined:
                        msg = f"unknown PII entity {entity!r} (built-in: {', '.join(BUILTIN_PII_ENTITIES)}; "
                        msg += "or define it under pii_entities: name -> pattern)"
                        where = (stage, "rules", i, "entities", j)
                        raise _yaml.located_error(msg, locs, where, origin, _yaml.closest(entity, defined))
                # left out: the kinds found by their format and the policy's own; names and addresses only by name
                every = (*PII_ENTITIES, *policy.pii_entities)
                rules.append(rule.model_copy(update={"entities": rule.entities or every}))
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
        if stage == "input":
            _check_data_categories(policy, set(heads), locs, origin)
    return policy.model_copy(update=stages)


def _check_data_categories(policy: Policy, heads: set[str], locs: Locations, origin: str) -> None:
    """``input.data_categories`` names categories the input stage knows (a typo would leave tool results unread):
    here, with its line, so ``policy validate`` refuses what a Guard would refuse at construction."""
    known = heads | set(stage_ids("input")) | {r.category for r in policy.input.rules}
    for i, cat in enumerate(policy.input.data_categories):
        if cat not in known:
            hint = _yaml.closest(cat, sorted(known))
            raise _yaml.located_error(f"unknown category {cat!r}", locs, ("input", "data_categories", i), origin, hint)
