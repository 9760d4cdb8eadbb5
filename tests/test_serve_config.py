"""What ``guardrail serve`` refuses to start with: a token source that holds no token (auth would silently be off),
and limits that make no sense (0 workers, a 0-byte body limit, no moderation inputs, a negative grace period).
Each is exit 2 with one line naming the problem, before any socket is bound or server started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import make_policy
from starlette.testclient import TestClient

from guardrail import Guard
from guardrail.cli import main
from guardrail.serve import cli, create_app, launch
from guardrail.serve.auth import load_tokens
from guardrail.testing import FakeClassifier

POLICY = "version: 1\nname: cfg\ninput:\n  rules:\n    - {category: pii, action: redact, entities: [email]}\n"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Servers the command would have started: none, when it refuses (the launch itself is not under test)."""
    calls: list[dict[str, Any]] = []

    def serve(app: Any, sock: Any, **kwargs: Any) -> int:
        sock.close()
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(launch, "serve", serve)
    monkeypatch.setattr(cli, "configure_logging", lambda: None)  # the app's logging, not the test session's
    monkeypatch.delenv("GUARDRAIL_API_TOKENS", raising=False)
    monkeypatch.delenv("GUARDRAIL_API_TOKENS_FILE", raising=False)
    return calls


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


def _serve(policy: str, *args: str) -> list[str]:
    return ["serve", "--policy", policy, "--port", "0", "--no-reload", *args]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- a token source that holds no token -------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "# tokens go here\n\n", "   \n# one day\n"])
def test_a_tokens_file_without_a_token_is_refused_naming_it(
    content: str, policy: str, tmp_path: Path, started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty mounted secret started the service with auth off, answering anyone."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(content)
    assert main(_serve(policy, "--tokens-file", str(tokens))) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(tokens) in line and "no token" in line
    assert started == []


@pytest.mark.parametrize("value", [" , ", "", ",,,"])
def test_a_tokens_variable_without_a_token_is_refused_naming_it(
    value: str, policy: str, started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("GUARDRAIL_API_TOKENS", value)
    assert main(_serve(policy)) == 2
    line = _one_line(capsys.readouterr().err)
    assert "GUARDRAIL_API_TOKENS" in line and "no token" in line
    assert started == []


def test_a_tokens_file_variable_naming_an_empty_file_is_refused(
    policy: str, tmp_path: Path, started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tokens = tmp_path / "secret"
    tokens.write_text("# rotated out\n")
    monkeypatch.setenv("GUARDRAIL_API_TOKENS", "env-token")  # one source holding tokens does not excuse the other
    monkeypatch.setenv("GUARDRAIL_API_TOKENS_FILE", str(tokens))
    assert main(_serve(policy)) == 2
    line = _one_line(capsys.readouterr().err)
    assert "GUARDRAIL_API_TOKENS_FILE" in line and str(tokens) in line
    assert started == []


def test_no_token_source_at_all_still_serves_without_auth(policy: str, started: list[dict[str, Any]]) -> None:
    """Auth off stays a choice: configure no source (the command), or ``tokens=[]`` (``create_app``)."""
    assert main(_serve(policy)) == 0
    assert len(started) == 1


def test_create_app_refuses_an_empty_token_source_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARDRAIL_API_TOKENS_FILE", raising=False)
    empty = tmp_path / "tokens"
    empty.write_text("# none yet\n")
    guard = Guard(make_policy(), classifiers=FakeClassifier())
    with pytest.raises(ValueError, match="no token"):
        create_app(guard=guard, tokens=["t"], tokens_file=empty)
    monkeypatch.setenv("GUARDRAIL_API_TOKENS", " , ")
    with pytest.raises(ValueError, match="GUARDRAIL_API_TOKENS"):
        create_app(guard=guard)
    with pytest.raises(ValueError, match="GUARDRAIL_API_TOKENS"):
        load_tokens()
    with TestClient(create_app(guard=guard, tokens=[])) as c:  # the explicit choice: auth off
        assert c.post("/v1/check", json={"text": "hi"}).status_code == 200
    guard.close()


# -- limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--workers", "0"),
        ("--workers", "-2"),
        ("--max-body-bytes", "0"),
        ("--max-inputs", "0"),
        ("--graceful-timeout", "-1"),
        ("--max-inputs", "many"),
    ],
)
def test_limits_that_make_no_sense_are_usage_errors(
    option: str, value: str, policy: str, started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers 0`` served with one worker, ``--max-body-bytes 0`` / ``--max-inputs 0`` a service refusing every
    request, ``--graceful-timeout -1`` went to uvicorn as it was."""
    assert main(_serve(policy, option, value)) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and value in err
    assert started == []


def test_the_smallest_sensible_limits_are_accepted(policy: str, started: list[dict[str, Any]]) -> None:
    limits = ["--max-body-bytes", "1", "--max-inputs", "1", "--graceful-timeout", "0"]
    assert main(_serve(policy, *limits)) == 0
    assert started[0]["timeout_graceful_shutdown"] == 0


def test_create_app_refuses_limits_below_one() -> None:
    guard = Guard(make_policy(), classifiers=FakeClassifier())
    for limits in ({"max_body_bytes": 0}, {"max_inputs": 0}, {"max_inputs": -3}):
        with pytest.raises(ValueError, match="1 or more"):
            create_app(guard=guard, tokens=[], **limits)
    guard.close()
