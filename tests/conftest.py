"""Shared fixtures: the local OpenAI-compatible stub server, and guards built on FakeClassifier."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock assertion in disguise, which a
# busy CI machine trips for nothing (seen: 380 ms under a training run). Tests never assert a wall-clock time.
settings.register_profile("guardrail", deadline=None)
settings.load_profile("guardrail")

# litellm fetches a price map from the network at import unless told not to (STACK.md).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]


def ensure_adapters_importable() -> None:
    """``adapters/`` installs as ``guardrail.adapters`` (pyproject's package-dir); in a source
    checkout that is not installed, map it by hand so the tests import what users would. Also when ``guardrail``
    is this checkout's but an editable install of another checkout provides ``guardrail.adapters`` (a CI clone
    installed over this one): the tests must read this checkout's adapters, not another's."""
    import guardrail

    if "guardrail.adapters" in sys.modules:
        return
    found = importlib.util.find_spec("guardrail.adapters")
    ours = Path(guardrail.__file__).resolve().is_relative_to(ROOT.resolve())
    if found is not None and (not ours or Path(found.origin or "").resolve().is_relative_to(ROOT.resolve())):
        return
    spec = importlib.util.spec_from_file_location(
        "guardrail.adapters", ROOT / "adapters" / "__init__.py", submodule_search_locations=[str(ROOT / "adapters")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["guardrail.adapters"] = module
    spec.loader.exec_module(module)
    guardrail.adapters = module  # type: ignore[attr-defined]


ensure_adapters_importable()

from stub_server import StubServer  # noqa: E402

from guardrail import Guard  # noqa: E402
from guardrail.testing import DecisionLog, FakeClassifier  # noqa: E402

REFUSAL = "Sorry, I can't help with that."
REPLACED = "Please answer kindly and point me to a help line."
# FakeClassifier rules: regex -> scores (first match wins). "bomb" is unsafe in and out.
FAKE_RULES: dict[str, dict[str, float]] = {
    r"bomb": {"unsafe": 0.99, "harmful_response": 0.99},
    r"hurt myself": {"self_harm": 0.95},
}


def make_policy(*, respond: str = "refusal", check_every: int = 40, holdback: int = 16) -> dict[str, Any]:
    """A small policy: block unsafe in and harmful out, redact e-mails both ways, rewrite self-harm."""
    return {
        "version": 1,
        "name": f"adapters-{respond}",
        "input": {
            "scope": "last_user",
            "rules": [
                {"category": "unsafe", "threshold": 0.5, "action": "block"},
                {"category": "self_harm", "threshold": 0.5, "action": "rewrite", "message": REPLACED},
                {"category": "pii", "action": "redact", "entities": ["email", "phone"]},
            ],
        },
        "output": {
            "rules": [
                {"category": "harmful_response", "threshold": 0.5, "action": "block"},
                {"category": "pii", "action": "redact", "entities": ["email"]},
            ],
            "stream": {"check_every_chars": check_every, "holdback_chars": holdback},
        },
        "on_block": {"respond": respond, "message": REFUSAL},
        "audit": {"log_text": "none"},
    }


def make_guard(*, respond: str = "refusal", log: DecisionLog | None = None, **policy: Any) -> Guard:
    return Guard(
        make_policy(respond=respond, **policy),
        classifiers=FakeClassifier(rules=FAKE_RULES),
        on_decision=log.append if log is not None else None,
    )


@pytest.fixture(scope="session")
def stub_server() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def stub(stub_server: StubServer) -> Iterator[StubServer]:
    """The shared stub, emptied and set back to echoing for each test."""
    stub_server.reset()
    yield stub_server
    stub_server.reset()


@pytest.fixture
def decisions() -> DecisionLog:
    return DecisionLog()


@pytest.fixture
def guard(decisions: DecisionLog) -> Iterator[Guard]:
    g = make_guard(log=decisions)
    yield g
    g.close()


@pytest.fixture
def raising_guard(decisions: DecisionLog) -> Iterator[Guard]:
    g = make_guard(respond="raise", log=decisions)
    yield g
    g.close()
