"""Where the ensemble's learning lives: weights, running losses, and the experts' scores of recent decisions.

Feedback arrives late (a reviewer labels yesterday's decisions) and often in another process (the
``guardrail feedback`` command, another replica). So the experts' scores of each decision are kept
in a bounded store keyed by decision id (the ``recent`` newest; older ones are dropped), and the
weights and losses are one JSON document updated read-modify-write *atomically*: SQLite with
``BEGIN IMMEDIATE`` (one writer at a time, across processes), Redis with ``WATCH``/``MULTI``
(optimistic, retried on conflict), so concurrent writers never lose an update.

``store:`` in a policy is a SQLite path (``sqlite:///var/lib/guardrail/e.db`` or a plain path) or a
Redis URL (``redis://host:6379/0``, needs the ``redis`` extra). :class:`MemoryStore` is for tests and
single-process use.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]

State = dict[str, Any]
Record = dict[str, Any]


class Store(Protocol):
    def put_scores(self, decision_id: str, record: Record) -> None: ...
    def get_scores(self, decision_id: str) -> Record | None: ...
    def read_state(self) -> State: ...
    def update_state(self, fn: Callable[[State], State]) -> State: ...


class MemoryStore:
    def __init__(self, recent: int = 100_000) -> None:
        self.recent = recent
        self._scores: OrderedDict[str, Record] = OrderedDict()
        self._state: State = {}
        self._lock = threading.Lock()

    def put_scores(self, decision_id: str, record: Record) -> None:
        with self._lock:
            self._scores[decision_id] = record
            while len(self._scores) > self.recent:
                self._scores.popitem(last=False)

    def get_scores(self, decision_id: str) -> Record | None:
        with self._lock:
            return self._scores.get(decision_id)

    def read_state(self) -> State:
        with self._lock:
            return json.loads(json.dumps(self._state))  # type: ignore[no-any-return]

    def update_state(self, fn: Callable[[State], State]) -> State:
        with self._lock:
            self._state = fn(json.loads(json.dumps(self._state)))
            return self._state


_BUSY_TIMEOUT = 30.0


def _retry_locked(run: Callable[[], object]) -> None:
    """Run ``run`` again while SQLite answers "database is locked", until ``_BUSY_TIMEOUT`` has passed.

    Switching a file to WAL reads its header under a shared lock and then upgrades to an exclusive
    one within the same statement; SQLite does not wait in its busy handler for that upgrade (to avoid
    a deadlock) and fails at once. Replicas that open a fresh store at the same moment hit it, and
    without a retry the store would fail to open (seen once in the test suite with four writers)."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

    def locked(exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc)

    Retrying(
        retry=retry_if_exception(locked),
        stop=stop_after_delay(_BUSY_TIMEOUT),
        wait=wait_exponential(multiplier=0.005, max=0.1),
        reraise=True,
    )(run)


class SQLiteStore:
    """One file, shared by the processes of one machine (replicas on several machines: Redis)."""

    def __init__(self, path: str | os.PathLike[str], namespace: str, recent: int = 100_000) -> None:
        self.path, self.namespace, self.recent = str(path), namespace, recent
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._puts = 0
        with self._conn() as db:
            db.execute("CREATE TABLE IF NOT EXISTS ensemble_state (ns TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS ensemble_scores (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "ns TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (ns, id))")  # fmt: skip

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:  # one connection per thread: sqlite3 connections are not shared across threads
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, isolation_level=None)
            try:
                _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
            except BaseException:
                db.close()
                raise
            db.execute("PRAGMA synchronous=NORMAL")  # WAL-safe; no fsync per decision on the check path
            self._local.db = db
        return db

    def put_scores(self, decision_id: str, record: Record) -> None:
        db = self._conn()
        db.execute("INSERT OR REPLACE INTO ensemble_scores (ns, id, doc) VALUES (?, ?, ?)",
                   (self.namespace, decision_id, json.dumps(record)))  # fmt: skip
        self._puts += 1
        if self._puts % max(1, min(256, self.recent)) == 0:  # amortised: at most about 2 x `recent` rows
            db.execute("DELETE FROM ensemble_scores WHERE ns = ? AND seq <= (SELECT MAX(seq) FROM ensemble_scores) - ?",
                       (self.namespace, self.recent))  # fmt: skip

    def get_scores(self, decision_id: str) -> Record | None:
        row = self._conn().execute("SELECT doc FROM ensemble_scores WHERE ns = ? AND id = ?",
                                   (self.namespace, decision_id)).fetchone()  # fmt: skip
        return None if row is None else json.loads(row[0])

    def read_state(self) -> State:
        row = self._conn().execute("SELECT doc FROM ensemble_state WHERE ns = ?", (self.namespace,)).fetchone()
        return {} if row is None else json.loads(row[0])

    def update_state(self, fn: Callable[[State], State]) -> State:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")  # takes the write lock before reading: no lost update across processes
        try:
            row = db.execute("SELECT doc FROM ensemble_state WHERE ns = ?", (self.namespace,)).fetchone()
            state = fn({} if row is None else json.loads(row[0]))
            db.execute("INSERT OR REPLACE INTO ensemble_state (ns, doc) VALUES (?, ?)",
                       (self.namespace, json.dumps(state)))  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return state


class RedisStore:
    """Shared by replicas on any number of machines."""

    def __init__(self, url: str, namespace: str, recent: int = 100_000, *, client: Any = None) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(url)
        self.r, self.recent = client, recent
        self._state_key = f"guardrail:ensemble:{namespace}:state"
        self._order = f"guardrail:ensemble:{namespace}:order"
        self._prefix = f"guardrail:ensemble:{namespace}:d:"

    def put_scores(self, decision_id: str, record: Record) -> None:
        pipe = self.r.pipeline()
        pipe.set(self._prefix + decision_id, json.dumps(record))
        pipe.lpush(self._order, decision_id)
        pipe.llen(self._order)
        length = pipe.execute()[-1]
        extra = int(length) - self.recent
        if extra > 0:  # drop the oldest beyond `recent`
            pipe = self.r.pipeline()
            for _ in range(extra):
                pipe.rpop(self._order)
            old = [x for x in pipe.execute() if x is not None]
            if old:
                self.r.delete(*[self._prefix + (x.decode() if isinstance(x, bytes) else str(x)) for x in old])

    def get_scores(self, decision_id: str) -> Record | None:
        raw = self.r.get(self._prefix + decision_id)
        return None if raw is None else json.loads(raw)

    def read_state(self) -> State:
        raw = self.r.get(self._state_key)
        return {} if raw is None else json.loads(raw)

    def update_state(self, fn: Callable[[State], State]) -> State:
        import redis

        while True:  # optimistic: WATCH, compute, MULTI/EXEC; another writer in between -> retry
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(self._state_key)
                    raw = pipe.get(self._state_key)
                    state = fn({} if raw is None else json.loads(raw))
                    pipe.multi()
                    pipe.set(self._state_key, json.dumps(state))
                    pipe.execute()
                    return state
                except redis.WatchError:
                    continue


def open_store(spec: str | None, namespace: str, recent: int = 100_000) -> Store:
    """``redis://...``, ``sqlite:///path``, a path, ``memory``, or None (SQLite in the user's state folder)."""
    if spec == "memory":
        return MemoryStore(recent)
    if spec is not None and spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec, namespace, recent)
    if spec is None:
        base = Path(os.environ.get("GUARDRAIL_STATE_DIR") or Path.home() / ".local" / "state" / "guardrail")
        return SQLiteStore(base / "ensemble.sqlite", namespace, recent)
    return SQLiteStore(spec.removeprefix("sqlite:///").removeprefix("sqlite://"), namespace, recent)
