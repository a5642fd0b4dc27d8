"""Content-addressed cache of LLM calls in SQLite, shared by every evaluation of a tenant.

Key = sha256(model spec, call settings, messages, repeat index, sample index). So re-evaluating a
variant whose upstream steps are unchanged replays those calls for free; only changed steps pay.
A call at temperature 0 is keyed at repeat 0, sample 0 (`fapo.llm.greedy`): it has no draws.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from fapo.errors import FapoError, fs_error

#: How long a writer waits for another process's write to finish before giving up.
BUSY_S = 60.0


def call_key(
    model: str, settings: dict[str, Any], messages: list[dict[str, Any]], repeat: int, sample: int
) -> str:
    blob = json.dumps([model, settings, messages, repeat, sample], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """A tiny thread-safe key/value store; values are JSON documents of model responses.

    Writes are buffered and committed in one transaction per `flush_every` entries or
    `flush_s` seconds (and on flush/close): a commit per call cost more CPU than the rest of
    the engine's bookkeeping. Reads see buffered entries. A killed process loses at most the
    last second of entries, which only means paying for those calls again.
    """

    def __init__(self, path: Path, *, flush_every: int = 256, flush_s: float = 1.0) -> None:
        self.path = path
        self.flush_every, self.flush_s = flush_every, flush_s
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        #: keys being fetched right now (fapo.llm): a second asker waits for the first's answer
        self.flights: dict[str, asyncio.Event] = {}
        self._flushed = time.monotonic()
        self.failure: FapoError | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Several processes (two runs of a tenant, trials) share this file: WAL lets readers
            # go on beside one writer, and writers wait for each other up to BUSY_S instead of
            # failing at once with "database is locked".
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_S
            )
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_S * 1000)}")
            _patiently(self._db, "PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            _patiently(
                self._db, "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)"
            )
        except OSError as exc:
            raise fs_error(exc, path) from None
        except sqlite3.Error as exc:
            raise _db_error(path, exc) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            blob = self._pending.get(key)
            if blob is None:
                row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
                blob = row[0] if row else None
        return json.loads(blob) if blob is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value, default=str)
        with self._lock:
            self._pending[key] = blob
            if (
                len(self._pending) >= self.flush_every
                or time.monotonic() - self._flushed >= self.flush_s
            ):
                self._flush()

    def flush(self) -> None:
        """Commit buffered entries now; raises the first write failure (disk full, read-only)."""
        with self._lock:
            self._flush()
        if self.failure is not None:
            raise self.failure

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        if not self._pending or self.failure is not None:
            self._pending.clear()
            return
        try:
            # IMMEDIATE takes the write lock up front, so the busy timeout applies (a deferred
            # transaction upgrading to a writer can fail at once with SQLITE_BUSY).
            _patiently(self._db, "BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO calls VALUES (?, ?)", list(self._pending.items())
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:  # SQLite rolls back by itself on a full disk
                self._db.execute("ROLLBACK")
            # Called from inside model calls: record the failure and stop caching, and let the
            # caller's next flush()/close() raise it (a lost entry only means paying again).
            self.failure = _db_error(self.path, exc)
        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            self._flush()
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._flush()
            self._db.close()
        if self.failure is not None:
            raise self.failure


def _patiently(db: sqlite3.Connection, sql: str) -> None:
    """Run `sql`, retrying SQLITE_BUSY until BUSY_S have passed.

    SQLite skips the busy handler in some WAL cases (another connection running recovery or
    changing the journal mode as it opens the file) and reports BUSY at once: two `fapo run`
    started together failed so under a loaded full test suite, while a second try succeeds.
    """
    deadline = time.monotonic() + BUSY_S
    pause = 0.01
    while True:
        try:
            db.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _db_error(path: Path, exc: sqlite3.Error) -> FapoError:
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # primary code of an extended one
    if code == sqlite3.SQLITE_FULL:
        why = "the disk is full; free space there and retry (or run with --no-cache)"
    elif code == sqlite3.SQLITE_READONLY:
        why = "not writable; make it (and its folder) writable or run with --no-cache"
    elif code == sqlite3.SQLITE_IOERR:
        why = "could not be written (disk full or failing); free space there or use --no-cache"
    elif code == sqlite3.SQLITE_CANTOPEN:
        why = "cannot be opened; make its folder writable or fix fapo.toml [paths] cache"
    elif code == sqlite3.SQLITE_BUSY:
        why = f"stayed locked by another process for {BUSY_S:.0f} s; retry"
    else:
        why = f"call cache error ({exc}); delete the file to start an empty cache"
    return FapoError(f"{path}: {why}")
