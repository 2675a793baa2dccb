"""Benchmark: zone-presence HMM decode throughput (the bottleneck of ``storeflow analyze``).

    .venv/bin/python bench/bench_presence.py [--store department] [--scenarios easy,hard]
        [--shoppers 200] [--hours 1] [--seed 11] [--cache DIR] [--numpy-steps 600]

Per simulated store and scenario: fits the presence model once (CPU seconds printed), then decodes
every tag with

* the decoder ``storeflow analyze`` uses (``analytics.presence._run_decode``: segments decoded
  side by side in lanes, prange over batches);
* the one-segment-at-a-time kernel (``_viterbi_segment``, prange over blocks of segments: the
  decoder before the lanes);
* the obvious alternative: the same Viterbi in numpy, vectorised over states per step (dense
  log-transition matrix), on the first ``--numpy-steps`` steps of the first segments only;

and prints M reads per CPU-second (process CPU time over all threads, best of 3; the machine is
shared, so wall time says little), the ratios, and whether the decoded states are identical.
``--cache DIR`` keeps the simulated reads and the fitted model in a pickle (simulate once).
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

import numba
import numpy as np

from analytics import presence as P
from analytics.config import NJIT_PARALLEL


@numba.njit(**NJIT_PARALLEL)
def _decode_one_by_one(ts_us, antenna, rssi, seg_off, step_off, step_us, n_ant, base, table, pred_ptr, pred_idx,
                       pred_logp, emit_of, n_blocks):
    """Every segment with the one-segment kernel (prange over blocks of consecutive segments)."""
    n_seg = seg_off.shape[0] - 1
    states = np.empty(step_off[n_seg], np.int16)
    per = (n_seg + n_blocks - 1) // n_blocks
    for b in numba.prange(n_blocks):
        g0 = b * per
        g1 = min(n_seg, g0 + per)
        if g0 >= g1:
            continue
        maxr = 0
        for g in range(g0, g1):
            maxr = max(maxr, seg_off[g + 1] - seg_off[g])
        obs_step = np.empty(maxr, np.int64)
        obs_ant = np.empty(maxr, np.int32)
        obs_rssi = np.empty(maxr, np.float64)
        last_step = np.full(n_ant, -1, np.int64)
        last_pos = np.zeros(n_ant, np.int64)
        for g in range(g0, g1):
            m = P._segment_obs(ts_us, antenna, rssi, seg_off[g], seg_off[g + 1], step_us, n_ant, obs_step, obs_ant,
                               obs_rssi, last_step, last_pos)
            k0 = step_off[g]
            P._viterbi_segment(step_off[g + 1] - k0, obs_step, obs_ant, obs_rssi, m, base, table, pred_ptr,
                               pred_idx, pred_logp, emit_of, states[k0:step_off[g + 1]])
    return states


def _numpy_viterbi(n_steps: int, o_step: np.ndarray, o_ant: np.ndarray, o_rssi: np.ndarray, base: np.ndarray,
                   table: np.ndarray, log_trans: np.ndarray, emit_of: np.ndarray) -> np.ndarray:
    """Plain numpy Viterbi, vectorised over states per step (same arithmetic order as the kernels)."""
    o = 0
    back = np.empty((n_steps, emit_of.size), np.int64)
    score = None
    for k in range(n_steps):
        em = base.copy()
        while o < o_step.size and o_step[o] == k:
            em += table[o_ant[o], P.rssi_bin(o_rssi[o])]
            o += 1
        if score is None:
            score = em[emit_of]
            continue
        cand = score[:, None] + log_trans          # (from, to)
        back[k] = cand.argmax(axis=0)              # first (lowest) predecessor on ties
        score = cand.max(axis=0) + em[emit_of]
    s = int(score.argmax())
    out = np.empty(n_steps, np.int16)
    for k in range(n_steps - 1, -1, -1):
        out[k] = emit_of[s]
        s = back[k, s]
    return out


def _cpu(fn, reps: int = 3):
    best, res = np.inf, None
    for _ in range(reps):
        c0 = time.process_time()
        res = fn()
        best = min(best, time.process_time() - c0)
    return best, res


def _load(store: str, scenario: str, shoppers: int, hours: float, seed: int, cache: str | None):
    path = os.path.join(cache, f"{store}_{scenario}_{shoppers}_{hours}_{seed}.pkl") if cache else None
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    from analytics.data import zone_map
    from simulators import sample_layout_path, simulate
    from storeflow.layout import load_layout
    from storeflow.settings import store_params

    layout = load_layout(sample_layout_path(store))
    reads, am = simulate(layout, shoppers=shoppers, hours=hours, seed=seed, scenario=scenario).reads()
    gap_s = store_params(layout.settings)["trip_gap_s"]
    c0 = time.process_time()
    model = P.fit_presence_model(reads, am, zone_map(layout), segment_gap_s=gap_s)
    d = {"reads": reads, "model": model, "gap_s": gap_s, "fit_cpu_s": time.process_time() - c0}
    if path:
        os.makedirs(cache, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(d, f)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="department")
    ap.add_argument("--scenarios", default="easy,hard")
    ap.add_argument("--shoppers", type=int, default=200)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--numpy-steps", type=int, default=600)
    a = ap.parse_args()
    for sc in a.scenarios.split(","):
        d = _load(a.store, sc, a.shoppers, a.hours, a.seed, a.cache)
        reads, model = d["reads"], d["model"]
        seg_off = P.segment_reads(reads, d["gap_s"])
        n = len(reads)
        P._run_decode(reads, model, seg_off[:2], False)  # compile outside the timing
        t_lanes, ((states, *_), step_off, *_) = _cpu(lambda: P._run_decode(reads, model, seg_off, False))

        step_us = int(round(model.step_s * 1e6))
        base, table = P._emission_arrays(model)
        trans, emit_of = P._entry_chains(model.trans, model.state_zone, int(round(model.min_stay_s / model.step_s)))
        ptr, idx, logp = P._pred_graph(trans)
        rssi = reads.rssi_dbm.astype(np.float64)
        n_ant = model.p_detect.shape[1]
        nb = max(1, min(len(seg_off) - 1, 8 * numba.get_num_threads()))

        def one_by_one(s=seg_off, so=step_off):
            return _decode_one_by_one(reads.ts_us, reads.antenna, rssi, s, so, step_us, n_ant, base, table, ptr,
                                      idx, logp, emit_of, nb)

        one_by_one(seg_off[:2], step_off[:2])
        t_one, states_one = _cpu(one_by_one)

        # numpy on a slice: the first --numpy-steps steps of the first segments
        with np.errstate(divide="ignore"):
            log_trans = np.log(trans)
        n_np = min(a.numpy_steps, int(step_off[-1]))
        n_reads_np, same_np, t_np, g = 0, True, 0.0, 0
        while g < len(seg_off) - 1 and n_np > 0:
            r0, r1 = seg_off[g], seg_off[g + 1]
            o_step, o_ant, o_rssi = np.empty(r1 - r0, np.int64), np.empty(r1 - r0, np.int32), np.empty(r1 - r0)
            m = P._segment_obs(reads.ts_us, reads.antenna, rssi, r0, r1, step_us, n_ant, o_step, o_ant, o_rssi,
                               np.full(n_ant, -1, np.int64), np.zeros(n_ant, np.int64))
            T = int(step_off[g + 1] - step_off[g])
            c0 = time.process_time()
            out = _numpy_viterbi(T, o_step[:m], o_ant[:m], o_rssi[:m], base, table, log_trans, emit_of)
            t_np += time.process_time() - c0
            same_np &= bool(np.array_equal(out, states[step_off[g]:step_off[g + 1]]))
            n_reads_np += int(r1 - r0)
            n_np -= T
            g += 1

        mrs = n / t_lanes / 1e6
        print(f"{a.store} {sc}: reads={n} steps={int(step_off[-1])} segments={len(seg_off) - 1} "
              f"states={model.n_states} decoded={emit_of.size} threads={numba.get_num_threads()} "
              f"fit={d.get('fit_cpu_s', float('nan')):.1f} CPU-s", flush=True)
        print(f"  lanes decoder (analyze):     {mrs:6.2f} M reads/CPU-s ({t_lanes:.2f} CPU-s)")
        print(f"  one segment at a time:       {n / t_one / 1e6:6.2f} M reads/CPU-s  -> lanes x{t_one / t_lanes:.2f}"
              f"  states identical: {np.array_equal(states, states_one)}")
        print(f"  numpy per step ({g} segment(s), {n_reads_np} reads): {n_reads_np / t_np / 1e6:6.3f} M reads/CPU-s"
              f"  -> lanes x{mrs / (n_reads_np / t_np / 1e6):.0f}  states identical: {same_np}", flush=True)


if __name__ == "__main__":
    main()
