"""Report latency over a month of a 40-counter store, against the obvious alternatives.

Creates a scratch database (dropped at the end), a synthetic 40-counter store and a month of
precomputed rows (trips, visits incl. pass-bys, purchases, door counts, heatmap cells) as the analytics
job would write them, then times each report from analytics.reports (median of --repeat runs) twice:
reading the visits table (no visit rollups) and reading the visit rollups the analyze job writes
(analytics.rollups; built here for the month as the job would), checks both give identical results and
prints the ratio. Last, the same counter report computed in pandas from the raw visit, trip, tag and
purchase rows of the month (fetched from the same database), checked to agree, and its ratio.

    .venv/bin/python bench/bench_reports.py [--trips-per-day 3000] [--days 30] [--repeat 5]

Admin URL: STOREFLOW_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg

from _scratchdb import scratch_database
from analytics import reports as R
from analytics.rollups import rebuild_visit_rollups
from storeflow.db import migrate
from storeflow.layout import parse_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout

ADMIN_URL = os.environ.get("STOREFLOW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STORE = "bench-40"
TZ = "Asia/Shanghai"
N_COUNTERS = 40
START = datetime(2026, 10, 1, tzinfo=timezone(timedelta(hours=8)))


def layout() -> dict[str, Any]:
    zones = []
    for i in range(N_COUNTERS):
        x, y = 1 + (i % 8) * 7, 1 + (i // 8) * 7
        zones.append({"zone": f"C{i + 1:02d}", "kind": "counter", "floor": 1, "name": f"Counter {i + 1}",
                      "polygon": [[x, y], [x + 6, y], [x + 6, y + 6], [x, y + 6]]})
    return {"store": STORE, "name": "Bench store", "timezone": TZ,
            "floors": [{"floor": 1, "width_m": 60.0, "depth_m": 40.0}], "zones": zones,
            "doors": [{"door": "D1", "floor": 1, "x": 30.0, "y": 0.0}, {"door": "D2", "floor": 1, "x": 0.0, "y": 20.0}]}


def populate(conn: psycopg.Connection, trips_per_day: int, days: int, seed: int = 1) -> dict[str, int]:
    """Write a synthetic month; returns row counts."""
    rng = np.random.default_rng(seed)
    sid = upsert_layout(conn, parse_layout(layout()))
    zone_ids = [z for (z,) in conn.execute("SELECT zone_id FROM zones WHERE store_id = %s ORDER BY zone", (sid,))]
    door_ids = [d for (d,) in conn.execute("SELECT door_id FROM doors WHERE store_id = %s ORDER BY door", (sid,))]
    n_tags = trips_per_day * 6
    tiers = np.array(["regular", "silver", "gold", "vip"])
    with conn.cursor() as cur:
        with cur.copy("COPY members (member, tier) FROM STDIN") as cp:
            for i in range(n_tags):
                cp.write_row((f"M{i:07d}", tiers[min(3, int(rng.exponential(0.8)))]))
        with cur.copy("COPY tags (tag_id, epc, member, kind) FROM STDIN") as cp:
            for i in range(n_tags):
                r = rng.random()
                if r < 0.7:
                    cp.write_row((i + 1, f"E2{i:022X}", f"M{i:07d}", "member"))
                elif r < 0.995:
                    cp.write_row((i + 1, f"E2{i:022X}", None, None))
                else:
                    cp.write_row((i + 1, f"E2{i:022X}", None, "staff"))
    member_of = {tid: m for tid, m in conn.execute("SELECT tag_id, member FROM tags WHERE member IS NOT NULL")}
    staff = {tid for (tid,) in conn.execute("SELECT tag_id FROM tags WHERE kind = 'staff'")}
    counts = {"trips": 0, "visits": 0, "purchases": 0, "heatmap_cells": 0, "door_counts": 0}
    with conn.cursor() as cur:
        trips_cp, visits_rows, purchase_rows = [], [], []
        receipt = 0
        for d in range(days):
            day0 = START + timedelta(days=d)
            opening = day0 + timedelta(hours=10)
            tags = rng.integers(1, n_tags + 1, trips_per_day)
            starts = rng.uniform(0, 11 * 3600, trips_per_day)
            for tag, s0 in zip(tags.tolist(), starts.tolist(), strict=True):
                t = opening + timedelta(seconds=s0)
                trip_start = t
                n_visits = max(1, rng.poisson(4))
                n_pass = rng.poisson(3)
                kinds = rng.permutation([False] * n_visits + [True] * n_pass)
                path, rows = [], []
                for passby in kinds.tolist():
                    zone = zone_ids[int(rng.integers(0, N_COUNTERS))]
                    dwell = float(rng.uniform(2, 9.9)) if passby else float(rng.lognormal(5.0, 0.8) + 10)
                    t = t + timedelta(seconds=float(rng.uniform(20, 120)))
                    rows.append((zone, t, t + timedelta(seconds=dwell), dwell, passby))
                    if not passby:
                        path.append(f"C{zone_ids.index(zone) + 1:02d}")
                    t = t + timedelta(seconds=dwell)
                trip_end = t + timedelta(seconds=60)
                customer = tag not in staff
                trips_cp.append((sid, tag, trip_start, trip_end, 50, path, customer))
                member = member_of.get(tag)
                for zone, vs, ve, dwell, passby in rows:
                    visits_rows.append((sid, tag, zone, vs, ve, dwell, passby, customer, trip_start, trip_end))
                    if not passby and customer and rng.random() < 0.15:
                        receipt += 1
                        ts = ve + timedelta(seconds=float(rng.uniform(0, 2400)))
                        purchase_rows.append((sid, ts, member, zone, round(float(rng.lognormal(5, 1)), 2), f"R{receipt}"))
                if rng.random() < 0.05:  # a non-member sale now and then
                    receipt += 1
                    purchase_rows.append((sid, trip_end, None, zone_ids[0], 99.0, f"R{receipt}"))
        with cur.copy("COPY trips (store_id, tag_id, start_ts, end_ts, n_reads, path, customer) FROM STDIN") as cp:
            for r in trips_cp:
                cp.write_row(r)
        with cur.copy("COPY visits (store_id, tag_id, zone_id, start_ts, end_ts, dwell_s, passby, customer, "
                      "trip_start, trip_end) FROM STDIN") as cp:
            for r in visits_rows:
                cp.write_row(r)
        with cur.copy("COPY purchases (store_id, ts, member, zone_id, amount, receipt) FROM STDIN") as cp:
            for r in purchase_rows:
                cp.write_row(r)
        counts.update(trips=len(trips_cp), visits=len(visits_rows), purchases=len(purchase_rows))
        with cur.copy("COPY door_counts (ts, store_id, door_id, entries, exits) FROM STDIN") as cp:
            for d in range(days * 96):
                ts = START + timedelta(minutes=15 * d)
                for door in door_ids:
                    n = int(rng.poisson(20))
                    cp.write_row((ts, sid, door, n, n))
                    counts["door_counts"] += 1
        with cur.copy("COPY heatmap_cells (store_id, floor, bucket, cell_m, ix, iy, seconds) FROM STDIN") as cp:
            for h in range(days * 24):
                if not 10 <= h % 24 < 22:
                    continue
                cells = rng.choice(120 * 80, size=1500, replace=False)
                for c in cells.tolist():
                    cp.write_row((sid, 1, START + timedelta(hours=h), 0.5, c % 120, c // 120, float(rng.uniform(1, 600))))
                counts["heatmap_cells"] += len(cells)
    conn.commit()
    conn.autocommit = True
    for table in ("trips", "visits", "purchases", "door_counts", "heatmap_cells", "tags", "members"):
        conn.execute(f"VACUUM ANALYZE {table}")
    conn.autocommit = False
    return counts


def pandas_counters(conn: psycopg.Connection, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """The counter report computed in pandas from the month's raw rows (the obvious alternative)."""
    import pandas as pd

    sid, window = R.store_info(conn, STORE).store_id, R.store_info(conn, STORE).params["purchase_window_s"]
    v = pd.DataFrame(conn.execute(
        "SELECT tag_id, zone_id, start_ts, dwell_s, passby, trip_start, trip_end FROM visits "
        "WHERE store_id = %s AND start_ts >= %s AND start_ts < %s", (sid, start, end)).fetchall(),
        columns=["tag_id", "zone_id", "start_ts", "dwell_s", "passby", "trip_start", "trip_end"])
    tags = pd.DataFrame(conn.execute("SELECT tag_id, member, kind FROM tags").fetchall(),
                        columns=["tag_id", "member", "kind"])
    tr = pd.DataFrame(conn.execute(
        "SELECT tag_id, start_ts, end_ts FROM trips WHERE store_id = %s AND start_ts < %s AND end_ts >= %s",
        (sid, end, start)).fetchall(), columns=["tag_id", "start_ts", "end_ts"])
    p = pd.DataFrame(conn.execute(
        "SELECT ts, member, zone_id, amount::float8 FROM purchases WHERE store_id = %s AND ts >= %s AND ts < %s",
        (sid, start, end + timedelta(seconds=window + 86400))).fetchall(), columns=["ts", "member", "zone_id", "amount"])
    zones = dict(conn.execute("SELECT zone_id, zone FROM zones WHERE store_id = %s AND kind = 'counter'", (sid,)).fetchall())
    customer_tags = tags[tags.kind.isna() | (tags.kind == "member")]
    v = v.merge(customer_tags, on="tag_id")
    tr = tr[tr.tag_id.isin(customer_tags.tag_id)]
    seen = tr.tag_id.nunique()
    real = v[~v.passby]
    g = real.groupby("zone_id")
    stats = pd.DataFrame({"visitors": g.tag_id.nunique(), "visits": g.size(), "dwell_median_s": g.dwell_s.median(),
                          "dwell_p90_s": g.dwell_s.quantile(0.9), "dwell_total_s": g.dwell_s.sum()})
    passbys = v[v.passby].groupby("zone_id").size()
    m = real.dropna(subset=["member"]).merge(p.dropna(subset=["member"]), on=["member", "zone_id"])
    m = m[(m.ts >= m.trip_start) & (m.ts <= m.trip_end + pd.Timedelta(seconds=window))]
    buyers = m.groupby("zone_id").tag_id.nunique()
    pin = p[(p.ts >= start) & (p.ts < end)]
    revenue = pin.groupby("zone_id").amount.sum()
    out = {}
    for zid, code in zones.items():
        n = int(stats.visitors.get(zid, 0))
        rev = float(revenue.get(zid, 0.0))
        out[code] = {"visitors": n, "visits": int(stats.visits.get(zid, 0)), "passbys": int(passbys.get(zid, 0)),
                     "dwell_median_s": float(stats.dwell_median_s.get(zid, np.nan)),
                     "dwell_p90_s": float(stats.dwell_p90_s.get(zid, np.nan)),
                     "buyers": int(buyers.get(zid, 0)), "revenue": round(rev, 2),
                     "attraction": n / seen if seen else None}
    return out


def _backend_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by the server process of our connection (same host; 0 if unreadable)."""
    if pid is None:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


BACKEND_PID: int | None = None


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall seconds, median CPU seconds (this process + its database backend), last result.

    On a machine shared by several busy processes the wall time mostly measures waiting for a core;
    the CPU time is what the report costs and approximates its wall time on an idle machine.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        c0, b0, t0 = time.process_time(), _backend_cpu_s(BACKEND_PID), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0 + _backend_cpu_s(BACKEND_PID) - b0)
    return statistics.median(walls), statistics.median(cpus), result


def _same(a: Any, b: Any) -> bool:
    """Report results equal (heatmap grids compared cell by cell)."""
    if isinstance(a, R.HeatmapGrid) and isinstance(b, R.HeatmapGrid):
        return np.array_equal(a.seconds, b.seconds) and (a.cell_m, a.start, a.end) == (b.cell_m, b.start, b.end)
    return bool(a == b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trips-per-day", type=int, default=3000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", metavar="DBNAME", help="time an already populated database (from --keep)")
    args = ap.parse_args()

    with scratch_database(ADMIN_URL, "sf_bench_reports", reuse=args.reuse, keep=args.keep) as (name, url):
        with psycopg.connect(url) as conn:
            migrate(conn, Settings(database_url=url))
            if args.reuse:
                counts = {k: conn.execute(f"SELECT count(*) FROM {k}").fetchone()[0]  # type: ignore[index]
                          for k in ("trips", "visits", "purchases", "heatmap_cells", "door_counts")}
                print(f"reusing {name}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
            else:
                t0 = time.perf_counter()
                counts = populate(conn, args.trips_per_day, args.days)
                print(f"synthetic month: {N_COUNTERS} counters, {args.days} days, "
                      + ", ".join(f"{v:,} {k}" for k, v in counts.items())
                      + f" (loaded in {time.perf_counter() - t0:.1f} s)")
            start, end = START, START + timedelta(days=args.days)
            cases: list[tuple[str, Callable[[], Any]]] = [
                ("report counters (month)", lambda: R.counter_kpis(conn, STORE, start, end)),
                ("report store (month)", lambda: R.store_kpis(conn, STORE, start, end)),
                ("report counters --by day", lambda: R.counter_kpis(conn, STORE, start, end, "day")),
                ("report counters --by hour", lambda: R.counter_kpis(conn, STORE, start, end, "hour")),
                ("report counters --by tier", lambda: R.counter_kpis(conn, STORE, start, end, "tier")),
                ("report store --by day", lambda: R.store_kpis(conn, STORE, start, end, "day")),
                ("report counters --compare previous",
                 lambda: R.counter_kpis_compare(conn, STORE, start, end, "previous")),
                ("report ranking", lambda: R.counter_ranking(conn, STORE, start, end)),
                ("report concentration", lambda: R.revenue_concentration(conn, STORE, start, end)),
                ("report paths --top 20", lambda: R.top_paths(conn, STORE, start, end, 20)),
                ("report heatmap --floor 1", lambda: R.heatmap(conn, STORE, 1, start, end)),
                ("report heatmap --cell 2", lambda: R.heatmap(conn, STORE, 1, start, end, 2.0)),
            ]
            global BACKEND_PID
            BACKEND_PID = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
            sid = R.store_info(conn, STORE).store_id
            with conn.transaction():  # first without rollups: every report reads the visits table
                conn.execute("DELETE FROM visit_rollups WHERE store_id = %s", (sid,))
                conn.execute("DELETE FROM visit_rollup_days WHERE store_id = %s", (sid,))
            # Serial plans, so that the backend's CPU time is all the CPU the report used.
            conn.execute("SET max_parallel_workers_per_gather = 0")
            conn.commit()
            results, raw = {}, {}
            print(f"load average before timing: {os.getloadavg()[0]:.1f} (2 cores shared with the team)")
            print(f"{'':40s} {'visits table':>17s}   {'visit rollups':>17s}   {'ratio':>13s}")
            print(f"{'report':40s} {'wall s':>8s} {'CPU s':>8s}   {'wall s':>8s} {'CPU s':>8s}   {'wall':>6s} {'CPU':>6s}"
                  f"   (medians of {args.repeat})")
            for label, fn in cases:
                raw[label] = timed(fn, args.repeat)
            t0 = time.perf_counter()
            with conn.transaction():  # what the analyze job writes with the month's visits
                n_days = rebuild_visit_rollups(conn, sid, start, end)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE visit_rollups")
            conn.execute("VACUUM ANALYZE visit_rollup_days")
            conn.autocommit = False
            t_roll = time.perf_counter() - t0
            for label, fn in cases:
                secs, cpu, res = timed(fn, args.repeat)
                results[label] = res
                r_secs, r_cpu, r_res = raw[label]
                if not _same(r_res, res):
                    raise SystemExit(f"MISMATCH {label}: visit rollups and visits table disagree")
                print(f"{label:40s} {r_secs:8.3f} {r_cpu:8.3f}   {secs:8.3f} {cpu:8.3f}   "
                      f"{r_secs / secs:5.1f}x {r_cpu / cpu:5.1f}x")
            print(f"(results identical; visit rollups of {n_days} days built in {t_roll:.1f} s)")
            sql_s, sql_cpu, _ = timed(lambda: R.counter_kpis(conn, STORE, start, end), args.repeat)
            pd_s, pd_cpu, pd_res = timed(lambda: pandas_counters(conn, start, end), max(1, args.repeat // 2))
            sql_rows = {r["zone"]: r for r in results["report counters (month)"]}
            for zone, expect in pd_res.items():
                got = sql_rows[zone]
                for k, val in expect.items():
                    ok = (val is None and got[k] is None) or (
                        got[k] is not None and abs(float(got[k]) - float(val)) <= 1e-3 + 1e-9 * abs(float(val)))  # dwell in ms
                    if not ok:
                        raise SystemExit(f"MISMATCH {zone} {k}: sql {got[k]} pandas {val}")
            print(f"load average after timing: {os.getloadavg()[0]:.1f}")
            print(f"\ncounter report, month of {counts['visits']:,} visit rows: analytics.reports {sql_s:.3f} s wall "
                  f"({sql_cpu:.3f} s CPU), pandas from the raw rows {pd_s:.3f} s wall ({pd_cpu:.3f} s CPU); "
                  f"ratio pandas/reports = {pd_s / sql_s:.1f}x wall, {pd_cpu / sql_cpu:.1f}x CPU (results agree)")


if __name__ == "__main__":
    main()
