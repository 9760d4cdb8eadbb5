"""The service's OpenAPI 3.1 document, written by hand (the endpoints are few and stable), and a
minimal docs page that needs no JavaScript or CDN (the service may run air-gapped)."""

from __future__ import annotations

import functools
import html
import json
from typing import Any

from guardrail.taxonomy import OPENAI_MODERATION_CATEGORIES

__all__ = ["docs_html", "openapi_spec"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error", "authentication_error"]},
                "code": {"type": "string", "examples": ["invalid_json", "invalid_request", "request_too_large"]},
                "param": {"type": ["string", "null"]},
                "details": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"field": {"type": ["string", "null"]},
                                                             "message": {"type": "string"}}},
                },
            },
        }
    },
}  # fmt: skip

_MESSAGES = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"],
             "properties": {"role": {"type": "string"}, "content": {}}}}  # fmt: skip

_FINDING = {
    "type": "object",
    "properties": {
        "category": {"type": "string"}, "score": {"type": "number"}, "threshold": {"type": "number"},
        "action": {"enum": ["log", "redact", "rewrite", "block"]}, "shadow": {"type": "boolean"},
        "entities": {"type": "array", "items": {"type": "string"}},
    },
}  # fmt: skip

_DECISION = {
    "type": "object",
    "description": "Decision.to_dict(): what the policy decided.",
    "required": ["id", "action", "stage", "scores", "findings", "policy", "policy_hash", "latency_ms", "error"],
    "properties": {
        "id": {"type": "string"},
        "action": {"enum": ["allow", "log", "rewrite", "block"]},
        "stage": {"enum": ["input", "output"]},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "findings": {"type": "array", "items": _FINDING},
        "policy": {"type": "string"},
        "policy_hash": {"type": "string"},
        "latency_ms": {"type": "number"},
        "error": {"type": ["string", "null"], "description": "set when the policy's fail mode decided"},
        "message": {"type": "string"},
        "redacted_entities": {"type": "array", "items": {"type": "string"}},
        "text": {"type": "string", "description": "what should travel on (rewritten, redacted or the refusal)"},
        "messages": {**_MESSAGES, "description": "the rewritten chat messages, when messages were checked"},
    },
}

_CHECK = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of text or messages.",
    "properties": {
        "stage": {"enum": ["input", "output"], "default": "input"},
        "text": {"type": "string"},
        "messages": _MESSAGES,
        "prompt": {"oneOf": [{"type": "string"}, _MESSAGES], "description": "stage output: the prompt answered"},
        "context": {"type": "object", "description": "routing context (tenant, route, ...) for policies with routes"},
    },
}

_PART = {"oneOf": [
    {"type": "object", "required": ["type", "text"],
     "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
    {"type": "object", "required": ["type"], "properties": {"type": {"const": "image_url"}}},
]}  # fmt: skip

_MODERATION_REQ = {
    "type": "object",
    "additionalProperties": False,
    "required": ["input"],
    "properties": {
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                            {"type": "array", "items": _PART}]},
        "model": {"type": "string"},
    },
}  # fmt: skip


def _by_category(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {c: schema for c in OPENAI_MODERATION_CATEGORIES}}


_MODERATION = {
    "type": "object",
    "required": ["id", "model", "results"],
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "results": {"type": "array", "items": {"type": "object", "properties": {
            "flagged": {"type": "boolean"},
            "categories": _by_category({"type": "boolean"}),
            "category_scores": _by_category({"type": "number"}),
            "category_applied_input_types": _by_category({"type": "array", "items": {"const": "text"}}),
            "guardrail": {"type": "object", "description": "the policy's verdict: decision_id, action, categories, "
                                                           "policy, policy_hash, error"},
        }}},
    },
}  # fmt: skip


def _json(schema: Any) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "malformed JSON (or a repeated key, an over-long integer, NaN or a number too large to read)",
            401: "missing or wrong bearer token", 413: "body over the size limit", 422: "wrong or missing fields",
            503: "not ready"}  # fmt: skip
    return {str(c): {"description": text[c], **_json({"$ref": "#/components/schemas/Error"})} for c in codes}


@functools.lru_cache(maxsize=1)
def openapi_spec() -> dict[str, Any]:
    from guardrail import __version__

    post_errors = _errors(400, 401, 413, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "guardrail", "version": __version__,
                 "description": "Safety checks of LLM prompts and completions against a YAML policy."},
        "components": {
            "schemas": {"Error": _ERROR, "Decision": _DECISION, "CheckRequest": _CHECK,
                        "ModerationRequest": _MODERATION_REQ, "ModerationResponse": _MODERATION},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/check": {"post": {
                "summary": "Check a prompt (stage input) or a completion (stage output)",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/CheckRequest"})},
                "responses": {"200": {"description": "the decision",
                                      **_json({"$ref": "#/components/schemas/Decision"})}, **post_errors},
            }},
            "/v1/moderations": {"post": {
                "summary": "OpenAI-compatible moderation (categories mapped from the guardrail taxonomy)",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/ModerationRequest"})},
                "responses": {"200": {"description": "one result per input text",
                                      **_json({"$ref": "#/components/schemas/ModerationResponse"})}, **post_errors},
            }},
            "/healthz": {"get": {"summary": "the process is up", "security": [],
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "the model is loaded and a warm-up check passed", "security": [],
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"},
                                                                                 **_errors(401)}}},
        },
    }  # fmt: skip


@functools.lru_cache(maxsize=1)
def docs_html() -> str:
    spec = openapi_spec()
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            rows.append(
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(op['summary'])}</p>"
            )
    body = html.escape(json.dumps(spec, indent=2))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>guardrail API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}</style></head><body><h1>guardrail API</h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"
        + "".join(rows)
        + f"<details><summary>OpenAPI document</summary><pre>{body}</pre></details></body></html>"
    )
