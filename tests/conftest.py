"""Shared fixtures: a fresh migrated database per test (real PostgreSQL + TimescaleDB), the real broker.

Services are not mocked and tests never skip for a missing one: they fail with how to start it
(``bash scripts/services.sh``). Override the servers with STOREFLOW_TEST_DATABASE_URL (an admin URL,
e.g. postgresql://postgres@127.0.0.1:5432/postgres) and STOREFLOW_TEST_MQTT (host:port).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storeflow.db import migrate
from storeflow.settings import Settings

# Property tests draw a fixed example set per test by default, so that the README's test command (and
# CI) gives the same verdict on every run; HYPOTHESIS_PROFILE=explore draws fresh random examples.
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

ADMIN_URL = os.environ.get("STOREFLOW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_HOSTPORT = os.environ.get("STOREFLOW_TEST_MQTT", "127.0.0.1:1883")
DATA = Path(__file__).parent / "data"
_TEMPLATE = f"sf_template_{os.getpid()}"
HOW_TO_START = "start the services with: bash scripts/services.sh"


def db_url_for(name: str) -> str:
    """The admin URL pointed at another database."""
    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL} ({str(e).strip().splitlines()[0]}); "
                    f"{HOW_TO_START}", pytrace=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database with TimescaleDB; each test's database is cloned from it."""
    with _admin() as conn:
        ok = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        libs = conn.execute("SHOW shared_preload_libraries").fetchone()
        if not ok or not libs or "timescaledb" not in libs[0]:
            pytest.fail(f"TimescaleDB is not installed/preloaded on {ADMIN_URL}; {HOW_TO_START}", pytrace=False)
        conn.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{_TEMPLATE}"')
    with psycopg.connect(db_url_for(_TEMPLATE)) as tconn:
        migrate(tconn, Settings(timescaledb="require", database_url=db_url_for(_TEMPLATE)))
    yield _TEMPLATE
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')


def _fresh_db(template: str) -> str:
    name = f"sf_t_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        # TimescaleDB's background scheduler connects to the template now and then; CREATE DATABASE
        # ... TEMPLATE then fails with ObjectInUse for a moment: retry.
        for attempt in range(50):
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
    return name


def _drop_db(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated TimescaleDB database, dropped after the test."""
    name = _fresh_db(pg_template)
    yield db_url_for(name)
    _drop_db(name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection to a fresh migrated database."""
    with psycopg.connect(db_url) as conn:
        yield conn


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings pointed at the test database and a private data dir."""
    return Settings(database_url=db_url, data_dir=tmp_path / "data", mqtt_url=f"mqtt://{MQTT_HOSTPORT}")


@pytest.fixture(scope="session")
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of the real Mosquitto; fails with how to start it when unreachable."""
    host, port_s = MQTT_HOSTPORT.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port_s)), timeout=3):
            pass
    except OSError as e:
        pytest.fail(f"Mosquitto is not reachable at {MQTT_HOSTPORT} ({e}); {HOW_TO_START}", pytrace=False)
    return host, int(port_s)


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """An MQTT topic prefix unique to this test (tests on the shared broker never see each other)."""
    return f"sft-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mini_layout_path() -> Path:
    """A small valid SPEC layout (one floor, three counters, two readers, one door)."""
    return DATA / "mini_store.yaml"
