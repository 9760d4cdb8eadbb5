"""Hot reload: serve the current policy of a file without a redeploy.

Apart from :mod:`guardrail.policy` (which owns reading the files) because reloading is about time and
file stamps, not about what a policy says; it asks :func:`guardrail.policy.load_policy` for each version.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from guardrail import metrics
from guardrail.classifiers import custom_entities
from guardrail.errors import GuardrailError
from guardrail.policy import load_policy
from guardrail.policy_models import Policy

__all__ = ["PolicyReloader"]

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None  # deleted or unreadable: a change, which the reload then reports
    return (st.st_mtime_ns, st.st_size, st.st_ino)  # inode: editors that save by rename


class PolicyReloader:
    """Serve the current policy of a file, reloading it when any file of its ``extends`` chain changes.

    No thread: :meth:`current` stats the files at most once per ``interval`` seconds, on the caller's
    thread, so an idle process does nothing. A broken edit never takes effect; the last good policy
    stays and ``guardrail.policy_reload_failed`` is logged once per broken version. Readers never wait:
    the lock covers only the swap of (policy, stamps).

    ``accept`` is the user's own check of a new version (the Guard's: every category scored by its classifiers),
    run before the swap: a version it refuses is a broken edit like any other (logged as failed, counted, its
    ``pii_entities`` taken out of force at once). Before, the reloader swapped and logged success, the Guard then
    refused the version and kept the old one, and the refused file's own entity patterns were in force meanwhile.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        interval: float = 0.5,
        *,
        clock: Callable[[], float] = time.monotonic,
        accept: Callable[[Policy], None] | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self.accept = accept
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = load_policy(path)  # no last good policy yet: a broken file raises here
        self._stamps = {f: _stamp(f) for f in self._policy.files}
        self._next_check = clock() + interval

    def current(self) -> Policy:
        now = self._clock()
        if now < self._next_check:
            return self._policy
        self._next_check = now + self.interval
        before = {f: _stamp(f) for f in self._stamps}
        if before == self._stamps:
            return self._policy
        log = structlog.get_logger("guardrail")
        policy: Policy | None = None
        try:
            policy = load_policy(self.path)
            if self.accept is not None:
                self.accept(policy)
        except GuardrailError as exc:
            if policy is not None:  # loaded, then refused: its entity definitions leave with it, now
                custom_entities.release(policy._entities)
            with self._lock:
                self._stamps = before  # retry only after the next edit, not every interval
            metrics.observe_reload(False)
            where = {k: getattr(exc, k, None) for k in ("file", "line", "field")}
            log.warning("guardrail.policy_reload_failed", **where, error=str(exc), error_type=type(exc).__name__)
            return self._policy
        # Stamps taken before reading, so an edit made during the load is seen next round.
        stamps = {f: before[f] if f in before else _stamp(f) for f in policy.files}
        with self._lock:
            self._policy, self._stamps = policy, stamps
        metrics.observe_reload(True)
        log.info("guardrail.policy_reloaded", name=policy.name, hash=policy.hash, file=policy.source)
        return policy
