"""The service's own checks (the start-up warm-up, and its retry on each ``/readyz`` while it fails) are not traffic.

They run the whole path (policy, classifier, rules), so readiness means what it says, but nobody asked for them:
audited, a healthy start wrote a synthetic decision into the audit log (which ``guardrail replay`` then read as
traffic), and a failing model added a warning-level block on every probe; counted, they inflated
``guardrail_decisions_total`` and ``guardrail_errors_total`` at the probe rate, so an alert on the error rate fired
for a replica that served no one. Inside :func:`probing` the core records neither (``audit.unrecorded``): no audit
event and no decision metric, whatever structlog chain or metrics sink the application has. What the model's
inference took (``guardrail_classifier_duration_seconds``, ``guardrail_batch_size``) is still measured: a probe's
text may share a batch with a client's, and those instruments describe the model, not the traffic.
"""

from __future__ import annotations

from guardrail.audit import unrecorded as probing

__all__ = ["probing"]
