"""Database access: resolve the URL (or start the embedded server), connect, apply migrations.

The same SQL runs on TimescaleDB (hypertables) and on plain PostgreSQL (BRIN indexes): migrations
check for the extension themselves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from storeflow.contract import BadInput
from storeflow.settings import Settings, get_settings

__all__ = ["resolve_url", "connect", "migrate", "has_timescaledb", "Migration", "migrations", "store_id"]

log = logging.getLogger(__name__)
_MIGRATION_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
#: Any fixed number: the advisory lock that serialises concurrent migrators.
_MIGRATE_LOCK = 0x5F0F_1041


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """All bundled migrations, ordered by version."""
    out = []
    for entry in resources.files("storeflow.migrations").iterdir():
        m = _MIGRATION_RE.fullmatch(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mg: mg.version)
    versions = [mg.version for mg in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return out


def resolve_url(settings: Settings | None = None, url: str | None = None) -> str:
    """The database URL: explicit, else STOREFLOW_DATABASE_URL, else the embedded server's."""
    s = settings or get_settings()
    chosen = url or s.database_url
    if chosen:
        return chosen
    from storeflow.embedded import embedded_postgres_url

    return embedded_postgres_url(Path(s.data_dir))


def connect(url: str | None = None, *, autocommit: bool = False, settings: Settings | None = None,
            migrate_schema: bool = True) -> psycopg.Connection:
    """Open a connection (migrating the schema first unless told not to).

    Raises :class:`BadInput` with a how-to-fix line when the server cannot be reached.
    """
    s = settings or get_settings()
    target = resolve_url(s, url)
    try:
        conn = psycopg.connect(target, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(
            f"cannot connect to the database ({first}); start it with scripts/services.sh "
            f"or set STOREFLOW_DATABASE_URL"
        ) from None
    if migrate_schema:
        migrate(conn, s)
    return conn


def has_timescaledb(conn: psycopg.Connection) -> bool:
    """True when the timescaledb extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def migrate(conn: psycopg.Connection, settings: Settings | None = None) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; return the versions applied.

    With ``timescaledb`` = auto/require, the extension is created first when the server has it.
    Safe to call from several processes at once (an advisory lock serialises them).
    """
    s = settings or get_settings()
    applied: list[int] = []
    # From an idle connection each call commits by itself; inside a caller's open transaction the
    # migration joins it (as a savepoint) and commits with it.
    from psycopg.pq import TransactionStatus

    idle = conn.info.transaction_status == TransactionStatus.IDLE
    was_autocommit = conn.autocommit
    if idle and not was_autocommit:
        conn.autocommit = True
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            pending = [m for m in migrations() if m.version not in done]
            if pending and not done:
                _ensure_timescaledb(conn, s)
            for m in pending:
                log.info("applying migration %04d_%s", m.version, m.name)
                conn.execute(m.sql)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
                applied.append(m.version)
    finally:
        if idle and not was_autocommit:
            conn.autocommit = False
    return applied


def _ensure_timescaledb(conn: psycopg.Connection, s: Settings) -> None:
    if s.timescaledb == "off":
        return
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone() is not None
    preloaded = False
    if available:
        libs = conn.execute("SHOW shared_preload_libraries").fetchone()
        preloaded = bool(libs and "timescaledb" in libs[0])
    if available and preloaded:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    elif s.timescaledb == "require":
        raise BadInput(
            "TimescaleDB is required (STOREFLOW_TIMESCALEDB=require) but not available on this server; "
            "install it with scripts/services.sh"
        )


def store_id(conn: psycopg.Connection, store: str) -> int:
    """The numeric id of a store; :class:`BadInput` naming the store when it is unknown."""
    row = conn.execute("SELECT store_id FROM stores WHERE store = %s", (store,)).fetchone()
    if row is None:
        raise BadInput(f"unknown store {store!r}; import its layout first (storeflow import layout FILE)")
    return int(row[0])
