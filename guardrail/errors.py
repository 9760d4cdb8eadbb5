"""The one error tree of guardrail.

Every exception the library raises on purpose derives from :class:`GuardrailError`, so an
application can catch "anything guardrail decided or failed at" in one ``except`` clause::

    GuardrailError
    ├── PolicyError        a policy file or object is invalid (names file, line, field, suggestion)
    ├── ClassifierError    a classifier could not score; ``kind`` says why, and becomes Decision.error_kind:
    │   ├── CheckTimeout       "timeout": the check's deadline passed (in the queue or in inference)
    │   ├── Overloaded         "overloaded": the inference queue shed the check before it ran
    │   └── InvalidScores      "invalid_scores": a result lacked a category, or held a non-probability
    ├── InvalidMessages    chat messages the guard cannot read safely (an unknown role, a bad shape)
    └── Blocked            the policy blocked a prompt or completion (carries the Decision)

Why a tree and not ad-hoc ``ValueError``s: ops tooling (``guardrail policy validate``) and adapters
must tell "your policy is broken" from "the model crashed" from "this request was refused" without
parsing messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail.decision import Decision

__all__ = [
    "ERROR_KINDS",
    "Blocked",
    "CheckTimeout",
    "ClassifierError",
    "GuardrailError",
    "InvalidMessages",
    "InvalidScores",
    "Overloaded",
    "PolicyError",
]

# The kinds of Decision.error_kind: why the fail mode, not the classifier, decided. Stable strings
# (metrics label them, dashboards and alerts match them): a time-out and shed load call for more
# capacity, a classifier error for a look at the model, invalid scores for a look at the classifier.
ERROR_KINDS = ("timeout", "overloaded", "classifier_error", "invalid_scores", "too_long")


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

    kind = "classifier_error"

    def __init__(self, message: str, *, classifier: str | None = None) -> None:
        self.classifier = classifier
        super().__init__(f"{classifier}: {message}" if classifier else message)


class CheckTimeout(ClassifierError, TimeoutError):
    """The check's deadline passed: the work was dropped before it ran, or inference ran past it."""

    kind = "timeout"


class Overloaded(ClassifierError):
    """The inference queue is full, or holds more work than the check's deadline leaves time for:
    the check is refused at once (load shed explicitly) instead of timing out in the queue."""

    kind = "overloaded"


class InvalidScores(ClassifierError):
    """A classifier returned something that is not a full set of probabilities (a missing category,
    NaN, a value outside [0, 1], the wrong number of results): never read as "safe"."""

    kind = "invalid_scores"


class InvalidMessages(GuardrailError, TypeError):
    """Chat messages the guard cannot read safely: an unknown role (named), a message without a role,
    content of an unexpected type. A ``TypeError`` too, for callers that caught the old error."""


class Blocked(GuardrailError):
    """Raised when the policy blocks and ``on_block`` is ``raise``; the Decision says why."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        cats = ", ".join(f.category for f in decision.findings if not f.shadow) or "policy"
        super().__init__(f"{decision.stage} blocked by {cats} (decision {decision.id})")
