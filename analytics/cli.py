"""Sub-commands of the analytics area (registered into `storeflow` by storeflow.cli).

``storeflow analyze --store S [--from T] [--to T] [--database-url URL]``: T is a SPEC timestamp
(ISO 8601 with a UTC offset, or epoch microseconds); ``--to`` is exclusive. Without ``--from`` the
range starts at the hour of the store's first read; without ``--to`` it ends after the hour of its
last read.
"""

from __future__ import annotations

import argparse
import json

from storeflow.cli import add_db_arg
from storeflow.contract import BadInput, format_ts_us, parse_ts_us

HOUR_US = 3_600_000_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `storeflow` parser."""
    p = sub.add_parser("analyze", help="compute visits, trips/paths and heatmap cells for a store and time range",
                       description="Re-runnable: the range's previous results are replaced.")
    p.add_argument("--store", required=True, help="store id")
    p.add_argument("--from", dest="from_ts", default=None,
                   help="range start (ISO 8601 with offset or epoch µs; default: the store's first read)")
    p.add_argument("--to", dest="to_ts", default=None,
                   help="range end, exclusive (default: after the store's last read)")
    p.add_argument("--no-heatmap", action="store_true", help="skip the heatmap (visits and trips only)")
    p.add_argument("--refit", action="store_true",
                   help="fit the store's presence model again on this range's reads (after RF changes)")
    add_db_arg(p)
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from analytics.job import analyze
    from storeflow.db import connect, store_id
    from storeflow.settings import get_settings

    from_us = parse_ts_us(args.from_ts) if args.from_ts else None
    to_us = parse_ts_us(args.to_ts) if args.to_ts else None
    with connect(args.database_url) as conn:
        if from_us is None or to_us is None:
            sid = store_id(conn, args.store)
            lo, hi = conn.execute(
                "SELECT (extract(epoch FROM min(ts)) * 1e6)::bigint, (extract(epoch FROM max(ts)) * 1e6)::bigint "
                "FROM tag_reads WHERE store_id = %s", (sid,)).fetchone()  # type: ignore[misc]
            if lo is None:
                raise BadInput(f"store {args.store!r} has no reads; import some first (storeflow import reads)")
            from_us = from_us if from_us is not None else lo - lo % HOUR_US
            to_us = to_us if to_us is not None else hi - hi % HOUR_US + HOUR_US
        if to_us <= from_us:
            raise BadInput(f"--to ({format_ts_us(to_us)}) must be after --from ({format_ts_us(from_us)})")
        res = analyze(conn, args.store, from_us, to_us, get_settings(), with_heatmap=not args.no_heatmap,
                      refit=args.refit)
    print(json.dumps({"run_id": res.run_id, "store": res.store, "from": format_ts_us(res.from_us),
                      "to": format_ts_us(res.to_us), "reads": res.reads, "visits": res.visits,
                      "passbys": res.passbys, "trips": res.trips, "heatmap_cells": res.heatmap_cells,
                      "seconds": round(res.seconds, 2)}))
    return 0
