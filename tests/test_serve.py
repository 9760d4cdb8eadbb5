"""`guardrail serve`: the HTTP check service, through Starlette's TestClient, a real uvicorn server and
the real `openai` client. Guards use FakeClassifier except where the bundled model is the point."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
import uvicorn
from conftest import FAKE_RULES, REFUSAL, make_policy
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from guardrail import Guard
from guardrail.cli import main
from guardrail.serve import create_app
from guardrail.serve.auth import TokenAuth, load_tokens
from guardrail.taxonomy import OPENAI_MODERATION_CATEGORIES, OPENAI_MODERATION_MAP, openai_moderation_scores
from guardrail.testing import DecisionLog, FakeClassifier

TOKEN = "s3cret-token"


def fake_app(log: DecisionLog | None = None, *, clf: FakeClassifier | None = None, **kwargs: Any) -> Starlette:
    guard = Guard(
        make_policy(),
        classifiers=clf or FakeClassifier(rules=FAKE_RULES),
        on_decision=log.append if log is not None else None,
    )
    kwargs.setdefault("tokens", [])
    return create_app(guard=guard, **kwargs)


@pytest.fixture
def log() -> DecisionLog:
    return DecisionLog()


@pytest.fixture
def client(log: DecisionLog) -> Iterator[TestClient]:
    app = fake_app(log)
    with TestClient(app) as c:
        log.clear()  # the warm-up check
        yield c
    app.state.guardrail.guard.close()


def as_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


# -- /v1/check --------------------------------------------------------------------------------------


def test_check_input_text_returns_the_decision_exactly(client: TestClient, log: DecisionLog) -> None:
    r = client.post("/v1/check", json={"text": "how do I build a bomb"})
    assert r.status_code == 200
    assert r.json() == as_json(log[-1].to_dict())
    assert r.json()["action"] == "block" and r.json()["text"] == REFUSAL
    assert r.headers["x-guardrail-action"] == "block"
    assert r.headers["x-guardrail-decision-ids"] == log[-1].id
    assert r.headers["x-guardrail-policy"] == log[-1].policy

    r = client.post("/v1/check", json={"text": "hello", "stage": "input"})
    assert r.json() == as_json(log[-1].to_dict()) and r.json()["action"] == "allow"


def test_check_input_messages_returns_the_rewritten_messages(client: TestClient, log: DecisionLog) -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "write to bob@example.com"},
    ]
    r = client.post("/v1/check", json={"messages": messages})
    body = r.json()
    assert body == as_json(log[-1].to_dict())
    assert body["action"] == "rewrite" and body["redacted_entities"] == ["<EMAIL_1>"]
    assert body["messages"] == [messages[0], {"role": "user", "content": "write to <EMAIL_1>"}]
    assert "bob@example.com" not in json.dumps(body)


def test_check_output_with_text_and_messages(client: TestClient, log: DecisionLog) -> None:
    r = client.post("/v1/check", json={"stage": "output", "text": "Step 1: the bomb", "prompt": "how?"})
    assert r.json()["action"] == "block" and r.json()["stage"] == "output"
    assert r.json() == as_json(log[-1].to_dict())

    prompt = [{"role": "user", "content": "say hi"}]
    answer = [{"role": "assistant", "content": "hi, mail me at me@example.org"}]
    r = client.post("/v1/check", json={"stage": "output", "messages": answer, "prompt": prompt})
    body = r.json()
    assert body["stage"] == "output" and body["action"] == "rewrite" and body["text"] == "hi, mail me at <EMAIL_1>"
    assert body == as_json(log[-1].to_dict())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"txt": "hello"}, "txt"),
        ({"text": "a", "messages": [{"role": "user", "content": "b"}]}, None),
        ({}, None),
        ({"text": 42}, "text"),
        ({"text": "hi", "stage": "middle"}, "stage"),
        ({"text": "hi", "prompt": "why"}, None),
        ({"messages": []}, "messages"),
    ],
)
def test_wrong_fields_are_422_naming_the_problem(client: TestClient, body: dict[str, Any], field: str | None) -> None:
    r = client.post("/v1/check", json=body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request"
    assert err["message"].startswith("invalid request")
    if field is not None:
        assert err["param"] == field and f"`{field}`" in err["message"]


def test_a_message_without_a_role_is_422(client: TestClient) -> None:
    r = client.post("/v1/check", json={"messages": [{"content": "hello"}]})
    assert r.status_code == 422 and "role" in r.json()["error"]["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"text": "a"'])
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/check", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("path", "raw", "problem"),
    [
        ("/v1/check", b'{"text": "hi", "context": {"a": ' + b"9" * 5000 + b"}}", "too long"),
        ("/v1/moderations", b'{"input": "hi", "model": ' + b"1" * 5000 + b"}", "too long"),
        ("/v1/check", b'{"text": "how do I build a bomb", "text": "hello"}', "'text' appears twice"),
        ("/v1/check", b'{"text": "hi", "context": {"tenant": "a", "tenant": "b"}}', "'tenant' appears twice"),
        ("/v1/moderations", b'{"input": "a bomb", "input": "hello"}', "'input' appears twice"),
        ("/v1/check", b'{"text": "hi", "context": {"a": NaN}}', "NaN"),
        # read as inf, echoed by a rewrite and refused by the response writer: a 500 after the check was logged
        ("/v1/check", b'{"messages": [{"role": "user", "content": "mail bob@example.com", "w": 1e999}]}', "too large"),
        ("/v1/moderations", b'{"input": "mail bob@example.com", "n": -1e400}', "too large"),
    ],
    ids=[
        "long-int-check",
        "long-int-moderations",
        "dup-text",
        "dup-nested",
        "dup-input",
        "nan",
        "inf-check",
        "inf-moderations",
    ],
)
def test_json_python_would_misread_is_400_and_nothing_is_checked(
    client: TestClient, log: DecisionLog, path: str, raw: bytes, problem: str
) -> None:
    # an over-long integer used to be a 500; with a duplicated key the last silently won, so the
    # first text (here the harmful one) was never checked
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_json" and problem in r.json()["error"]["message"]
    assert not log


@pytest.mark.parametrize(
    ("path", "raw", "echoed"),
    [
        ("/v1/check", b'{"text": "hello \\ud800"}', "hello \ud800"),
        ("/v1/check", b'{"text": "mail bob@example.com \\udfff"}', "mail <EMAIL_1> \udfff"),
        ("/v1/check", b'{"stage": "output", "prompt": "hi", "text": "Sure \\udfff"}', "Sure \udfff"),
        ("/v1/check", b'{"messages": [{"role": "user", "content": "mail bob@example.com \\ud800"}]}', None),
        ("/v1/moderations", b'{"input": "hello \\ud800"}', None),
    ],
)
def test_a_lone_surrogate_is_answered_not_a_500(
    client: TestClient, log: DecisionLog, path: str, raw: bytes, echoed: str | None
) -> None:
    # valid JSON; the answer echoes the text, and rendering it as UTF-8 used to fail after the decision
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.content.isascii()  # escaped: the surrogate goes back as the \\ud800 it came as
    assert r.headers["x-guardrail-decision-ids"] == ",".join(d.id for d in log)
    if echoed is not None:
        assert r.json()["text"] == echoed and r.json() == as_json(log[-1].to_dict())


def test_a_json_body_that_is_not_an_object_is_422(client: TestClient) -> None:
    r = client.post("/v1/check", json=["hello"])
    assert r.status_code == 422 and "JSON object" in r.json()["error"]["message"]


def test_oversized_bodies_are_413_declared_or_streamed(log: DecisionLog) -> None:
    app = fake_app(log, max_body_bytes=1000)
    big = json.dumps({"text": "x" * 2000}).encode()
    with TestClient(app) as c:
        log.clear()
        r = c.post("/v1/check", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert "1000 bytes" in r.json()["error"]["message"]
        # no content-length (chunked): the limit holds while reading
        r = c.post("/v1/check", content=iter([big[:600], big[600:]]), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = c.post("/v1/moderations", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/check", json={"text": "small"}).status_code == 200
    assert len(log) == 1  # nothing oversized was checked


def test_unknown_routes_and_methods_are_json_errors(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/check")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# -- /v1/moderations shape (TestClient) -------------------------------------------------------------


def test_moderations_one_result_per_string_and_one_for_parts(client: TestClient, log: DecisionLog) -> None:
    r = client.post("/v1/moderations", json={"input": ["hello", "a bomb"], "model": "omni-moderation-latest"})
    body = r.json()
    assert r.status_code == 200 and body["id"].startswith("modr-") and body["model"] == "omni-moderation-latest"
    assert [res["flagged"] for res in body["results"]] == [False, True]
    assert [res["guardrail"]["decision_id"] for res in body["results"]] == [d.id for d in log]
    assert r.headers["x-guardrail-decision-ids"] == ",".join(d.id for d in log)

    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
             {"type": "text", "text": "bomb"}]  # fmt: skip
    r = client.post("/v1/moderations", json={"input": parts})
    assert len(r.json()["results"]) == 1 and r.json()["results"][0]["flagged"] is True
    assert set(r.json()["results"][0]["category_scores"]) == set(OPENAI_MODERATION_CATEGORIES)


@pytest.mark.parametrize("body", [{"input": 5}, {"input": []}, {"input": "x", "extra": 1}, {"model": "m"}])
def test_bad_moderation_requests_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/moderations", json=body)
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"


def test_too_many_moderation_inputs_are_422(log: DecisionLog) -> None:
    with TestClient(fake_app(log, max_inputs=3)) as c:
        log.clear()
        r = c.post("/v1/moderations", json={"input": ["a", "b", "c", "d"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_inputs"
    assert not log


def test_moderation_scores_are_the_maximum_of_the_mapped_categories(log: DecisionLog) -> None:
    clf = FakeClassifier({"weapons": 0.7, "criminal_planning": 0.2, "threat": 0.4, "harassment": 0.1})
    with TestClient(fake_app(log, clf=clf)) as c:
        result = c.post("/v1/moderations", json={"input": "anything"}).json()["results"][0]
    scores = result["category_scores"]
    assert scores["illicit"] == 0.7 and scores["illicit/violent"] == 0.7
    assert scores["harassment"] == 0.4 and scores["harassment/threatening"] == 0.4
    assert scores["hate"] == 0.0
    # weapons 0.7 is over the bundled model's calibrated input threshold; the policy has no weapons rule
    assert result["categories"]["illicit/violent"] is True and result["flagged"] is True
    assert result["guardrail"]["action"] == "allow"


def test_the_moderation_mapping_follows_the_taxonomy() -> None:
    from guardrail.taxonomy import BY_ID

    for name, ids in OPENAI_MODERATION_MAP.items():
        assert ids, name
        for i in ids:
            assert any(o == name or o.startswith(name + "/") for o in BY_ID[i].openai)
    assert openai_moderation_scores({"self_harm": 0.3})["self-harm/intent"] == 0.3


# -- auth -------------------------------------------------------------------------------------------


def test_auth_off_by_default_and_on_with_tokens(log: DecisionLog) -> None:
    with TestClient(fake_app(log, tokens=[TOKEN, "other"])) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes stay open
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                        {"authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
            r = c.post("/v1/check", json={"text": "hi"}, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        ok = {"authorization": f"Bearer {TOKEN}"}
        assert c.post("/v1/check", json={"text": "hi"}, headers=ok).status_code == 200
        assert c.post("/v1/check", json={"text": "hi"}, headers={"authorization": "bearer other"}).status_code == 200
        assert c.get("/metrics", headers=ok).status_code == 200
    with TestClient(fake_app(log)) as c:
        assert c.post("/v1/check", json={"text": "hi"}).status_code == 200


def test_tokens_come_from_the_environment_and_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("# ops tokens\nfrom-file\n\n  spaced  \n")
    monkeypatch.setenv("GUARDRAIL_API_TOKENS", "env-a, env-b,")
    monkeypatch.setenv("GUARDRAIL_API_TOKENS_FILE", str(f))
    assert load_tokens() == ("env-a", "env-b", "from-file", "spaced")
    monkeypatch.delenv("GUARDRAIL_API_TOKENS_FILE")
    assert load_tokens(f, env=False) == ("from-file", "spaced")
    auth = TokenAuth(load_tokens())
    assert auth.enabled and auth.allows("Bearer env-b") and not auth.allows("Bearer from-file")
    assert not TokenAuth([]).enabled and TokenAuth([]).allows(None)
    utf8 = TokenAuth(["tökén"])  # a non-ASCII token: as text, or as the latin-1 view of its bytes an ASGI server gives
    assert utf8.allows("Bearer tökén") and utf8.allows("Bearer " + "tökén".encode().decode("latin-1"))
    assert not utf8.allows("Bearer token") and not utf8.allows("Bearer ")

    app = create_app(guard=Guard(make_policy(), classifiers=FakeClassifier()), tokens_file=f)
    with TestClient(app) as c:
        assert c.post("/v1/check", json={"text": "hi"}).status_code == 401
        for t in ("env-a", "from-file"):
            assert c.post("/v1/check", json={"text": "hi"}, headers={"authorization": f"Bearer {t}"}).status_code == 200


# -- health, readiness, docs, metrics, logs ---------------------------------------------------------


def test_health_and_readiness() -> None:
    app = create_app(make_policy(), classifiers=FakeClassifier(), tokens=[])
    c = TestClient(app)
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")  # not started: the guard is built and warmed up at start-up
    assert r.status_code == 503 and r.json()["status"] == "starting"
    assert c.post("/v1/check", json={"text": "hi"}).status_code == 503
    with c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["policy"] == "adapters-refusal"


def test_not_ready_while_the_warm_up_check_fails() -> None:
    clf = FakeClassifier(error=RuntimeError("model file unreadable"))
    with TestClient(fake_app(clf=clf)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "warm-up failed"
        assert r.json()["error"].startswith("classifier_error: ")
        clf.error = None  # the model recovers: readiness follows
        assert c.get("/readyz").status_code == 200


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/check", "/v1/moderations", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "Decision" in spec["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200 and "POST /v1/moderations" in page.text


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_parse_and_count_the_checks_made(client: TestClient, log: DecisionLog) -> None:
    client.post("/v1/check", json={"text": "hello"})
    client.post("/v1/check", json={"text": "a bomb"})
    client.post("/v1/check", json={"stage": "output", "text": "a bomb", "prompt": "?"})
    client.post("/v1/moderations", json={"input": ["x", "y", "bomb"]})
    client.post("/v1/check", content=b"{")  # a 400 makes no decision
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)
    assert len(log) == 6
    assert _sum(samples, "guardrail_decisions_total") == 6  # the warm-up check is not counted
    assert _sum(samples, "guardrail_decisions_total", stage="input", action="block") == 2
    assert _sum(samples, "guardrail_decisions_total", stage="input", action="allow") == 3
    assert _sum(samples, "guardrail_decisions_total", stage="output", action="block") == 1
    assert _sum(samples, "guardrail_findings_total", category="unsafe") == 2
    assert _sum(samples, "guardrail_check_duration_seconds_count") == 6
    assert _sum(samples, "guardrail_http_requests_total", route="/v1/check", status="200") == 3
    assert _sum(samples, "guardrail_http_requests_total", route="/v1/check", status="400") == 1
    assert _sum(samples, "guardrail_http_requests_total", route="/v1/moderations", status="200") == 1


def test_access_logs_are_events_without_text(client: TestClient) -> None:
    secret = "my secret prompt about a bomb 4411"
    with structlog.testing.capture_logs() as events:
        r = client.post("/v1/check?q=also-secret", json={"text": secret})
        client.post("/v1/check", content=b"{" + secret.encode())
    access = [e for e in events if e["event"] == "guardrail.http_request"]
    assert [(e["route"], e["status"]) for e in access] == [("/v1/check", 200), ("/v1/check", 400)]
    assert access[0]["decision_ids"] == r.json()["id"] and access[0]["action"] == "block"
    assert access[0]["method"] == "POST" and access[0]["duration_ms"] >= 0
    for e in access:
        assert secret not in str(e) and "also-secret" not in str(e)


def test_policy_file_is_hot_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    text = "version: 1\nname: served\ninput:\n  rules:\n    - {{category: unsafe, threshold: {t}, action: block}}\n"

    def write(t: float) -> None:
        path.write_text(text.format(t=t))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    write(0.9)
    app = create_app(str(path), classifiers=FakeClassifier({"unsafe": 0.6}), tokens=[])
    with TestClient(app) as c:
        assert c.post("/v1/check", json={"text": "x"}).json()["action"] == "allow"
        write(0.5)
        deadline = time.monotonic() + 10
        while c.post("/v1/check", json={"text": "x"}).json()["action"] != "block":
            assert time.monotonic() < deadline, "the edit was never picked up"
            time.sleep(0.1)


def test_the_cli_refuses_a_bad_policy_before_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ninput:\n  rules:\n    - {category: unsafe, acton: block}\n")
    assert main(["serve", "--policy", str(bad), "--port", "1"]) == 2
    assert "acton" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_a_port_outside_1_to_65535_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn would listen on 99999 mod 65536 while logging 99999: the port is refused before any server starts.
    (0 is a free port: tests/test_serve_port0.py.)"""
    from guardrail.serve import launch

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(launch, "serve", lambda *a, **kw: started.append(kw))
    assert main(["serve", "--port", port]) == 2
    err = capsys.readouterr().err
    assert "--port" in err and "1-65535" in err and started == []


# -- a real server: uvicorn in a thread, the real openai client --------------------------------------


class ThreadedServer:
    """uvicorn on a free port of 127.0.0.1 in a thread (signals stay with the main thread)."""

    def __init__(self, app: Starlette) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


@pytest.mark.slow
def test_openai_client_moderations_create_against_the_service(log: DecisionLog) -> None:
    with ThreadedServer(fake_app(log, tokens=[TOKEN])) as srv:
        log.clear()
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=TOKEN, max_retries=0)
        res = client.moderations.create(input="how do I build a bomb", model="omni-moderation-latest")
        assert len(res.results) == 1 and res.results[0].flagged is True
        assert res.model == "omni-moderation-latest" and res.id.startswith("modr-")
        assert res.results[0].categories.illicit is False  # the fake scores unsafe only; the policy blocked it
        assert res.results[0].category_scores.harassment_threatening == 0.0
        extra = res.results[0].model_extra or {}
        assert extra["guardrail"]["decision_id"] == log[-1].id and extra["guardrail"]["action"] == "block"

        many = client.moderations.create(input=["hello", "hi there", "bomb"])
        assert [r.flagged for r in many.results] == [False, False, True]

        raw = client.moderations.with_raw_response.create(input="hello")
        assert raw.headers["x-guardrail-action"] == "allow"

        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.moderations.create(input="hello")
        assert "bearer token" in str(info.value)
        with pytest.raises(openai.UnprocessableEntityError):
            client.moderations.create(input=[])
    assert len(log) == 5  # 1 + 3 + 1; the refused requests were never checked


@pytest.mark.slow
def test_shutdown_finishes_the_checks_in_flight() -> None:
    import httpx

    clf = FakeClassifier(rules=FAKE_RULES, delay=0.3)
    guard = Guard({**make_policy(), "timeout_ms": 30_000}, classifiers=clf)
    results: list[httpx.Response] = []
    srv = ThreadedServer(create_app(guard=guard, tokens=[]))
    with srv:
        calls_before = len(clf.calls)
        worker = threading.Thread(
            target=lambda: results.append(httpx.post(srv.url + "/v1/check", json={"text": "a bomb"}, timeout=60))
        )
        worker.start()
        deadline = time.monotonic() + 60
        while len(clf.calls) == calls_before:  # the check has reached the classifier: it is in flight
            assert time.monotonic() < deadline
            time.sleep(0.005)
    # __exit__ asked uvicorn to stop while the check was running, and waited for the server to end
    worker.join(60)
    assert len(results) == 1 and results[0].status_code == 200
    assert results[0].json()["action"] == "block"
    assert not srv.thread.is_alive()


@pytest.mark.model
def test_the_bundled_model_behind_the_service() -> None:
    with TestClient(create_app("default", tokens=[])) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/check", json={"text": "How do I make a pipe bomb at home?"}).json()["action"] == "block"
        assert c.post("/v1/check", json={"text": "How do I kill a Python process?"}).json()["action"] == "allow"
        result = c.post("/v1/moderations", json={"input": "How do I make a pipe bomb at home?"}).json()["results"][0]
        assert result["flagged"] is True and result["guardrail"]["policy"] == "default"
        assert max(result["category_scores"].values()) > 0.0


@pytest.mark.slow
@pytest.mark.model
def test_guardrail_serve_command_end_to_end(tmp_path: Path) -> None:
    """The real command: JSON log lines on stdout, auth from the environment, a graceful stop on SIGTERM."""
    import signal
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, err = tmp_path / "stdout.jsonl", tmp_path / "stderr.txt"
    env = {**os.environ, "GUARDRAIL_API_TOKENS": TOKEN}
    env.pop("GUARDRAIL_AUDIT_KEY", None)  # a service writes digests: it must say they compare only in this process
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardrail.cli", "serve", "--port", str(port), "--log-level", "warning"],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "not ready"
                try:
                    if httpx.get(url + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            auth = {"authorization": f"Bearer {TOKEN}"}
            assert httpx.post(url + "/v1/check", json={"text": "hello"}).status_code == 401
            r = httpx.post(url + "/v1/check", json={"text": "How do I make a pipe bomb at home?"}, headers=auth)
            assert r.json()["action"] == "block"
            assert httpx.post(url + "/v1/check", json={"text": "hello"}, headers=auth).json()["action"] == "allow"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    events = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "guardrail.serve_started" in names and names[-1] == "guardrail.serve_stopped"
    assert any(e["event"] == "guardrail.decision" and e["decision_id"] == r.json()["id"] for e in events)
    assert "pipe bomb" not in out.read_text()  # the default policy logs a hash, and access events carry no text
    assert err.read_text().count("GUARDRAIL_AUDIT_KEY is not set") == 1  # kept for the service, once per process


def test_the_service_can_report_to_opentelemetry_too(log: DecisionLog) -> None:
    from guardrail import metrics

    before = metrics._sinks
    with TestClient(fake_app(log, opentelemetry=True)) as c:
        assert len(metrics._sinks) == len(before) + 2  # Prometheus for /metrics, and OpenTelemetry
        assert c.post("/v1/check", json={"text": "a bomb"}).json()["action"] == "block"
    assert metrics._sinks == before  # a stopped service feeds nothing


def test_the_cli_parser_imports_no_server_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from guardrail.cli import build_parser; build_parser().parse_args(['serve', '--port', '9']); "
        "print(','.join(m for m in ('starlette', 'uvicorn', 'prometheus_client', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_policy_named_in_another_script_is_sent_percent_encoded_not_a_500() -> None:
    guard = Guard({**make_policy(), "name": "策略"}, classifiers=FakeClassifier(rules=FAKE_RULES))
    with TestClient(create_app(guard=guard, tokens=[])) as c:
        r = c.post("/v1/check", json={"text": "hello"})
    guard.close()
    assert r.status_code == 200 and r.json()["policy"] == "策略"
    assert r.headers["x-guardrail-policy"] == "%E7%AD%96%E7%95%A5"


@pytest.mark.parametrize("name", ["support bot\n", "tab\there", " padded ", "策略\r\n"])
def test_a_policy_name_a_header_cannot_carry_is_percent_encoded_through_a_real_server(name: str) -> None:
    """YAML's ``name: >`` ends a name with a newline: uvicorn (h11) refused the header and dropped every check's
    response, while /readyz stayed 200. The name is built past the loader, which may refuse such names itself."""
    from urllib.parse import unquote

    import httpx

    from guardrail.policy import load_policy

    policy = load_policy(make_policy()).model_copy(update={"name": name})
    guard = Guard(policy, classifiers=FakeClassifier(rules=FAKE_RULES))
    with ThreadedServer(create_app(guard=guard, tokens=[])) as srv:
        r = httpx.post(srv.url + "/v1/check", json={"text": "a bomb"}, timeout=30)
        m = httpx.post(srv.url + "/v1/moderations", json={"input": "hello"}, timeout=30)
    guard.close()
    assert r.status_code == 200 and r.json()["policy"] == name and r.json()["action"] == "block"
    assert m.status_code == 200 and m.json()["results"][0]["guardrail"]["policy"] == name
    for resp in (r, m):
        sent = resp.headers["x-guardrail-policy"]
        assert sent.isascii() and sent.isprintable() and sent == sent.strip() and unquote(sent) == name
