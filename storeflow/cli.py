"""The ``storeflow`` command. Each area registers its own sub-commands (``<area>/cli.py: register``).

Exit status (SPEC section 4): 0 success, 2 bad input (one-line reason on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from storeflow.contract import BadInput

__all__ = ["main", "build_parser", "AREAS", "add_db_arg", "UsageError"]

#: Modules whose ``register(subparsers)`` adds sub-commands, in help order.
AREAS = (
    "ingest.files_cli",      # storeflow import ...
    "ingest.cli",            # storeflow ingest run
    "simulators.cli",        # storeflow simulate
    "simulators.devices_cli",  # storeflow devices ...
    "edge.cli",              # storeflow edge run
    "analytics.cli",         # storeflow analyze
    "analytics.report_cli",  # storeflow report ...
    "api.cli",               # storeflow serve, storeflow token
    "storeflow.demo",        # storeflow demo
)


class UsageError(BadInput):
    """Bad command-line arguments (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def add_db_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--database-url`` (default: STOREFLOW_DATABASE_URL, else the embedded server)."""
    p.add_argument("--database-url", default=None,
                   help="PostgreSQL URL (default: STOREFLOW_DATABASE_URL, else an embedded server)")


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    from storeflow.db import connect, has_timescaledb, migrate

    with connect(args.database_url, migrate_schema=False) as conn:
        applied = migrate(conn)
        mode = "TimescaleDB hypertables" if has_timescaledb(conn) else "plain tables (no TimescaleDB)"
        print(f"applied {len(applied)} migration(s) {applied or ''}; schema up to date; {mode}")
    return 0


def _cmd_db_status(args: argparse.Namespace) -> int:
    from storeflow.db import connect, has_timescaledb

    with connect(args.database_url) as conn:
        versions = [f"{v:04d}_{n}" for v, n in conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1")]
        print(f"server: {conn.info.parameter_status('server_version')}; "
              f"timescaledb: {'yes' if has_timescaledb(conn) else 'no'}; migrations: {', '.join(versions)}")
        for store, n in conn.execute("SELECT store, name FROM stores ORDER BY store"):
            print(f"store {store}: {n}")
    return 0


def _cmd_db_stop(args: argparse.Namespace) -> int:
    from storeflow.embedded import stop_embedded_postgres
    from storeflow.settings import get_settings

    data_dir = Path(get_settings().data_dir)
    print("embedded PostgreSQL stopped" if stop_embedded_postgres(data_dir)
          else f"no embedded PostgreSQL running in {data_dir}")
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    from storeflow.settings import get_settings, settings_markdown

    if args.markdown:
        sys.stdout.write(settings_markdown())
    else:
        for k, v in get_settings().model_dump().items():
            shown = "***" if "password" in k and v else v
            print(f"STOREFLOW_{k.upper()}={'' if shown is None else shown}")
    return 0


def _register_core(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema and the embedded server")
    dbs = db.add_subparsers(dest="db_command", required=True, metavar="{migrate,status,stop}")
    for name, fn, hlp in (("migrate", _cmd_db_migrate, "apply pending schema migrations"),
                          ("status", _cmd_db_status, "show server, schema version and stores")):
        p = dbs.add_parser(name, help=hlp)
        add_db_arg(p)
        p.set_defaults(func=fn)
    dbs.add_parser("stop", help="stop the embedded PostgreSQL").set_defaults(func=_cmd_db_stop)
    st = sub.add_parser("settings", help="show the effective settings")
    st.add_argument("--markdown", action="store_true", help="print the settings reference page")
    st.set_defaults(func=_cmd_settings)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every area's sub-commands."""
    parser = _Parser(prog="storeflow", description="StoreFlow in-store traffic analytics")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _register_core(sub)
    for area in AREAS:
        register: Callable[[argparse._SubParsersAction], None] = importlib.import_module(area).register
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (SPEC: 0 ok, 2 bad input, 1 otherwise)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    from storeflow.settings import get_settings

    logging.basicConfig(level="DEBUG" if args.verbose else get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        print(f"storeflow: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence: one line, exit 1
        logging.getLogger("storeflow").debug("unhandled error", exc_info=True)
        print(f"storeflow: error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
