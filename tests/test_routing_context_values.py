"""Routing context values that are booleans or numbers match routes written with the same YAML values.

JSON carries ``true`` and ``2.0`` (a ``/v1/check`` body, a LiteLLM key's metadata) and Python code passes
``True``; a policy writes ``match: {kids: true}`` or ``{tier: 2}``. ``guardrail.routing.context_text`` is the
one rule that turns both sides into the text compared (``str(True)`` was ``"True"``, which no route written
``true`` matched, so such requests were silently decided by the parent policy). Through the real paths:
the Python API (sync, async, a ``Call``), ``guardrail serve`` over HTTP, and the LiteLLM proxy plugin.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import Action, Guard
from guardrail.call import Call
from guardrail.policy import load_policy
from guardrail.routing import Route, context_text
from guardrail.serve import create_app
from guardrail.testing import FakeClassifier

FAKE = FakeClassifier(rules={"damn": {"profanity": 0.8}})
ORG = """version: 1
name: org
input:
  rules:
    - {category: profanity, threshold: 0.5, action: log}
output:
  rules:
    - {category: profanity, threshold: 0.5, action: log}
routes:
  - match: {kids: true}          # a YAML boolean
    policy: ./kids.yaml
  - match: {tier: 2}             # a YAML integer
    policy: ./tier2.yaml
  - match: {ratio: 0.5}          # a YAML float
    policy: ./half.yaml
  - match: {beta: [false, 3.0]}  # a list of them
    policy: ./beta.yaml
"""


def _target(name: str) -> str:
    rules = "  rules:\n    - {category: profanity, threshold: 0.5, action: block}\n"
    return f"version: 1\nname: {name}\ninput:\n{rules}output:\n{rules}"


@pytest.fixture
def org(tmp_path: Path) -> Path:
    for name in ("kids", "tier2", "half", "beta"):
        (tmp_path / f"{name}.yaml").write_text(_target(name))
    path = tmp_path / "org.yaml"
    path.write_text(ORG)
    return path


ROUTED = [
    ({"kids": True}, "kids"),
    ({"kids": "true"}, "kids"),  # the string a header or `--context kids=true` gives
    ({"kids": False}, "org"),
    ({"tier": 2}, "tier2"),
    ({"tier": 2.0}, "tier2"),  # JSON has one number type: many encoders send 2 as 2.0
    ({"tier": "2"}, "tier2"),
    ({"tier": 2.5}, "org"),
    ({"ratio": 0.5}, "half"),
    ({"ratio": "0.5"}, "half"),
    ({"beta": False}, "beta"),
    ({"beta": 3}, "beta"),
    ({"beta": True}, "org"),
    ({"kids": None, "tier": 2}, "tier2"),  # None: not given
    # a string is never reinterpreted: "True" is not the boolean, "2.0" is not the number
    ({"kids": "True"}, "org"),
    ({"tier": "2.0"}, "org"),
]


@pytest.mark.parametrize(("context", "policy"), ROUTED, ids=[f"{c}->{p}" for c, p in ROUTED])
async def test_the_python_api_routes_booleans_and_numbers_like_the_yaml_wrote_them(
    org: Path, context: dict[str, Any], policy: str
) -> None:
    action = Action.LOG if policy == "org" else Action.BLOCK
    with Guard(org, classifiers=FAKE) as g:
        assert g.policy.select(context).name == policy
        for d in (
            g.check_input("damn printer", context=context),
            await g.acheck_input("damn printer", context=context),
            g.check_output("damn printer", prompt="hi", context=context),
            await g.acheck_output("damn printer", prompt="hi", context=context),
        ):
            assert (d.policy, d.action) == (policy, action)
        call = Call(g, context=context)
        assert call.route("damn printer").name == policy
        assert (await call.acheck_input("damn printer")).policy == policy


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"kids": [True]}, "context['kids']: a routing context value is a string, number or boolean, not list"),
        ({"tier": {"n": 2}}, "context['tier']: a routing context value is a string, number or boolean, not dict"),
        ({"kids": b"true"}, "not bytes"),
        ({1: "x"}, "routing context keys are strings, not int"),
    ],
)
async def test_a_context_value_no_route_could_match_is_refused_by_name(
    org: Path, context: dict[Any, Any], message: str
) -> None:
    """Not ``str()`` of it, which no route was written with: the request would take the parent policy."""
    with Guard(org, classifiers=FAKE) as g:
        with pytest.raises(TypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
            g.check_input("damn printer", context=context)
        with pytest.raises(TypeError, match="routing context"):
            await g.acheck_input("damn printer", context=context)


def test_the_one_rule() -> None:
    assert [context_text(v) for v in (True, False, 2, 2.0, -0.0, 0.5, 1e-07, 1e16, "007", "True")] == [
        "true", "false", "2", "2", "0", "0.5", "1e-07", "10000000000000000", "007", "True",
    ]  # fmt: skip
    assert context_text(float("inf")) == "inf"


# -- guardrail serve: POST /v1/check over HTTP ------------------------------------------------------------


class _Server:
    """uvicorn serving the app on a free port of 127.0.0.1, in a thread (as tests/test_serve.py does)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, ws="none"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Server:
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


@pytest.fixture
def served(org: Path) -> Iterator[str]:
    with Guard(org, classifiers=FAKE) as g, _Server(create_app(guard=g, tokens=[])) as srv:
        yield srv.url


@pytest.mark.slow
@pytest.mark.parametrize(
    ("context", "policy"),
    [(c, p) for c, p in ROUTED if None not in c.values()],
    ids=[json.dumps(c) for c, _ in ROUTED if None not in c.values()],
)
def test_serve_check_routes_a_json_boolean_or_number_like_the_yaml_route(
    served: str, context: dict[str, Any], policy: str
) -> None:
    """The body's ``context`` as JSON writes it (``true``, ``2.0``), through the service's own parsing."""
    body = '{"text": "damn printer", "context": ' + json.dumps(context) + "}"
    for stage in ("input", "output"):
        raw = body[:-1] + f', "stage": "{stage}"}}'
        r = httpx.post(served + "/v1/check", content=raw, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        assert (r.json()["policy"], r.json()["action"]) == (policy, "log" if policy == "org" else "block")


@pytest.mark.slow
def test_serve_check_refuses_a_context_value_that_is_not_a_scalar(served: str) -> None:
    r = httpx.post(served + "/v1/check", json={"text": "damn printer", "context": {"kids": [True]}}, timeout=30)
    assert r.status_code == 422 and "context" in r.text


# -- the LiteLLM proxy plugin: a virtual key's and a team's metadata -----------------------------------------


def _proxy_data(**metadata: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "damn printer"}], "metadata": metadata,
            "litellm_call_id": None}  # fmt: skip


def test_proxy_context_reads_key_and_team_metadata_by_the_one_rule() -> None:
    pytest.importorskip("litellm")
    from guardrail.adapters.litellm import proxy_context

    d = _proxy_data(
        headers={"x-guardrail-context": "kids=false, route=/chat"},
        user_api_key_team_id="team-7",
        user_api_key_team_metadata={"guardrail_context": {"tier": 2.0, "ratio": 0.5, "unset": None}},
        user_api_key_alias="kids-key",
        user_api_key_metadata={"guardrail_context": {"kids": True}},
    )
    assert proxy_context(d) == {
        "kids": "true", "route": "/chat", "team": "team-7", "tier": "2", "ratio": "0.5", "key": "kids-key",
    }  # fmt: skip
    bad = _proxy_data(user_api_key_alias="k", user_api_key_metadata={"guardrail_context": {"tenant": ["a", "b"]}})
    with pytest.raises(TypeError, match=r"user_api_key_metadata\.guardrail_context: context\['tenant'\]: .* not list"):
        proxy_context(bad)


@pytest.mark.parametrize(
    ("key_context", "policy"), [({"kids": True}, "kids"), ({"tier": 2.0}, "tier2"), ({"kids": False}, "org")]
)
async def test_a_keys_boolean_or_number_metadata_routes_the_proxy_request(
    org: Path, key_context: dict[str, Any], policy: str
) -> None:
    """The admin's route on a virtual key is taken, not silently skipped: the plugin's real pre-call hook."""
    pytest.importorskip("litellm")
    from guardrail.adapters.litellm import GuardrailLiteLLM

    with Guard(org, classifiers=FAKE) as g:
        plugin = GuardrailLiteLLM(guard=g, guardrail_name="gr")
        md = {"user_api_key_alias": "k", "user_api_key_metadata": {"guardrail_context": key_context}}
        out = await plugin.async_pre_call_hook(None, None, _proxy_data(**md), "completion")
        (entry,) = out["metadata"]["guardrail_decisions"]
        assert (entry["policy"], entry["action"]) == (policy, "log" if policy == "org" else "block")


# -- the property: a YAML scalar written in a route, the same value sent as JSON ------------------------------

_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _load_route(tmp_path: Path, value: Any) -> Route:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "name": "p", "routes": [{"match": {"k": value}, "policy": "monitor"}]})
    )
    (route,) = load_policy(path).routes
    return route


def _same(a: Any, b: Any) -> bool:
    """JSON's equality of two scalars: a boolean is never a number; 2 and 2.0 are one number."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@settings(max_examples=60, deadline=None)
@given(written=_SCALARS, sent=_SCALARS)
def test_a_route_written_in_yaml_matches_exactly_the_same_value_sent_as_json(
    tmp_path_factory: pytest.TempPathFactory, written: Any, sent: Any
) -> None:
    route = _load_route(tmp_path_factory.mktemp("p"), written)
    as_json = json.loads(json.dumps(written))
    assert route.matches({"k": as_json})
    if not isinstance(written, bool) and float(written) == written and float(written).is_integer():
        other = int(written) if isinstance(written, float) else float(written)  # 2 <-> 2.0, when exact
        assert route.matches({"k": json.loads(json.dumps(other))})
    assert route.matches({"k": json.loads(json.dumps(sent))}) == _same(written, sent)
