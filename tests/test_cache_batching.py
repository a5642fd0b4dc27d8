"""The call cache's buffered writes: visible at once, durable after flush/close or a time limit,
and committed in batches. (Beside the benchmarks because it guards a performance change; move it
to tests/ to run it in CI.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fapo.cache import CallCache


def _rows(path: Path) -> int:
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        db.close()


def test_buffered_entries_are_read_back_before_and_after_they_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = CallCache(path, flush_every=1000, flush_s=3600)
    cache.put("k1", {"content": "a", "input_tokens": 1, "output_tokens": 2})
    assert cache.get("k1") == {"content": "a", "input_tokens": 1, "output_tokens": 2}
    assert _rows(path) == 0  # still buffered: another connection does not see it yet
    cache.flush()
    assert _rows(path) == 1
    cache.put("k1", {"content": "b", "input_tokens": 1, "output_tokens": 2})
    assert cache.get("k1")["content"] == "b"  # a buffered overwrite wins over the stored row
    cache.close()
    again = CallCache(path)
    assert again.get("k1")["content"] == "b" and again.get("nope") is None
    again.close()


def test_writes_commit_in_batches_of_flush_every(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = CallCache(path, flush_every=10, flush_s=3600)
    for i in range(25):
        cache.put(f"k{i}", {"i": i})
    assert _rows(path) == 20
    assert len(cache) == 25  # len() commits what is pending first
    cache.close()


def test_a_time_limit_bounds_how_long_an_entry_stays_uncommitted(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = CallCache(path, flush_every=1000, flush_s=0.0)
    cache.put("k", {"v": 1})
    assert _rows(path) == 1
    cache.close()


def test_a_write_reported_busy_at_once_is_retried_until_the_lock_is_free(tmp_path: Path) -> None:
    """SQLite may report BUSY without calling its busy handler (WAL recovery, a journal-mode
    change as another process opens the file); the cache retries instead of failing the run."""
    import threading
    import time

    path = tmp_path / "c.sqlite"
    cache = CallCache(path, flush_every=1)
    cache._db.execute("PRAGMA busy_timeout=0")  # as if SQLite skipped the handler
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    t0 = time.monotonic()
    cache.put("k", {"v": 1})  # flushes at once; the holder has the write lock for 0.3 s
    cache.flush()
    release.join()
    assert time.monotonic() - t0 >= 0.25
    assert cache.get("k") == {"v": 1}
    holder.close()
    cache.close()
    assert CallCache(path).get("k") == {"v": 1}
