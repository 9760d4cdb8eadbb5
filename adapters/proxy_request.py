"""What a LiteLLM proxy request carries for guardrail: its routing context (policy ``routes:``), the proxy's own
metadata dict, where decisions are recorded, and the token under which a guardrail keeps the request's state
between its hooks (``ProxyRequests``). Read by ``litellm_proxy`` and ``litellm_proxy_messages``; pure, no litellm
import."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from guardrail.routing import context_of

__all__ = ["CONTEXT_HEADER", "CONTEXT_METADATA_KEY", "ProxyRequests", "metadata_of", "proxy_context"]

CONTEXT_HEADER = "x-guardrail-context"
CONTEXT_METADATA_KEY = "guardrail_context"


def proxy_context(data: Mapping[str, Any]) -> dict[str, str]:
    """The routing context of a proxy request (policy ``routes:``), from three places, later ones winning:

    1. the request header ``x-guardrail-context: tenant=acme, route=/chat`` (set by the caller);
    2. the team's metadata ``guardrail_context: {...}``, plus ``team`` = the team id;
    3. the virtual key's metadata ``guardrail_context: {...}``, plus ``key`` = the key alias.

    Admin-set key and team metadata override the header, so a client cannot route itself to a laxer
    policy by sending a header that contradicts what its key says.

    Metadata is JSON: its values are read by routing's one rule (``context_text``), so ``{kids: true}`` on a
    key is the ``true`` a route ``match: {kids: true}`` wants (``str(True)`` made it ``"True"``, and the
    admin's route was silently skipped). A null value is not given; a list or an object is a TypeError
    naming the metadata: the key's requests fail rather than pass under a policy the admin did not mean.
    """
    md = metadata_of(dict(data))
    out: dict[str, str] = {}
    headers = md.get("headers")
    if not isinstance(headers, Mapping):
        psr = data.get("proxy_server_request")
        headers = psr.get("headers") if isinstance(psr, Mapping) else None
    if isinstance(headers, Mapping):
        raw = next((v for k, v in headers.items() if str(k).lower() == CONTEXT_HEADER), None)
        if isinstance(raw, str):
            for part in raw.split(","):
                k, sep, v = part.partition("=")
                if sep and k.strip() and v.strip():
                    out[k.strip()] = v.strip()
    for meta_key, id_key, name in (
        ("user_api_key_team_metadata", "user_api_key_team_id", "team"),
        ("user_api_key_metadata", "user_api_key_alias", "key"),
    ):
        ident = md.get(id_key)
        if isinstance(ident, str) and ident:
            out[name] = ident
        meta = md.get(meta_key)
        ctx = meta.get(CONTEXT_METADATA_KEY) if isinstance(meta, Mapping) else None
        if isinstance(ctx, Mapping):
            try:
                out.update(context_of({str(k): v for k, v in ctx.items()}))
            except TypeError as exc:
                raise TypeError(f"{meta_key}.{CONTEXT_METADATA_KEY}: {exc}") from None
    return out


def metadata_of(data: dict[str, Any], *, create: bool = False) -> dict[str, Any]:
    """The proxy's own metadata of a request: ``litellm_metadata`` where the route uses it (there
    ``metadata`` is the provider's parameter and would be forwarded), else ``metadata``."""
    key = "litellm_metadata" if isinstance(data.get("litellm_metadata"), dict) else "metadata"
    found = data.get(key)
    if isinstance(found, dict):
        return found
    created: dict[str, Any] = {}
    if create:
        data[key] = created
    return created


_MAX_REQUESTS = 4096  # proxy requests whose state is kept for their later hooks (a bounded map)
_REQUEST_KEY = "guardrail_request"  # in a request's metadata: {a guardrail's tag: the request's token}


class ProxyRequests:
    """What one proxy guardrail keeps of a request between its hooks (pre_call, during_call, post_call, the stream):
    its ``Call`` (one policy snapshot), what pre_call's redaction sent, a ``/v1/messages`` refusal. Kept in memory,
    for the most recent requests, under a random token this guardrail writes into the request's metadata when its
    input check begins (``begin``), so only that request's later hooks find it.

    Not under the proxy's ``litellm_call_id``: a client picks it (the ``x-litellm-call-id`` header), so a request that
    reused an id (a retry, one id per conversation) got an earlier request's refusal, its redactions and its policy
    snapshot (a reloaded policy never applied to that id; its decisions piled up in one Call), and a client that sent
    another's id could have that request refused."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)  # this guardrail's entry among the request's tokens (one per guardrail)
        self._state: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def begin(self, data: dict[str, Any], hook: str) -> dict[str, Any]:
        """The state of a request whose input check begins: new at pre_call (whatever token the request came
        with); during_call keeps what this guardrail's pre_call of the same request began, once. A token copied
        from another request (a log, a client that saw its metadata) is not taken at during_call: the state it
        names has had its during_call (or began there), so a new one begins; the other request keeps its own."""
        state = self.get(data)
        if state is not None and hook != "pre_call" and not state.get("during_call"):
            state["during_call"] = True
            return state
        meta = metadata_of(data, create=True)
        tokens = meta.get(_REQUEST_KEY)
        if not isinstance(tokens, dict):
            tokens = meta[_REQUEST_KEY] = {}
        token = tokens[self.tag] = secrets.token_urlsafe(16)
        state = self._state[token] = {"during_call": hook != "pre_call"}
        while len(self._state) > _MAX_REQUESTS:
            self._state.popitem(last=False)
        return state

    def get(self, data: Any) -> dict[str, Any] | None:
        """The state ``begin`` made for this request, if any."""
        meta = metadata_of(data) if isinstance(data, dict) else {}
        tokens = meta.get(_REQUEST_KEY)
        token = tokens.get(self.tag) if isinstance(tokens, Mapping) else None
        return self._state.get(token) if isinstance(token, str) else None
