"""RF model: which antenna reads which tag when, at what RSSI, as seen on the reader's clock.

Each reader cycles through its antenna ports; one inventory round (``round_s``) per port, so a
reader's antennas share its time. In every round each tag within range is read with probability
``p_max · logistic((RSSI − sensitivity) / softness)``, where RSSI follows a log-distance path loss
with the antenna's horizontal gain pattern, a slow shadowing term that is correlated in time per
(tag, antenna), and per-read fading. Crowded antennas singulate at most ``round_cap`` tags per
round. A read may be delivered twice, or echo as a weak multipath ghost at a distant antenna.
Timestamps carry the reader's clock offset and drift.

The kernel works on one time slice of tag positions sampled every ``dt``; slices are seeded
independently, so the stream is reproducible and independent of how it is chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from storeflow.layout import Layout
from simulators.scenario import RFParams

__all__ = ["SIM_READ_DTYPE", "AntennaSetup", "generate_slice"]

SIM_READ_DTYPE = np.dtype([("ts_us", "i8"), ("reader", "u2"), ("port", "u1"), ("tag", "u4"), ("rssi_cdbm", "i2")])

_GRID_M = 2.0  # candidate-antenna grid cell (metres)


@dataclass(frozen=True)
class AntennaSetup:
    """Per-antenna arrays (index = position in ``layout.antennas()``) and reader schedules."""

    x: np.ndarray
    y: np.ndarray
    floor: np.ndarray          # int64
    azimuth: np.ndarray        # boresight direction (radians)
    gain_db: np.ndarray        # install/cable gain offset (dB)
    reader: np.ndarray         # int64 index into layout.readers
    port: np.ndarray           # int64
    slot: np.ndarray           # int64 position in the reader's port cycle
    n_slots: np.ndarray        # int64 ports of that antenna's reader
    phase_us: np.ndarray       # int64 reader schedule phase
    skew_us: np.ndarray        # float64 per reader: clock offset
    drift_ppm: np.ndarray      # float64 per reader
    cand_ptr: np.ndarray       # CSR over candidate-grid cells of all floors
    cand_ant: np.ndarray
    grid_off: np.ndarray       # int64 per floor index: first cell
    grid_nx: np.ndarray
    grid_ny: np.ndarray
    floor_ids: np.ndarray      # floor number per floor index
    ghost_ptr: np.ndarray      # CSR: distant antennas where a read of antenna a may echo
    ghost_ant: np.ndarray

    @staticmethod
    def build(layout: Layout, rf: RFParams, rng: np.random.Generator) -> AntennaSetup:
        pairs = layout.antennas()
        rid = {r.reader: i for i, r in enumerate(layout.readers)}
        n = len(pairs)
        x = np.array([a.x for _, a in pairs], float)
        y = np.array([a.y for _, a in pairs], float)
        fl = np.array([a.floor for _, a in pairs], np.int64)
        az = np.empty(n)
        for i, (_, a) in enumerate(pairs):
            z = layout.zone(a.zone) if a.zone else None
            # antennas face their zone's centre; one mounted in the middle faces a random aisle side
            if z is not None:
                cx = sum(p[0] for p in z.polygon) / len(z.polygon)
                cy = sum(p[1] for p in z.polygon) / len(z.polygon)
                if math.hypot(cx - a.x, cy - a.y) > 0.5:
                    az[i] = math.atan2(cy - a.y, cx - a.x)
                    continue
            az[i] = rng.uniform(-math.pi, math.pi)
        az += rng.normal(0, math.radians(15), n)
        gain = rng.normal(0, rf.gain_spread_db, n)
        reader = np.array([rid[r] for r, _ in pairs], np.int64)
        port = np.array([a.port for _, a in pairs], np.int64)
        slot = np.zeros(n, np.int64)
        nslots = np.zeros(n, np.int64)
        for r in range(len(layout.readers)):
            idx = np.flatnonzero(reader == r)
            slot[idx] = np.arange(len(idx))
            nslots[idx] = len(idx)
        round_us = int(rf.round_s * 1e6)
        phase_r = rng.integers(0, max(1, round_us * 4), len(layout.readers))
        skew = rng.normal(0, rf.skew_sd_s * 1e6, len(layout.readers))
        drift = rng.normal(0, rf.drift_sd_ppm, len(layout.readers))
        # candidate antennas per 2 m cell: everything within max range + cell diagonal + 2 m of walking
        reach = rf.max_range_m + _GRID_M * 0.75 + 2.0
        ptr, cand, goff, gnx, gny, fids = [0], [], [], [], [], []
        off = 0
        for f in layout.floors:
            nx, ny = int(math.ceil(f.width_m / _GRID_M)), int(math.ceil(f.depth_m / _GRID_M))
            goff.append(off)
            gnx.append(nx)
            gny.append(ny)
            fids.append(f.floor)
            on = np.flatnonzero(fl == f.floor)
            for ix in range(nx):
                for iy in range(ny):
                    cx, cy = (ix + 0.5) * _GRID_M, (iy + 0.5) * _GRID_M
                    d = np.hypot(x[on] - cx, y[on] - cy)
                    sel = on[d <= reach]
                    cand.extend(sel.tolist())
                    ptr.append(len(cand))
            off += nx * ny
        gptr, gant = [0], []
        for i in range(n):
            d = np.hypot(x - x[i], y - y[i])
            far = np.flatnonzero((fl == fl[i]) & (d >= rf.ghost_min_m))
            if far.size == 0:
                far = np.flatnonzero(np.arange(n) != i)
            gant.extend(far.tolist())
            gptr.append(len(gant))
        return AntennaSetup(x, y, fl, az, gain, reader, port, slot, nslots,
                            phase_r[reader].astype(np.int64), skew, drift,
                            np.array(ptr, np.int64), np.array(cand, np.int64), np.array(goff, np.int64),
                            np.array(gnx, np.int64), np.array(gny, np.int64), np.array(fids, np.int64),
                            np.array(gptr, np.int64), np.array(gant, np.int64))


@numba.njit(cache=True)
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _hash_normal(seed: np.uint64, a: np.int64, b: np.int64, k: np.int64) -> float:
    h = _mix(seed ^ _mix(np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)
                         + np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F) + np.uint64(k)))
    h2 = _mix(h + np.uint64(0x9E3779B97F4A7C15))
    u1 = (float(h >> np.uint64(11)) + 0.5) / 9007199254740992.0
    u2 = float(h2 >> np.uint64(11)) / 9007199254740992.0
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True)
def _slow_shadow(seed: np.uint64, tag: np.int64, ant: np.int64, t_us: np.int64, tau_us: np.int64) -> float:
    """Time-correlated unit-variance noise per (tag, antenna): interpolated hashed knots."""
    k = t_us // tau_us
    w = (t_us - k * tau_us) / tau_us
    n0 = _hash_normal(seed, tag, ant, k)
    n1 = _hash_normal(seed, tag, ant, k + 1)
    return (n0 * (1.0 - w) + n1 * w) / math.sqrt((1.0 - w) ** 2 + w * w)


@numba.njit(cache=True, fastmath=True)
def _loss(d2: float, n_exp: float, bp: float, n_far: float) -> float:
    """Dual-slope path loss (dB) at squared 3-D distance d2."""
    if d2 <= bp * bp:
        return 5.0 * n_exp * math.log10(d2)
    return 10.0 * n_exp * math.log10(bp) + 5.0 * n_far * math.log10(d2 / (bp * bp))


@numba.njit(cache=True, fastmath=True)
def _cand_cell(f, x, y, floor_ids, grid_off, grid_nx, grid_ny):
    """Index of the 2 m candidate-antenna grid cell at (x, y) metres on floor ``f``; -1 when the floor
    is not in the grid."""
    fi = -1
    for q in range(floor_ids.shape[0]):
        if floor_ids[q] == f:
            fi = q
    if fi < 0:
        return -1
    gx = min(max(int(x / 2.0), 0), grid_nx[fi] - 1)
    gy = min(max(int(y / 2.0), 0), grid_ny[fi] - 1)
    return grid_off[fi] + gx * grid_ny[fi] + gy


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _generate(slice_seed, shadow_seed, t0_us, dt_us, n_steps, spb, tag_ids, pf, px, py,
              ax, ay, af, aaz, again, areader, aport, aslot, anslots, aphase, rskew, rdrift, start_us,
              cand_ptr, cand_ant, grid_off, grid_nx, grid_ny, floor_ids, ghost_ptr, ghost_ant,
              rssi_1m, n_exp, bp, n_far, sens, soft, p_max, s_slow, tau_us, s_fast, bw_deg, fbr, dz2, round_us,
              round_cap, crowd_r, ghost_p, dup_p, max_r, rssi_step_cdbm, out_ts, out_reader, out_port,
              out_tag, out_rssi):
    np.random.seed(slice_seed)
    n_act = tag_ids.shape[0]
    n_ant = ax.shape[0]
    n_blocks = (n_steps + spb - 1) // spb
    t_end = t0_us + n_steps * dt_us
    max_r2 = max_r * max_r
    reach2 = (max_r + 2.0) ** 2
    crowd_r2 = crowd_r * crowd_r
    # pass 1: tags close to each antenna per block, for the singulation cap
    crowd = np.zeros((n_blocks, n_ant), np.int64)
    for j in range(n_act):
        for b in range(n_blocks):
            s = min(b * spb + spb // 2, n_steps - 1)
            f = pf[s, j]
            if f < 0:
                continue
            cell = _cand_cell(f, px[s, j], py[s, j], floor_ids, grid_off, grid_nx, grid_ny)
            if cell < 0:
                continue
            for c in range(cand_ptr[cell], cand_ptr[cell + 1]):
                a = cand_ant[c]
                dx = px[s, j] - ax[a]
                dy = py[s, j] - ay[a]
                if dx * dx + dy * dy <= crowd_r2:
                    crowd[b, a] += 1
    n_out = 0
    cap = out_ts.shape[0]
    for j in range(n_act):
        tag = tag_ids[j]
        for b in range(n_blocks):
            s_mid = min(b * spb + spb // 2, n_steps - 1)
            f = pf[s_mid, j]
            if f < 0:
                continue
            cell = _cand_cell(f, px[s_mid, j], py[s_mid, j], floor_ids, grid_off, grid_nx, grid_ny)
            if cell < 0:
                continue
            tb0 = t0_us + b * spb * dt_us
            tb1 = min(tb0 + spb * dt_us, t_end)
            for c in range(cand_ptr[cell], cand_ptr[cell + 1]):
                a = cand_ant[c]
                dx = px[s_mid, j] - ax[a]
                dy = py[s_mid, j] - ay[a]
                if dx * dx + dy * dy > reach2:
                    continue
                # slow shadowing is held for the block (1 s, shorter than its correlation time);
                # skip the block when even the closest approach with +4 sigma fading reads < 0.1 %
                dm = math.sqrt(dx * dx + dy * dy) - 1.5
                if dm < 0.0:
                    dm = 0.0
                best = rssi_1m + again[a] - _loss(dm * dm + dz2, n_exp, bp, n_far) + 3.0 * s_fast
                if best + 4.0 * s_slow < sens - 6.0 * soft:
                    continue  # hopeless even with +4 sigma shadowing: skip before hashing
                slow = s_slow * _slow_shadow(shadow_seed, tag, a, (tb0 + tb1) // 2, tau_us)
                if best + slow < sens - 6.0 * soft:
                    continue
                period = anslots[a] * round_us
                first = aphase[a] + aslot[a] * round_us
                k = (tb0 - first + period - 1) // period
                rs = first + k * period
                cfac = 1.0
                if crowd[b, a] > round_cap:
                    cfac = round_cap / crowd[b, a]
                # thinning: rounds are first drawn with an upper bound p_ub of the read probability in
                # this block (skipping ahead geometrically), then accepted with p / p_ub; the same
                # distribution as testing every round, with far fewer evaluations for distant tags
                p_ub = p_max * cfac / (1.0 + math.exp(-(best + slow - sens) / soft))
                log_q = math.log(1.0 - p_ub) if p_ub < 0.999 else 0.0
                while True:
                    if log_q < 0.0:
                        rs += np.int64(math.log(1.0 - np.random.random()) / log_q) * period
                    if rs >= tb1:
                        break
                    s = (rs + round_us // 2 - t0_us) // dt_us
                    if s >= n_steps:
                        s = n_steps - 1
                    if pf[s, j] != f:
                        rs += period
                        continue
                    ddx = px[s, j] - ax[a]
                    ddy = py[s, j] - ay[a]
                    d2 = ddx * ddx + ddy * ddy + dz2
                    if d2 > max_r2:
                        rs += period
                        continue
                    ang = math.atan2(ddy, ddx) - aaz[a]
                    ang = (ang + math.pi) % (2.0 * math.pi) - math.pi
                    g = 12.0 * (abs(ang) * 180.0 / math.pi / bw_deg) ** 2
                    if g > fbr:
                        g = fbr
                    mean = rssi_1m - g + again[a] - _loss(d2, n_exp, bp, n_far)
                    rssi = mean + slow + s_fast * np.random.standard_normal()
                    p = p_max * cfac / (1.0 + math.exp(-(rssi - sens) / soft))
                    if np.random.random() * p_ub < p:
                        ts = rs + np.int64(np.random.random() * round_us)
                        reps = 1
                        if np.random.random() < dup_p:
                            reps = 2
                        for _ in range(reps):
                            if n_out >= cap:
                                return -1
                            r = areader[a]
                            out_ts[n_out] = ts + np.int64(rskew[r] + rdrift[r] * 1e-6 * (ts - start_us))
                            out_reader[n_out] = r
                            out_port[n_out] = aport[a]
                            out_tag[n_out] = tag
                            out_rssi[n_out] = np.int64(round(rssi * 100.0 / rssi_step_cdbm)) * rssi_step_cdbm
                            n_out += 1
                        if np.random.random() < ghost_p and ghost_ptr[a + 1] > ghost_ptr[a]:
                            gsel = ghost_ptr[a] + np.random.randint(0, ghost_ptr[a + 1] - ghost_ptr[a])
                            ga = ghost_ant[gsel]
                            gperiod = anslots[ga] * round_us
                            gfirst = aphase[ga] + aslot[ga] * round_us
                            gk = (ts - gfirst + gperiod - 1) // gperiod
                            gts = gfirst + gk * gperiod + np.int64(np.random.random() * round_us)
                            if n_out >= cap:
                                return -1
                            r = areader[ga]
                            out_ts[n_out] = gts + np.int64(rskew[r] + rdrift[r] * 1e-6 * (gts - start_us))
                            out_reader[n_out] = r
                            out_port[n_out] = aport[ga]
                            out_tag[n_out] = tag
                            grssi = sens - 2.0 + np.random.exponential(2.5)
                            out_rssi[n_out] = np.int64(round(grssi * 100.0 / rssi_step_cdbm)) * rssi_step_cdbm
                            n_out += 1
                    rs += period
    return n_out


def generate_slice(setup: AntennaSetup, rf: RFParams, slice_seed: int, shadow_seed: int, start_us: int,
                   t0_us: int, dt_us: int, tag_ids: np.ndarray, pf: np.ndarray, px: np.ndarray,
                   py: np.ndarray, block_steps: int = 10) -> np.ndarray:
    """Reads of one slice (SIM_READ_DTYPE, not sorted).

    ``pf``/``px``/``py`` are [n_steps, n_tags] floors (-1 absent) and positions (metres) at
    ``t0_us + k·dt_us``; ``tag_ids`` the tag index of each column."""
    n_steps = pf.shape[0]
    cap = max(1024, int(tag_ids.size * n_steps * dt_us / 1e6 * 40))
    while True:
        ts = np.empty(cap, np.int64)
        rd = np.empty(cap, np.int64)
        pt = np.empty(cap, np.int64)
        tg = np.empty(cap, np.int64)
        rs = np.empty(cap, np.int64)
        n = _generate(np.uint32(slice_seed % 2**32), np.uint64(shadow_seed), np.int64(t0_us), np.int64(dt_us),
                      n_steps, block_steps, tag_ids.astype(np.int64), pf, px, py,
                      setup.x, setup.y, setup.floor, setup.azimuth, setup.gain_db, setup.reader, setup.port,
                      setup.slot, setup.n_slots, setup.phase_us, setup.skew_us, setup.drift_ppm, np.int64(start_us),
                      setup.cand_ptr, setup.cand_ant, setup.grid_off, setup.grid_nx, setup.grid_ny,
                      setup.floor_ids, setup.ghost_ptr, setup.ghost_ant,
                      rf.rssi_1m_dbm, rf.path_loss_exp, rf.breakpoint_m, rf.path_loss_exp_far, rf.sensitivity_dbm, rf.read_softness_db, rf.p_max,
                      rf.shadow_slow_db, np.int64(rf.shadow_tau_s * 1e6), rf.shadow_fast_db, rf.beamwidth_deg,
                      rf.front_back_db, (rf.antenna_height_m - rf.tag_height_m) ** 2, np.int64(rf.round_s * 1e6),
                      rf.round_cap, rf.crowd_radius_m, rf.ghost_p, rf.dup_p, rf.max_range_m,
                      np.int64(round(rf.rssi_step_db * 100)), ts, rd, pt, tg, rs)
        if n >= 0:
            break
        cap *= 2
    out = np.empty(n, SIM_READ_DTYPE)
    out["ts_us"] = ts[:n]
    out["reader"] = rd[:n]
    out["port"] = pt[:n]
    out["tag"] = tg[:n]
    out["rssi_cdbm"] = np.clip(rs[:n], -15000, 2000)
    return out
