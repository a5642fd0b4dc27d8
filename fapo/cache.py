"""Content-addressed cache of LLM calls in SQLite, shared by every evaluation of a tenant.

Key = sha256(model spec, call settings, messages, repeat index, sample index). So re-evaluating a
variant whose upstream steps are unchanged replays those calls for free; only changed steps pay.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


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
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.flush_every, self.flush_s = flush_every, flush_s
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._flushed = time.monotonic()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)")

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
        """Commit buffered entries now."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        if not self._pending:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO calls VALUES (?, ?)", list(self._pending.items())
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            self._flush()
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._flush()
            self._db.close()
