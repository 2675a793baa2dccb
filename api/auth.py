"""API tokens with roles.

Roles, each including the one before it:

* ``viewer``: aggregated figures (counters, store KPIs, paths, heatmaps, traffic) of its stores;
* ``analyst``: also member-level data (visits with EPC/member, member journeys);
* ``admin``: also manages tokens; sees every store.

Tokens are random (``sf_`` + 43 URL-safe characters); only their SHA-256 is stored. A server keeps the
tokens it verified in a :class:`TokenCache`, so most requests need no query to authenticate; revoking a
token tells every server at once (PostgreSQL ``NOTIFY``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from storeflow.contract import BadInput

__all__ = ["ROLES", "REVOKED_CHANNEL", "Principal", "TokenCache", "create_token", "lookup_token", "revoke_token",
           "list_tokens", "hash_token"]

ROLES = ("viewer", "analyst", "admin")
#: the NOTIFY channel a revoke is announced on (payload: the token id)
REVOKED_CHANNEL = "storeflow_token_revoked"
log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token (tokens carry 256 bits of randomness, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, role and granted stores (None = all stores)."""

    token_id: int
    name: str
    role: str
    stores: tuple[str, ...] | None

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def can_see(self, store: str) -> bool:
        return self.role == "admin" or self.stores is None or store in self.stores


def create_token(conn: psycopg.Connection, role: str, stores: list[str] | None, name: str = "",
                 expires_days: float | None = None) -> tuple[int, str]:
    """Create a token; returns (token_id, token). The token is not stored and cannot be shown again."""
    if role not in ROLES:
        raise BadInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    if stores:
        known = {r[0] for r in conn.execute("SELECT store FROM stores WHERE store = ANY(%s)", (stores,))}
        missing = sorted(set(stores) - known)
        if missing:
            raise BadInput(f"unknown store(s): {', '.join(missing)}")
    token = "sf_" + secrets.token_urlsafe(32)
    expires = (datetime.now(timezone.utc) + timedelta(days=expires_days)) if expires_days else None
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, stores, token_hash, expires_at) VALUES (%s, %s, %s, %s, %s) "
        "RETURNING token_id",
        (name or f"{role} token", role, stores or None, hash_token(token), expires),
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0]), token


def lookup_token(conn: psycopg.Connection, token: str) -> Principal | None:
    """The principal of a valid (known, unexpired, unrevoked) token, else None."""
    row = conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = %s AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now()) RETURNING token_id, name, role, stores",
        (hash_token(token),),
    ).fetchone()
    conn.commit()
    if row is None:
        return None
    return Principal(int(row[0]), row[1], row[2], tuple(row[3]) if row[3] is not None else None)


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    """Revoke a token; False when no such active token."""
    cur = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL",
                       (token_id,))
    if cur.rowcount == 1:  # delivered to the servers' TokenCache listeners when this commits
        conn.execute("SELECT pg_notify(%s, %s)", (REVOKED_CHANNEL, str(token_id)))
    conn.commit()
    return cur.rowcount == 1


def list_tokens(conn: psycopg.Connection) -> list[dict[str, object]]:
    """All tokens (never the token text: it is not stored)."""
    cur = conn.execute(
        "SELECT token_id, name, role, stores, created_at, expires_at, revoked_at, last_used_at "
        "FROM api_tokens ORDER BY token_id")
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


class TokenCache:
    """Tokens this server verified: token hash -> principal and expiry, so a request with a known token
    needs no query.

    Entries are used only while a listener connection receives the revoke notifications
    (:data:`REVOKED_CHANNEL`), so a revoked token stops working at once on every server; without that
    channel (connection lost, a pooler that drops LISTEN) every request is checked in the database.
    An expired token is refused from its cached expiry. Entries are re-verified after ``ttl_s`` seconds,
    which also keeps ``last_used_at`` current and bounds how long a change made by hand in the table
    (not through :func:`revoke_token`) goes unseen.
    """

    def __init__(self, url: str | None, ttl_s: float = 60.0, entries: int = 10_000):
        self.url, self.ttl_s, self.entries = url, ttl_s, entries
        self._data: dict[str, tuple[Principal, datetime | None, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0            # bumped by every revoke seen: a verification older than it is not kept
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        """Take this before verifying a token in the database; pass it to :meth:`put`."""
        return self._generation

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def get(self, token_hash: str) -> Principal | None:
        """The cached principal of a valid token, else None (unknown, stale, expired, or no listener)."""
        if not self._listening.is_set():
            return None
        hit = self._data.get(token_hash)
        if hit is None:
            return None
        who, expires_at, fresh_until = hit
        if time.monotonic() > fresh_until or (expires_at is not None and expires_at <= datetime.now(timezone.utc)):
            with self._lock:
                self._data.pop(token_hash, None)
            return None
        return who

    def put(self, token_hash: str, who: Principal, expires_at: datetime | None, generation: int) -> None:
        """Keep a token verified in the database since ``generation`` was read."""
        with self._lock:
            if generation != self._generation or not self._listening.is_set():
                return  # a revoke arrived meanwhile (maybe of this token), or nobody would tell us of one
            if len(self._data) >= self.entries:
                self._data.clear()
            self._data[token_hash] = (who, expires_at, time.monotonic() + self.ttl_s)

    def forget(self, token_id: int) -> None:
        """Drop a revoked token."""
        with self._lock:
            self._generation += 1
            for h in [h for h, (who, _, _) in self._data.items() if who.token_id == token_id]:
                del self._data[h]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._data.clear()

    def start(self) -> None:
        """Start the listener thread (no-op without a URL or with a TTL of 0: then nothing is cached)."""
        if self.url and self.ttl_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="token-revokes", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _listen(self) -> None:
        assert self.url is not None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10, keepalives=1,
                                     keepalives_idle=30, keepalives_interval=10, keepalives_count=3) as conn:
                    conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    self.clear()  # revokes may have been missed while not listening
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            try:
                                self.forget(int(note.payload))
                            except ValueError:
                                self.clear()
            except psycopg.Error as e:
                if not self._stop.is_set():
                    log.warning("token revoke listener: %s; checking every token in the database until it is back",
                                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            finally:
                self._listening.clear()
                self.clear()
            self._stop.wait(2.0)
