"""What a LiteLLM proxy request carries for guardrail: its routing context (policy ``routes:``) and the proxy's own
metadata dict, where decisions are recorded. Read by ``litellm_proxy``; pure, no litellm import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CONTEXT_HEADER", "CONTEXT_METADATA_KEY", "metadata_of", "proxy_context"]

CONTEXT_HEADER = "x-guardrail-context"
CONTEXT_METADATA_KEY = "guardrail_context"


def proxy_context(data: Mapping[str, Any]) -> dict[str, str]:
    """The routing context of a proxy request (policy ``routes:``), from three places, later ones winning:

    1. the request header ``x-guardrail-context: tenant=acme, route=/chat`` (set by the caller);
    2. the team's metadata ``guardrail_context: {...}``, plus ``team`` = the team id;
    3. the virtual key's metadata ``guardrail_context: {...}``, plus ``key`` = the key alias.

    Admin-set key and team metadata override the header, so a client cannot route itself to a laxer
    policy by sending a header that contradicts what its key says.
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
            out.update({str(k): str(v) for k, v in ctx.items()})
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
