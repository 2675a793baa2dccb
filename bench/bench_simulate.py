"""Simulator throughput: reads generated per second, both sample stores, both scenarios.

Compares the vectorised/numba read generator with the obvious per-read Python loop over
(tag, antenna, round) on the same slice of positions, and prints the ratio.

    .venv/bin/python bench/bench_simulate.py               # 1 h of each store and scenario
    .venv/bin/python bench/bench_simulate.py --big         # a ~100-million-read day (department)
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import time

import numpy as np

from simulators import sample_layout_path, simulate
from simulators.rf import generate_slice
from storeflow.layout import load_layout


def naive_slice(sim, t0_us: int, dt_us: int, tags: np.ndarray, pf, px, py) -> int:  # type: ignore[no-untyped-def]
    """The same RF model as a plain per-(tag, antenna, round) Python loop; returns the read count."""
    rf = sim.scenario.rf
    s = sim._setup
    rnd = random.Random(1)
    n_steps = pf.shape[0]
    round_us = int(rf.round_s * 1e6)
    dz2 = (rf.antenna_height_m - rf.tag_height_m) ** 2
    bp = rf.breakpoint_m
    n = 0
    for j in range(len(tags)):
        for a in range(len(s.x)):
            period = int(s.n_slots[a]) * round_us
            first = int(s.phase_us[a]) + int(s.slot[a]) * round_us
            rs = first + ((t0_us - first + period - 1) // period) * period
            while rs < t0_us + n_steps * dt_us:
                k = min((rs - t0_us) // dt_us, n_steps - 1)
                if pf[k, j] == s.floor[a]:
                    dx, dy = px[k, j] - s.x[a], py[k, j] - s.y[a]
                    d2 = dx * dx + dy * dy + dz2
                    if d2 <= rf.max_range_m ** 2:
                        ang = (math.atan2(dy, dx) - s.azimuth[a] + math.pi) % (2 * math.pi) - math.pi
                        g = min(12 * (math.degrees(abs(ang)) / rf.beamwidth_deg) ** 2, rf.front_back_db)
                        d = math.sqrt(d2)
                        loss = (10 * rf.path_loss_exp * math.log10(d) if d <= bp else
                                10 * rf.path_loss_exp * math.log10(bp) + 10 * rf.path_loss_exp_far * math.log10(d / bp))
                        rssi = (rf.rssi_1m_dbm - g + s.gain_db[a] - loss + rnd.gauss(0, rf.shadow_slow_db)
                                + rnd.gauss(0, rf.shadow_fast_db))
                        p = rf.p_max / (1 + math.exp(-(rssi - rf.sensitivity_dbm) / rf.read_softness_db))
                        if rnd.random() < p:
                            n += 1 + (rnd.random() < rf.dup_p)
                rs += period
    return n


def run(store: str, scenario: str, shoppers: int, hours: float, seed: int = 1, compare: bool = True,
        progress: bool = False) -> None:
    layout = load_layout(sample_layout_path(store))
    t0 = time.perf_counter()
    sim = simulate(layout, shoppers=shoppers, hours=hours, seed=seed, scenario=scenario)
    t_plan = time.perf_counter() - t0
    if progress:
        print(f"{store} {scenario}: {shoppers} shoppers over {hours} h planned in {t_plan:.0f} s "
              f"({len(sim.tags)} tags)", flush=True)
    t1 = time.perf_counter()
    c1 = time.process_time()
    n = 0
    peak_chunk = 0
    next_report = 10_000_000
    for ch in sim.read_chunks(1_000_000):
        n += ch.size
        peak_chunk = max(peak_chunk, ch.nbytes)
        if progress and n >= next_report:
            next_report += 10_000_000
            print(f"  ... {n:,d} reads, simulated up to {(ch['ts_us'][-1] - sim.start_us) / 3.6e9:.2f} h, "
                  f"{n / (time.perf_counter() - t1):,.0f} reads/s wall, "
                  f"{n / (time.process_time() - c1):,.0f} reads/CPU-s", flush=True)
    t_reads = time.perf_counter() - t1
    c_reads = time.process_time() - c1
    rate = n / t_reads if t_reads else float("nan")
    # CPU-time rate too: the machine is shared, wall-clock rates depend on everyone else's load
    line = (f"{store:10s} {scenario:4s} {shoppers:6d} shoppers {hours:5.1f} h: {n:12,d} reads in {t_reads:7.1f} s "
            f"= {rate:10,.0f} reads/s wall, {n / max(c_reads, 1e-9):10,.0f} reads/CPU-s "
            f"(people plan {t_plan:5.1f} s, peak chunk {peak_chunk / 1e6:.0f} MB, "
            f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB)")
    if compare:
        # the same 10 s slice (mid-period, busiest part of the curve) with the naive loop
        first, last = sim._traj.bounds()
        ts = sim.start_us + int(hours * 3.6e9 / 2)
        act = np.flatnonzero((first >= 0) & (first < ts + 10_000_000) & (last > ts))
        act = act[: max(1, min(len(act), 60))]
        f, x, y = sim._traj.sample(act, ts, 100_000, 100)
        tv = time.process_time()
        reps = 5
        for r in range(reps):
            fast = generate_slice(sim._setup, sim.scenario.rf, r, 7, sim.start_us, ts, 100_000, act, f, x, y)
        t_fast = (time.process_time() - tv) / reps
        tn = time.process_time()
        slow = naive_slice(sim, ts, 100_000, act, f, x, y)
        t_slow = time.process_time() - tn
        ratio = (len(fast) / t_fast) / (slow / t_slow) if slow and t_fast else float("nan")
        line += (f" | same slice ({len(act)} tags, 10 s, CPU time): numba {len(fast) / t_fast:,.0f} reads/s, "
                 f"naive Python loop {slow / t_slow:,.0f} reads/s, ratio {ratio:,.0f}x")
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--big", action="store_true", help="one ~100 M-read department day instead")
    args = ap.parse_args()
    if args.big:
        run("department", "easy", shoppers=45_000, hours=12.0, compare=False, progress=True)
        return
    for store, per_hour in (("boutique", 300), ("department", 900)):
        for scenario in ("easy", "hard"):
            run(store, scenario, shoppers=int(per_hour * args.hours), hours=args.hours)


if __name__ == "__main__":
    main()
