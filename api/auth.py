"""API tokens with roles.

Roles, each including the one before it:

* ``viewer``: aggregated figures (counters, store KPIs, paths, heatmaps, traffic) of its stores;
* ``analyst``: also member-level data (visits with EPC/member, member journeys);
* ``admin``: also manages tokens; sees every store.

Tokens are random (``sf_`` + 43 URL-safe characters); only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from storeflow.contract import BadInput

__all__ = ["ROLES", "Principal", "create_token", "lookup_token", "revoke_token", "list_tokens", "hash_token"]

ROLES = ("viewer", "analyst", "admin")


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
    conn.commit()
    return cur.rowcount == 1


def list_tokens(conn: psycopg.Connection) -> list[dict[str, object]]:
    """All tokens (never the token text: it is not stored)."""
    cur = conn.execute(
        "SELECT token_id, name, role, stores, created_at, expires_at, revoked_at, last_used_at "
        "FROM api_tokens ORDER BY token_id")
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r)) for r in cur.fetchall()]
