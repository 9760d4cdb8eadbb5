"""The service's HTTP edge: reading a request's JSON body, writing JSON that always encodes, errors
in OpenAI's shape, and the ASGI middleware that does bearer auth, the in-flight count and HTTP
metrics, and writes one access event per request (no text)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardrail import metrics
from guardrail.jsonl import DuplicateKey, unique_object
from guardrail.serve.auth import TokenAuth

__all__ = [
    "OPEN_PATHS",
    "ROUTES",
    "ApiError",
    "Gate",
    "HttpMetrics",
    "JsonResponse",
    "error_response",
    "read_json_body",
]

# /healthz, /readyz and the docs stay open for probes; the rest needs a token when auth is on.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs"})
ROUTES = ("/v1/check", "/v1/moderations", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")

_log = structlog.get_logger("guardrail")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.details = status, message, code, details


class JsonResponse(JSONResponse):
    """JSON written with every non-ASCII character escaped. A response echoes the text it checked, and
    a JSON request may carry a lone surrogate (``"\\ud800"`` is valid JSON); Starlette's own rendering
    encodes to UTF-8 and fails on it, turning a decision already made and logged into a 500. Escaped,
    the surrogate goes back exactly as it came, and any character the request held can be written."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class _BodyError(ValueError):
    """A JSON body the service refuses to read, raised from inside ``json.loads``'s hooks."""


def _integer(digits: str) -> int:
    try:  # Python refuses to read an integer of more than 4,300 digits (a ValueError, not a JSON error)
        return int(digits)
    except ValueError:
        raise _BodyError(f"an integer of {len(digits)} characters is too long to read") from None


def _float(text: str) -> float:
    # 1e999 reads as inf, which no response could echo (the writer refuses it, as it refuses NaN): a 500 after
    # the check was made and logged, rather than the 400 any other unreadable number gets
    value = float(text)
    if not math.isfinite(value):
        raise _BodyError(f"the number {text[:40]} is too large to read")
    return value


def _constant(name: str) -> Any:
    raise _BodyError(f"{name} is not JSON")  # Python would read NaN/Infinity; no response could echo them


async def read_json_body(request: Request, limit: int) -> Any:
    """The request's body as JSON, at most ``limit`` bytes (declared or streamed): 413 over the
    limit; 400 ``invalid_json`` for anything that is not one strict JSON value (empty, not UTF-8,
    malformed, nested too deeply, a duplicated key, an integer too long to read, a float too large, NaN)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "empty request body: expected a JSON object", "invalid_json")
    try:
        return json.loads(
            raw, object_pairs_hook=unique_object, parse_int=_integer, parse_float=_float, parse_constant=_constant
        )
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 JSON", "invalid_json") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", "invalid_json"
        ) from None
    except DuplicateKey as exc:  # the last would silently win, and the first (perhaps the harmful text) go unchecked
        raise ApiError(
            400, f"malformed JSON: the key {exc.key!r} appears twice in one object", "invalid_json"
        ) from None
    except _BodyError as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "invalid_json") from None


def error_response(status: int, message: str, code: str, details: Any = None, headers: Any = None) -> JSONResponse:
    kind = "authentication_error" if status == 401 else "server_error" if status >= 500 else "invalid_request_error"
    err: dict[str, Any] = {"message": message, "type": kind, "code": code, "param": None}
    if details:
        err["details"] = details
        err["param"] = details[0].get("field")
    return JsonResponse({"error": err}, status_code=status, headers=headers)


class HttpMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "guardrail_http_requests", "HTTP requests by route, method and status", ["route", "method", "status"],
            registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "guardrail_http_request_duration_seconds", "HTTP request time by route", ["route"], registry=registry,
            buckets=metrics.LATENCY_BUCKETS,
        )  # fmt: skip
        self.in_flight = Gauge(
            "guardrail_http_requests_in_flight", "HTTP requests being served", registry=registry,
            multiprocess_mode="livesum",
        )  # fmt: skip


class Gate:
    """Pure ASGI middleware: bearer auth, in-flight count, and one ``guardrail.http_request`` event per
    request (method, route, status, time, decision ids; never a body, query string or header value)."""

    def __init__(self, app: ASGIApp, auth: TokenAuth, http: HttpMetrics | None) -> None:
        self.app, self.auth, self.http = app, auth, http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        route = path if path in ROUTES else "other"
        seen: dict[str, Any] = {"status": 500}

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for k, v in message.get("headers", ()):
                    if k in (b"x-guardrail-decision-ids", b"x-guardrail-action"):
                        seen[k.decode()] = v.decode("latin-1")
            await send(message)

        http = self.http
        if http is not None:
            http.in_flight.inc()
        try:
            if path not in OPEN_PATHS and not self.auth.allows(_header(scope, b"authorization")):
                resp = error_response(
                    401, "missing or invalid bearer token (Authorization: Bearer <token>)", "invalid_api_key",
                    headers={"www-authenticate": "Bearer"},
                )  # fmt: skip
                await resp(scope, receive, send_and_watch)
            else:
                await self.app(scope, receive, send_and_watch)
        finally:
            seconds = time.perf_counter() - started
            status = seen["status"]
            if http is not None:
                http.in_flight.dec()
                http.requests.labels(route, scope["method"], str(status)).inc()
                http.seconds.labels(route).observe(seconds)
            client = scope.get("client")
            _log.info(
                "guardrail.http_request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(seconds * 1000.0, 3),
                decision_ids=seen.get("x-guardrail-decision-ids"),
                action=seen.get("x-guardrail-action"),
                client=client[0] if client else None,
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v).decode("latin-1")
    return None
