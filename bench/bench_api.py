"""HTTP API load test: p50/p95 latency of the main endpoints at 50 concurrent clients, against a real
uvicorn server over a month of a synthetic 40-counter store, and the obvious alternative (the counter
report computed per request from the raw visit/purchase rows with pandas) as a ratio. Also the
dashboard load time in headless Chromium (navigation until the network is idle and the plots are drawn).

Creates a scratch database (dropped at the end), fills it with COPY (volumes printed), starts
`storeflow serve` on 127.0.0.1 in a subprocess, and loads it with `wrk` (a C load generator, Debian
package `wrk`; `--client wrk`, the default when it is installed) or from this process with httpx/asyncio
(`--client httpx`: that Python client needs much of a 2-core machine itself, which inflates the figures).

    .venv/bin/python bench/bench_api.py [--trips-per-day 3000] [--days 30] [--clients 50] [--seconds 10]

Admin URL: STOREFLOW_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
The synthetic store generator (:func:`synth_layout`, :func:`populate`) is also used by the browser tests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


# ------------------------------------------------------------------------------------------------
# the benchmark

STORE = "bench-api-40"
FIRST_DAY = date(2026, 10, 1)


def _admin_url(name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(base + "/login", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s (a server still busy with requests the clients gave up on)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def _load(base: str, paths: str | list[str], headers: dict[str, str], clients: int,
                requests: int) -> dict[str, float]:
    """``requests`` GETs of ``paths`` (in turn) from ``clients`` concurrent closed-loop clients; latency in ms."""
    import httpx

    paths = [paths] if isinstance(paths, str) else paths
    latencies: list[float] = []
    errors = 0
    todo = iter(range(requests))

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in todo:
            t0 = time.perf_counter()
            try:
                status = (await c.get(paths[i % len(paths)], headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as c:
        await c.get(paths[0], headers=headers)  # warm: connection, caches, JIT-free but pool-filled
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"p50": _pct(latencies, 0.5), "p95": _pct(latencies, 0.95), "max": max(latencies),
            "rps": len(latencies) / wall, "n": len(latencies), "errors": errors}


#: wrk script: the arguments are request paths (taken in turn) and "H:Name: value" headers
_WRK_LUA = r"""
local paths, headers, n = {}, {}, 0
init = function(args)
  for i = 1, #args do
    local k, v = args[i]:match("^H:([^:]+): (.*)$")
    if k then headers[k] = v else paths[#paths + 1] = args[i] end
  end
end
request = function()
  n = n % #paths + 1
  return wrk.format("GET", paths[n], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.3f %.3f %.3f %d %.3f %d\n", latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency.max / 1000, summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (worker processes)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _load_wrk(base: str, paths: list[str], headers: dict[str, str], clients: int, seconds: int) -> dict[str, float]:
    """``clients`` connections of closed-loop GETs for ``seconds``, the paths in turn (wrk, one thread);
    latency in ms. Errors: connection errors, timeouts (60 s) and non-2xx/3xx answers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_LUA)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s", "-s", f.name, base,
                              "--", *paths, *(f"H:{k}: {v}" for k, v in headers.items())],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    m = re.search(r"^RESULT (\S+) (\S+) (\S+) (\d+) (\S+) (\d+)$", out, re.M)
    if m is None:
        raise SystemExit(f"wrk said: {out}")
    p50, p95, mx, n, wall, errors = (float(g) for g in m.groups())
    return {"p50": p50, "p95": p95, "max": mx, "rps": n / wall, "n": int(n), "errors": int(errors)}


def _pandas_app(url: str) -> Any:
    """The obvious alternative: a FastAPI app computing the counter report per request with pandas
    from the raw visit, tag and purchase rows of the period."""
    import pandas as pd
    from fastapi import FastAPI
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=1, max_size=8, open=True, timeout=600)
    app = FastAPI()

    @app.get("/counters")
    def counters(start: str, end: str) -> list[dict[str, Any]]:
        with pool.connection() as conn:
            sid = conn.execute("SELECT store_id FROM stores WHERE store = %s", (STORE,)).fetchone()[0]  # type: ignore[index]
            v = pd.DataFrame(conn.execute(
                "SELECT tag_id, zone_id, dwell_s, passby, trip_start, trip_end FROM visits WHERE store_id = %s "
                "AND start_ts >= %s AND start_ts < %s AND customer", (sid, start, end)).fetchall(),
                columns=["tag_id", "zone_id", "dwell_s", "passby", "trip_start", "trip_end"])
            tags = pd.DataFrame(conn.execute("SELECT tag_id, member FROM tags").fetchall(), columns=["tag_id", "member"])
            p = pd.DataFrame(conn.execute(
                "SELECT ts, member, zone_id, amount::float8 FROM purchases WHERE store_id = %s AND ts >= %s "
                "AND ts < %s::timestamptz + interval '1 day'", (sid, start, end)).fetchall(),
                columns=["ts", "member", "zone_id", "amount"])
            seen = conn.execute("SELECT count(DISTINCT tag_id) FROM trips WHERE store_id = %s AND start_ts >= %s "
                                "AND start_ts < %s AND customer", (sid, start, end)).fetchone()[0]  # type: ignore[index]
            zones = conn.execute("SELECT zone_id, zone FROM zones WHERE store_id = %s AND kind = 'counter' "
                                 "ORDER BY zone", (sid,)).fetchall()
        v = v.merge(tags, on="tag_id", how="left")
        real = v[~v.passby]
        g = real.groupby("zone_id")
        visitors, visits = g.tag_id.nunique(), g.size()
        med, p90, tot = g.dwell_s.median(), g.dwell_s.quantile(0.9), g.dwell_s.sum()
        passbys = v[v.passby].groupby("zone_id").size()
        m = real.dropna(subset=["member"]).merge(p.dropna(subset=["member"]), on=["member", "zone_id"])
        m = m[(m.ts >= m.trip_start) & (m.ts <= m.trip_end + pd.Timedelta(seconds=1800))]
        buyers = m.groupby("zone_id").tag_id.nunique()
        pin = p[(p.ts >= pd.Timestamp(start)) & (p.ts < pd.Timestamp(end))]
        revenue = pin.groupby("zone_id").amount.sum()
        out = []
        for zid, code in zones:
            n, b, rev = int(visitors.get(zid, 0)), int(buyers.get(zid, 0)), float(revenue.get(zid, 0.0))
            out.append({"zone": code, "visitors": n, "visits": int(visits.get(zid, 0)),
                        "passbys": int(passbys.get(zid, 0)), "dwell_median_s": float(med.get(zid, float("nan"))),
                        "dwell_p90_s": float(p90.get(zid, float("nan"))), "dwell_total_s": float(tot.get(zid, 0.0)),
                        "buyers": b, "conversion": b / n if n else None, "revenue": round(rev, 2),
                        "revenue_per_visitor": rev / n if n else None, "attraction": n / seen if seen else None})
        return out

    return app


def _chromium_load(base: str, token: str, query: str, rounds: int = 3) -> dict[str, list[tuple[float, float]]]:
    """Per page and round: (seconds from navigation start until the plots are drawn, by the page's own
    clock; seconds until Playwright's "networkidle", which waits for 500 ms without requests)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[tuple[float, float]]] = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        ctx = b.new_context(viewport={"width": 1440, "height": 900})
        page = ctx.new_page()
        page.goto(f"{base}/login?token={token}")
        for view in ("floor", "counters", "paths", "traffic"):
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                page.goto(f"{base}/{view}?{query}", wait_until="networkidle")
                page.wait_for_selector('body[data-drawn="1"]', state="attached", timeout=60000)
                idle = time.perf_counter() - t0
                drawn = float(page.evaluate("document.body.dataset.drawnMs")) / 1000
                times.append((drawn, idle))
                if page.text_content("#status"):
                    print(f"  {view}: status says {page.text_content('#status')!r}")
            out[view] = times
        b.close()
    return out


def _print_chromium(base: str, token: str, last: date, days: int) -> None:
    print(f"\ndashboard load in headless Chromium (1440x900), period = the whole {days} days, seconds from "
          f"navigation start to plots drawn [to network idle = +500 ms quiet]; first visit, then median of repeats:")
    query = f"store={STORE}&from={FIRST_DAY}&to={last - timedelta(days=1)}"  # the picker's "to" is inclusive
    for view, times in _chromium_load(base, token, query).items():
        print(f"  {view:<10} first {times[0][0]:.2f} [{times[0][1]:.2f}]  "
              f"repeat {statistics.median(t[0] for t in times[1:]):.2f} [{statistics.median(t[1] for t in times[1:]):.2f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trips-per-day", type=int, default=3000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=400, help="requests per endpoint (httpx client)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per endpoint (wrk client)")
    ap.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto",
                    help="load generator: wrk (C, Debian package wrk), httpx (this process); auto = wrk if installed")
    ap.add_argument("--workers", type=int, default=None, help="storeflow serve --workers (default: its default)")
    ap.add_argument("--pandas-requests", type=int, default=50)
    ap.add_argument("--reuse", metavar="DATABASE", help="reuse a database kept by --keep (skip generating)")
    ap.add_argument("--skip-load", action="store_true", help="only the Chromium load time (first visit uncached)")
    ap.add_argument("--only-cached", action="store_true", help="only the load test of the server as deployed")
    ap.add_argument("--uncached-requests", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--serve-pandas", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_pandas:
        import uvicorn

        uvicorn.run(_pandas_app(args.serve_pandas[0]), host="127.0.0.1", port=int(args.serve_pandas[1]),
                    log_level="warning")
        return

    from api.auth import create_token
    from storeflow.db import migrate
    from storeflow.layout import parse_layout
    from storeflow.settings import Settings
    from storeflow.store import upsert_layout

    name = args.reuse or f"sf_bench_api_{uuid.uuid4().hex[:8]}"
    url = _admin_url(name)
    if not args.reuse:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        if args.reuse:
            with psycopg.connect(url) as conn:
                counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                          for t in ("trips", "visits", "purchases", "door_counts", "heatmap_cells")}
                token = create_token(conn, "viewer", [STORE], "bench")[1]
        else:
            with psycopg.connect(url) as conn:
                migrate(conn, Settings(timescaledb="auto", database_url=url))
                upsert_layout(conn, parse_layout(synth_layout(STORE, 40, name="Bench store (40 counters)")))
                counts = populate(conn, STORE, FIRST_DAY, args.days, args.trips_per_day)
                conn.autocommit = True
                for table in ("trips", "visits", "purchases", "door_counts", "heatmap_cells", "tags", "members"):
                    conn.execute(f"VACUUM ANALYZE {table}")
                token = create_token(conn, "viewer", [STORE], "bench")[1]
        print(f"data: one store, 40 counters, {args.days} days from {FIRST_DAY}, ~{args.trips_per_day} trips/day "
              f"(weekends +40 %), built in {time.perf_counter() - t0:.0f} s")
        print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

        port = _free_port()
        env = {**os.environ, "STOREFLOW_DATABASE_URL": url}
        serve = [str(Path(sys.executable).with_name("storeflow")), "serve", "--database-url", url, "--host", "127.0.0.1",
                 *(["--workers", str(args.workers)] if args.workers is not None else []), "--port"]
        procs.append(subprocess.Popen([*serve, str(port)], env=env, stdout=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, procs[-1])
        last = FIRST_DAY + timedelta(days=args.days)
        month = f"from={FIRST_DAY}&to={last}"
        day = f"from={last - timedelta(days=1)}&to={last}"
        auth = {"Authorization": f"Bearer {token}"}
        cookie = {"Cookie": f"storeflow_token={token}"}
        s = f"/api/v1/stores/{STORE}"
        endpoints = [
            ("counters (month)", f"{s}/counters?{month}", auth),
            ("counters (one day)", f"{s}/counters?{day}", auth),
            ("kpis (month)", f"{s}/kpis?{month}", auth),
            ("heatmap 1 m (month)", f"{s}/heatmap?floor=1&cell=1&{month}", auth),
            ("heatmap 1 m (one day)", f"{s}/heatmap?floor=1&cell=1&{day}", auth),
            ("paths top 15 (month)", f"{s}/paths?top=15&{month}", auth),
            ("traffic (month)", f"{s}/traffic?{month}", auth),
            ("dashboard page HTML", f"/floor?store={STORE}", cookie),
        ]
        days = [f"{s}/counters?from={FIRST_DAY + timedelta(days=d)}&to={FIRST_DAY + timedelta(days=d + 1)}"
                for d in range(args.days)]
        if args.skip_load:
            _print_chromium(base, token, last, args.days)
            return
        client = ("wrk" if shutil.which("wrk") else "httpx") if args.client == "auto" else args.client
        workers = f"--workers {args.workers}" if args.workers is not None else f"default workers, {os.cpu_count()} CPUs"
        size = f"{args.seconds:g} s each" if client == "wrk" else f"{args.requests} requests each"

        def load(target: str, paths: str | list[str], headers: dict[str, str]) -> dict[str, float]:
            """One load run; also the server's CPU time per request (ms, all its processes): unlike the
            latency, that hardly depends on what else the machine runs."""
            import httpx

            httpx.get(target + (paths if isinstance(paths, str) else paths[0]), headers=headers, timeout=300)  # warm
            cpu0 = _cpu_s(procs[0].pid)
            if client == "httpx":
                r = asyncio.run(_load(target, paths, headers, args.clients, args.requests))
            else:
                r = _load_wrk(target, [paths] if isinstance(paths, str) else paths, headers, args.clients, args.seconds)
            r["cpu_ms"] = (_cpu_s(procs[0].pid) - cpu0) * 1000 / max(1, r["n"])
            return r

        print(f"\nHTTP latency, {args.clients} concurrent clients ({client}), {size} (storeflow serve, {workers}, "
              f"127.0.0.1; report cache on, as deployed: the first request computes):")
        print(f"  {'endpoint':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'req/s':>7} {'errors':>6} "
              f"{'server CPU ms/req':>18}")
        results = {}
        for label, path, headers in [*endpoints, ("counters (30 days, in turn)", days, auth)]:
            r = load(base, path, headers)
            results[label] = r
            print(f"  {label:<28} {r['p50']:8.1f} {r['p95']:8.1f} {r['max']:8.1f} {r['rps']:7.1f} {r['errors']:6d} "
                  f"{r['cpu_ms']:18.2f}")
        print("  (counters 30 days in turn: a closed-loop mix of 30 URLs, each computed by its first request)")

        if args.only_cached:
            return
        # now, on the server as deployed: the pandas run below leaves PostgreSQL busy for minutes with the
        # queries of the requests its clients gave up on
        _print_chromium(base, token, last, args.days)
        # the same endpoints without the report cache: what every request would cost without it
        uport = _free_port()
        procs.append(subprocess.Popen([*serve, str(uport)], env={**env, "STOREFLOW_API_CACHE_S": "0"},
                                      stdout=subprocess.DEVNULL))
        ubase = f"http://127.0.0.1:{uport}"
        _wait_up(ubase, procs[-1])
        print(f"\nsame endpoints without the report cache (STOREFLOW_API_CACHE_S=0; httpx client: the server's "
              f"time dominates): 1 client x {args.uncached_requests} requests, then {args.clients} clients x "
              f"{args.clients} requests:")
        print(f"  {'endpoint':<24} {'1 client p50':>12} {'p95 ms':>8} {'req/s':>7} | {args.clients} clients p50 {'p95 ms':>8}")
        uncached = {}
        for label, path, headers in endpoints[:-1]:
            one = asyncio.run(_load(ubase, path, headers, 1, args.uncached_requests))
            many = uncached[label] = asyncio.run(_load(ubase, path, headers, args.clients, args.clients))
            print(f"  {label:<24} {one['p50']:12.1f} {one['p95']:8.1f} {one['rps']:7.1f} | "
                  f"{many['p50']:16.1f} {many['p95']:8.1f}")
        _stop(procs.pop())

        pport = _free_port()
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve-pandas", url, str(pport)],
                                      stdout=subprocess.DEVNULL))
        pbase = f"http://127.0.0.1:{pport}"
        _wait_up(pbase, procs[-1])
        import httpx

        start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=ZoneInfo("Asia/Shanghai"))
        q = httpx.QueryParams({"start": start.isoformat(), "end": (start + timedelta(days=args.days)).isoformat()})
        api_rows = httpx.get(f"{base}{s}/counters?{month}", headers=auth, timeout=120).json()
        alt_rows = httpx.get(f"{pbase}/counters?{q}", timeout=300).json()
        agree = all(a["zone"] == b["zone"] and a["visitors"] == b["visitors"] and a["visits"] == b["visits"]
                    and a["buyers"] == b["buyers"] and abs(a["revenue"] - b["revenue"]) < 0.01
                    for a, b in zip(api_rows, alt_rows, strict=True))
        alt = asyncio.run(_load(pbase, f"/counters?{q}", {}, args.clients, args.pandas_requests))
        api = results["counters (month)"]
        print(f"\nalternative: counters (month) computed per request with pandas from raw rows "
              f"({args.pandas_requests} requests, {args.clients} httpx clients; results agree: {agree})")
        print(f"  pandas per request       {alt['p50']:8.1f} {alt['p95']:8.1f} {alt['max']:8.1f} {alt['rps']:7.1f}  {alt['errors']}")
        print(f"  ratio pandas / API (cached): p50 {alt['p50'] / api['p50']:.1f}x, p95 {alt['p95'] / api['p95']:.1f}x, "
              f"throughput {api['rps'] / alt['rps']:.1f}x")
        raw = uncached["counters (month)"]
        print(f"  ratio pandas / API (no cache, SQL per request): p50 {alt['p50'] / raw['p50']:.1f}x, "
              f"p95 {alt['p95'] / raw['p95']:.1f}x, throughput {raw['rps'] / alt['rps']:.1f}x")
        _stop(procs.pop())

        goal = [k for k, r in results.items() if r["p95"] >= 150]
        print(f"\np95 goal (< 150 ms) missed by: {', '.join(goal) if goal else 'none'}")
    finally:
        for proc in procs:
            _stop(proc)
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")


if __name__ == "__main__":
    main()
