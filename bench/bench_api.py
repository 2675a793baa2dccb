"""HTTP API load test: p50/p95 latency of the main endpoints at 50 concurrent clients, against a real
uvicorn server over a month of a synthetic 40-counter store, and the obvious alternative (the counter
report computed per request from the raw visit/purchase rows with pandas) as a ratio. Also the
dashboard load time in headless Chromium (navigation until the network is idle and the plots are drawn).

Creates a scratch database (dropped at the end), fills it with COPY (volumes printed), starts
`uvicorn` on 127.0.0.1 in a subprocess, and runs the clients from this process (httpx, asyncio).

    .venv/bin/python bench/bench_api.py [--trips-per-day 3000] [--days 30] [--clients 50] [--requests 400]

Admin URL: STOREFLOW_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
The synthetic store generator (:func:`synth_layout`, :func:`populate`) is also used by the browser tests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("STOREFLOW_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

#: names for the synthetic counters (brand booths), so screenshots read like a real store
COUNTER_NAMES = (
    "Haier refrigerators", "Midea washers", "Gree air conditioners", "Lancôme", "Estée Lauder", "Shiseido",
    "Nike", "Adidas", "Li-Ning", "Anta", "Uniqlo", "Levi's", "Apple", "Huawei", "Xiaomi", "Sony", "Dyson",
    "Philips", "Chow Tai Fook", "Pandora", "Swarovski", "Coach", "Samsonite", "Lego", "Mothercare",
    "Muji", "IKEA corner", "Starbucks", "Godiva", "Lindt", "Ecco", "Skechers", "Decathlon", "Canon",
    "Nikon", "Bose", "Casio", "Seiko", "L'Occitane", "Innisfree",
)
CATEGORIES = ("appliances", "beauty", "sports", "fashion", "electronics", "jewellery", "kids", "food")


def synth_layout(store: str, counters: int = 40, *, width_m: float = 80.0, depth_m: float = 50.0,
                 plan: str | None = None, name: str = "Synthetic department store") -> dict[str, Any]:
    """A one-floor layout: ``counters`` booths on a grid with aisles, an entrance, a checkout, two doors,
    one reader antenna per counter."""
    cols = min(8, counters)
    rows = math.ceil(counters / cols)
    pitch_x = width_m / cols
    pitch_y = (depth_m - 10.0) / rows           # the bottom 10 m: entrance, checkout, main aisle
    zones: list[dict[str, Any]] = []
    antennas: list[dict[str, Any]] = []
    for i in range(counters):
        cx, cy = i % cols, i // cols
        x0, y0 = cx * pitch_x + 1.0, 10.0 + cy * pitch_y + 1.0
        x1, y1 = (cx + 1) * pitch_x - 1.5, 10.0 + (cy + 1) * pitch_y - 1.5
        code = f"C{i + 1:02d}"
        zones.append({"zone": code, "kind": "counter", "floor": 1,
                      "name": COUNTER_NAMES[i % len(COUNTER_NAMES)] + (f" {i // len(COUNTER_NAMES) + 1}"
                                                                        if i >= len(COUNTER_NAMES) else ""),
                      "category": CATEGORIES[i % len(CATEGORIES)],
                      "polygon": [[round(x0, 2), round(y0, 2)], [round(x1, 2), round(y0, 2)],
                                  [round(x1, 2), round(y1, 2)], [round(x0, 2), round(y1, 2)]]})
        antennas.append({"port": i % 4 + 1, "floor": 1, "x": round((x0 + x1) / 2, 2),
                         "y": round((y0 + y1) / 2, 2), "zone": code})
    mid = width_m / 2
    zones.append({"zone": "E1", "kind": "entrance", "floor": 1, "name": "Main entrance",
                  "polygon": [[mid - 4, 0], [mid + 4, 0], [mid + 4, 3], [mid - 4, 3]]})
    zones.append({"zone": "K1", "kind": "checkout", "floor": 1, "name": "Checkout",
                  "polygon": [[2, 2], [14, 2], [14, 7], [2, 7]]})
    readers = [{"reader": f"R{r + 1}", "antennas": antennas[r * 4:(r + 1) * 4]}
               for r in range(math.ceil(len(antennas) / 4))]
    floor: dict[str, Any] = {"floor": 1, "width_m": width_m, "depth_m": depth_m}
    if plan:
        floor["plan"] = plan
    return {"store": store, "name": name, "timezone": "Asia/Shanghai", "floors": [floor], "zones": zones,
            "readers": readers,
            "doors": [{"door": "D1", "floor": 1, "x": mid, "y": 0.0},
                      {"door": "D2", "floor": 1, "x": 0.0, "y": depth_m / 2}]}


def _copy_csv(cur: psycopg.Cursor, table: str, columns: str, frame: Any) -> int:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as cp:
        cp.write(buf.getvalue())
    return len(frame)


def populate(conn: psycopg.Connection, store: str, first_day: date, days: int, trips_per_day: int,
             seed: int = 1, tag_id_base: int = 1) -> dict[str, int]:
    """Write ``days`` of analysed data for an imported store as the analytics job would: trips, visits
    (with pass-bys), purchases, door counts every 15 min, hourly heatmap cells (0.5 m) and an
    analysis run. Daily volume varies by weekday (weekends +40 %). Returns row counts."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sid, tz = conn.execute("SELECT store_id, timezone FROM stores WHERE store = %s", (store,)).fetchone()  # type: ignore[misc]
    zone = ZoneInfo(tz)
    counters = conn.execute("SELECT zone_id, zone, polygon FROM zones WHERE store_id = %s AND kind = 'counter' "
                            "ORDER BY zone", (sid,)).fetchall()
    door_ids = [d for (d,) in conn.execute("SELECT door_id FROM doors WHERE store_id = %s ORDER BY door", (sid,))]
    width_m, depth_m = conn.execute("SELECT width_m, depth_m FROM floors WHERE store_id = %s AND floor = 1",
                                    (sid,)).fetchone()  # type: ignore[misc]
    n_z = len(counters)
    popularity = rng.pareto(1.5, n_z) + 0.3
    popularity /= popularity.sum()
    n_tags = max(50, trips_per_day * 4)
    tiers = np.array(["regular", "silver", "gold", "vip"])
    tag_ids = np.arange(tag_id_base, tag_id_base + n_tags)
    kind = np.where(rng.random(n_tags) < 0.45, "member", "")
    kind[:3] = "staff"
    members = np.where(kind == "member", [f"{store[:8]}-M{i:07d}" for i in tag_ids], "")
    with conn.cursor() as cur:
        is_m = kind == "member"
        _copy_csv(cur, "members", "member, tier", pd.DataFrame({
            "member": members[is_m], "tier": tiers[np.minimum(3, rng.exponential(0.8, is_m.sum()).astype(int))]}))
        _copy_csv(cur, "tags", "tag_id, epc, member, kind", pd.DataFrame({
            "tag_id": tag_ids, "epc": [f"E2{seed:04X}{i:018X}" for i in tag_ids],
            "member": np.where(is_m, members, None), "kind": np.where(kind == "", None, kind)}))
    member_of = dict(zip(tag_ids.tolist(), members.tolist(), strict=True))
    # hour-of-day profile (store time), 10:00-22:00
    hour_w = np.array([0.04, 0.06, 0.08, 0.08, 0.07, 0.07, 0.08, 0.09, 0.11, 0.12, 0.11, 0.09])
    hour_w /= hour_w.sum()
    trips, visits, purchases = [], [], []
    receipt = 0
    heat_dwell = np.zeros((days, 24, n_z))
    customers = tag_ids[3:]
    for d in range(days):
        day = first_day + timedelta(days=d)
        opening = datetime(day.year, day.month, day.day, 10, tzinfo=zone).astimezone(timezone.utc)
        n_trips = int(trips_per_day * (1.4 if day.weekday() >= 5 else 1.0) * rng.uniform(0.9, 1.1))
        hours = rng.choice(12, n_trips, p=hour_w)
        starts = hours * 3600 + rng.uniform(0, 3600, n_trips)
        who = rng.choice(customers, n_trips)
        for tag, s0 in zip(who.tolist(), starts.tolist(), strict=True):
            t = s0
            n_visits = 1 + int(rng.poisson(3))
            n_pass = int(rng.poisson(2))
            zs = rng.choice(n_z, n_visits + n_pass, p=popularity)
            for k in range(1, len(zs)):  # the analytics merges back-to-back stays at one counter
                if n_z > 1 and zs[k] == zs[k - 1]:
                    zs[k] = (zs[k] + 1 + int(rng.integers(0, n_z - 1))) % n_z
            passby = rng.permutation(np.r_[np.zeros(n_visits, bool), np.ones(n_pass, bool)])
            rows, path = [], []
            for zi, pb in zip(zs.tolist(), passby.tolist(), strict=True):
                t += float(rng.uniform(20, 120))
                dwell = float(rng.uniform(2, 9.5)) if pb else float(rng.lognormal(4.8, 0.8) + 10)
                rows.append((zi, t, dwell, pb))
                if not pb:
                    path.append(counters[zi][1])
                    h = int(((opening + timedelta(seconds=t)).astimezone(zone)).hour)
                    heat_dwell[d, h, zi] += dwell
                t += dwell
            trip_start, trip_end = opening + timedelta(seconds=s0), opening + timedelta(seconds=t + 60)
            trips.append((sid, tag, trip_start, trip_end, 40, "{" + ",".join(path) + "}", True))
            member = member_of[tag] or None
            for zi, vs, dwell, pb in rows:
                v0 = opening + timedelta(seconds=vs)
                visits.append((sid, tag, counters[zi][0], v0, v0 + timedelta(seconds=dwell), dwell, pb, True,
                               trip_start, trip_end))
                if not pb and rng.random() < 0.12:
                    receipt += 1
                    purchases.append((sid, v0 + timedelta(seconds=dwell + float(rng.uniform(0, 900))),
                                      member, counters[zi][0], round(float(rng.lognormal(5.2, 0.9)), 2),
                                      f"{store[:6]}-R{receipt}"))
        for _ in range(int(n_trips * 0.03)):  # non-member sales without a tracked tag
            receipt += 1
            zi = int(rng.choice(n_z, p=popularity))
            purchases.append((sid, opening + timedelta(seconds=float(rng.uniform(0, 12 * 3600))), None,
                              counters[zi][0], round(float(rng.lognormal(5, 1)), 2), f"{store[:6]}-R{receipt}"))
    tcols = "store_id, tag_id, start_ts, end_ts, n_reads, path, customer"
    vcols = "store_id, tag_id, zone_id, start_ts, end_ts, dwell_s, passby, customer, trip_start, trip_end"
    pcols = "store_id, ts, member, zone_id, amount, receipt"
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        counts["trips"] = _copy_csv(cur, "trips", tcols, pd.DataFrame(trips))
        counts["visits"] = _copy_csv(cur, "visits", vcols, pd.DataFrame(visits))
        counts["purchases"] = _copy_csv(cur, "purchases", pcols, pd.DataFrame(purchases))
        # door counts: 15-minute intervals all day, entries following the trips' hourly profile
        ts0 = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone).astimezone(timezone.utc)
        slots = np.arange(days * 96)
        local_hour = (slots % 96) // 4
        base = np.where((local_hour >= 10) & (local_hour < 22), hour_w[np.clip(local_hour - 10, 0, 11)], 0.0)
        door_rows = []
        for k, door in enumerate(door_ids):
            share = 0.7 if k == 0 else 0.3 / max(1, len(door_ids) - 1)
            lam = base / 4 * trips_per_day * 1.3 * share
            entries = rng.poisson(lam)
            exits = rng.poisson(np.roll(lam, 2))
            door_rows.append(pd.DataFrame({"ts": [ts0 + timedelta(minutes=15 * int(s)) for s in slots],
                                           "store_id": sid, "door_id": door, "entries": entries, "exits": exits}))
        counts["door_counts"] = _copy_csv(cur, "door_counts", "ts, store_id, door_id, entries, exits",
                                          pd.concat(door_rows))
        counts["heatmap_cells"] = _heatmap(cur, rng, sid, counters, heat_dwell, first_day, zone,
                                           float(width_m), float(depth_m))
        last = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone) + timedelta(days=days)
        cur.execute("INSERT INTO analysis_runs (store_id, from_ts, to_ts, finished_at) VALUES (%s, %s, %s, now())",
                    (sid, datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone), last))
    conn.commit()
    return counts


def _heatmap(cur: psycopg.Cursor, rng: np.random.Generator, sid: int, counters: list[Any], heat_dwell: np.ndarray,
             first_day: date, zone: ZoneInfo, width_m: float, depth_m: float, cell_m: float = 0.5) -> int:
    """Hourly 0.5 m cells: each counter's dwell spread over its polygon's cells (fixed random weights),
    plus aisle traffic on a random subset of the floor's cells."""
    import pandas as pd

    nx, ny = int(width_m / cell_m), int(depth_m / cell_m)
    zone_cells = []
    for _, _, poly in counters:
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        ix = np.arange(int(min(xs) / cell_m), int(max(xs) / cell_m))
        iy = np.arange(int(min(ys) / cell_m), int(max(ys) / cell_m))
        gx, gy = np.meshgrid(ix, iy)
        w = rng.gamma(2.0, 1.0, gx.size)
        zone_cells.append((gx.ravel(), gy.ravel(), w / w.sum()))
    frames = []
    days = heat_dwell.shape[0]
    for d in range(days):
        day = first_day + timedelta(days=d)
        for h in range(10, 22):
            bucket = datetime(day.year, day.month, day.day, h, tzinfo=zone).astimezone(timezone.utc)
            parts_x, parts_y, parts_s = [], [], []
            for zi, (gx, gy, w) in enumerate(zone_cells):
                if heat_dwell[d, h, zi] > 0:
                    parts_x.append(gx)
                    parts_y.append(gy)
                    parts_s.append(w * heat_dwell[d, h, zi])
            aisle = rng.choice(nx * ny, size=min(nx * ny, int(300 + heat_dwell[d, h].sum() / 60)), replace=False)
            parts_x.append(aisle % nx)
            parts_y.append(aisle // nx)
            parts_s.append(rng.exponential(40.0, aisle.size))
            f = pd.DataFrame({"ix": np.concatenate(parts_x), "iy": np.concatenate(parts_y),
                              "seconds": np.concatenate(parts_s)}).groupby(["ix", "iy"], as_index=False).sum()
            f.insert(0, "bucket", bucket)
            frames.append(f)
    if not frames:
        return 0
    allf = pd.concat(frames)
    allf.insert(0, "floor", 1)
    allf.insert(0, "store_id", sid)
    allf.insert(3, "cell_m", cell_m)
    allf["seconds"] = allf["seconds"].round(2)
    return _copy_csv(cur, "heatmap_cells", "store_id, floor, bucket, cell_m, ix, iy, seconds", allf)
