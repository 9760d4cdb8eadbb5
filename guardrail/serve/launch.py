"""Starting uvicorn on a socket ``guardrail serve`` bound itself, so the address is known and announced.

``--port 0`` asks the kernel for a free port; only the bound socket knows which one it got, so the command
binds it here (as ``uvicorn.Config.bind_socket`` would) and hands it to uvicorn's ``Server`` (one process)
or ``Multiprocess`` supervisor (``--workers N``, which shares one socket between its workers anyway).

The address is announced twice, for two readers:

* stdout, the service's JSON log stream, gets a ``guardrail.serve_listening`` event with ``url``, ``host``
  and ``port`` (stdout stays pure JSON lines, so log shippers and ``| jq`` keep working);
* stderr gets the sentence ``guardrail serve listening on http://HOST:PORT``, flushed, for people and for
  harnesses that just match a line.

One process: both come once uvicorn has started, i.e. after the app's start-up (model loaded, warm-up
check done), so a reader can call the service at once. Workers: the supervisor says it as soon as the
socket is listening (it cannot know when each worker is warm); connections made before a worker accepts
wait in the listen backlog, and ``/readyz`` says when the model is warm.

This module imports uvicorn: ``guardrail.serve.cli`` imports it only inside ``run``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

__all__ = ["announce", "bind", "serve", "url_of"]

_log = structlog.get_logger("guardrail")


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)``; port 0 gets a free port from the kernel.

    Mirrors ``uvicorn.Config.bind_socket``: IPv6 when the host has a colon, ``SO_REUSEADDR``, inheritable
    (worker processes use it). Raises OSError naming the address, which the CLI reports as its error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket: the address it really has (the kernel's port for port 0,
    the resolved address for a name such as ``localhost``)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def announce(sock: socket.socket) -> None:
    url = url_of(sock)
    host, port = sock.getsockname()[:2]
    _log.info("guardrail.serve_listening", url=url, host=host, port=port)
    print(f"guardrail serve listening on {url}", file=sys.stderr, flush=True)
    sys.stdout.flush()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's Server, saying where it listens once it has started (it logs nothing itself when it is
    given sockets: it assumes a supervisor already did)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self._sock = sock

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:  # a SIGTERM during start-up: it shuts down at once, unannounced
            announce(self._sock)


def serve(app: Any, sock: socket.socket, *, workers: int = 1, **options: Any) -> int:
    """Run uvicorn on ``sock`` until it is stopped (SIGINT/SIGTERM). The exit status is uvicorn's:
    0, or 3 (``STARTUP_FAILURE``) when one process could not start (its app's start-up failed)."""
    try:
        if workers > 1:  # ``app`` is an import string here, as uvicorn requires for workers
            config = uvicorn.Config(app, workers=workers, **options)
            sock.listen(config.backlog)  # connections wait in the backlog from now until a worker accepts
            announce(sock)
            with contextlib.suppress(KeyboardInterrupt):
                Multiprocess(config, sockets=[sock]).run()
            return 0
        server = _AnnouncingServer(uvicorn.Config(app, **options), sock)
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: SIGINT is raised again after the shutdown
            server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE
    finally:
        sock.close()
