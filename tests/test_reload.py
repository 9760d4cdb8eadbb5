"""Hot reload through the Guard: ops edit the file, the running guard follows; a broken edit is ignored."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from guardrail import Action, Guard, PolicyError, metrics
from guardrail.testing import FakeClassifier

GOOD = """version: 1
name: reloadable
input:
  rules:
    - {{category: unsafe, threshold: {t}, action: block}}
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # make the change visible even on filesystems with coarse mtimes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def wait_for(pred, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_edit_break_fix(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(t=0.9))
    guard = Guard(path, classifiers=FakeClassifier({"unsafe": 0.6}), reload=True, reload_interval=0.1)
    assert guard.check_input("x").action is Action.ALLOW

    write(path, GOOD.format(t=0.5))  # edit: lower the threshold
    assert wait_for(lambda: guard.check_input("x").action is Action.BLOCK)
    good_hash = guard.policy.hash

    with structlog.testing.capture_logs() as logs:
        write(
            path,
            "version: 1\nname: reloadable\ninput:\n  rules:\n    - {category: unsafe, threshold: 0.5, acton: block}\n",
        )
        time.sleep(0.25)
        d = guard.check_input("x")
    assert d.action is Action.BLOCK and d.policy_hash == good_hash  # last good policy still enforced
    failures = [e for e in logs if e["event"] == "guardrail.policy_reload_failed"]
    assert failures and failures[0]["line"] == 5 and "acton" in str(failures[0])

    write(path, GOOD.format(t=0.95))  # fix
    assert wait_for(lambda: guard.check_input("x").action is Action.ALLOW)
    assert guard.policy.hash != good_hash


def test_reload_needs_a_file_path() -> None:
    with pytest.raises(PolicyError, match="reload"):
        Guard({"version": 1, "name": "x"}, classifiers=FakeClassifier(), reload=True)


def test_broken_file_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, "version: 1\nname: x\nimput: {}\n")
    with pytest.raises(PolicyError) as err:
        Guard(path, classifiers=FakeClassifier(), reload=True)
    assert err.value.line == 3 and err.value.suggestion == "input"


def test_an_edit_naming_an_expert_without_a_module_keeps_the_last_good_policy(tmp_path: Path) -> None:
    # `path: ':Factory'` passed the load-time import check (no module to look for): the reload took it, and every
    # check after it failed ("Empty module name") with no line; it is a broken edit like any other
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(t=0.5))
    guard = Guard(path, classifiers=FakeClassifier({"unsafe": 0.6}), reload=True, reload_interval=0.1)
    good_hash = guard.policy.hash
    with structlog.testing.capture_logs() as logs:
        write(
            path,
            GOOD.format(t=0.5) + "classifiers:\n  experts:\n    - {name: bundled, type: model}\n"
            "    - {name: mine, type: import, path: ':Factory'}\n",
        )
        assert wait_for(
            lambda: (
                guard.check_input("x") is not None and any(e["event"] == "guardrail.policy_reload_failed" for e in logs)
            )
        )
    assert guard.policy.hash == good_hash and guard.check_input("x").action is Action.BLOCK
    failure = next(e for e in logs if e["event"] == "guardrail.policy_reload_failed")
    assert failure["line"] == 9 and failure["field"] == "classifiers.experts[1].path"


ENTITY = """version: 1
name: {name}
pii_entities:
  ticket: '{pattern}'
input:
  rules:
    - {{category: pii, action: redact, entities: [ticket]}}
{extra}"""


def test_an_edit_the_guard_refuses_is_a_failed_reload_and_its_patterns_never_take_effect(tmp_path: Path) -> None:
    """The file loads, but this Guard's classifiers do not score a category it adds: before, the reloader logged
    and counted a success, the Guard kept the old policy, and the refused file's own pattern was in force under
    the old policy's name (TCK-12345 no longer masked, TCK-123 masked)."""
    path = tmp_path / "p.yaml"
    write(path, ENTITY.format(name="v1", pattern=r"TCK-\d{5}", extra=""))
    clf = FakeClassifier({"unsafe": 0.1}, labels=["unsafe", "jailbreak"])
    guard = Guard(path, classifiers=clf, reload=True, reload_interval=0)
    registry = CollectorRegistry()
    sink = metrics.enable_prometheus(registry)
    try:
        assert guard.check_input("ref TCK-12345").text == "ref <TICKET_1>"
        refused = ENTITY.format(name="v2", pattern=r"TCK-\d{3}\b", extra="    - {category: weapons, action: block}\n")
        with structlog.testing.capture_logs() as logs:
            write(path, refused)
            first, second = guard.check_input("ref TCK-12345"), guard.check_input("ref TCK-123")
        assert (first.policy, first.text) == ("v1", "ref <TICKET_1>")
        assert (second.policy, second.text) == ("v1", "ref TCK-123")
        events = [e["event"] for e in logs]
        assert "guardrail.policy_reloaded" not in events
        failed = [e for e in logs if e["event"] == "guardrail.policy_reload_failed"]
        assert len(failed) == 1 and failed[0]["field"] == "input.rules[1].category" and "weapons" in failed[0]["error"]
        assert registry.get_sample_value("guardrail_policy_reload_failures_total") == 1
        assert registry.get_sample_value("guardrail_policy_reloads_total") in (None, 0)
        write(path, ENTITY.format(name="v3", pattern=r"TCK-\d{3}\b", extra=""))  # fixed: in force at once
        fixed = guard.check_input("ref TCK-123")
        assert (fixed.policy, fixed.text) == ("v3", "ref <TICKET_1>")
    finally:
        metrics.disable(sink)
        guard.close()


async def test_an_edit_the_guard_refuses_keeps_the_old_policy_for_async_checks_too(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(t=0.5))
    guard = Guard(path, classifiers=FakeClassifier({"unsafe": 0.6}, labels=["unsafe"]), reload=True, reload_interval=0)
    try:
        write(path, GOOD.format(t=0.5) + "    - {category: weapons, action: block}\n")
        d = await guard.acheck_input("x")
        assert (
            d.action is Action.BLOCK and d.policy == "reloadable" and guard.policy.input.rules[-1].category == "unsafe"
        )
    finally:
        guard.close()


def test_validate_refuses_what_a_guard_refuses_at_construction(tmp_path: Path) -> None:
    """A typo in input.data_categories: `policy validate` said ok, the Guard refused it without a line."""
    from guardrail.policy import load_policy

    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: t\ninput:\n  data_categories: [jailbrake]\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert (err.value.line, err.value.field, err.value.suggestion) == (4, "input.data_categories[0]", "jailbreak")
