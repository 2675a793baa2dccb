"""Connection pool for the API. Every query runs with a time limit and a row cap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from storeflow.db import connect, resolve_url
from storeflow.settings import Settings

__all__ = ["Database", "TooManyRows"]


class TooManyRows(Exception):
    """A query returned more rows than ``query_max_rows``."""


class Database:
    """A small pool of read connections with a statement timeout (settings.query_timeout_s), and a
    smaller asynchronous one (:attr:`apool`, opened by :meth:`open_async`) for the short queries a request
    makes on the event loop before it knows whether it needs a thread."""

    def __init__(self, settings: Settings, url: str | None = None, size: int = 8):
        self.settings = settings
        self.url = resolve_url(settings, url)
        with connect(self.url, settings=settings):  # migrate once at start
            pass
        self._timeout_ms = int(settings.query_timeout_s * 1000)

        def configure(conn: psycopg.Connection) -> None:
            conn.execute(f"SET statement_timeout = {self._timeout_ms}")
            conn.commit()

        self.pool = ConnectionPool(self.url, min_size=1, max_size=size, configure=configure, open=True,
                                   kwargs={"connect_timeout": 10})
        self.apool: AsyncConnectionPool | None = None

    async def open_async(self, size: int = 4) -> None:
        """Open :attr:`apool` (within the running event loop)."""

        async def configure(conn: psycopg.AsyncConnection) -> None:
            await conn.set_autocommit(True)
            await conn.execute(f"SET statement_timeout = {self._timeout_ms}")

        self.apool = AsyncConnectionPool(self.url, min_size=1, max_size=size, configure=configure, open=False,
                                         kwargs={"connect_timeout": 10})
        await self.apool.open()

    async def close_async(self) -> None:
        if self.apool is not None:
            await self.apool.close()

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (its transaction is committed on success, rolled back on error)."""
        with self.pool.connection() as conn:
            yield conn

    def fetch(self, sql: str, params: Any = None, max_rows: int | None = None) -> list[dict[str, Any]]:
        """Rows as dicts; :class:`TooManyRows` past the row cap."""
        cap = max_rows or self.settings.query_max_rows
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            rows = cur.fetchmany(cap + 1)
        if len(rows) > cap:
            raise TooManyRows(f"more than {cap} rows; narrow the time range")
        return rows
