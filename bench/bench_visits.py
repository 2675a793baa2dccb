"""Benchmark: visits + trips on N reads with a per-read zone assignment (the part after presence).

    .venv/bin/python bench/bench_visits.py [--n 20000000] [--alternatives pandas,polars,duckdb]

Prints, for the numba kernels (analytics.visits.visits_from_presence + analytics.trips.trips_from_reads):
reads/s and peak extra memory (RSS sampled every 5 ms) relative to the input arrays at N/16, N/4
and N reads; then, on the same N reads, the same visit and trip definitions computed by a
straightforward pandas implementation, a polars implementation and a DuckDB SQL gaps-and-islands
query, checks that each gives exactly the same visits and trips, and prints the time ratios.

Input (synthetic, seeded): tags with ~4000 reads each (a ~35 min trip at ~2 reads/s), read gaps
exponential with mean 0.5 s plus occasional > trip_gap_s absences, zones in runs of ~40 reads over
60 counters with ~30 % of runs placed nowhere (-1).
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time

import numpy as np
import psutil

from analytics.trips import trips_from_reads
from analytics.visits import visits_from_presence

GAP_S, MIN_DWELL_S, TRIP_GAP_S = 30.0, 10.0, 1200.0


def synthetic_presence(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tag int32, ts_us int64, zone int32) sorted by (tag, ts_us)."""
    rng = np.random.default_rng(seed)
    n_tags = max(1, n // 4000)
    tag = np.sort(rng.integers(0, n_tags, n)).astype(np.int32)
    dt = rng.exponential(0.5e6, n).astype(np.int64)
    dt[rng.random(n) < 1 / 2000] += int(1500e6)          # leaves the store for 25 min, comes back
    ts = np.cumsum(dt)
    first = np.flatnonzero(np.r_[True, tag[1:] != tag[:-1]])
    counts = np.diff(np.r_[first, n])
    tag_start = 1_795_000_000_000_000 + rng.integers(0, 10 * 3600, len(first)) * 1_000_000
    ts += np.repeat(tag_start - ts[first], counts)
    run_len = rng.geometric(1 / 40, n // 10 + 10)
    run_zone = rng.integers(0, 60, run_len.size).astype(np.int32)
    run_zone[rng.random(run_len.size) < 0.3] = -1
    zone = np.repeat(run_zone, run_len)[:n]
    if zone.size < n:
        zone = np.concatenate((zone, np.full(n - zone.size, -1, np.int32)))
    return tag, ts, zone


class PeakRSS:
    """Peak resident memory above the level at entry (bytes), sampled in a thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.proc = psutil.Process(os.getpid())
        self.interval_s = interval_s
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra(self) -> int:
        return self.peak - self.base


def run_kernels(tag, ts, zone):
    v = visits_from_presence(tag, zone, ts, gap_s=GAP_S, min_dwell_s=MIN_DWELL_S)
    t = trips_from_reads(tag, ts, trip_gap_s=TRIP_GAP_S)
    return v, t


def as_frames(v, t):
    """Canonical numpy tuples for comparing results."""
    return ((v.tag.astype(np.int64), v.zone.astype(np.int64), v.start_us, v.end_us),
            (t.tag.astype(np.int64), t.start_us, t.end_us, t.n_reads.astype(np.int64)))


def pandas_impl(tag, ts, zone):
    import pandas as pd

    gap_us, trip_us = int(GAP_S * 1e6), int(TRIP_GAP_S * 1e6)
    df = pd.DataFrame({"tag": tag, "ts": ts, "zone": zone})
    z = df[df["zone"] >= 0]
    new = ((z["tag"] != z["tag"].shift()) | (z["zone"] != z["zone"].shift())
           | (z["ts"] - z["ts"].shift() > gap_us))
    vis = z.groupby(new.cumsum(), sort=False).agg(tag=("tag", "first"), zone=("zone", "first"),
                                                  start=("ts", "min"), end=("ts", "max"))
    newt = (df["tag"] != df["tag"].shift()) | (df["ts"] - df["ts"].shift() > trip_us)
    trips = df.groupby(newt.cumsum(), sort=False).agg(tag=("tag", "first"), start=("ts", "min"),
                                                      end=("ts", "max"), n=("ts", "size"))
    return ((vis["tag"].to_numpy(np.int64), vis["zone"].to_numpy(np.int64), vis["start"].to_numpy(np.int64),
             vis["end"].to_numpy(np.int64)),
            (trips["tag"].to_numpy(np.int64), trips["start"].to_numpy(np.int64), trips["end"].to_numpy(np.int64),
             trips["n"].to_numpy(np.int64)))


def polars_impl(tag, ts, zone):
    import polars as pl

    gap_us, trip_us = int(GAP_S * 1e6), int(TRIP_GAP_S * 1e6)
    df = pl.DataFrame({"tag": tag, "ts": ts, "zone": zone})
    vis = (df.filter(pl.col("zone") >= 0)
           .with_columns(((pl.col("tag") != pl.col("tag").shift()) | (pl.col("zone") != pl.col("zone").shift())
                          | ((pl.col("ts") - pl.col("ts").shift()) > gap_us)).fill_null(True).cum_sum().alias("vid"))
           .group_by("vid", maintain_order=True)
           .agg(pl.col("tag").first(), pl.col("zone").first(), pl.col("ts").min().alias("start"),
                pl.col("ts").max().alias("end")))
    trips = (df.with_columns(((pl.col("tag") != pl.col("tag").shift())
                              | ((pl.col("ts") - pl.col("ts").shift()) > trip_us)).fill_null(True).cum_sum().alias("tid"))
             .group_by("tid", maintain_order=True)
             .agg(pl.col("tag").first(), pl.col("ts").min().alias("start"), pl.col("ts").max().alias("end"),
                  pl.len().alias("n")))
    return ((vis["tag"].to_numpy().astype(np.int64), vis["zone"].to_numpy().astype(np.int64),
             vis["start"].to_numpy(), vis["end"].to_numpy()),
            (trips["tag"].to_numpy().astype(np.int64), trips["start"].to_numpy(), trips["end"].to_numpy(),
             trips["n"].to_numpy().astype(np.int64)))


def duckdb_impl(tag, ts, zone):
    import duckdb
    import pyarrow as pa

    gap_us, trip_us = int(GAP_S * 1e6), int(TRIP_GAP_S * 1e6)
    con = duckdb.connect()
    con.register("p", pa.table({"rn": np.arange(len(tag), dtype=np.int64), "tag": tag, "ts": ts, "zone": zone}))
    vis = con.execute(f"""
        WITH z AS (SELECT * FROM p WHERE zone >= 0),
        f AS (SELECT *, CASE WHEN lag(zone) OVER w = zone AND ts - lag(ts) OVER w <= {gap_us} THEN 0 ELSE 1 END
                        AS new FROM z WINDOW w AS (PARTITION BY tag ORDER BY rn)),
        g AS (SELECT *, sum(new) OVER (PARTITION BY tag ORDER BY rn ROWS UNBOUNDED PRECEDING) AS vid FROM f)
        SELECT tag, any_value(zone) AS zone, min(ts) AS s, max(ts) AS e FROM g GROUP BY tag, vid ORDER BY tag, min(rn)
    """).fetchnumpy()
    trips = con.execute(f"""
        WITH f AS (SELECT *, CASE WHEN ts - lag(ts) OVER w <= {trip_us} THEN 0 ELSE 1 END AS new
                   FROM p WINDOW w AS (PARTITION BY tag ORDER BY rn)),
        g AS (SELECT *, sum(new) OVER (PARTITION BY tag ORDER BY rn ROWS UNBOUNDED PRECEDING) AS tid FROM f)
        SELECT tag, min(ts) AS s, max(ts) AS e, count(*) AS n FROM g GROUP BY tag, tid ORDER BY tag, min(rn)
    """).fetchnumpy()
    con.close()
    return ((vis["tag"].astype(np.int64), vis["zone"].astype(np.int64), vis["s"].astype(np.int64),
             vis["e"].astype(np.int64)),
            (trips["tag"].astype(np.int64), trips["s"].astype(np.int64), trips["e"].astype(np.int64),
             trips["n"].astype(np.int64)))


def same(a, b) -> bool:
    return all(len(x) == len(y) and np.array_equal(x, y) for pa_, pb in zip(a, b) for x, y in zip(pa_, pb))


def main() -> None:
    ap = argparse.ArgumentParser(description="visits+trips kernel benchmark")
    ap.add_argument("--n", type=float, default=20e6, help="reads (default 20 M)")
    ap.add_argument("--alternatives", default="pandas,polars,duckdb", help="comma list, or 'none'")
    ap.add_argument("--repeat", type=int, default=3, help="kernel timing: best of this many runs")
    a = ap.parse_args()
    n = int(a.n)
    import numba

    print(f"numba threads: {numba.get_num_threads()}, CPUs: {os.cpu_count()}")
    run_kernels(*synthetic_presence(1000))  # compile outside the timings
    for m in sorted({max(1, n // 16), max(1, n // 4), n}):
        tag, ts, zone = synthetic_presence(m)
        in_bytes = tag.nbytes + ts.nbytes + zone.nbytes
        best = float("inf")
        peak = 0
        for _ in range(a.repeat):
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                v, t = run_kernels(tag, ts, zone)
                el = time.perf_counter() - t0
            best = min(best, el)
            peak = max(peak, mem.extra)
        # the kernels allocate only their outputs (plus O(blocks) counters); RSS can stay flat when
        # the allocator reuses freed heap, so the output size is printed too
        out_bytes = sum(x.nbytes for x in (*vars(v).values(), *vars(t).values()))
        print(f"kernel n={m:>11,d}: {best:7.3f} s  {m / best / 1e6:7.1f} M reads/s  visits={len(v):,} "
              f"trips={len(t):,}  peak extra RSS {peak / 2**20:7.1f} MiB, outputs {out_bytes / 2**20:.1f} MiB "
              f"= {max(peak, out_bytes) / in_bytes:.3f}x input ({in_bytes / 2**20:.0f} MiB)", flush=True)
    ref = as_frames(v, t)
    alts = [] if a.alternatives == "none" else a.alternatives.split(",")
    for name in alts:
        fn = {"pandas": pandas_impl, "polars": polars_impl, "duckdb": duckdb_impl}[name]
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            got = fn(tag, ts, zone)
            el = time.perf_counter() - t0
        ok = same(ref, got)
        print(f"{name:7s} n={n:>11,d}: {el:7.3f} s  {n / el / 1e6:7.1f} M reads/s  peak extra RSS "
              f"{mem.extra / 2**20:7.1f} MiB  same visits+trips: {ok}  kernel is {el / best:5.1f}x faster",
              flush=True)
        if not ok:
            raise SystemExit(f"{name} disagrees with the kernel")


if __name__ == "__main__":
    main()
