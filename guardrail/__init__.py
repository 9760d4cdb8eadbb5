"""guardrail: local safety classifiers and YAML policies between an application and any LLM.

    guard = guardrail.Guard()                      # bundled default policy and model
    decision = guard.check_input("How do I ...?")  # or await guard.acheck_input(messages)
    client = guardrail.wrap(guard, openai.OpenAI())  # same interface, guarded

    @guardrail.protect(guard)                      # your own functions: sync, async, generators
    async def answer(prompt: str) -> str: ...

Names resolve lazily (PEP 562): ``import guardrail`` reads no file, loads no model and imports
neither onnxruntime, litellm, transformers nor torch; the first use of ``Guard`` does the work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Blocked",
    "CheckTimeout",
    "ClassifierError",
    "Decision",
    "Finding",
    "Guard",
    "GuardrailError",
    "InvalidMessages",
    "InvalidScores",
    "Overloaded",
    "Policy",
    "PolicyError",
    "guarded",
    "load_policy",
    "protect",
    "wrap",
]

_LAZY = {
    "Action": "guardrail.decision",
    "Decision": "guardrail.decision",
    "Finding": "guardrail.decision",
    "Blocked": "guardrail.errors",
    "CheckTimeout": "guardrail.errors",
    "ClassifierError": "guardrail.errors",
    "GuardrailError": "guardrail.errors",
    "InvalidMessages": "guardrail.errors",
    "InvalidScores": "guardrail.errors",
    "Overloaded": "guardrail.errors",
    "PolicyError": "guardrail.errors",
    "Guard": "guardrail.engine",
    "Policy": "guardrail.policy",
    "load_policy": "guardrail.policy",
    "guarded": "guardrail.integrations",
    "protect": "guardrail.integrations",
    "wrap": "guardrail.integrations",
}

if TYPE_CHECKING:
    from guardrail.decision import Action, Decision, Finding
    from guardrail.engine import Guard
    from guardrail.errors import (
        Blocked,
        CheckTimeout,
        ClassifierError,
        GuardrailError,
        InvalidMessages,
        InvalidScores,
        Overloaded,
        PolicyError,
    )
    from guardrail.integrations import guarded, protect, wrap
    from guardrail.policy import Policy, load_policy


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guardrail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
