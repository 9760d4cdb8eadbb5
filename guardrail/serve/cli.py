"""``guardrail serve``: argument parsing (light) and the uvicorn launch (imports the [serve] extra)."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from guardrail.serve import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INPUTS

__all__ = ["add_parser", "configure_logging", "run"]

ENV_JSON_LOGS = "GUARDRAIL_SERVE_JSON_LOGS"


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="run the guard as an HTTP service: /v1/check, /v1/moderations, /metrics (needs the [serve] extra)",
        description="Serve the guard over HTTP. Bearer tokens come from $GUARDRAIL_API_TOKENS (comma-separated) "
        "and/or --tokens-file / $GUARDRAIL_API_TOKENS_FILE; with none, auth is off.",
    )
    s.add_argument("--policy", "-p", default=None, help="bundled policy name or YAML path (a file is hot-reloaded)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="TCP port to listen on, 1-65535, or 0 for a free one (default 8000); the address bound is announced "
        "as a guardrail.serve_listening event on stdout and a 'guardrail serve listening on URL' line on stderr",
    )
    s.add_argument(
        "--workers", type=_at_least(1), default=1, help="worker processes, 1 or more (each loads the model once)"
    )
    s.add_argument("--tokens-file", default=None, help="file of bearer tokens, one per line")
    s.add_argument(
        "--max-body-bytes", type=_at_least(1), default=DEFAULT_MAX_BODY_BYTES, help="larger bodies get 413 (1 or more)"
    )
    s.add_argument(
        "--max-inputs", type=_at_least(1), default=DEFAULT_MAX_INPUTS, help="texts per /v1/moderations request (1+)"
    )
    s.add_argument("--no-reload", action="store_true", help="do not hot-reload the policy file")
    s.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    s.add_argument(
        "--otel", action="store_true", help="also report metrics and spans to OpenTelemetry (needs opentelemetry-api)"
    )
    s.add_argument(
        "--graceful-timeout", type=_at_least(0), default=30, help="seconds to finish in-flight checks on stop (0+)"
    )
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    s.set_defaults(func=run)


def _port(value: str) -> int:
    """A TCP port, or 0 for one the kernel picks: uvicorn would take 99999 and listen on 99999 mod 65536
    while logging 99999."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535, or 0 for a free one)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range: a TCP port is 1-65535, or 0 for a free one")
    return port


def _at_least(least: int) -> Any:
    """An argparse type: an integer of at least ``least``. Without it ``--workers 0`` served with one worker,
    ``--max-body-bytes 0`` or ``--max-inputs 0`` started a service that refuses every request, and
    ``--graceful-timeout -1`` was handed to uvicorn as is: each a typo the operator learnt of from the traffic."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"{number} is too small: give {least} or more")
        return number

    return parse


def configure_logging() -> None:
    """The server is an application, so it configures structlog: JSON lines on stdout (audit events,
    access logs, reloads). The library itself never does this."""
    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def run(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401

        if args.otel:
            import opentelemetry.metrics  # noqa: F401
    except ImportError as exc:
        print(f"guardrail: serve needs the [serve] extra ({exc.name} is missing): "
              "pip install 'guardrail-sdk[serve]' (and 'guardrail-sdk[otel]' for --otel)", file=sys.stderr)  # fmt: skip
        return 2
    from guardrail.policy import load_policy

    load_policy(args.policy)  # a bad policy fails here (exit 2 with file:line), not in a worker
    from guardrail.serve.auth import load_tokens

    load_tokens(args.tokens_file)  # and a token source that holds none (exit 2 naming it), before any socket
    from guardrail.serve import launch

    sock = launch.bind(args.host, args.port)  # here, so port 0's port is known; a port in use fails here (exit 2)
    config: dict[str, Any] = {
        "policy": args.policy,
        "tokens_file": args.tokens_file,
        "max_body_bytes": args.max_body_bytes,
        "max_inputs": args.max_inputs,
        "reload": False if args.no_reload else None,
        "metrics_enabled": not args.no_metrics,
        "opentelemetry": args.otel,
    }
    common: dict[str, Any] = {
        "access_log": False,  # access logs are structlog events (guardrail.http_request)
        "log_level": args.log_level,
        "timeout_graceful_shutdown": args.graceful_timeout,
    }
    configure_logging()
    if args.workers <= 1:
        from guardrail.serve.app import create_app

        try:
            app = create_app(**config)  # a bad --tokens-file fails here (exit 2)
        except BaseException:
            sock.close()  # not left bound until the collector finds it (a caller that goes on, a test)
            raise
        return launch.serve(app, sock, **common)
    os.environ["GUARDRAIL_SERVE_CONFIG"] = json.dumps(config)
    os.environ[ENV_JSON_LOGS] = "1"
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not args.no_metrics:
        folder = tempfile.mkdtemp(prefix="guardrail-metrics-")  # every worker's counters, summed by /metrics
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return launch.serve("guardrail.serve.app:app_from_env", sock, factory=True, workers=args.workers, **common)
