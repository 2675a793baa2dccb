"""The durable local spool: encoded batches in SQLite (WAL), deleted only after the broker's PUBACK.

One spool is one *stream*: its id is created with the database, and every batch gets the next
sequence number in the same transaction that stores it, so a restarted agent resumes the sequence
and re-publishes an unacknowledged batch byte for byte (ingest drops the duplicate by
``(agent, stream, seq)``). Deleting the spool directory starts a new stream.

When the live batches would exceed the size limit, the oldest are dropped, logged at ERROR and
counted (``dropped_batches`` / ``dropped_records``, persisted).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Spool", "SpoolStats", "SpooledBatch", "SpoolBusy"]

log = logging.getLogger("storeflow.edge.spool")

#: While the spool is full, the ERROR line is repeated at most this often (seconds), with the counts since.
FULL_LOG_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    n          INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    payload    BLOB NOT NULL
);
"""


class SpoolBusy(RuntimeError):
    """Another process holds the spool."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    seq: int
    kind: str
    n: int
    created_us: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What the health message reports about the spool."""

    stream: str
    batches: int
    records: int
    bytes: int
    max_bytes: int
    oldest_created_us: int | None
    next_seq: int
    dropped_batches: int
    dropped_records: int


class Spool:
    """A SQLite spool; use from one thread (the agent loop)."""

    def __init__(self, directory: str | Path, max_bytes: int, sync: str = "full") -> None:
        self.path = Path(directory) / "spool.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one agent per spool: two writers would hand out the same seq to different batches
        self._lock_fd = os.open(self.path.parent / "spool.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {self.path.parent} is in use by another agent process") from None
        self.max_bytes = int(max_bytes)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        with self._tx():
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
            if "stream" not in meta:
                # time prefix makes streams of one agent sort by creation; the random part makes them unique
                meta = {"stream": f"{int(time.time()):x}-{secrets.token_hex(6)}", "next_seq": 1,
                        "dropped_batches": 0, "dropped_records": 0}
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        self.stream: str = meta["stream"]
        self._next_seq = int(meta["next_seq"])
        self.dropped_batches = int(meta["dropped_batches"])
        self.dropped_records = int(meta["dropped_records"])
        self._last_full_log = -math.inf
        self._unlogged_batches = self._unlogged_records = 0
        self._bytes, self._records, self._batches = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(n), 0), COUNT(*) FROM batches").fetchone()

    def _tx(self) -> sqlite3.Connection:
        class _Tx:
            def __init__(s, db: sqlite3.Connection) -> None:
                s.db = db

            def __enter__(s) -> sqlite3.Connection:
                s.db.execute("BEGIN IMMEDIATE")
                return s.db

            def __exit__(s, et: object, *_: object) -> None:
                if et is None:
                    s.db.execute("COMMIT")
                elif s.db.in_transaction:  # SQLite rolls back by itself on some errors (SQLITE_FULL)
                    s.db.execute("ROLLBACK")

        return _Tx(self._db)  # type: ignore[return-value]

    def append(self, kind: str, n: int, encode: Callable[[int], bytes], created_us: int) -> int:
        """Store one batch; ``encode(seq)`` makes its payload with the sequence number it gets. Returns seq."""
        seq = self._next_seq
        payload = encode(seq)
        saved = (self._bytes, self._records, self._batches, self.dropped_batches, self.dropped_records)
        try:
            with self._tx() as db:
                self._make_room(db, len(payload))
                db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)", (seq, kind, n, created_us, payload))
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        except BaseException:
            # rolled back: the in-memory counters go back too
            self._bytes, self._records, self._batches, self.dropped_batches, self.dropped_records = saved
            raise
        self._next_seq = seq + 1
        self._bytes += len(payload)
        self._records += n
        self._batches += 1
        return seq

    def _make_room(self, db: sqlite3.Connection, size: int) -> None:
        if self._bytes + size <= self.max_bytes:
            return
        freed, batches, records = 0, 0, 0
        for seq, n, length in db.execute("SELECT seq, n, LENGTH(payload) FROM batches ORDER BY seq"):
            if self._bytes - freed + size <= self.max_bytes:
                break
            freed += length
            batches += 1
            records += n
            last = seq
        if not batches:
            return
        db.execute("DELETE FROM batches WHERE seq <= ?", (last,))
        self.dropped_batches += batches
        self.dropped_records += records
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped_batches'", (self.dropped_batches,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped_records'", (self.dropped_records,))
        self._bytes -= freed
        self._records -= records
        self._batches -= batches
        self._unlogged_batches += batches
        self._unlogged_records += records
        now = time.monotonic()
        if now - self._last_full_log >= FULL_LOG_EVERY_S:  # loud, but one line a minute, not one per batch
            self._last_full_log = now
            log.error("SPOOL FULL (%s, limit %d bytes): dropped the %d oldest batch(es), %d record(s), up to seq "
                      "%d; %d record(s) dropped in total since this spool was created. The uplink has been down "
                      "too long or is too slow.", self.path, self.max_bytes, self._unlogged_batches,
                      self._unlogged_records, last, self.dropped_records)
            self._unlogged_batches = self._unlogged_records = 0

    def pending(self, after_seq: int, limit: int) -> list[SpooledBatch]:
        """Up to ``limit`` stored batches with ``seq > after_seq``, oldest first."""
        rows = self._db.execute("SELECT seq, kind, n, created_us, payload FROM batches WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
        return [SpooledBatch(*r) for r in rows]

    def ack(self, seqs: list[int]) -> None:
        """Delete acknowledged batches (unknown seqs, e.g. dropped ones, are ignored)."""
        if not seqs:
            return
        with self._tx() as db:
            for seq in seqs:
                row = db.execute("DELETE FROM batches WHERE seq = ? RETURNING n, LENGTH(payload)", (seq,)).fetchone()
                if row:
                    self._records -= row[0]
                    self._bytes -= row[1]
                    self._batches -= 1

    def oldest_created_us(self) -> int | None:
        row = self._db.execute("SELECT created_us FROM batches ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    def stats(self) -> SpoolStats:
        return SpoolStats(self.stream, self._batches, self._records, self._bytes, self.max_bytes,
                          self.oldest_created_us(), self._next_seq, self.dropped_batches, self.dropped_records)

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()
        os.close(self._lock_fd)  # releases the flock
