"""Optional bearer-token auth: tokens from ``GUARDRAIL_API_TOKENS`` (comma-separated) and/or a file.

A token file holds one token per line (blank lines and ``#`` comments ignored), so a secret mount
works as is. A source that is configured but holds no token is an error, never "auth off" (see
:func:`load_tokens`). A presented token is compared with every configured token in constant time
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
    """Tokens from the environment (when ``env``) and from ``file`` (or ``$GUARDRAIL_API_TOKENS_FILE``).

    A source that is configured but holds no token (``GUARDRAIL_API_TOKENS=" , "``, an empty mounted secret, a
    file of comments) raises ValueError naming it: the service would otherwise start with auth off and answer
    anyone, the opposite of what configuring a token source asked for. Serving without auth is chosen by
    configuring no source at all (or ``create_app(tokens=[])``)."""
    tokens: list[str] = []
    origin = "the tokens file"
    if env:
        if ENV_TOKENS in os.environ:
            listed = [t.strip() for t in os.environ[ENV_TOKENS].split(",")]
            if not any(listed):
                raise ValueError(f"${ENV_TOKENS} is set but holds no token; unset it to serve without auth")
            tokens += listed
        if file is None and ENV_TOKENS_FILE in os.environ:
            file, origin = os.environ[ENV_TOKENS_FILE], f"${ENV_TOKENS_FILE}"
    if file is not None:
        if not os.fspath(file).strip():
            raise ValueError(f"{origin} is given but names no file; give none to serve without auth")
        from_file = [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines()]
        from_file = [t for t in from_file if t and not t.startswith("#")]
        if not from_file:
            raise ValueError(
                f"{origin} {os.fspath(file)!r} holds no token (only blank lines and # comments); "
                "add one, or give no tokens file to serve without auth"
            )
        tokens += from_file
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
