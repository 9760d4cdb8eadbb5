"""The one error tree of guardrail.

Every exception the library raises on purpose derives from :class:`GuardrailError`, so an
application can catch "anything guardrail decided or failed at" in one ``except`` clause::

    GuardrailError
    ├── PolicyError        a policy file or object is invalid (names file, line, field, suggestion)
    ├── ClassifierError    a classifier failed, timed out, or its model folder is unusable
    └── Blocked            the policy blocked a prompt or completion (carries the Decision)

Why a tree and not ad-hoc ``ValueError``s: ops tooling (``guardrail policy validate``) and adapters
must tell "your policy is broken" from "the model crashed" from "this request was refused" without
parsing messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail.decision import Decision

__all__ = ["Blocked", "ClassifierError", "GuardrailError", "PolicyError"]


class GuardrailError(Exception):
    """Base class of every error guardrail raises deliberately."""


class PolicyError(GuardrailError):
    """A policy is invalid.

    The message is formatted ``file:line: field: problem (did you mean 'x'?)`` so editors and CI
    logs can jump to the spot; the parts are also kept as attributes for programmatic use.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.suggestion = suggestion
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"{where}{field}{self.message}{hint}"


class ClassifierError(GuardrailError):
    """A classifier could not produce scores (crash, time-out, missing or malformed model)."""

    def __init__(self, message: str, *, classifier: str | None = None) -> None:
        self.classifier = classifier
        super().__init__(f"{classifier}: {message}" if classifier else message)


class Blocked(GuardrailError):
    """Raised when the policy blocks and ``on_block`` is ``raise``; the Decision says why."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        cats = ", ".join(f.category for f in decision.findings if not f.shadow) or "policy"
        super().__init__(f"{decision.stage} blocked by {cats} (decision {decision.id})")
