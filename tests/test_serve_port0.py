"""``guardrail serve --port 0``: the kernel picks a free port, and the command says which one it bound.

The real command runs as a subprocess, the way a test harness or a supervisor starts it: it reads the
``guardrail serve listening on URL`` line from stderr (stdout stays JSON lines, where the same address is a
``guardrail.serve_listening`` event), calls the service at once, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from guardrail.cli import main
from guardrail.serve import cli, launch

POLICY = "version: 1\nname: port0\ninput:\n  rules:\n    - {category: pii, action: redact, entities: [email]}\n"
LISTENING = re.compile(r"^guardrail serve listening on (http://127\.0\.0\.1:(\d+))$")


@pytest.fixture
def policy(tmp_path: Path) -> str:
    """A policy of pattern rules only: the service starts without loading the bundled model."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


class Served:
    """``guardrail serve`` in a subprocess; stderr read line by line in a thread (never a blocking read)."""

    def __init__(self, *args: str, tmp_path: Path) -> None:
        self.out_path = tmp_path / "stdout.jsonl"
        self._out = self.out_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("GUARDRAIL_API_TOKENS", None)
        env.pop("GUARDRAIL_API_TOKENS_FILE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guardrail.cli", "serve", *args, "--no-reload", "--log-level", "warning"],
            stdout=self._out,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.err: list[str] = []
        self.stopped = False
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def address(self, timeout: float = 120) -> tuple[str, int]:
        """The URL and port from the announcement line (fails with stderr if the process ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no 'listening on' line:\n" + "\n".join(self.err))
            if line is None:
                pytest.fail(f"guardrail serve ended ({self.proc.wait()}):\n" + "\n".join(self.err))
            self.err.append(line)
            if m := LISTENING.match(line):
                return m.group(1), int(m.group(2))

    def stop(self) -> int:
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self._reader.join(60)  # the pipe's end: the process has exited
            assert self.proc.stderr is not None
            self.proc.stderr.close()
            self._out.close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out_path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if not s.stopped:
            s.stop()


@pytest.mark.slow
def test_port_0_binds_a_free_port_and_says_which(policy: str, tmp_path: Path, served: list[Served]) -> None:
    srv = Served("--port", "0", "--policy", policy, tmp_path=tmp_path)
    served.append(srv)
    url, port = srv.address()
    assert port != 0
    # said once the service has started: it answers at once, no polling
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/readyz").status_code == 200
    r = httpx.post(url + "/v1/check", json={"text": "write to bob@example.com"})
    assert r.status_code == 200 and r.json()["text"] == "write to <EMAIL_1>"
    srv.stop()
    events = srv.events()  # stdout: JSON lines only, the address among them
    listening = [e for e in events if e["event"] == "guardrail.serve_listening"]
    assert listening == [{**listening[0], "url": url, "host": "127.0.0.1", "port": port}]
    names = [e["event"] for e in events]
    assert names.index("guardrail.serve_started") < names.index("guardrail.serve_listening")
    assert names[-1] == "guardrail.serve_stopped"


@pytest.mark.slow
def test_two_servers_on_port_0_get_two_ports(policy: str, tmp_path: Path, served: list[Served]) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        served.append(Served("--port", "0", "--policy", policy, tmp_path=tmp_path / folder))
    a, b = served
    (url_a, port_a), (url_b, port_b) = a.address(), b.address()
    assert port_a != port_b
    assert httpx.get(url_a + "/healthz").status_code == httpx.get(url_b + "/healthz").status_code == 200


@pytest.mark.slow
def test_port_0_with_workers_is_said_by_the_supervisor(policy: str, tmp_path: Path, served: list[Served]) -> None:
    srv = Served("--port", "0", "--workers", "2", "--policy", policy, tmp_path=tmp_path)
    served.append(srv)
    url, _ = srv.address()
    # the socket listens before the workers are up: a request made now waits in the backlog for one of them
    assert httpx.get(url + "/healthz", timeout=120).json() == {"status": "ok"}
    r = httpx.post(url + "/v1/check", json={"text": "hello"}, timeout=60)
    assert r.json()["action"] == "allow"
    assert srv.stop() == 0


def test_port_0_reaches_the_server_with_a_bound_socket(
    policy: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: the parser takes 0, and uvicorn is handed a socket the kernel gave a port."""
    got: list[tuple[Any, socket.socket, dict[str, Any]]] = []

    def fake_serve(app: Any, sock: socket.socket, **options: Any) -> int:
        got.append((app, sock, options))
        sock.close()
        return 0

    monkeypatch.setattr(launch, "serve", fake_serve)
    monkeypatch.setattr(cli, "configure_logging", lambda: None)  # the app's logging, not the test session's
    for key in ("GUARDRAIL_SERVE_CONFIG", cli.ENV_JSON_LOGS):  # what the command sets for its workers: undone after
        monkeypatch.delenv(key, raising=False)
    assert main(["serve", "--port", "0", "--policy", policy, "--workers", "2", "--no-metrics"]) == 0
    (app, sock, options) = got[0]
    assert app == "guardrail.serve.app:app_from_env" and options["workers"] == 2 and options["factory"] is True
    assert isinstance(sock, socket.socket) and sock.fileno() == -1  # a real socket (closed by the fake)


def test_the_bound_socket_and_its_url() -> None:
    sock = launch.bind("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert launch.url_of(sock) == f"http://127.0.0.1:{port}"
    finally:
        sock.close()
    if socket.has_ipv6:
        try:
            six = launch.bind("::1", 0)
        except OSError:
            return  # no IPv6 loopback here
        try:
            assert launch.url_of(six) == f"http://[::1]:{six.getsockname()[1]}"
        finally:
            six.close()


def test_a_port_in_use_is_an_error_naming_the_address(policy: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--policy", policy]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
