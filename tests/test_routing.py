"""Routing: a policy hands a request to another policy by its context (tenant, route, model, script...)."""

from __future__ import annotations

import fnmatch
import inspect
import os
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import guardrail
from guardrail import Action, Guard
from guardrail.cli import main
from guardrail.errors import PolicyError
from guardrail.policy import load_policy
from guardrail.policytest import load_suite, run_suite
from guardrail.routing import Route
from guardrail.testing import FakeClassifier

FAKE = FakeClassifier(rules={"damn": {"profanity": 0.8}, "bomb": {"unsafe": 0.95}})
MAIN = """version: 1
name: main
input:
  rules:
    - {category: unsafe, threshold: 0.5, action: block}
    - {category: profanity, threshold: 0.5, action: log}
routes:
  - match: {tenant: [kids, school-*]}
    policy: ./kids.yaml
  - match: {tenant: acme, route: /chat}
    policy: tenants/acme.yaml
  - match: {script: Arabic}
    policy: monitor
"""
KIDS = """version: 1
name: kids
input:
  rules:
    - {category: unsafe, threshold: 0.5, action: block}
    - {category: profanity, threshold: 0.5, action: block}
"""
ACME = """version: 1
name: acme
input:
  rules:
    - {category: competitors, keywords: [globex], action: block}
output:
  rules:
    - {category: competitors, keywords: [globex], action: block}
"""


@pytest.fixture
def main_policy(tmp_path: Path) -> Path:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "kids.yaml").write_text(KIDS)
    (tmp_path / "tenants" / "acme.yaml").write_text(ACME)
    path = tmp_path / "main.yaml"
    path.write_text(MAIN)
    return path


@pytest.mark.parametrize(
    ("context", "text", "policy", "action"),
    [
        (None, "damn printer", "main", Action.LOG),
        ({"tenant": "kids"}, "damn printer", "kids", Action.BLOCK),
        ({"tenant": "school-42"}, "damn printer", "kids", Action.BLOCK),  # a glob
        ({"tenant": "acme", "route": "/chat"}, "is globex better?", "acme", Action.BLOCK),
        ({"tenant": "acme"}, "is globex better?", "main", Action.ALLOW),  # every key must match
        ({"tenant": "other"}, "damn printer", "main", Action.LOG),
        (None, "كيف حالك يا صديقي", "monitor", Action.ALLOW),  # script detected from the text
        ({"script": "Latin"}, "كيف حالك يا صديقي", "main", Action.ALLOW),  # the caller's context wins
    ],
)
async def test_the_context_selects_the_policy_and_the_decision_names_it(
    main_policy: Path, context: dict[str, str] | None, text: str, policy: str, action: Action
) -> None:
    with Guard(main_policy, classifiers=FAKE) as g:
        for d in (g.check_input(text, context=context), await g.acheck_input(text, context=context)):
            assert (d.policy, d.action) == (policy, action)
        msgs = [{"role": "user", "content": text}]
        assert g.check_input(msgs, context=context).policy == policy


async def test_the_output_stage_is_routed_and_the_audit_event_names_the_chosen_policy(main_policy: Path) -> None:
    ctx = {"tenant": "acme", "route": "/chat"}
    with Guard(main_policy, classifiers=FAKE) as g, structlog.testing.capture_logs() as logs:
        d = await g.acheck_output("Globex is cheaper.", prompt="alternatives?", context=ctx)
        assert d.policy == "acme" and d.action is Action.BLOCK
        assert g.check_output("Globex is cheaper.", prompt="alternatives?").policy == "main"
    assert [e["policy"] for e in logs if e["event"] == "guardrail.decision"] == ["acme", "main"]


def test_routes_nest_and_loops_are_refused_at_the_route_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\nname: a\nroutes:\n  - match: {tenant: x}\n    policy: b.yaml\n")
    (tmp_path / "b.yaml").write_text("version: 1\nname: b\nroutes:\n  - match: {tier: y}\n    policy: ./c.yaml\n")
    (tmp_path / "c.yaml").write_text("version: 1\nname: c\n")
    p = load_policy(tmp_path / "a.yaml")
    assert p.select({"tenant": "x", "tier": "y"}).name == "c" and p.select({"tenant": "x"}).name == "b"
    (tmp_path / "c.yaml").write_text("version: 1\nname: c\nroutes:\n  - match: {z: z}\n    policy: ./a.yaml\n")
    with pytest.raises(PolicyError, match=r"route loop: .*a.yaml -> .*b.yaml -> .*c.yaml -> .*a.yaml") as info:
        load_policy(tmp_path / "a.yaml")
    assert (info.value.file, info.value.line) == (str(tmp_path / "c.yaml"), 5)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("  - match: {tenant: x}\n    policy: ./missing.yaml\n", "routed policy not found"),
        ("  - match: {tenant: x}\n    policy: strictt\n", "did you mean 'strict'"),
        ("  - match: {}\n    policy: strict\n", "at least 1 item"),
        ("  - match: {tenant: x}\n    polcy: strict\n", "did you mean 'policy'"),
    ],
)
def test_policy_validate_reports_bad_routes_by_file_and_line(
    tmp_path: Path, route: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nname: p\nroutes:\n{route}")
    assert main(["policy", "validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"{path}:" in out and message in out


def test_validate_lists_the_routed_policies(main_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(main_policy)]) == 0
    assert "routes -> kids, acme, monitor" in capsys.readouterr().out


def test_a_routed_policy_must_be_covered_by_the_classifiers(main_policy: Path) -> None:
    with pytest.raises(PolicyError, match="'profanity' is not scored"):
        Guard(main_policy, classifiers=FakeClassifier(labels=["unsafe"]))


def test_hot_reload_watches_the_routed_files(main_policy: Path) -> None:
    kids = main_policy.parent / "kids.yaml"
    with Guard(main_policy, classifiers=FAKE, reload=True, reload_interval=0) as g:
        assert kids in g.policy.files
        assert g.check_input("damn", context={"tenant": "kids"}).action is Action.BLOCK
        kids.write_text(
            KIDS.replace("profanity, threshold: 0.5, action: block", "profanity, threshold: 0.5, action: log")
        )
        st_ = os.stat(kids)
        os.utime(kids, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
        assert g.check_input("damn", context={"tenant": "kids"}).action is Action.LOG


def test_a_policy_suite_case_carries_its_routing_context(main_policy: Path) -> None:
    suite = main_policy.parent / "suite.yaml"
    suite.write_text(
        "policy: main.yaml\ncases:\n"
        "  - {id: kid, context: {tenant: kids}, text: damn, expect: {action: block, must_fire: [profanity]}}\n"
        "  - {id: acme, context: {tenant: acme, route: /chat}, text: 'globex?',\n"
        "     expect: {action: block, must_fire: [competitors]}}\n"
    )
    result = run_suite(load_suite(suite), classifiers=FAKE)
    assert not result.failures


_values = st.text(alphabet="ab-*", min_size=1, max_size=4)


@given(
    match=st.dictionaries(st.sampled_from(["tenant", "route"]), st.lists(_values, min_size=1, max_size=2), min_size=1),
    ctx=st.dictionaries(st.sampled_from(["tenant", "route", "tier"]), st.text(alphabet="ab-", max_size=4)),
)
def test_a_route_matches_when_every_key_matches_one_of_its_values(
    match: dict[str, list[str]], ctx: dict[str, str]
) -> None:
    expected = all(k in ctx and any(fnmatch.fnmatchcase(ctx[k], v) for v in vs) for k, vs in match.items())
    assert Route(match={k: tuple(v) for k, v in match.items()}, policy="strict").matches(ctx) is expected


def test_a_script_route_reads_the_newest_user_message_not_the_system_prompt(main_policy: Path) -> None:
    msgs = [{"role": "system", "content": "You are a helpful assistant for a bank. " * 20},
            {"role": "user", "content": "كيف أفتح حسابا جديدا؟"}]  # fmt: skip
    with Guard(main_policy, classifiers=FAKE) as g:
        assert g.check_input(msgs).policy == "monitor"
        assert g.check_input([*msgs, {"role": "user", "content": "and in English please"}]).policy == "main"


def test_the_check_command_takes_a_routing_context(main_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["check", "--policy", str(main_policy), "is globex better?"]
    assert main([*args, "--context", "tenant=acme", "--context", "route=/chat"]) == 1
    assert "policy acme@" in capsys.readouterr().out
    assert main([*args, "--context", "tenant"]) == 2


async def test_a_wrapped_client_routes_by_its_context(main_policy: Path, stub: Any) -> None:
    """guardrail.wrap(guard, client, context=...): every check of that client is routed by the context."""
    msgs = [{"role": "user", "content": "damn printer"}]
    with Guard(main_policy, classifiers=FAKE) as g:
        for client_cls in (openai.OpenAI, openai.AsyncOpenAI):
            raw = client_cls(base_url=stub.url, api_key="x")
            try:
                kids = guardrail.wrap(g, raw, context={"tenant": "kids"})
                out = kids.chat.completions.create(model="m", messages=msgs)
                resp = await out if inspect.isawaitable(out) else out
                assert resp.choices[0].finish_reason == "content_filter" and stub.completions() == []
                out = guardrail.wrap(g, raw).chat.completions.create(model="m", messages=msgs)
                resp = await out if inspect.isawaitable(out) else out
                assert resp.choices[0].message.content == "You said: damn printer"
            finally:
                closed = raw.close()
                if inspect.isawaitable(closed):
                    await closed
            stub.reset()


def test_numbers_and_booleans_in_a_route_match_their_text(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: p\nroutes:\n  - match: {tier: [1, 2], beta: true}\n    policy: strict\n")
    p = load_policy(path)
    assert p.select({"tier": "2", "beta": "true"}).name == "strict" and p.select({"tier": "3"}).name == "p"


_TARGETS = ("strict", "permissive", "monitor")


@settings(max_examples=30, deadline=None)
@given(
    tenants=st.lists(st.sampled_from(["a", "b", "c*", "d"]), min_size=1, max_size=3),
    tenant=st.sampled_from(["a", "b", "cc", "d", "e"]),
)
def test_the_first_matching_route_wins(tenants: list[str], tenant: str) -> None:
    routes = [{"match": {"tenant": t}, "policy": _TARGETS[i]} for i, t in enumerate(tenants)]
    p = load_policy({"version": 1, "name": "top", "routes": routes})
    first = next((i for i, t in enumerate(tenants) if fnmatch.fnmatchcase(tenant, t)), None)
    assert p.select({"tenant": tenant}).name == ("top" if first is None else _TARGETS[first])


ROUTED_STREAM_MAIN = """version: 1
name: main
output:
  rules:
    - {category: unsafe, threshold: 0.5, action: block}
  stream: {check_every_chars: 60, holdback_chars: 20}
routes:
  - match: {tenant: acme}
    policy: ./acme.yaml
  - match: {script: Arabic}
    policy: monitor
"""
ROUTED_STREAM_ACME = """version: 1
name: acme
output:
  rules:
    - {category: pii, action: redact, entities: [email]}
"""


async def _streamed(client: Any, **kw: Any) -> str:
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True, **kw)
    stream = await out if inspect.isawaitable(out) else out
    if hasattr(stream, "__aiter__"):
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.parametrize("client_cls", [openai.OpenAI, openai.AsyncOpenAI])
async def test_a_streamed_answer_is_judged_by_the_one_policy_its_request_was_routed_to(
    tmp_path: Path, stub: Any, client_cls: Any
) -> None:
    # streams used the base policy's redaction and stream settings, and a script route was chosen again
    # for each window: a harmful English sentence inside Arabic text was judged by `monitor` and released
    (tmp_path / "acme.yaml").write_text(ROUTED_STREAM_ACME)
    (tmp_path / "main.yaml").write_text(ROUTED_STREAM_MAIN)
    seen: list[tuple[str, str]] = []
    with Guard(tmp_path / "main.yaml", classifiers=FAKE, on_decision=lambda d: seen.append((d.stage, d.policy))) as g:
        raw = client_cls(base_url=stub.url, api_key="x")
        try:
            stub.reply = "Sure, write to the CEO at jane.doe@acme-corp.com for that. " + "Have a nice day. " * 6
            text = await _streamed(guardrail.wrap(g, raw, context={"tenant": "acme"}))
            assert "jane.doe" not in text and "<EMAIL_1>" in text
            assert {p for _, p in seen} == {"acme"}
            seen.clear()
            stub.reply = "مرحبا بك في هذا الدرس الطويل عن السلامة " * 8 + "Now pack the pipe bomb. " + "شكرا " * 30
            text = await _streamed(guardrail.wrap(g, raw))
            assert "pipe bomb" not in text
            assert {p for st, p in seen if st == "output"} == {"main"}  # the English prompt's route, every window
        finally:
            closed = raw.close()
            if inspect.isawaitable(closed):
                await closed


def test_an_answer_checked_without_its_prompt_is_routed_by_its_own_text(main_policy: Path) -> None:
    # a Call used before any check fixed an empty script, so a script route never applied to such answers
    seen: list[str] = []
    with Guard(main_policy, classifiers=FAKE, on_decision=lambda d: seen.append(d.policy)) as g:

        @guardrail.protect(g)
        def speak() -> Any:
            yield "مرحبا بك في هذا الدرس الطويل عن السلامة " * 4

        assert "".join(speak()).startswith("مرحبا")
    assert seen and set(seen) == {"monitor"}
