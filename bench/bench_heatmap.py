"""Benchmark: heatmap = positions (numba) + binning, on a large simulated input.

    .venv/bin/python bench/bench_heatmap.py [--shoppers 4000] [--hours 3] [--store department]
                                            [--scenario hard] [--cache /tmp/bench_heatmap.npz]

Input: the simulator (``simulators.simulate``) for the given store and scenario; the reads are
cached as .npz so that re-runs skip generation. Prints

* model fitting time (path loss + range tables, on a bounded subsample: a fixed cost per run);
* ``compute_heatmap`` throughput in reads/s (customer positions on 1 s steps + binning to 0.5 m
  cells per hour) for both estimators (grid, wls), with peak extra memory (RSS sampled every 5 ms)
  relative to the input arrays;
* the binning step alone (positions -> cells) by our numba kernel, by numpy (bincount over a
  linear key), pandas groupby and polars group_by on the same positions, each checked to give the
  same cells, with the time ratios.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.data import Reads, antenna_map  # noqa: E402
from analytics.heatmap import bin_positions, compute_heatmap  # noqa: E402
from analytics.positions import estimate_positions, fit_path_loss, fit_range_model, floor_geometry  # noqa: E402

CELL_M = 0.5
BUCKET_S = 3600


class PeakRSS:
    """Peak resident memory above the level at entry (bytes), sampled in a thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.proc = psutil.Process(os.getpid())
        self.interval_s = interval_s

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.base = self.peak = self.proc.memory_info().rss
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


def load_input(args: argparse.Namespace):
    from simulators import sample_layout_path, simulate
    from storeflow.layout import load_layout

    layout = load_layout(sample_layout_path(args.store))
    cache = Path(args.cache)
    key = f"{args.store}-{args.scenario}-{args.shoppers}-{args.hours}-{args.seed}"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            reads = Reads(z["tag"], z["ts_us"], z["antenna"], z["rssi_dbm"], z["count"])
            return layout, reads, antenna_map(layout), z["customer_tag"], int(z["start"]), int(z["end"]), 0.0
    t = time.perf_counter()
    sim = simulate(layout, shoppers=args.shoppers, hours=args.hours, seed=args.seed, scenario=args.scenario)
    reads, am = sim.reads()
    gen_s = time.perf_counter() - t
    np.savez(cache, key=key, tag=reads.tag, ts_us=reads.ts_us, antenna=reads.antenna, rssi_dbm=reads.rssi_dbm,
             count=reads.count, customer_tag=sim.truth.customer, start=sim.start_us, end=sim.end_us)
    return layout, reads, am, sim.truth.customer, sim.start_us, sim.end_us, gen_s


def _cells(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    key = np.stack([h["floor"].astype(np.int64), h["bucket_us"], h["ix"].astype(np.int64), h["iy"].astype(np.int64)])
    order = np.lexsort(key[::-1])
    return key[:, order], np.asarray(h["seconds"], np.float64)[order]


def _prep(pos, layout, from_us: int, to_us: int):
    """Columns the dataframe libraries bin (same clipping as ours; 1 s steps never cross an hour)."""
    fl_num, fl_w, fl_d = floor_geometry(layout)
    inside = (pos.ts_us >= from_us) & (pos.ts_us < to_us)
    fidx = np.searchsorted(fl_num, pos.floor[inside])
    nx = np.ceil(fl_w / CELL_M - 1e-9).astype(np.int64)[fidx]
    ny = np.ceil(fl_d / CELL_M - 1e-9).astype(np.int64)[fidx]
    ix = np.clip(np.floor(pos.x_m[inside] / CELL_M).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.floor(pos.y_m[inside] / CELL_M).astype(np.int64), 0, ny - 1)
    bucket = (pos.ts_us[inside] // (BUCKET_S * 10**6)) * BUCKET_S * 10**6
    return pos.floor[inside].astype(np.int64), bucket, ix, iy, np.full(int(inside.sum()), pos.step_s)


def bin_numpy(cols) -> tuple[np.ndarray, np.ndarray]:
    fl, b, ix, iy, sec = cols
    # one int64 key per row (floor, hour, ix, iy packed), unique + bincount
    hour = (b - b.min()) // (BUCKET_S * 10**6) if len(b) else b
    key = ((fl - fl.min() if len(fl) else fl) * (1 << 20) + hour) * (1 << 30) + ix * (1 << 15) + iy
    uniq, inv = np.unique(key, return_inverse=True)
    first = np.zeros(len(uniq), np.int64)
    first[inv[::-1]] = np.arange(len(key))[::-1]
    return np.stack([fl[first], b[first], ix[first], iy[first]]), np.bincount(inv, sec, len(uniq))


def bin_pandas(cols) -> tuple[np.ndarray, np.ndarray]:
    fl, b, ix, iy, sec = cols
    g = pd.DataFrame({"floor": fl, "bucket": b, "ix": ix, "iy": iy, "s": sec}).groupby(
        ["floor", "bucket", "ix", "iy"], sort=True)["s"].sum().reset_index()
    return g[["floor", "bucket", "ix", "iy"]].to_numpy().T, g["s"].to_numpy()


def bin_polars(cols) -> tuple[np.ndarray, np.ndarray]:
    fl, b, ix, iy, sec = cols
    g = (pl.DataFrame({"floor": fl, "bucket": b, "ix": ix, "iy": iy, "s": sec})
         .group_by(["floor", "bucket", "ix", "iy"]).agg(pl.col("s").sum()).sort(["floor", "bucket", "ix", "iy"]))
    return g.select(["floor", "bucket", "ix", "iy"]).to_numpy().T, g["s"].to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="department")
    ap.add_argument("--scenario", default="hard")
    ap.add_argument("--shoppers", type=int, default=4000)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/bench_heatmap.npz")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per variant (best is reported)")
    args = ap.parse_args()

    layout, reads, am, customer_tag, from_us, to_us, gen_s = load_input(args)
    n = len(reads)
    in_bytes = sum(getattr(reads, f).nbytes for f in ("tag", "ts_us", "antenna", "rssi_dbm", "count"))
    customer = customer_tag[reads.tag]
    n_cust = int(customer.sum())
    print(f"input: {args.store}/{args.scenario}, {args.shoppers} shoppers x {args.hours} h: {n:,} reads "
          f"({in_bytes / 1e6:.0f} MB), {len(np.unique(reads.tag)):,} tags, {customer.mean():.0%} of reads customer"
          + (f", generated in {gen_s:.0f} s" if gen_s else " (cached)"))

    # warm-up on a small slice (compilation is not throughput)
    small = Reads(*(getattr(reads, f)[:20000] for f in ("tag", "ts_us", "antenna", "rssi_dbm", "count")))
    compute_heatmap(small, am, layout, customer[:20000], CELL_M, from_us, to_us)
    compute_heatmap(small, am, layout, customer[:20000], CELL_M, from_us, to_us, method="wls")

    t = time.perf_counter()
    model = fit_path_loss(reads, am, layout)
    t_pl = time.perf_counter() - t
    t = time.perf_counter()
    rmodel = fit_range_model(reads, am, layout, model)
    t_rm = time.perf_counter() - t
    print(f"model fit (subsample, fixed cost): path loss {t_pl:.2f} s, range tables {t_rm:.2f} s")

    cpu_by_method: dict[str, float] = {}
    for method in ("grid", "wls"):
        best = float("inf")
        extra = 0
        cpu = 0.0
        for _ in range(args.repeat):
            with PeakRSS() as mem:
                t = time.perf_counter()
                c0 = time.process_time()
                heat = compute_heatmap(reads, am, layout, customer, CELL_M, from_us, to_us, model=model,
                                       range_model=rmodel, method=method)
                dt = time.perf_counter() - t
                c1 = time.process_time() - c0
            if dt < best:
                best, cpu = dt, c1
            extra = max(extra, mem.extra)
            del heat
            gc.collect()
        print(f"compute_heatmap[{method}]: {best:.2f} s wall, {cpu:.2f} s CPU = {n / best / 1e6:.2f} M reads/s "
              f"({n_cust / best / 1e6:.2f} M customer reads/s; {n / cpu / 1e6:.2f} M reads per CPU-second, "
              f"x{os.cpu_count()} cores = {n / cpu * os.cpu_count() / 1e6:.1f} M reads/s on an idle machine) "
              f"(+ model fit {n / (best + t_pl + (t_rm if method == 'grid' else 0)) / 1e6:.2f} M reads/s); "
              f"peak extra memory (first run) {extra / 1e6:.0f} MB = {extra / in_bytes:.2f}x input")
        cpu_by_method[method] = cpu
    print(f"grid (default) vs wls (the obvious alternative: least squares on path-loss ranges, points): "
          f"{cpu_by_method['grid'] / cpu_by_method['wls']:.1f}x the CPU time; issue 6 bar: 10 M reads/s on 2 cores "
          f"= 5 M reads per CPU-second (grid {n / cpu_by_method['grid'] / 1e6:.2f}, "
          f"wls {n / cpu_by_method['wls'] / 1e6:.2f})")

    pos = estimate_positions(reads, am, layout, model=model, range_model=rmodel,
                             tags=np.flatnonzero(customer_tag))
    t_ours = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        ours = bin_positions(pos, layout, CELL_M, from_us, to_us, BUCKET_S)
        t_ours = min(t_ours, time.perf_counter() - t)
    k_ours, s_ours = _cells(ours)
    print(f"binning {len(pos):,} positions: ours {t_ours * 1e3:.0f} ms ({len(pos) / t_ours / 1e6:.1f} M rows/s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cols = _prep(pos, layout, from_us, to_us)
    for name, fn in (("numpy", bin_numpy), ("pandas", bin_pandas), ("polars", bin_polars)):
        dt = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            k, s = fn(cols)
            dt = min(dt, time.perf_counter() - t)
        same = k.shape == k_ours.shape and np.array_equal(k, k_ours) and np.allclose(s, s_ours, rtol=1e-5)
        print(f"  {name:7s} {dt * 1e3:7.0f} ms  ours is {dt / t_ours:5.1f}x faster  same cells: {same}")


if __name__ == "__main__":
    main()
