"""``guardrail serve``: the guard as an HTTP service for every stack (extra ``[serve]``).

    POST /v1/check          a Decision, exactly as ``Decision.to_dict()`` gives it
    POST /v1/moderations    OpenAI's moderation API (any OpenAI SDK, by changing its base URL)
    GET  /healthz /readyz   liveness; readiness (model loaded, one warm-up check passed)
    GET  /metrics           Prometheus text
    GET  /openapi.json /docs

Importing this package is light; :func:`create_app` imports Starlette on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_INPUTS", "create_app"]

DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: ~200,000 characters of text, the default policy's max_chars
DEFAULT_MAX_INPUTS = 64  # texts in one /v1/moderations request

if TYPE_CHECKING:
    from guardrail.serve.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from guardrail.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'guardrail.serve' has no attribute {name!r}")
