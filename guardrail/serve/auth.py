"""Optional bearer-token auth: tokens from ``GUARDRAIL_API_TOKENS`` (comma-separated) and/or a file.

A token file holds one token per line (blank lines and ``#`` comments ignored), so a secret mount
works as is. A presented token is compared with every configured token in constant time
(``hmac.compare_digest``), and the loop does not stop at a match, so timing tells nothing about
which token or how much of it matched.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ENV_TOKENS", "ENV_TOKENS_FILE", "TokenAuth", "load_tokens"]

ENV_TOKENS = "GUARDRAIL_API_TOKENS"
ENV_TOKENS_FILE = "GUARDRAIL_API_TOKENS_FILE"


def load_tokens(file: str | os.PathLike[str] | None = None, *, env: bool = True) -> tuple[str, ...]:
    """Tokens from the environment (when ``env``) and from ``file`` (or ``$GUARDRAIL_API_TOKENS_FILE``)."""
    tokens: list[str] = []
    if env:
        tokens += [t.strip() for t in os.environ.get(ENV_TOKENS, "").split(",")]
        file = file or os.environ.get(ENV_TOKENS_FILE) or None
    if file:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    return tuple(dict.fromkeys(t for t in tokens if t))


class TokenAuth:
    """Checks an ``Authorization`` header; with no tokens configured, every request passes."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode("utf-8") for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def allows(self, authorization: str | None) -> bool:
        if not self._tokens:
            return True
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = presented.strip()
        # ASGI header values are decoded as latin-1 (back to the client's bytes); a caller may pass text
        candidates = [presented.encode("utf-8", "replace")]
        with contextlib.suppress(UnicodeEncodeError):
            candidates.append(presented.encode("latin-1"))
        ok = False
        for token in self._tokens:
            for candidate in candidates:
                ok |= hmac.compare_digest(candidate, token)
        return ok
