"""The ensemble named by a policy file, feedback into it, and its commands.

A policy's ``classifiers:`` lists its experts (the bundled model, an LLM judge reached through
litellm with its time-out and retries, a user's own classifier by import path), the Hedge rate, an
escalation band and the store. The Guard then scores with that :class:`~guardrail.ensemble.Ensemble`
(one per policy version, built on first use), remembers each decision's expert scores in the store,
and ``guard.feedback(decision_id, label=...)`` or ``guardrail feedback reviewed.jsonl`` (hours later,
from any replica) moves the weights. ``guardrail ensemble show`` prints them with each expert's
running loss.

Labels: ``"safe"`` (every category the experts scored is 0), a category name or list of them (those
are 1), a mapping ``{category: 0|1}``, or ``true``/``false`` (``"unsafe"``/``"safe"``).
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrail.decision import Decision
from guardrail.errors import GuardrailError

if TYPE_CHECKING:  # the ensemble and its store load when a policy first uses them, not with the schema
    from guardrail.classifiers.base import Classifier
    from guardrail.ensemble import Ensemble
    from guardrail.ensemble_store import Store
    from guardrail.policy import Policy

__all__ = ["ClassifiersSpec", "ExpertSpec", "feedback", "policy_classifier", "remember", "truth_of"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)
Label = str | Sequence[str] | Mapping[str, float]


class ExpertSpec(BaseModel):
    model_config = _FROZEN
    name: str = Field(min_length=1, description="Unique name, shown in weights and losses.")
    type: Literal["model", "judge", "import"] = Field(description="model | judge | import")
    model: str | None = Field(
        default=None, description="model: a bundled model name or folder (default: the policy's model); "
        "judge: any litellm model name, e.g. openai/gpt-4o-mini."
    )  # fmt: skip
    api_base: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, description="judge: time-out of one call.")
    attempts: int = Field(default=3, ge=1, le=10, description="judge: attempts on transient errors.")
    categories: tuple[str, ...] | None = Field(
        default=None, description="judge: the categories and topics it is asked about (default: all of them)."
    )
    path: str | None = Field(default=None, description="import: 'package.module:Factory' returning a Classifier.")
    options: dict[str, Any] = Field(default_factory=dict, description="import: keyword arguments for the factory.")

    @model_validator(mode="after")
    def _fields(self) -> ExpertSpec:
        if self.type == "judge" and not self.model:
            raise ValueError("a judge needs `model:` (a litellm model name)")
        if self.type == "import" and (not self.path or ":" not in self.path):
            raise ValueError("an imported expert needs `path: package.module:Factory`")
        if self.categories is not None and (self.type != "judge" or not self.categories):
            raise ValueError("`categories` lists what a judge is asked about (non-empty); other experts score theirs")
        return self


class EscalateSpec(BaseModel):
    model_config = _FROZEN
    to: str = Field(description="The slow expert, asked only when the others are uncertain.")
    band: tuple[float, float] = Field(default=(0.2, 0.8), description="Uncertain: a watched score within [lo, hi].")
    categories: tuple[str, ...] | None = Field(default=None, description="Watched categories (default: all).")

    @model_validator(mode="after")
    def _band(self) -> EscalateSpec:
        lo, hi = self.band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError("band is [lo, hi] with 0 <= lo <= hi <= 1")
        return self


class ClassifiersSpec(BaseModel):
    """``classifiers:`` in a policy: the experts and how they are combined."""

    model_config = _FROZEN
    experts: tuple[ExpertSpec, ...] = Field(min_length=1)
    eta: float = Field(default=0.5, gt=0, description="Hedge learning rate.")
    escalate: EscalateSpec | None = None
    store: str | None = Field(default=None, description="sqlite:////path.db, a path, redis://host:6379/0, or memory.")
    recent: int = Field(default=100_000, ge=1, description="Decisions whose expert scores are kept for feedback.")
    refresh_s: float = Field(default=5.0, ge=0, description="How often a replica re-reads the shared weights.")

    @model_validator(mode="after")
    def _names(self) -> ClassifiersSpec:
        names = [e.name for e in self.experts]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        if self.escalate is not None and (self.escalate.to not in names or len(names) < 2):
            raise ValueError(f"escalate.to must name one of at least two experts ({', '.join(names)})")
        return self


class _Named:
    """A classifier under the name the policy gives it, sharing the instance (and its ONNX session)."""

    def __init__(self, inner: Classifier, name: str) -> None:
        self.inner, self.name = inner, name

    @property
    def labels(self) -> frozenset[str]:
        return self.inner.labels

    def predict(self, texts: Sequence[str], *, stage: Any = "input",
                prompts: Sequence[str | None] | None = None) -> list[dict[str, float]]:  # fmt: skip
        return self.inner.predict(texts, stage=stage, prompts=prompts)

    def __getattr__(self, attr: str) -> Any:  # scripts, stage_labels, warmup, check_ms, ...
        return getattr(self.inner, attr)


_experts: dict[str, Classifier] = {}  # by spec: a reloaded policy reuses unchanged experts


def _expert(spec: ExpertSpec, policy: Policy) -> Classifier:
    per_policy = policy.model if spec.type == "model" else json.dumps(policy.topics) if spec.type == "judge" else ""
    key = f"{spec.model_dump_json()}|{per_policy}"
    clf: Any = _experts.get(key)
    if clf is not None:
        return clf  # type: ignore[no-any-return]
    if spec.type == "model":
        from guardrail.engine import _model_classifier  # the process's one session per model folder

        clf = _Named(_model_classifier(spec.model or policy.model), spec.name)
    elif spec.type == "judge":
        from guardrail.classifiers.judge import LLMJudge

        clf = LLMJudge(
            str(spec.model), api_base=spec.api_base, timeout=spec.timeout_s, attempts=spec.attempts,
            categories=spec.categories, topics=policy.topics,
        )  # fmt: skip
    else:
        module, _, attr = str(spec.path).partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise GuardrailError(f"expert {spec.name!r}: cannot import {spec.path!r}: {exc}") from exc
        clf = factory(**spec.options)
    if not isinstance(clf, _Named):
        clf.name = spec.name  # weights and losses are reported under the names the policy gives
    _experts[key] = clf
    return clf  # type: ignore[no-any-return]


_built: dict[tuple[str, str], Ensemble] = {}
_lock = threading.Lock()


def policy_classifier(policy: Policy) -> Ensemble:
    """The ensemble ``policy.classifiers`` describes: one per policy version per process."""
    key = (policy.source, policy.hash)
    ens = _built.get(key)
    if ens is not None:
        return ens
    from guardrail.ensemble import Ensemble, Escalation
    from guardrail.ensemble_store import open_store

    spec = policy.classifiers
    assert spec is not None
    with _lock:
        ens = _built.get(key)
        if ens is None:
            esc = spec.escalate
            for old in [k for k in _built if k[0] == policy.source]:  # a reload replaces the older version
                del _built[old]
            ens = _built[key] = Ensemble(
                [_expert(e, policy) for e in spec.experts],
                eta=spec.eta,
                name=f"ensemble:{policy.name}",
                escalate=Escalation(esc.to, esc.band, esc.categories) if esc else None,
                store=open_store(spec.store, policy.name, spec.recent),
                refresh_s=spec.refresh_s,
            )
            for e in ens.experts:  # load the local model now, not on the first request (once per process)
                warm = getattr(e, "warmup", None)
                if callable(warm) and getattr(e, "check_ms", None) is None:
                    warm()
    return ens


def remember(policy: Policy, decision: Decision, texts: Sequence[str]) -> None:
    """Keep the experts' scores of ``decision`` in the store, so late feedback still finds them."""
    if policy.classifiers is None or decision.error is not None:
        return
    from guardrail.normalize import forms
    from guardrail.scoring_form import scoring_form

    ens = policy_classifier(policy)
    # the texts the engine may have scored: each text's readings and scoring forms (a key not scored is
    # simply not found, so listing more is harmless)
    scanned: set[str] = set()
    for t in texts:
        for reading in (t, scoring_form(t)):
            for f in forms(reading):
                scanned |= {f.text, scoring_form(f.text)}
    per = ens.recall(decision.stage, sorted(scanned))
    if per and ens.store is not None:
        ens.store.put_scores(decision.id, {"stage": decision.stage, "experts": per})


def truth_of(label: Label | bool, scored: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The reviewed truth per category (see the module docstring; ``True``/``False`` mean unsafe/safe)."""
    if isinstance(label, bool):
        label = "unsafe" if label else "safe"
    if isinstance(label, Mapping):
        return {str(k): float(v) for k, v in label.items()}
    if label == "safe":
        return {k: 0.0 for s in scored.values() for k in s}
    cats = [label] if isinstance(label, str) else list(label)
    return dict.fromkeys(cats, 1.0)


def _store(policy: Policy) -> Store:
    """The policy's store: the running ensemble's when this process built it, else opened (no model load)."""
    from guardrail.ensemble_store import open_store

    ens = _built.get((policy.source, policy.hash))
    if ens is not None and ens.store is not None:
        return ens.store
    spec = policy.classifiers
    assert spec is not None
    return open_store(spec.store, policy.name, spec.recent)


def feedback(policy: Policy, decision_id: str, label: Label | bool) -> dict[str, float] | None:
    """Apply a reviewed label to a recent decision; None when its scores are no longer in the store.

    In the process that runs the ensemble its weights move at once; elsewhere (``guardrail feedback``,
    another replica) the store is updated and the replicas re-read it within ``refresh_s``."""
    from guardrail.ensemble import hedge_step

    spec = policy.classifiers
    assert spec is not None
    record = _store(policy).get_scores(decision_id)
    if record is None:
        return None
    per = record["experts"]
    truth = truth_of(label, per)
    ens = _built.get((policy.source, policy.hash))
    if ens is not None:
        return ens.learn(per, truth)
    names = [e.name for e in spec.experts]
    _store(policy).update_state(lambda st: hedge_step(st, per, truth, spec.eta, names))
    return {n: sum(abs(float(s[k]) - y) for k, y in truth.items() if k in s) / max(1, len(truth))
            for n, s in per.items()}  # fmt: skip


# ------------------------------------------------------------------------------------------------ CLI


def add_parser(sub: Any) -> None:
    f = sub.add_parser("feedback", help="feed reviewed decisions (JSONL: decision_id, label) into the ensemble")
    f.add_argument("file", help='JSONL rows {"decision_id": "...", "label": "safe" | "unsafe" | {...}}')
    f.add_argument("--policy", "-p", required=True, help="the policy whose ensemble learns")
    f.set_defaults(func=_cmd_feedback)
    e = sub.add_parser("ensemble", help="inspect a policy's ensemble")
    esub = e.add_subparsers(dest="ensemble_cmd", required=True)
    s = esub.add_parser("show", help="the weights per category and each expert's running loss")
    s.add_argument("--policy", "-p", required=True)
    s.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_show)


def _policy(ref: str) -> Policy:
    from guardrail.errors import PolicyError
    from guardrail.policy import load_policy

    policy = load_policy(ref)
    if policy.classifiers is None:
        raise PolicyError("this policy names no ensemble (`classifiers:`)", file=policy.source, field="classifiers")
    return policy


def _cmd_feedback(args: Any) -> int:
    policy = _policy(args.policy)
    applied = missing = 0
    with open(args.file, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                did, label = str(row["decision_id"]), row["label"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{args.file}:{n}: expected {{'decision_id': ..., 'label': ...}} ({exc})") from None
            if feedback(policy, did, label) is None:
                missing += 1
                print(f"{args.file}:{n}: decision {did} is not in the store (older than `recent`?)", file=sys.stderr)
            else:
                applied += 1
    print(f"applied {applied} label(s); {missing} decision(s) not found")
    return 0 if applied or not missing else 1


def _cmd_show(args: Any) -> int:
    policy = _policy(args.policy)
    state = _store(policy).read_state()
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True))
        return 0
    print(f"ensemble of policy {policy.name}: {state.get('updates', 0)} feedback updates")
    loss, count = state.get("loss", {}), state.get("count", {})
    if loss:
        print(f"\n{'expert':24} {'running loss':>14} {'labels':>8} {'mean':>8}")
        for name in sorted(loss, key=lambda n: loss[n] / max(1, count.get(n, 1))):
            print(
                f"{name:24} {loss[name]:>14.3f} {count.get(name, 0):>8} {loss[name] / max(1, count.get(name, 1)):>8.3f}"
            )
    weights = state.get("weights", {})
    if weights:
        experts = sorted({n for w in weights.values() for n in w})
        print(f"\n{'category':24} " + " ".join(f"{n:>12}" for n in experts))
        for cat in sorted(weights):
            print(f"{cat:24} " + " ".join(f"{weights[cat].get(n, 0.0):>12.3f}" for n in experts))
    return 0
