"""A scratch PostgreSQL database for a benchmark run: created for the run and dropped after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@contextmanager
def scratch_database(admin_url: str, prefix: str, *, reuse: str | None = None,
                     keep: bool = False) -> Iterator[tuple[str, str]]:
    """``(name, url)`` of a new database ``<prefix>_<random>``, dropped on exit unless ``keep``;
    with ``reuse``, that existing database, left as it is."""
    name = reuse or f"{prefix}_{uuid.uuid4().hex[:8]}"
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    url = make_conninfo(**params)  # type: ignore[arg-type]
    if not reuse:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, url
    finally:
        if not reuse and not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        elif not reuse:
            print(f"kept database {name}")
