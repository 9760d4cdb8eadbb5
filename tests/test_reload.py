"""Hot reload through the Guard: ops edit the file, the running guard follows; a broken edit is ignored."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import structlog

from guardrail import Action, Guard, PolicyError
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
