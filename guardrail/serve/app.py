"""The Starlette application behind ``guardrail serve``: a thin driver over ``Guard``'s async API.

Every check is ``await guard.acheck_*``: inference runs in the Guard's pool, never on the event
loop. The app holds no state of its own beyond the Guard (whose policy may name a shared ensemble
store), so replicas scale behind any load balancer.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``, so OpenAI
SDKs raise their usual exceptions: 400 malformed JSON, 401 missing/wrong token, 413 body too large,
422 wrong fields (each problem named in ``error.details``), 503 not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from guardrail import audit, metrics
from guardrail.call import header_value
from guardrail.classifiers.base import Classifier
from guardrail.decision import Decision
from guardrail.engine import Guard
from guardrail.serve import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INPUTS
from guardrail.serve.auth import TokenAuth, load_tokens
from guardrail.serve.http import ApiError, Gate, HttpMetrics, JsonResponse, error_response, read_json_body
from guardrail.serve.openapi import docs_html, openapi_spec
from guardrail.serve.schemas import CheckRequest, ModerationRequest, moderation_response, moderation_texts

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_INPUTS", "ENV_CONFIG", "app_from_env", "create_app"]

ENV_CONFIG = "GUARDRAIL_SERVE_CONFIG"  # JSON keyword arguments of create_app, for uvicorn's worker processes
WARMUP_TEXT = "Hello! Can you help me plan a birthday party?"
_log = structlog.get_logger("guardrail")


@dataclass
class _State:
    policy: Any
    guard: Guard | None
    owns_guard: bool
    classifiers: Classifier | Sequence[Classifier] | None
    reload: bool
    auth: TokenAuth
    max_body_bytes: int
    max_inputs: int
    metrics_on: bool
    registry: Any
    ready: bool = False
    warmup_error: str | None = None
    accepts_context: bool = False
    sinks: tuple[Any, ...] = ()
    opentelemetry: bool = False
    http: Any = None
    warm_lock: asyncio.Lock | None = None  # made on first use, inside the serving event loop


# -- request helpers --------------------------------------------------------------------------------


def _validate(model: type[BaseModel], body: Any) -> Any:
    if not isinstance(body, dict):
        raise ApiError(422, f"expected a JSON object, not {type(body).__name__}", "invalid_request")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        first = details[0]
        where = f"`{first['field']}`: " if first["field"] else ""
        raise ApiError(422, f"invalid request: {where}{first['message']}", "invalid_request", details) from None


def _headers(decisions: Sequence[Decision]) -> dict[str, str]:
    strongest = max((d.action for d in decisions), key=lambda a: a.strength)
    return {
        "x-guardrail-action": strongest.value,
        "x-guardrail-decision-ids": ",".join(d.id for d in decisions),
        "x-guardrail-policy": header_value(decisions[0].policy) if decisions else "",
    }


def _state(request: Request) -> _State:
    state: _State = request.app.state.guardrail
    return state


def _guard(request: Request) -> tuple[_State, Guard]:
    state = _state(request)
    if state.guard is None:
        raise ApiError(503, "the service is starting: no guard yet", "not_ready")
    return state, state.guard


# -- endpoints --------------------------------------------------------------------------------------


async def check(request: Request) -> Response:
    state, guard = _guard(request)
    req: CheckRequest = _validate(CheckRequest, await read_json_body(request, state.max_body_bytes))
    kwargs: dict[str, Any] = {"context": req.context} if req.context and state.accepts_context else {}
    try:
        if req.stage == "input":
            decision = await guard.acheck_input(req.payload, **kwargs)
        else:
            decision = await guard.acheck_output(req.payload, prompt=req.prompt, **kwargs)
    except (TypeError, ValueError) as exc:  # a message without a role, an unknown content type...
        raise ApiError(422, f"invalid request: {exc}", "invalid_messages") from None
    return JsonResponse(decision.to_dict(), headers=_headers([decision]))


async def moderations(request: Request) -> Response:
    state, guard = _guard(request)
    req: ModerationRequest = _validate(ModerationRequest, await read_json_body(request, state.max_body_bytes))
    texts = moderation_texts(req)
    if len(texts) > state.max_inputs:
        raise ApiError(422, f"`input` holds {len(texts)} texts; the limit is {state.max_inputs}", "too_many_inputs")
    decisions = list(await asyncio.gather(*(guard.acheck_input(t) for t in texts)))
    body = moderation_response(decisions, req.model, guard.policy.model)
    return JsonResponse(body, headers=_headers(decisions))


async def healthz(request: Request) -> Response:
    return JsonResponse({"status": "ok"})


async def _warm_up(state: _State) -> None:
    """One real check through the whole path (policy, classifier, rules, audit), as the service's own
    (``audit.unrecorded``): no audit event, and no decision metric counts it. Audited, a healthy start wrote a
    synthetic decision that ``guardrail replay`` then read as traffic; counted, a failing model raised the error rate
    of a replica that served no one. The model's own timings are still measured."""
    if state.warm_lock is None:
        state.warm_lock = asyncio.Lock()
    async with state.warm_lock:
        if state.ready or state.guard is None:
            return
        try:
            with audit.unrecorded():
                decision = await state.guard.acheck_input(WARMUP_TEXT)
            state.warmup_error = decision.error
        except Exception as exc:
            state.warmup_error = f"{type(exc).__name__}: {exc}"
        state.ready = state.warmup_error is None
        if not state.ready:
            _log.warning("guardrail.serve_warmup_failed", error=state.warmup_error)


async def readyz(request: Request) -> Response:
    state = _state(request)
    if not state.ready and state.guard is not None:
        await _warm_up(state)  # retry: a model that failed once may answer now
    if not state.ready or state.guard is None:
        body = {"status": "starting" if state.guard is None else "warm-up failed", "error": state.warmup_error}
        return JsonResponse(body, status_code=503)
    policy = state.guard.policy
    return JsonResponse({"status": "ready", "policy": policy.name, "policy_hash": policy.hash})


async def metrics_endpoint(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    state = _state(request)
    registry = state.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # --workers N: add up every worker's files
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def openapi_json(request: Request) -> Response:
    return JsonResponse(openapi_spec())


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_html())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.code, exc.details)


async def _http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, str(exc.detail), code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    _log.error("guardrail.serve_error", error_type=type(exc).__name__, path=request.url.path)
    return error_response(500, f"internal error ({type(exc).__name__})", "internal_error")


# -- the application --------------------------------------------------------------------------------


def _auto_reload(policy: Any) -> bool:
    return isinstance(policy, (str, os.PathLike)) and Path(policy).is_file()


def create_app(
    policy: Any = None,
    *,
    guard: Guard | None = None,
    classifiers: Classifier | Sequence[Classifier] | None = None,
    tokens: Sequence[str] | None = None,
    tokens_file: str | os.PathLike[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    reload: bool | None = None,
    metrics_enabled: bool = True,
    opentelemetry: bool = False,
    registry: Any = None,
) -> Starlette:
    """The service as an ASGI app. The Guard is built at start-up (from ``policy``, hot-reloaded when
    it is a file unless ``reload=False``), or pass a ready ``guard``. ``tokens=None`` reads
    ``GUARDRAIL_API_TOKENS`` and ``tokens_file`` / ``GUARDRAIL_API_TOKENS_FILE``; ``tokens=[]`` turns
    auth off. ``registry``: the Prometheus registry for ``/metrics`` (a fresh one by default);
    ``opentelemetry=True`` also reports metrics and spans to the global OpenTelemetry providers."""
    for name, limit in (("max_body_bytes", max_body_bytes), ("max_inputs", max_inputs)):
        if limit < 1:  # 0 would refuse every request, a negative number every byte
            raise ValueError(f"{name} must be 1 or more, not {limit}")
    if tokens is None:
        tokens = load_tokens(tokens_file)
    elif tokens_file is not None:
        tokens = (*tokens, *load_tokens(tokens_file, env=False))
    if metrics_enabled and registry is None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
    state = _State(
        policy=policy,
        guard=guard,
        owns_guard=guard is None,
        classifiers=classifiers,
        reload=_auto_reload(policy) if reload is None else reload,
        auth=TokenAuth(tokens),
        max_body_bytes=max_body_bytes,
        max_inputs=max_inputs,
        metrics_on=metrics_enabled,
        registry=registry,
        http=HttpMetrics(registry) if metrics_enabled else None,
        opentelemetry=opentelemetry,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state.guard is None:  # the model load is slow: off the event loop
            state.guard = await asyncio.to_thread(Guard, state.policy, state.classifiers, reload=state.reload)
        state.accepts_context = "context" in inspect.signature(state.guard.acheck_input).parameters
        await _warm_up(state)
        if state.metrics_on:  # the warm-up and the /readyz retries are never counted (audit.unrecorded)
            state.sinks += (metrics.enable_prometheus(state.registry),)
        if state.opentelemetry:  # the global providers (e.g. set up by opentelemetry-instrument)
            state.sinks += (metrics.enable_opentelemetry(),)
        policy = state.guard.policy
        _log.info("guardrail.serve_started", policy=policy.name, policy_hash=policy.hash, ready=state.ready,
                  auth=state.auth.enabled, reload=state.reload)  # fmt: skip
        try:
            yield
        finally:  # uvicorn has finished the in-flight requests by now
            state.ready = False
            for sink in state.sinks:
                metrics.disable(sink)
            if state.owns_guard and state.guard is not None:
                state.guard.close()
            _log.info("guardrail.serve_stopped")

    routes = [
        Route("/v1/check", check, methods=["POST"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    if metrics_enabled:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Gate, auth=state.auth, http=state.http)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.guardrail = state
    return app


def app_from_env() -> Starlette:
    """The app factory uvicorn's worker processes call (``--workers N``): settings come as JSON in
    ``$GUARDRAIL_SERVE_CONFIG``, written by ``guardrail serve``."""
    if os.environ.get("GUARDRAIL_SERVE_JSON_LOGS"):
        from guardrail.serve.cli import configure_logging

        configure_logging()
    raw = os.environ.get(ENV_CONFIG, "{}")
    config: Mapping[str, Any] = json.loads(raw)
    return create_app(**config)
