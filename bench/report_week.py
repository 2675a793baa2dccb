"""The counter report of a simulated department-store week next to the simulator's ground truth.

Simulates the bundled ``department`` store for ``--days`` opening days (10:00-22:00 local, from Monday
2026-11-16), one simulation per day (its own seed; EPCs are random, so each day's shoppers are new
tags; member and receipt ids are prefixed with the day so they stay distinct across the week).
Every day goes through the real import path (``ingest.files.import_file`` of SPEC CSVs: reads, doors,
tags, members, purchases) into a scratch database (dropped at the end), then one ``analyze`` runs over
the week and :func:`analytics.reports.counter_kpis` / :func:`store_kpis` produce the report (SPEC
keys). The truth is the simulator's (:class:`simulators.truth.Truth`) per-day KPIs, combined over the
week: visitors, visits, pass-bys, buyers, revenue, footfall, tags seen and transactions add up (each
day's tags and receipts are distinct), dwell and trip medians are taken over the pooled values.

Reads are generated for customer tags only (members and anonymous shoppers); staff and asset tags
are in the tags file but produce no reads. Reason: on this store they make ~95 % of the reads (20 M
per 12-hour day, ~2 min to generate each day) whatever the number of shoppers, and every customer
figure excludes them anyway. What is lost: their share of the presence-model fit and their
contention for reader slots in crowds (the simulator's singulation cap), so customer reads are a
little better than with staff present. ``--with-staff`` keeps them (expect ~15 min per day).

    nice -n 10 .venv/bin/python bench/report_week.py [--shoppers-per-day 800] [--days 7] \\
        [--scenario easy|hard] [--seed 1] [--with-staff] [--advised] [--keep | --reuse DBNAME]

Admin URL: STOREFLOW_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from _scratchdb import scratch_database
from analytics import reports as R
from analytics.job import analyze
from ingest.files import import_file
from simulators import sample_layout_path, simulate
from simulators.sim import Simulation
from simulators.trajectory import Trajectories
from storeflow.db import migrate
from storeflow.layout import Layout, load_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout

ADMIN_URL = os.environ.get("STOREFLOW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FIRST_DAY = (2026, 11, 16)  # a Monday: the week has five weekdays and a weekend
OPEN_HOUR, OPEN_HOURS = 10, 12.0
#: Keys compared per counter (SPEC counter KPI table).
COMPARED = ("visitors", "visits", "passbys", "dwell_median_s", "buyers", "conversion", "revenue")


def customer_only(traj: Trajectories, customer: np.ndarray) -> Trajectories:
    """The same trajectories with non-customer tags removed (no waypoints: they produce no reads)."""
    counts = np.diff(traj.ptr) * customer.astype(np.int64)
    ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    keep = np.repeat(customer, np.diff(traj.ptr))
    return Trajectories(ptr, traj.t_us[keep], traj.floor[keep], traj.x[keep], traj.y[keep])


def _write_csv(path: Path, header: list[str], rows: Any) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def write_day(sim: Simulation, day: int, out: Path) -> dict[str, Path]:
    """SPEC CSVs of one simulated day (member and receipt ids prefixed with the day)."""
    pre = f"D{day + 1}-"
    layout = sim.layout
    epcs = sim.tags["epc"]
    files = {}
    files["reads"] = out / "reads.csv"
    readers = pa.array([r.reader for r in layout.readers], pa.string())
    epc_dict = pa.array(epcs.tolist(), pa.string())
    with open(files["reads"], "wb") as fh:
        fh.write(b"ts,reader,antenna,epc,rssi\n")
        for ch in sim.read_chunks(500_000):
            table = pa.table({
                "ts": ch["ts_us"],
                "reader": pa.DictionaryArray.from_arrays(pa.array(ch["reader"].astype(np.int32)), readers),
                "antenna": ch["port"],
                "epc": pa.DictionaryArray.from_arrays(pa.array(ch["tag"].astype(np.int32)), epc_dict),
                "rssi": ch["rssi_cdbm"] / 100.0,
            })
            pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    doors = [d.door for d in layout.doors]
    files["doors"] = _write_csv(out / "doors.csv", ["ts", "door", "entries", "exits"], (
        (int(r["ts_us"]), doors[r["door"]], int(r["entries"]), int(r["exits"])) for r in sim.door_counts))
    listed = sim.tags[sim.tags["kind"] != ""]
    files["tags"] = _write_csv(out / "tags.csv", ["epc", "member", "kind"], (
        (t["epc"], pre + t["member"] if t["member"] else "", t["kind"]) for t in listed))
    files["members"] = _write_csv(out / "members.csv", ["member", "tier", "joined"], (
        (pre + m["member"], m["tier"], m["joined"]) for m in sim.members))
    files["purchases"] = _write_csv(out / "purchases.csv", ["ts", "member", "zone", "amount", "receipt"], (
        (int(p["ts_us"]), pre + p["member"] if p["member"] else "", p["zone"], f"{p['amount']:.2f}",
         pre + p["receipt"]) for p in sim.purchases))
    return files


@dataclass
class DayTruth:
    """What the week's truth needs from one simulated day."""

    counters: list[dict[str, Any]]
    store: dict[str, Any]
    dwell_by_zone: dict[str, np.ndarray]   # true visit dwell times (pass-bys excluded), seconds
    trip_s: np.ndarray                     # true customer trip durations, seconds


def day_truth(sim: Simulation) -> DayTruth:
    t = sim.truth
    v = t.visits
    v = v[~v["passby"]]
    dwell = {z.zone: v["dwell_s"][v["zone"] == z.zone] for z in sim.layout.counters}
    tr = t.trips
    return DayTruth(t.counter_kpis(), t.store_kpis(), dwell, (tr["end_us"] - tr["start_us"]) / 1e6)


def week_truth(days: list[DayTruth]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Counter and store KPIs of the week from the per-day truths (see the module docstring)."""
    counters: dict[str, dict[str, Any]] = {}
    for d in days:
        for row in d.counters:
            c = counters.setdefault(row["zone"], {"visitors": 0, "visits": 0, "passbys": 0, "buyers": 0,
                                                  "revenue": 0.0})
            for k in ("visitors", "visits", "passbys", "buyers", "revenue"):
                c[k] += row[k]
    for zone, c in counters.items():
        dwell = np.concatenate([d.dwell_by_zone[zone] for d in days])
        c["dwell_median_s"] = float(np.median(dwell)) if dwell.size else None
        c["conversion"] = c["buyers"] / c["visitors"] if c["visitors"] else None
        c["revenue"] = round(c["revenue"], 2)
    footfall = sum(d.store["footfall"] for d in days)
    tx = sum(d.store["transactions"] for d in days)
    trips = np.concatenate([d.trip_s for d in days])
    store = {"footfall": footfall, "tags_seen": sum(d.store["tags_seen"] for d in days), "transactions": tx,
             "conversion": tx / footfall if footfall else None,
             "trip_median_s": float(np.median(trips)) if trips.size else None}
    return counters, store


def rel_err(est: float | None, true: float | None) -> float | None:
    """(estimate - truth) / truth; None when the truth is 0 or either side is missing."""
    if est is None or true is None or true == 0:
        return None
    return (est - true) / true


def _fmt(x: Any, width: int, digits: int = 0) -> str:
    if x is None:
        return f"{'-':>{width}s}"
    if isinstance(x, float) and not float(x).is_integer() or digits:
        return f"{x:>{width}.{digits}f}"
    return f"{int(x):>{width}d}"


def print_table(est: list[dict[str, Any]], truth: dict[str, dict[str, Any]], est_store: dict[str, Any],
                true_store: dict[str, Any]) -> None:
    """Per counter estimated / true, the store KPIs, and the summary."""
    cols = [("visitors", 5, 0), ("visits", 5, 0), ("passbys", 5, 0), ("dwell_median_s", 6, 1),
            ("buyers", 4, 0), ("conversion", 5, 2), ("revenue", 9, 0)]
    short = {"dwell_median_s": "dwell med s"}
    head = "zone  " + "  ".join(f"{short.get(k, k):>{2 * w + 1}s}" for k, w, _ in cols)
    print(head)
    print("      " + "  ".join(f"{'est':>{w}s}/{'true':<{w}s}" for _, w, _ in cols))
    errs: dict[str, list[float]] = {k: [] for k in COMPARED}
    within = n_vis = 0
    for row in sorted(est, key=lambda r: r["zone"]):
        t = truth.get(row["zone"], {})
        cells = []
        for k, w, dg in cols:
            e, v = row[k], t.get(k)
            cells.append(f"{_fmt(e, w, dg)}/{_fmt(v, w, dg).strip():<{w}s}")
            r = rel_err(e, v)
            if r is not None:
                errs[k].append(abs(r))
        print(f"{row['zone']:5s} " + "  ".join(cells))
        if t.get("visitors"):
            n_vis += 1
            within += abs(rel_err(row["visitors"], t["visitors"]) or 0.0) <= 0.10
    print("\nstore KPIs        estimated      truth   rel. error")
    for k in R.STORE_KEYS:
        e, v = est_store[k], true_store[k]
        r = rel_err(e, v)
        digits = 3 if isinstance(e, float) or isinstance(v, float) else 0
        print(f"{k:16s} {_fmt(e, 10, digits)} {_fmt(v, 10, digits)}   {'-' if r is None else f'{r:+.1%}'}")
    tot_e = sum(r["visitors"] for r in est)
    tot_t = sum(t["visitors"] for t in truth.values())
    print(f"\ncounters within 10 % on visitors: {within} of {n_vis} (counters with true visitors); "
          f"total visitors {tot_e} vs {tot_t} ({rel_err(tot_e, tot_t):+.1%})")
    print("median |relative error| per key over counters (truth > 0): " + ", ".join(
        f"{k} {statistics.median(v):.1%} (n={len(v)})" for k, v in errs.items() if v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers-per-day", type=int, default=800)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--scenario", default="easy")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hours", type=float, default=OPEN_HOURS, help="opening hours per day from 10:00")
    ap.add_argument("--with-staff", action="store_true", help="also generate staff and asset reads (slow)")
    ap.add_argument("--advised", action="store_true", help="with the antennas analytics.coverage suggests added")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", metavar="DBNAME", help="a database kept by --keep with the same arguments: "
                    "simulate for the truth only, skip generating and importing reads")
    args = ap.parse_args()

    t_all = time.perf_counter()
    layout: Layout = load_layout(sample_layout_path("department"))
    if args.advised:
        from analytics.coverage import with_suggested_antennas

        layout = with_suggested_antennas(layout)
    tz = ZoneInfo(layout.timezone)
    week_start = datetime(*FIRST_DAY, tzinfo=tz)
    week_end = datetime.combine(week_start.date() + timedelta(days=args.days), week_start.timetz())
    with scratch_database(ADMIN_URL, "sf_report_week", reuse=args.reuse, keep=args.keep) as (name, url):
        settings = Settings(database_url=url)
        with psycopg.connect(url) as conn:
            migrate(conn, settings)
            if not args.reuse:
                with conn.transaction():
                    upsert_layout(conn, layout)
            truths, n_reads, n_tags = [], 0, 0
            t_sim = t_imp = 0.0
            for d in range(args.days):
                day0 = datetime.combine(week_start.date() + timedelta(days=d), datetime.min.time(), tz)
                start_us = int((day0 + timedelta(hours=OPEN_HOUR)).timestamp()) * 1_000_000
                t0 = time.perf_counter()
                sim = simulate(layout, shoppers=args.shoppers_per_day, hours=args.hours,
                               seed=args.seed * 1000 + d, scenario=args.scenario, start_us=start_us)
                if not args.with_staff:
                    # reads only: the truth keeps its own reference to all trajectories
                    sim._traj = customer_only(sim._traj, sim.truth.customer)
                if args.reuse:
                    truths.append(day_truth(sim))
                    t_sim += time.perf_counter() - t0
                    continue
                with tempfile.TemporaryDirectory(prefix="report_week_") as tmp:
                    files = write_day(sim, d, Path(tmp))
                    truths.append(day_truth(sim))
                    t1 = time.perf_counter()
                    t_sim += t1 - t0
                    for kind in ("tags", "members", "reads", "doors", "purchases"):
                        res = import_file(conn, kind, files[kind], None if kind in ("tags", "members") else
                                          layout.store, progress=False)
                        if res.rejected:
                            raise SystemExit(f"day {d + 1}: {res.rejected} {kind} rows rejected")
                        n_reads += res.imported if kind == "reads" else 0
                    t_imp += time.perf_counter() - t1
                n_tags += int(sim.truth.customer.sum())
                print(f"day {d + 1} ({day0.date()} {day0.strftime('%a')}): {args.shoppers_per_day} shoppers, "
                      f"{len(sim.purchases)} purchases, reads so far {n_reads:,} "
                      f"(simulate {t_sim:.0f} s, import {t_imp:.0f} s in total)", flush=True)
            t0 = time.perf_counter()
            # the counter report does not need the heatmap (nor its position fit)
            res = analyze(conn, layout.store, int(week_start.timestamp()) * 1_000_000,
                          int(week_end.timestamp()) * 1_000_000, settings, with_heatmap=False)
            t_an = time.perf_counter() - t0
            print(f"analyze {week_start.date()}..{week_end.date()}: {res.reads:,} reads, {res.visits:,} visits, "
                  f"{res.passbys:,} pass-bys, {res.trips:,} trips in {t_an:.0f} s", flush=True)
            t0 = time.perf_counter()
            est = R.counter_kpis(conn, layout.store, week_start, week_end)
            est_store = R.store_kpis(conn, layout.store, week_start, week_end)[0]
            t_rep = time.perf_counter() - t0
        truth, true_store = week_truth(truths)
        print(f"\n{layout.store} {args.scenario}, {args.days} days x {args.shoppers_per_day} shoppers "
              f"({args.hours:g} h from {OPEN_HOUR}:00), seed {args.seed}, "
              f"{'all tags' if args.with_staff else 'customer tags only'} read; "
              f"counter + store report in {t_rep:.2f} s; whole run {time.perf_counter() - t_all:.0f} s\n")
        print_table(est, truth, est_store, true_store)


if __name__ == "__main__":
    main()
