"""`storeflow report ...`: the CLI over :mod:`analytics.reports` (SPEC section 4).

Periods: ``--from``/``--to`` take a date (the start of that day in the store's time zone) or an ISO
8601 time with a UTC offset; ``--to`` is exclusive. Without either: the last full day in the store's
time zone. Only ``--from``: up to now. Only ``--to``: the day before it.

Formats: JSON (UTF-8, times ISO 8601 UTC), CSV (header row; empty field = null; paths joined with
``>``) and Parquet (binary: ``--output FILE`` or a redirected stdout); heatmaps also PNG and HTML.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from typing import IO, Any

from storeflow.contract import BadInput

log = logging.getLogger(__name__)

TABLE_FORMATS = ("json", "csv", "parquet")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``storeflow report counters|store|visits|paths|heatmap|member|ranking|concentration``."""
    from storeflow.cli import add_db_arg

    description = __doc__.split("\n", 2)[2].replace("``", "").replace(":mod:", "")
    rep = sub.add_parser("report", help="counter, store, visit, path, heatmap and member reports",
                         description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    rs = rep.add_subparsers(dest="report", required=True, metavar="REPORT")

    def common(name: str, hlp: str, formats: Sequence[str], default: str) -> argparse.ArgumentParser:
        p = rs.add_parser(name, help=hlp, description=hlp)
        p.add_argument("--store", required=True, help="store id")
        p.add_argument("--from", dest="from_", metavar="T",
                       help="period start: date (store time zone) or ISO time with offset; default: yesterday")
        p.add_argument("--to", metavar="T", help="period end, exclusive (same forms as --from)")
        p.add_argument("--format", choices=formats, default=default, help=f"output format (default {default})")
        p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
        add_db_arg(p)
        return p

    for name, hlp, fn in (("counters", "counter KPIs, one row per counter (SPEC section 3)", _cmd_counters),
                          ("store", "store KPIs (footfall, tags seen, transactions, conversion, trip median)",
                           _cmd_store)):
        p = common(name, hlp, TABLE_FORMATS, "json")
        p.add_argument("--by", choices=("tier", "hour", "day"),
                       help="break down by member tier (and anonymous), hour of day or day (store time zone)")
        p.add_argument("--compare", choices=("previous", "year"),
                       help="add <key>_prev and <key>_delta for the previous period or the same dates a year earlier")
        p.set_defaults(func=fn)

    p = common("visits", "customer counter visits (member-level data)", ("csv", "json", "parquet"), "csv")
    p.set_defaults(func=_cmd_visits)

    p = common("paths", "most frequent paths (ordered counter visits per trip)", TABLE_FORMATS, "json")
    p.add_argument("--top", type=_positive_int, default=20, help="number of paths (default 20)")
    p.set_defaults(func=_cmd_paths)

    p = common("heatmap", "floor heatmap of customer tag-seconds", ("csv", "png", "html"), "csv")
    p.add_argument("--floor", type=int, required=True, help="floor number")
    p.add_argument("--cell", type=_positive_float, metavar="M",
                   help="cell edge in metres, a whole multiple of the stored cell (default: the stored cell)")
    p.add_argument("--engine", choices=("auto", "kaleido", "builtin"), default="auto",
                   help="PNG renderer: kaleido (needs Chrome/Chromium), builtin, or auto (default)")
    p.set_defaults(func=_cmd_heatmap)

    p = common("member", "one member's trips, paths, dwell and purchases (member-level data)", ("json",), "json")
    p.add_argument("--member", required=True, help="member id")
    p.set_defaults(func=_cmd_member)

    p = common("ranking", "counters ranked by revenue per visitor with their attraction/conversion quadrant",
               TABLE_FORMATS, "json")
    p.set_defaults(func=_cmd_ranking)

    p = common("concentration", "80/20 view: revenue share of the top members who visited", ("json", "csv"), "json")
    p.add_argument("--top-fraction", type=_positive_float, default=0.2, help="top share of members (default 0.2)")
    p.set_defaults(func=_cmd_concentration)


# ------------------------------------------------------------------------------------------------
# commands


def _run(args: argparse.Namespace, body: Callable[[Any, Any], Any]) -> int:
    """Open the database, resolve the period in the store's time zone and run ``body(conn, period)``."""
    from analytics import reports
    from storeflow.db import connect
    from storeflow.settings import get_settings

    settings = get_settings()
    with connect(args.database_url) as conn:
        conn.execute(f"SET statement_timeout = {int(settings.query_timeout_s * 1000)}")
        info = reports.store_info(conn, args.store)
        period = reports.resolve_period(args.from_, args.to, info.timezone)
        body(conn, period)
        _note_if_no_visits(conn, info, period)
    return 0


def _note_if_no_visits(conn: Any, info: Any, period: Any) -> None:
    """One line on stderr when the period holds no analysed visits: the dates that do (the default
    period, yesterday, is easy to miss data with), or that the store has not been analysed."""
    sid = info.store_id
    if conn.execute("SELECT EXISTS (SELECT 1 FROM visits WHERE store_id = %s AND start_ts >= %s AND start_ts < %s)",
                    (sid, period.start, period.end)).fetchone()[0]:
        return
    first, last = conn.execute("SELECT min(start_ts), max(start_ts) FROM visits WHERE store_id = %s",
                               (sid,)).fetchone()
    tz = info.tz
    shown = f"{period.start.astimezone(tz):%Y-%m-%d %H:%M} to {period.end.astimezone(tz):%Y-%m-%d %H:%M}"
    if first is None:
        msg = f"no visits analysed for store {info.store} yet (storeflow analyze --store {info.store} ...)"
    else:
        msg = (f"no visits from {shown} ({info.timezone}); analysed visits run from "
               f"{first.astimezone(tz):%Y-%m-%d} to {last.astimezone(tz):%Y-%m-%d}: pass --from/--to")
    print(f"storeflow: note: {msg}", file=sys.stderr)


def _cmd_counters(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        if args.compare:
            rows = reports.counter_kpis_compare(conn, args.store, period.start, period.end, args.compare, args.by)
        else:
            rows = reports.counter_kpis(conn, args.store, period.start, period.end, args.by)
        _write_table(rows, args)

    return _run(args, body)


def _cmd_store(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        if args.compare:
            rows = reports.store_kpis_compare(conn, args.store, period.start, period.end, args.compare, args.by)
        else:
            rows = reports.store_kpis(conn, args.store, period.start, period.end, args.by)
        # SPEC: one JSON object for the store; a breakdown is an array of them.
        _write_table(rows[0] if args.by is None else rows, args)

    return _run(args, body)


def _cmd_visits(args: argparse.Namespace) -> int:
    from analytics import reports
    from storeflow.settings import get_settings

    cap = get_settings().query_max_rows

    def body(conn: Any, period: Any) -> None:
        rows = reports.visit_rows(conn, args.store, period.start, period.end, limit=cap + 1)
        if len(rows) > cap:
            rows = rows[:cap]
            print(f"storeflow: warning: visits truncated to STOREFLOW_QUERY_MAX_ROWS={cap} rows; "
                  "narrow the period", file=sys.stderr)
        _write_table(rows, args, columns=("epc", "member", "zone", "start", "end", "dwell_s"))

    return _run(args, body)


def _cmd_paths(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        _write_table(reports.top_paths(conn, args.store, period.start, period.end, args.top), args,
                     columns=("path", "trips"))

    return _run(args, body)


def _cmd_ranking(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        _write_table(reports.counter_ranking(conn, args.store, period.start, period.end), args)

    return _run(args, body)


def _cmd_concentration(args: argparse.Namespace) -> int:
    from analytics import reports

    if args.top_fraction > 1:
        raise BadInput(f"--top-fraction {args.top_fraction} must be at most 1")

    def body(conn: Any, period: Any) -> None:
        _write_table(reports.revenue_concentration(conn, args.store, period.start, period.end,
                                                   args.top_fraction), args)

    return _run(args, body)


def _cmd_member(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        journey = reports.member_journey(conn, args.store, args.member, period.start, period.end)
        _write_text(json.dumps(journey, default=_json_default, ensure_ascii=False, indent=2) + "\n", args)

    return _run(args, body)


def _cmd_heatmap(args: argparse.Namespace) -> int:
    from analytics import reports

    def body(conn: Any, period: Any) -> None:
        grid = reports.heatmap(conn, args.store, args.floor, period.start, period.end, args.cell)
        if args.format == "csv":
            _write_table(grid.rows(), args, columns=("x_m", "y_m", "seconds"))
        elif args.format == "html":
            from analytics.render import heatmap_html

            _write_text(heatmap_html(grid), args)
        else:
            from analytics.render import heatmap_png

            _write_bytes(heatmap_png(grid, engine=args.engine), args)

    return _run(args, body)


# ------------------------------------------------------------------------------------------------
# output


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.astimezone(timezone.utc).isoformat()
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).isoformat()
    if isinstance(v, (list, tuple)):
        return ">".join(str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _write_table(data: list[dict[str, Any]] | dict[str, Any], args: argparse.Namespace,
                 columns: Sequence[str] | None = None) -> None:
    fmt = args.format
    if fmt == "json":
        _write_text(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2) + "\n", args)
        return
    rows = [data] if isinstance(data, dict) else data
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_value(r.get(c)) for c in cols])
        _write_text(buf.getvalue(), args)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.null()) for c in cols})
        out = io.BytesIO()
        pq.write_table(table, out)
        _write_bytes(out.getvalue(), args)
    else:  # argparse restricts the choices; this is a programming error
        raise BadInput(f"unknown format {fmt!r}")


def _write_text(text: str, args: argparse.Namespace) -> None:
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _write_bytes(data: bytes, args: argparse.Namespace) -> None:
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
        return
    out: IO[bytes] = sys.stdout.buffer
    if sys.stdout.isatty():
        raise BadInput(f"{args.format} output is binary; use --output FILE or redirect stdout")
    out.write(data)
    out.flush()
