"""`storeflow import layout|reads|doors|purchases FILE --store S` and `storeflow import tags|members FILE`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from storeflow.cli import add_db_arg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `storeflow import ...` to the parser."""
    imp = sub.add_parser("import", help="import a layout or a flat file (SPEC section 2)")
    kinds = imp.add_subparsers(dest="import_kind", required=True,
                               metavar="{layout,reads,doors,purchases,tags,members}")
    p = kinds.add_parser("layout", help="create or update a store from its layout file (YAML or JSON)")
    p.add_argument("file", type=Path)
    add_db_arg(p)
    p.set_defaults(func=_cmd_layout)
    helps = {
        "reads": "tag reads: ts,reader,antenna,epc,rssi[,count]",
        "doors": "door counts: ts,door,entries,exits",
        "purchases": "purchases: ts,member,zone,amount,receipt",
        "tags": "tags: epc,member,kind (chain-wide)",
        "members": "members: member,tier,joined (chain-wide)",
    }
    for kind, hlp in helps.items():
        p = kinds.add_parser(kind, help=hlp)
        p.add_argument("file", type=Path)
        if kind in ("reads", "doors", "purchases"):
            p.add_argument("--store", required=True, help="store id (its layout must be imported)")
        add_db_arg(p)
        p.set_defaults(func=_cmd_import, kind=kind)


def _cmd_layout(args: argparse.Namespace) -> int:
    from ingest.files import import_layout
    from storeflow.db import connect

    with connect(args.database_url) as conn:
        store_id, layout = import_layout(conn, args.file)
        n = conn.execute(
            "SELECT (SELECT count(*) FROM zones WHERE store_id = %(s)s AND active), "
            "(SELECT count(*) FROM antennas WHERE store_id = %(s)s AND active), "
            "(SELECT count(*) FROM doors WHERE store_id = %(s)s AND active)", {"s": store_id}).fetchone()
        conn.commit()
    assert n is not None
    print(f"{args.file.name}: store {layout.store} imported ({n[0]} zones, {n[1]} antennas, {n[2]} doors)")
    from analytics.coverage import coverage_warnings

    for line in coverage_warnings(layout):  # advice only: the layout is imported as it is
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from ingest.files import format_summary, import_file
    from storeflow.db import connect

    with connect(args.database_url) as conn:
        result = import_file(conn, args.kind, args.file, getattr(args, "store", None))
    print(format_summary(result))
    return 0
