"""Zone presence: which zone (or none: aisle, outside) each tag is in, over time.

Method: a per-tag hidden Markov model decoded with Viterbi on fixed time steps (``step_s``, 1 s).

* States: every zone that has at least one antenna installed for it; for each such zone the
  aisle right beside it (read by that zone's antennas, but weaker and less often); and ``far``
  (no antenna near). The last two are "placed nowhere" (zone -1) in the output.
* Observation of one step: for each antenna, whether it read the tag in that step and, if so, the
  strongest RSSI (dBm). Duplicates and aggregated rows (``count`` > 1) collapse into one detection.
* Emission: per (state, antenna) a detection probability ``p`` (a missed read is evidence too) and a
  Gaussian RSSI model (mean, sd) mixed with a small uniform outlier component, so that one multipath
  ghost read cannot outweigh the transition costs of a spurious zone change.
* Transitions: a sparse graph from the layout. "In z" connects to "beside z" and to ``far``;
  "beside z" connects to "beside w" for zones within :data:`AISLE_LINK_M` (along / across the
  aisle). A shopper goes from one counter to the next through the aisle (in z, beside z, beside w,
  in w), also between neighbouring counters: a direct link between them (``direct_neighbours``)
  lets a tag leaving z past w's edge decode as a short stay in w (measured: visit F1 -0.02 to
  -0.04 in harsh RF, unchanged in easy RF).
* Everything is learnt from the store's own data (:func:`fit_presence_model`), never from a sample
  store: a two-component RSSI mixture per antenna separates "tag in the antenna's own zone" from
  "tag elsewhere"; read continuity gives the in-zone detection rate; the layout's antenna-to-zone
  distances with a free-space path-loss slope give the starting RSSI means of the other zones;
  then a few rounds of hard EM (Viterbi training) re-estimate the emission and transition
  parameters from the decoded paths, shrunk towards those starting values where data are thin,
  under physical ordering constraints (an antenna reads its own zone more often and stronger than
  beside it, and beside it more than far away). RSSI is binned at 0.5 dB for the emission table.
* Evidence weight: successive steps are not independent given the state (body shadowing, a
  shopper standing at one spot of a counter), so each step's log-emission is weighted by
  ``(1 - rho) / (1 + rho)``, with ``rho`` the lag-1 autocorrelation of RSSI residuals measured on
  the decoded stays in every EM round (:func:`_emission_weight`). Without it, a few seconds of a
  shadowing peak beside a counter outweigh the transition costs and decode as a short false visit.
* Decoding: every zone state is entered through a chain of :data:`MIN_STAY_S` steps (an
  explicit minimum stay, :func:`_entry_chains`), so a stay cannot be entered and left within a
  second or two; afterwards a run of "beside z" / "far" steps between two stays in z (nowhere else
  in between) is filled back into z (:func:`_fill_beside`): the weakly read far part of a counter
  looks like the aisle beside it, and without this one long stay decodes as several short ones.
* Starting values come from the layout plus documented physical defaults only (walking speed,
  free-space slope, aisle width, a 30 s prior stay); nothing is taken from the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from analytics.config import NJIT, NJIT_PARALLEL
from analytics.data import AntennaMap, Reads, ZoneMap

__all__ = ["PresenceModel", "Presence", "fit_presence_model", "zone_presence", "segment_reads",
           "zone_adjacency", "zone_gaps", "ADJACENT_M", "AISLE_LINK_M", "MIN_STAY_S"]

#: Zones whose polygons are closer than this are neighbours a tag can walk between directly (m):
#: one walking step.
ADJACENT_M = 1.0
#: "Beside" states of zones closer than this are linked (walking along or across an aisle): a
#: generous shop-aisle width (m).
AISLE_LINK_M = 4.0
#: Shortest stay in a zone the decoder allows by default (s): half of SPEC's default
#: ``min_dwell_s`` (10 s), so a pass-by can still be decoded as one, while a one-to-four-second
#: flap into a neighbouring counter (read through its edge) cannot split a stay.
MIN_STAY_S = 5.0
#: Prior mean stay in a state and mean time between zone changes before EM refines them (s).
_PRIOR_STAY_S = 30.0
#: Free-space path-loss exponent: only used to seed the RSSI means of non-own zones before EM.
_PATH_LOSS_EXPONENT = 2.0
#: Weight of the uniform outlier component of the RSSI model (multipath ghosts, reflections).
_OUTLIER_W = 0.02
#: Pseudo-counts (steps / detections) of the starting values when EM re-estimates parameters.
_PRIOR_STEPS = 30.0
_PRIOR_DETECTIONS = 10.0
_P_MIN, _P_MAX = 1e-4, 0.8
#: Shopper walking speed (m/s): how long "beside a zone" lasts for someone walking past it.
_WALK_MPS = 1.0
_SD_MIN_DB = 1.0
#: Bounds of the learnt emission weight (see :func:`_emission_weight`).
_EMIT_W_MIN, _EMIT_W_MAX = 0.05, 1.0


@dataclass(frozen=True)
class PresenceModel:
    """HMM parameters for one store (S states x A antennas). State 0 is ``none``."""

    state_zone: np.ndarray    # int32 (S,): zone index of each state; -1 for state 0 (none)
    p_detect: np.ndarray      # float64 (S, A): P(antenna reads the tag within one step | state)
    mu_dbm: np.ndarray        # float64 (S, A): mean strongest RSSI of a step's detections
    sd_db: np.ndarray         # float64 (S, A)
    trans: np.ndarray         # float64 (S, S): transition probabilities per step (0 = not allowed)
    rssi_span_db: float       # width of the uniform outlier component (dB)
    step_s: float             # time step (s)
    min_stay_s: float = 0.0   # shortest stay in a zone the decoder allows (s); 0: no minimum
    emit_weight: float = 1.0  # weight of one step's log-emission (< 1: successive steps are correlated)

    @property
    def n_states(self) -> int:
        return int(self.state_zone.shape[0])

    def to_json(self) -> dict:
        """Plain JSON-able dict (lists of floats), e.g. for the presence_models table."""
        return {"state_zone": self.state_zone.tolist(), "p_detect": self.p_detect.tolist(),
                "mu_dbm": self.mu_dbm.tolist(), "sd_db": self.sd_db.tolist(), "trans": self.trans.tolist(),
                "rssi_span_db": self.rssi_span_db, "step_s": self.step_s,
                "min_stay_s": self.min_stay_s, "emit_weight": self.emit_weight}

    @staticmethod
    def from_json(d: dict) -> PresenceModel:
        return PresenceModel(np.array(d["state_zone"], np.int32), np.array(d["p_detect"], np.float64),
                             np.array(d["mu_dbm"], np.float64), np.array(d["sd_db"], np.float64),
                             np.array(d["trans"], np.float64), float(d["rssi_span_db"]), float(d["step_s"]),
                             float(d.get("min_stay_s", 0.0)), float(d.get("emit_weight", 1.0)))


@dataclass(frozen=True)
class Presence:
    """Presence spans: tag ``tag[i]`` was in zone ``zone[i]`` (-1: none) during [start_us, end_us).

    Sorted by (tag, start_us); spans of one tag never overlap. Consecutive spans of one tag with
    the same zone are merged; long read gaps (> segment gap) leave holes with no span.
    """

    tag: np.ndarray        # int32
    zone: np.ndarray       # int32 zone index, -1 none
    start_us: np.ndarray   # int64
    end_us: np.ndarray     # int64

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    def zones_only(self) -> Presence:
        """The spans placed in a zone (drops the ``none`` spans)."""
        keep = self.zone >= 0
        return Presence(self.tag[keep], self.zone[keep], self.start_us[keep], self.end_us[keep])


# ---------------------------------------------------------------------------------------------
# geometry (from the layout)

def _points_in_polygon(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    inside = np.zeros(px.shape, bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= crosses & (px < xint)
    return inside


def _zone_samples(poly: np.ndarray, spacing_m: float = 0.25) -> np.ndarray:
    """Points on a regular grid inside a polygon (its vertices' mean when it is too thin)."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    xs = np.arange(lo[0] + spacing_m / 2, hi[0], spacing_m)
    ys = np.arange(lo[1] + spacing_m / 2, hi[1], spacing_m)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    ins = _points_in_polygon(gx, gy, poly)
    if not ins.any():
        return poly.mean(axis=0, keepdims=True)
    return np.column_stack((gx[ins], gy[ins]))


def _boundary_samples(poly: np.ndarray, spacing_m: float = 0.25) -> np.ndarray:
    pts = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        k = max(1, int(np.ceil(np.hypot(*(b - a)) / spacing_m)))
        t = np.arange(k)[:, None] / k
        pts.append(a + t * (b - a))
    return np.vstack(pts)


def zone_gaps(zones: ZoneMap, max_gap_m: float) -> np.ndarray:
    """float64 (Z, Z): distance between zone polygon boundaries (m), inf for other floors or when
    more than ``max_gap_m`` apart (bounding boxes are checked first)."""
    nz = len(zones)
    out = np.full((nz, nz), np.inf)
    polys = [zones.polygon(i) for i in range(nz)]
    lo = np.array([p.min(axis=0) for p in polys]).reshape(-1, 2)
    hi = np.array([p.max(axis=0) for p in polys]).reshape(-1, 2)
    bounds = [_boundary_samples(p) for p in polys]
    for i in range(nz):
        out[i, i] = 0.0
        for j in range(i + 1, nz):
            if zones.floor[i] != zones.floor[j]:
                continue
            box_gap = np.maximum(0.0, np.maximum(lo[i] - hi[j], lo[j] - hi[i]))
            if np.hypot(*box_gap) > max_gap_m:
                continue
            d = np.sqrt(((bounds[i][:, None, :] - bounds[j][None, :, :]) ** 2).sum(-1)).min()
            if d <= max_gap_m:
                out[i, j] = out[j, i] = d
    return out


def zone_adjacency(zones: ZoneMap, max_gap_m: float = ADJACENT_M) -> np.ndarray:
    """bool (Z, Z): distinct zones on the same floor whose polygons are closer than ``max_gap_m`` (m)."""
    adj = zone_gaps(zones, max_gap_m) < max_gap_m
    np.fill_diagonal(adj, False)
    return adj


def _antenna_zone_distance(antennas: AntennaMap, zones: ZoneMap) -> np.ndarray:
    """float64 (Z, A): mean distance from each antenna to the points of each zone (m; inf other floor)."""
    out = np.full((len(zones), len(antennas)), np.inf)
    for z in range(len(zones)):
        pts = _zone_samples(zones.polygon(z))
        for a in range(len(antennas)):
            if antennas.floor[a] == zones.floor[z]:
                out[z, a] = np.hypot(pts[:, 0] - antennas.x_m[a], pts[:, 1] - antennas.y_m[a]).mean()
    return out


# ---------------------------------------------------------------------------------------------
# segmentation and per-step observations

def segment_reads(reads: Reads, segment_gap_s: float) -> np.ndarray:
    """int64 offsets (n_segments + 1): a segment is one tag's reads without a gap > segment_gap_s."""
    n = len(reads)
    if n == 0:
        return np.zeros(1, np.int64)
    brk = (np.diff(reads.tag) != 0) | (np.diff(reads.ts_us) > int(segment_gap_s * 1e6))
    return np.concatenate(([0], np.flatnonzero(brk) + 1, [n])).astype(np.int64)


@numba.njit(**NJIT)
def _segment_obs(ts_us, antenna, rssi, r0, r1, step_us, n_ant, obs_step, obs_ant, obs_rssi, last_step, last_pos):
    """Collapse reads [r0, r1) into per-(step, antenna) strongest RSSI; returns the obs count.

    ``last_step`` / ``last_pos`` are (n_ant,) scratch arrays (last_step must hold -1 on entry and
    is restored to -1 on exit).
    """
    t0 = ts_us[r0]
    m = 0
    for r in range(r0, r1):
        k = (ts_us[r] - t0) // step_us
        a = antenna[r]
        if last_step[a] == k:
            p = last_pos[a]
            if rssi[r] > obs_rssi[p]:
                obs_rssi[p] = rssi[r]
        else:
            last_step[a] = k
            last_pos[a] = m
            obs_step[m] = k
            obs_ant[m] = a
            obs_rssi[m] = rssi[r]
            m += 1
    for i in range(m):
        last_step[obs_ant[i]] = -1
    return m


#: RSSI is binned for the emission table: 0.5 dB bins over [-120, 0) dBm (values outside are clamped);
#: 0.5 dB is a reader's usual resolution and far below any learnt RSSI spread (sd >= 1 dB).
RSSI_LO_DBM, RSSI_BIN_DB, RSSI_BINS = -120.0, 0.5, 240


@numba.njit(**NJIT)
def rssi_bin(r: float) -> int:
    """Index of the emission-table bin whose centre is nearest to ``r`` dBm (clamped)."""
    b = int(np.floor((r - RSSI_LO_DBM) / RSSI_BIN_DB + 0.5))
    return min(max(b, 0), RSSI_BINS - 1)


@numba.njit(**NJIT)
def _viterbi_segment(n_steps, obs_step, obs_ant, obs_rssi, n_obs, base, table, pred_ptr, pred_idx, pred_logp,
                     emit_of, out_state):
    """Decode one segment into out_state[:n_steps]; returns the best log-likelihood.

    The decoded graph may hold more states than the model (``emit_of``: model state of each
    decoded state, e.g. the entry chain of a zone); ``out_state`` holds model states.
    """
    n_b = base.shape[0]
    n_s = emit_of.shape[0]
    score = np.empty(n_s)
    new = np.empty(n_s)
    em = np.empty(n_b)
    back = np.empty((n_steps, n_s), np.int16)
    o = 0
    for k in range(n_steps):
        for s in range(n_b):
            em[s] = base[s]
        while o < n_obs and obs_step[o] == k:
            a = obs_ant[o]
            b = rssi_bin(obs_rssi[o])
            for s in range(n_b):
                em[s] += table[a, b, s]
            o += 1
        if k == 0:
            for s in range(n_s):
                # uniform start over states
                score[s] = em[emit_of[s]]
                back[0, s] = s
        else:
            for s in range(n_s):
                best = -np.inf
                arg = s
                for e in range(pred_ptr[s], pred_ptr[s + 1]):
                    v = score[pred_idx[e]] + pred_logp[e]
                    if v > best:
                        best = v
                        arg = pred_idx[e]
                new[s] = best + em[emit_of[s]]
                back[k, s] = arg
            for s in range(n_s):
                score[s] = new[s]
    best = -np.inf
    arg = 0
    for s in range(n_s):
        if score[s] > best:
            best = score[s]
            arg = s
    for k in range(n_steps - 1, -1, -1):
        out_state[k] = emit_of[arg]
        arg = back[k, arg]
    return best


#: Segments decoded side by side by :func:`_viterbi_lanes` (the decoded graph is the same for every
#: segment, so one pass over its edges serves them all and the compiler vectorises over lanes).
LANES = 16
#: Memory bound of one thread's lane back-pointers (bytes); longer segments are decoded one at a time.
_LANE_BACK_BYTES = 64 << 20


def _lane_graph(pred_ptr: np.ndarray, pred_idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Split the predecessor CSR for :func:`_viterbi_lanes`: states with several predecessors (a
    back-pointer per step is stored) and states with exactly one (an entry chain's inner steps:
    the back-pointer is that predecessor, nothing is stored). Returns (multi, single, slot, one_pred):
    int64 state lists, the back-pointer column of each multi state (-1 otherwise) and the sole
    predecessor of each single state (-1 otherwise)."""
    deg = np.diff(pred_ptr)
    multi = np.flatnonzero(deg != 1).astype(np.int64)
    single = np.flatnonzero(deg == 1).astype(np.int64)
    slot = np.full(deg.size, -1, np.int64)
    slot[multi] = np.arange(multi.size)
    one_pred = np.full(deg.size, -1, np.int64)
    one_pred[single] = pred_idx[pred_ptr[single]]
    return multi, single, slot, one_pred


@numba.njit(**NJIT)
def _viterbi_lanes(n_steps, obs_step, obs_ant, obs_rssi, n_obs, base, table, pred_ptr, pred_idx, pred_logp,
                   emit_of, multi, single, slot, one_pred, out_state, back, score, new, em_l, em):
    """Decode up to L segments at once (lane l: ``n_steps[l]`` steps, observations ``obs_*[l, :n_obs[l]]``)
    into ``out_state[l, :n_steps[l]]``; L = ``score.shape[1]``, ``n_steps[l] = 0`` for an unused lane.

    Same arithmetic, in the same order, as :func:`_viterbi_segment` for each lane (ties go to the
    lowest predecessor and the lowest final state), so the decoded states are identical. Scratch:
    back (max steps, len(multi), L) int16; score, new (n_states, L); em_l (L, n_model_states);
    em (n_model_states, L). A lane past its segment's end keeps running on ``base`` (its result is
    taken at its own last step).
    """
    n_b = base.shape[0]
    n_s = emit_of.shape[0]
    n_m = multi.shape[0]
    n_1 = single.shape[0]
    n_l = score.shape[1]
    n_k = 0
    for lane in range(n_l):
        n_k = max(n_k, n_steps[lane])
    o = np.zeros(n_l, np.int64)
    fin = np.zeros(n_l, np.int64)
    best = np.empty(n_l)  # allocated here, not passed in: the compiler can tell they alias nothing
    arg = np.empty(n_l, np.int64)
    for k in range(n_k):
        for lane in range(n_l):
            for s in range(n_b):
                em_l[lane, s] = base[s]
            i = o[lane]
            while i < n_obs[lane] and obs_step[lane, i] == k:
                a = obs_ant[lane, i]
                b = rssi_bin(obs_rssi[lane, i])
                for s in range(n_b):
                    em_l[lane, s] += table[a, b, s]
                i += 1
            o[lane] = i
        for s in range(n_b):
            for lane in range(n_l):
                em[s, lane] = em_l[lane, s]
        if k == 0:
            for s in range(n_s):
                z = emit_of[s]
                for lane in range(n_l):
                    score[s, lane] = em[z, lane]
        else:
            for i in range(n_m):
                s = multi[i]
                for lane in range(n_l):
                    best[lane] = -np.inf
                    arg[lane] = s
                # predecessors in their CSR order (ties: the first wins), four / two at a time so
                # that best / arg go through memory once per group; branch-free: vectorises over lanes
                e = pred_ptr[s]
                e1 = pred_ptr[s + 1]
                while e + 4 <= e1:
                    p0, p1, p2, p3 = pred_idx[e], pred_idx[e + 1], pred_idx[e + 2], pred_idx[e + 3]
                    lp0, lp1, lp2, lp3 = pred_logp[e], pred_logp[e + 1], pred_logp[e + 2], pred_logp[e + 3]
                    for lane in range(n_l):
                        b = best[lane]
                        a = arg[lane]
                        v = score[p0, lane] + lp0
                        c = v > b
                        b = v if c else b
                        a = p0 if c else a
                        v = score[p1, lane] + lp1
                        c = v > b
                        b = v if c else b
                        a = p1 if c else a
                        v = score[p2, lane] + lp2
                        c = v > b
                        b = v if c else b
                        a = p2 if c else a
                        v = score[p3, lane] + lp3
                        c = v > b
                        best[lane] = v if c else b
                        arg[lane] = p3 if c else a
                    e += 4
                if e + 2 <= e1:
                    p0, p1 = pred_idx[e], pred_idx[e + 1]
                    lp0, lp1 = pred_logp[e], pred_logp[e + 1]
                    for lane in range(n_l):
                        b = best[lane]
                        a = arg[lane]
                        v = score[p0, lane] + lp0
                        c = v > b
                        b = v if c else b
                        a = p0 if c else a
                        v = score[p1, lane] + lp1
                        c = v > b
                        best[lane] = v if c else b
                        arg[lane] = p1 if c else a
                    e += 2
                if e < e1:
                    p0 = pred_idx[e]
                    lp0 = pred_logp[e]
                    for lane in range(n_l):
                        v = score[p0, lane] + lp0
                        c = v > best[lane]
                        best[lane] = v if c else best[lane]
                        arg[lane] = p0 if c else arg[lane]
                z = emit_of[s]
                for lane in range(n_l):
                    new[s, lane] = best[lane] + em[z, lane]
                    back[k, i, lane] = arg[lane]
            for i in range(n_1):
                s = single[i]
                e = pred_ptr[s]
                p = pred_idx[e]
                lp = pred_logp[e]
                z = emit_of[s]
                for lane in range(n_l):
                    new[s, lane] = (score[p, lane] + lp) + em[z, lane]
            score, new = new, score
        for lane in range(n_l):
            if k == n_steps[lane] - 1:
                bv = -np.inf
                bs = 0
                for s in range(n_s):
                    if score[s, lane] > bv:
                        bv = score[s, lane]
                        bs = s
                fin[lane] = bs
    for lane in range(n_l):
        s = fin[lane]
        for k in range(n_steps[lane] - 1, -1, -1):
            out_state[lane, k] = emit_of[s]
            j = slot[s]
            s = back[k, j, lane] if j >= 0 else one_pred[s]


@numba.njit(**NJIT_PARALLEL)
def _decode_all(ts_us, antenna, rssi, seg_off, step_off, step_us, n_ant, base, table, pred_ptr, pred_idx,
                pred_logp, emit_of, multi, single, slot, one_pred, n_lanes, n_blocks, max_lane_steps):
    """Viterbi over every segment: decoded state of every step (segments concatenated per ``step_off``).

    Segments are sorted by length and decoded ``n_lanes`` at a time (:func:`_viterbi_lanes`), so
    lanes of a batch end at about the same step; batch q goes to block q mod ``n_blocks`` (prange).
    Segments longer than ``max_lane_steps`` (a tag read for hours) are decoded one at a time
    (:func:`_viterbi_segment`): the lanes' back-pointers would take n_lanes times their memory.
    """
    n_seg = seg_off.shape[0] - 1
    n_s = emit_of.shape[0]
    n_b = base.shape[0]
    states = np.empty(step_off[n_seg], np.int16)
    lens = step_off[1:] - step_off[:-1]
    order = np.argsort(lens)
    n_short = 0
    while n_short < n_seg and lens[order[n_short]] <= max_lane_steps:
        n_short += 1
    n_batch = (n_short + n_lanes - 1) // n_lanes
    for blk in numba.prange(n_blocks):
        maxr = 0
        maxk = 0
        for q in range(blk, n_batch, n_blocks):
            for j in range(q * n_lanes, min(n_short, (q + 1) * n_lanes)):
                g = order[j]
                maxr = max(maxr, seg_off[g + 1] - seg_off[g])
                maxk = max(maxk, lens[g])
        for j in range(n_short + blk, n_seg, n_blocks):
            maxr = max(maxr, seg_off[order[j] + 1] - seg_off[order[j]])
        obs_step = np.empty((n_lanes, maxr), np.int64)
        obs_ant = np.empty((n_lanes, maxr), np.int32)
        obs_rssi = np.empty((n_lanes, maxr), np.float64)
        n_obs = np.zeros(n_lanes, np.int64)
        n_steps = np.zeros(n_lanes, np.int64)
        last_step = np.full(n_ant, -1, np.int64)
        last_pos = np.zeros(n_ant, np.int64)
        back = np.empty((maxk, multi.shape[0], n_lanes), np.int16)
        out = np.empty((n_lanes, maxk), np.int16)
        score = np.empty((n_s, n_lanes))
        new = np.empty((n_s, n_lanes))
        em_l = np.empty((n_lanes, n_b))
        em = np.empty((n_b, n_lanes))
        for q in range(blk, n_batch, n_blocks):
            for lane in range(n_lanes):
                j = q * n_lanes + lane
                n_obs[lane] = 0
                n_steps[lane] = 0
                if j < n_short:
                    g = order[j]
                    n_obs[lane] = _segment_obs(ts_us, antenna, rssi, seg_off[g], seg_off[g + 1], step_us, n_ant,
                                               obs_step[lane], obs_ant[lane], obs_rssi[lane], last_step, last_pos)
                    n_steps[lane] = lens[g]
            _viterbi_lanes(n_steps, obs_step, obs_ant, obs_rssi, n_obs, base, table, pred_ptr, pred_idx,
                           pred_logp, emit_of, multi, single, slot, one_pred, out, back, score, new, em_l, em)
            for lane in range(n_lanes):
                j = q * n_lanes + lane
                if j < n_short:
                    k0 = step_off[order[j]]
                    for k in range(n_steps[lane]):
                        states[k0 + k] = out[lane, k]
        for j in range(n_short + blk, n_seg, n_blocks):
            g = order[j]
            m = _segment_obs(ts_us, antenna, rssi, seg_off[g], seg_off[g + 1], step_us, n_ant, obs_step[0],
                             obs_ant[0], obs_rssi[0], last_step, last_pos)
            _viterbi_segment(lens[g], obs_step[0], obs_ant[0], obs_rssi[0], m, base, table, pred_ptr, pred_idx,
                             pred_logp, emit_of, states[step_off[g]:step_off[g + 1]])
    return states


@numba.njit(**NJIT_PARALLEL)
def _decode_stats(states, ts_us, antenna, rssi, seg_off, step_off, step_us, n_ant, n_s, n_blocks):
    """Per-block sufficient statistics of decoded paths for EM (prange over blocks of consecutive
    segments): steps[b, s], det[b, s, a], sum[b, s, a], sumsq[b, s, a], trans[b, s, s']."""
    n_seg = seg_off.shape[0] - 1
    st_steps = np.zeros((n_blocks, n_s))
    st_det = np.zeros((n_blocks, n_s, n_ant))
    st_sum = np.zeros((n_blocks, n_s, n_ant))
    st_sq = np.zeros((n_blocks, n_s, n_ant))
    st_tr = np.zeros((n_blocks, n_s, n_s))
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
            m = _segment_obs(ts_us, antenna, rssi, seg_off[g], seg_off[g + 1], step_us, n_ant, obs_step, obs_ant,
                             obs_rssi, last_step, last_pos)
            k0 = step_off[g]
            out = states[k0:step_off[g + 1]]
            for k in range(out.shape[0]):
                st_steps[b, out[k]] += 1.0
                if k > 0:
                    st_tr[b, out[k - 1], out[k]] += 1.0
            for i in range(m):
                s = out[obs_step[i]]
                a = obs_ant[i]
                st_det[b, s, a] += 1.0
                st_sum[b, s, a] += obs_rssi[i]
                st_sq[b, s, a] += obs_rssi[i] * obs_rssi[i]
    return st_steps, st_det, st_sum, st_sq, st_tr


def _inside_of_beside(state_zone: np.ndarray) -> np.ndarray:
    """int64 (S,): for a "beside z" state, the "in z" state; -1 for every other state.

    State layout of :func:`fit_presence_model`: 0 far | 1..n_z in zone | n_z+1..2n_z beside zone.
    """
    n_s = state_zone.shape[0]
    n_z = (n_s - 1) // 2
    out = np.full(n_s, -1, np.int64)
    if n_s == 2 * n_z + 1 and n_z > 0 and (state_zone[1:n_z + 1] >= 0).all() and (state_zone[n_z + 1:] < 0).all():
        out[n_z + 1:] = np.arange(1, n_z + 1)
    return out


@numba.njit(**NJIT_PARALLEL)
def _fill_beside(states, step_off, inside_of, with_far):
    """Relabel a run of "beside z" steps that lies between two stays in z as "in z" (in place).

    The weakly read far part of a counter looks like the aisle beside it; a tag placed beside z
    between two stays in z, and nowhere else in between, is taken to have stayed in z. Without
    this one long stay decodes as several short ones. ``with_far``: the run may also hold steps
    in state 0 (far from every antenna: missed reads, not another zone).
    """
    n_seg = step_off.shape[0] - 1
    for g in numba.prange(n_seg):
        k0 = step_off[g]
        k1 = step_off[g + 1]
        k = k0
        while k < k1:
            z = states[k]
            if z == 0 or inside_of[z] >= 0:
                k += 1
                continue
            # z is an "in zone" state: find the end of its stay, then the run after it
            while k < k1 and states[k] == z:
                k += 1
            j = k
            while j < k1 and (inside_of[states[j]] == z or (with_far and states[j] == 0)):
                j += 1
            if j < k1 and j > k and states[j] == z:
                for i in range(k, j):
                    states[i] = z
            elif j == k:
                continue
            else:
                k = j


@numba.njit(**NJIT)
def _runs(states, seg_off, step_off, seg_tag, seg_t0, step_us, state_zone):
    """Run-length encode decoded steps into spans (tag, zone, start_us, end_us)."""
    n_seg = seg_off.shape[0] - 1
    n = 0
    for g in range(n_seg):
        k0 = step_off[g]
        for k in range(k0, step_off[g + 1]):
            if k == k0 or state_zone[states[k]] != state_zone[states[k - 1]]:
                n += 1
    tag = np.empty(n, np.int32)
    zone = np.empty(n, np.int32)
    start = np.empty(n, np.int64)
    end = np.empty(n, np.int64)
    i = -1
    for g in range(n_seg):
        k0 = step_off[g]
        for k in range(k0, step_off[g + 1]):
            t = seg_t0[g] + (k - k0) * step_us
            z = state_zone[states[k]]
            if k == k0 or z != state_zone[states[k - 1]]:
                i += 1
                tag[i] = seg_tag[g]
                zone[i] = z
                start[i] = t
            end[i] = t + step_us
    return tag, zone, start, end


# ---------------------------------------------------------------------------------------------
# public API

def _validate(reads: Reads, antennas: AntennaMap) -> None:
    n = len(reads)
    for name in ("ts_us", "antenna", "rssi_dbm", "count"):
        if getattr(reads, name).shape != (n,):
            raise ValueError(f"reads.{name} has shape {getattr(reads, name).shape}, expected ({n},)")
    if n == 0:
        return
    bad = np.flatnonzero(~np.isfinite(reads.rssi_dbm))
    if bad.size:
        raise ValueError(f"reads.rssi_dbm is not finite at {bad.size} row(s), first at row {bad[0]}")
    bad = np.flatnonzero((reads.antenna < 0) | (reads.antenna >= len(antennas)))
    if bad.size:
        raise ValueError(f"reads.antenna out of range [0, {len(antennas)}) at row {bad[0]} "
                         f"(value {reads.antenna[bad[0]]})")
    unsorted = np.flatnonzero((np.diff(reads.tag) < 0)
                              | ((np.diff(reads.tag) == 0) & (np.diff(reads.ts_us) < 0)))
    if unsorted.size:
        raise ValueError(f"reads are not sorted by (tag, ts_us) at row {unsorted[0] + 1}; "
                         "use Reads.sorted_from")


def _states(antennas: AntennaMap, zones: ZoneMap) -> np.ndarray:
    installed = sorted({int(z) for z in antennas.zone if z >= 0 and zones.kind[int(z)] != "aisle"})
    return np.array([-1] + installed, np.int32)


def _step_layout(reads: Reads, seg_off: np.ndarray, step_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = seg_off[:-1]
    last = seg_off[1:] - 1
    t0 = reads.ts_us[first]
    n_steps = (reads.ts_us[last] - t0) // step_us + 1
    step_off = np.concatenate(([0], np.cumsum(n_steps))).astype(np.int64)
    return step_off, reads.tag[first].astype(np.int32), t0.astype(np.int64)


def _pred_graph(trans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of predecessors: for state j, (i, log trans[i, j]) for every allowed i."""
    n = trans.shape[0]
    ptr, idx, logp = [0], [], []
    for j in range(n):
        src = np.flatnonzero(trans[:, j] > 0)
        idx.extend(src.tolist())
        logp.extend(np.log(trans[src, j]).tolist())
        ptr.append(len(idx))
    return np.array(ptr, np.int64), np.array(idx, np.int64), np.array(logp, np.float64)


def _entry_chains(trans: np.ndarray, state_zone: np.ndarray, min_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Expand every zone state into an entry chain so that a stay in a zone lasts >= ``min_steps``.

    Returns the expanded transition matrix and ``emit_of`` (int64: model state of each expanded
    state). The model state keeps its index and becomes the chain's last element (self-loop and
    exits); ``min_steps - 1`` new states in front of it are entered from every predecessor and
    step forward with probability 1. ``min_steps <= 1`` returns the model unchanged.
    """
    n_s = trans.shape[0]
    zones = np.flatnonzero(state_zone >= 0)
    extra = max(min_steps - 1, 0)
    if extra == 0 or zones.size == 0:
        return trans, np.arange(n_s, dtype=np.int64)
    n_x = n_s + extra * zones.size
    out = np.zeros((n_x, n_x))
    out[:n_s, :n_s] = trans
    emit_of = np.concatenate((np.arange(n_s), np.repeat(zones, extra))).astype(np.int64)
    for i, z in enumerate(zones):
        first = n_s + i * extra
        chain = list(range(first, first + extra)) + [int(z)]
        src = np.flatnonzero(trans[:, z] > 0)
        src = src[src != z]
        out[src, first] = trans[src, z]     # entering z enters the chain's head
        out[src, z] = 0.0
        for a, b in zip(chain[:-1], chain[1:]):
            out[a, b] = 1.0
    return out, emit_of


def _emission_arrays(model: PresenceModel) -> tuple[np.ndarray, ...]:
    p = np.clip(model.p_detect, _P_MIN, _P_MAX)
    log_q = np.log1p(-p)
    base = log_q.sum(axis=1)
    delta = np.log(p) - log_q
    sd = np.maximum(model.sd_db, _SD_MIN_DB)
    # mixture weights folded into the two log terms
    log_norm = np.log1p(-_OUTLIER_W) - np.log(sd * np.sqrt(2 * np.pi))
    outlier_ll = float(np.log(_OUTLIER_W / model.rssi_span_db))
    # (A, bins, S) table of delta + log((1-w) N(r) + w/span) at every RSSI bin centre
    r = RSSI_LO_DBM + RSSI_BIN_DB * np.arange(RSSI_BINS)
    z = (r[None, :, None] - model.mu_dbm.T[:, None, :]) / sd.T[:, None, :]
    g = log_norm.T[:, None, :] - 0.5 * z * z
    table = delta.T[:, None, :] + np.logaddexp(g, outlier_ll)
    w = model.emit_weight
    return base * w, np.ascontiguousarray(table * w)


def _run_decode(reads: Reads, model: PresenceModel, seg_off: np.ndarray, want_stats: bool,
                n_blocks: int | None = None, n_lanes: int = LANES, max_lane_steps: int | None = None):
    step_us = int(round(model.step_s * 1e6))
    step_off, seg_tag, seg_t0 = _step_layout(reads, seg_off, step_us)
    base, table = _emission_arrays(model)
    trans, emit_of = _entry_chains(model.trans, model.state_zone, int(round(model.min_stay_s / model.step_s)))
    pred_ptr, pred_idx, pred_logp = _pred_graph(trans)
    n_seg = len(seg_off) - 1
    n_ant = model.p_detect.shape[1]
    rssi = reads.rssi_dbm.astype(np.float64)
    nb = n_blocks or max(1, min(n_seg, 8 * numba.get_num_threads()))
    multi, single, slot, one_pred = _lane_graph(pred_ptr, pred_idx)
    if max_lane_steps is None:
        max_lane_steps = max(1, _LANE_BACK_BYTES // (2 * max(multi.size, 1) * n_lanes))
    states = _decode_all(reads.ts_us, reads.antenna, rssi, seg_off, step_off, step_us, n_ant, base, table,
                         pred_ptr, pred_idx, pred_logp, emit_of, multi, single, slot, one_pred, n_lanes,
                         max(1, min(n_seg, numba.get_num_threads())), max_lane_steps)
    if want_stats:
        stats = _decode_stats(states, reads.ts_us, reads.antenna, rssi, seg_off, step_off, step_us, n_ant,
                              base.shape[0], nb)
    else:
        e = np.zeros((1, 0))
        stats = (e, e, e, e, e)
    return (states, *stats), step_off, seg_tag, seg_t0, step_us


def zone_presence(reads: Reads, model: PresenceModel, antennas: AntennaMap, segment_gap_s: float) -> Presence:
    """Decode every tag's reads into presence spans with a fitted :class:`PresenceModel`.

    ``segment_gap_s``: a tag's reads separated by more than this (seconds; the trip gap) are
    decoded independently and the gap gets no span.
    """
    _validate(reads, antennas)
    if model.p_detect.shape[1] != len(antennas):
        raise ValueError(f"model has {model.p_detect.shape[1]} antennas, antenna map has {len(antennas)}")
    if len(reads) == 0:
        e32, e64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
        return Presence(e32, e32.copy(), e64, e64.copy())
    seg_off = segment_reads(reads, segment_gap_s)
    (states, *_), step_off, seg_tag, seg_t0, step_us = _run_decode(reads, model, seg_off, False)
    _fill_beside(states, step_off, _inside_of_beside(model.state_zone), True)
    tag, zone, start, end = _runs(states, seg_off, step_off, seg_tag, seg_t0, step_us, model.state_zone)
    return Presence(tag, zone, start, end)


def _gmm2(x: np.ndarray, iters: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-component 1-D Gaussian mixture (weights, means, sds), component 1 the stronger one."""
    if x.size > 5_000:  # a deterministic stride subsample describes the distribution as well
        x = x[:: int(np.ceil(x.size / 5_000))]
    if x.size < 4 or np.ptp(x) < 1e-6:
        m = float(x.mean()) if x.size else -70.0
        return np.array([0.5, 0.5]), np.array([m - 3.0, m]), np.array([3.0, 3.0])
    mu = np.percentile(x, [25, 90]).astype(np.float64)
    sd = np.full(2, max(x.std() / 2, _SD_MIN_DB))
    w = np.array([0.5, 0.5])
    prev = mu
    for _ in range(iters):
        ll = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        ll -= ll.max(axis=1, keepdims=True)
        r = np.exp(ll)
        r /= r.sum(axis=1, keepdims=True)
        nk = r.sum(axis=0) + 1e-9
        w = nk / nk.sum()
        mu = (r * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt((r * (x[:, None] - mu) ** 2).sum(axis=0) / nk)
        sd = np.maximum(sd, _SD_MIN_DB)
        if np.abs(mu - prev).max() < 1e-2:
            break
        prev = mu
    if mu[0] > mu[1]:
        w, mu, sd = w[::-1].copy(), mu[::-1].copy(), sd[::-1].copy()
    return w, mu, sd


@numba.njit(**NJIT_PARALLEL)
def _all_obs(ts_us, antenna, rssi, seg_off, step_off, step_us, n_ant):
    """Per-(step, antenna) strongest RSSI of every segment: (global step, antenna, rssi), compacted."""
    n_seg = seg_off.shape[0] - 1
    n = ts_us.shape[0]
    g_step = np.empty(n, np.int64)
    g_ant = np.empty(n, np.int32)
    g_rssi = np.empty(n, np.float64)
    cnt = np.zeros(n_seg, np.int64)
    for g in numba.prange(n_seg):
        r0 = seg_off[g]
        r1 = seg_off[g + 1]
        last_step = np.full(n_ant, -1, np.int64)
        last_pos = np.zeros(n_ant, np.int64)
        os_ = g_step[r0:r1]
        oa = g_ant[r0:r1]
        orr = g_rssi[r0:r1]
        m = _segment_obs(ts_us, antenna, rssi, r0, r1, step_us, n_ant, os_, oa, orr, last_step, last_pos)
        for i in range(m):
            os_[i] += step_off[g]
        cnt[g] = m
    total = 0
    for g in range(n_seg):
        total += cnt[g]
    s_out = np.empty(total, np.int64)
    a_out = np.empty(total, np.int32)
    r_out = np.empty(total, np.float64)
    j = 0
    for g in range(n_seg):
        r0 = seg_off[g]
        for i in range(cnt[g]):
            s_out[j] = g_step[r0 + i]
            a_out[j] = g_ant[r0 + i]
            r_out[j] = g_rssi[r0 + i]
            j += 1
    return s_out, a_out, r_out


def _sample(reads: Reads, max_reads: int) -> Reads:
    """A deterministic sample of whole tags with about ``max_reads`` reads (every k-th tag)."""
    if len(reads) <= max_reads:
        return reads
    tags, off = reads.tag_bounds()
    stride = int(np.ceil(len(reads) / max_reads))
    pick = np.zeros(len(reads), bool)
    for i in range(0, len(tags), stride):
        pick[off[i]:off[i + 1]] = True
    return Reads(reads.tag[pick], reads.ts_us[pick], reads.antenna[pick], reads.rssi_dbm[pick],
                 reads.count[pick])


def fit_presence_model(reads: Reads, antennas: AntennaMap, zones: ZoneMap, *, step_s: float = 1.0,
                       segment_gap_s: float = 1200.0, em_rounds: int = 4,
                       max_fit_reads: int = 2_000_000, min_stay_s: float = MIN_STAY_S,
                       direct_neighbours: bool = False) -> PresenceModel:
    """Learn a store's presence HMM from its reads and layout (self-calibration, no ground truth).

    States: 0 = far from every antenna; one state per zone with antennas ("in zone z"); one per
    such zone for the aisle right beside it ("beside zone z": read by z's antennas, weaker and
    less often, e.g. a shopper walking along the counter's edge). ``step_s``: decode time step (s).
    ``max_fit_reads``: the model is fitted on a deterministic sample of whole tags of about this
    many reads (the rest is only decoded). ``min_stay_s``: shortest stay in a zone the decoder
    allows (s; entry chains, see :func:`_entry_chains`), 0 for none. ``direct_neighbours``: also
    link zones closer than :data:`ADJACENT_M` directly (in w -> in z, beside w -> in z).
    """
    _validate(reads, antennas)
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    n_ant = len(antennas)
    zone_states = _states(antennas, zones)[1:]
    n_z = len(zone_states)
    if n_z == 0:
        raise ValueError("no antenna is installed for any zone (antennas[].zone): presence cannot be decoded")
    # state layout: 0 far | 1..n_z in zone | n_z+1..2n_z beside zone
    state_zone = np.concatenate(([-1], zone_states, np.full(n_z, -1))).astype(np.int32)
    n_s = len(state_zone)
    inside = np.arange(1, n_z + 1)
    beside = inside + n_z
    sample = _sample(reads, max_fit_reads)
    seg_off = segment_reads(sample, segment_gap_s)
    step_us = int(round(step_s * 1e6))
    own = np.zeros((n_s, n_ant), bool)         # antennas installed for the state's zone
    for i, z in enumerate(zone_states):
        own[inside[i]] = own[beside[i]] = antennas.zone == z

    # --- starting values: per-antenna mixture of step RSSI maxima ----------------------------
    mu0 = np.full((n_s, n_ant), -80.0)
    sd0 = np.full((n_s, n_ant), 4.0)
    p0 = np.full((n_s, n_ant), 0.01)
    rssi_span = 40.0
    if len(sample):
        step_off, _, _ = _step_layout(sample, seg_off, step_us)
        o_step, o_ant, o_rssi = _all_obs(sample.ts_us, sample.antenna, sample.rssi_dbm.astype(np.float64),
                                         seg_off, step_off, step_us, n_ant)
        pairs = _successive_pairs(o_step, o_ant, step_off, n_ant)
        total_steps = float(step_off[-1])
        span = np.percentile(o_rssi, [1, 99])
        rssi_span = max(float(span[1] - span[0]), 10.0)
        key = o_step * n_ant + o_ant
        key_sorted = np.sort(key)
        dist = _antenna_zone_distance(antennas, zones)
        for a in range(n_ant):
            sel = o_ant == a
            x = o_rssi[sel]
            _, mu, sd = _gmm2(x)
            hi = x > (mu[0] + mu[1]) / 2 if x.size else np.zeros(0, bool)
            # in-zone detection rate: how often a strong detection is followed by one in the next step
            nxt = key[sel][hi] + n_ant
            pos = np.minimum(np.searchsorted(key_sorted, nxt), len(key_sorted) - 1)
            cont = float((key_sorted[pos] == nxt).mean()) if nxt.size else 0.5
            p_own = float(np.clip(cont, 0.05, _P_MAX))
            p_other = min(max(float((~hi).sum()) / max(total_steps - hi.sum(), 1.0), _P_MIN), 0.5)
            mu0[:, a], sd0[:, a], p0[:, a] = mu[0], sd[0], p_other
            p0[0, a] = max(p_other / 4, _P_MIN)
            z_own = antennas.zone[a]
            for i in range(n_z):
                s_in, s_by = inside[i], beside[i]
                if own[s_in, a]:
                    mu0[s_in, a], sd0[s_in, a], p0[s_in, a] = mu[1], sd[1], p_own
                    mu0[s_by, a], sd0[s_by, a] = mu[0], sd[0]
                    p0[s_by, a] = float(np.sqrt(p_own * p_other))
                elif z_own >= 0 and np.isfinite(dist[zone_states[i], a]):
                    ratio = dist[zone_states[i], a] / max(dist[z_own, a], 0.5)
                    mu0[s_in, a] = max(mu[0], mu[1] - 10 * _PATH_LOSS_EXPONENT * np.log10(max(ratio, 1.0)))
    # --- transitions from the layout ---------------------------------------------------------
    gaps = zone_gaps(zones, max(ADJACENT_M, AISLE_LINK_M))
    adj, near = gaps < ADJACENT_M, gaps < AISLE_LINK_M
    allowed = np.zeros((n_s, n_s), bool)
    allowed[0, :] = allowed[:, 0] = True
    for i, z in enumerate(zone_states):
        allowed[inside[i], beside[i]] = allowed[beside[i], inside[i]] = True
        for j, w in enumerate(zone_states):
            if direct_neighbours and i != j and adj[z, w]:
                allowed[inside[i], inside[j]] = True      # neighbouring counters
                allowed[beside[i], inside[j]] = True      # round the corner from beside z into w
            if i != j and near[z, w]:
                allowed[beside[i], beside[j]] = True      # along / across the aisle
    np.fill_diagonal(allowed, True)
    prior_tr = np.zeros((n_s, n_s))
    for s_ in range(n_s):
        leave = step_s / _PRIOR_STAY_S
        if s_ in set(beside.tolist()):
            # walking past a zone: its longest side at walking speed
            poly = zones.polygon(int(zone_states[s_ - n_z - 1]))
            leave = min(0.5, step_s * _WALK_MPS / max(float(np.ptp(poly, axis=0).max()), 1.0))
        dest = np.flatnonzero(allowed[s_])
        dest = dest[dest != s_]
        prior_tr[s_, dest] = leave / len(dest)
        prior_tr[s_, s_] = 1.0 - leave
    model = PresenceModel(state_zone, p0, mu0, sd0, prior_tr, rssi_span, step_s, min_stay_s)
    p0, mu0 = _coverage_constraint(p0, mu0, own, inside, beside)

    # --- hard EM (Viterbi training) ----------------------------------------------------------
    for _ in range(em_rounds if len(sample) else 0):
        (states, st_steps, st_det, st_sum, st_sq, st_tr), *_ = _run_decode(sample, model, seg_off, True)
        w = _emission_weight(states, o_step, o_ant, o_rssi, pairs, model)
        steps = st_steps.sum(0)
        det = st_det.sum(0)
        ssum = st_sum.sum(0)
        ssq = st_sq.sum(0)
        tr = st_tr.sum(0)
        p = (det + _PRIOR_STEPS * p0) / (steps[:, None] + _PRIOR_STEPS)
        mu = (ssum + _PRIOR_DETECTIONS * mu0) / (det + _PRIOR_DETECTIONS)
        var = (ssq - 2 * mu * ssum + det * mu ** 2 + _PRIOR_DETECTIONS * (sd0 ** 2 + (mu0 - mu) ** 2)) \
            / (det + _PRIOR_DETECTIONS)
        sd = np.sqrt(np.maximum(var, _SD_MIN_DB ** 2))
        counts = np.where(allowed, tr + _PRIOR_STEPS * prior_tr, 0.0)
        trans = counts / counts.sum(axis=1, keepdims=True)
        # "beside z" keeps its walking-speed transitions and its own antennas' detection rate; their
        # RSSI mean / spread are learnt. It may absorb the weakly read far part of zone z itself:
        # decoding fills such a run between two stays in z back into z (_fill_beside), and the
        # coverage constraint keeps it below "in z". (A learnt detection rate lets it swallow z.)
        for s_by in beside:
            mine = own[s_by]
            p[s_by, mine] = p0[s_by, mine]
            trans[s_by] = prior_tr[s_by]
        p, mu = _coverage_constraint(p, mu, own, inside, beside)
        model = PresenceModel(state_zone, np.clip(p, _P_MIN, _P_MAX), mu, sd, trans, rssi_span, step_s,
                              min_stay_s, w)
    return model


def _successive_pairs(o_step: np.ndarray, o_ant: np.ndarray, step_off: np.ndarray,
                      n_ant: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) into per-step observations: the same antenna detected the tag in a step (i)
    and in the next step (j) of the same segment. They do not depend on the decoded states, so EM
    finds them once for all its rounds (:func:`_emission_weight`)."""
    key = o_step * n_ant + o_ant
    order = np.argsort(key, kind="stable")
    key = key[order]
    nxt = np.minimum(np.searchsorted(key, key + n_ant), max(key.size - 1, 0))
    seg = np.searchsorted(step_off, o_step[order], side="right")
    ok = (key[nxt] == key + n_ant) & (seg[nxt] == seg) if key.size else np.zeros(0, bool)
    return order[ok], order[nxt[ok]]


def _emission_weight(states: np.ndarray, o_step: np.ndarray, o_ant: np.ndarray, o_rssi: np.ndarray,
                     pairs: tuple[np.ndarray, np.ndarray], model: PresenceModel) -> float:
    """Weight of one step's log-emission, learnt from the lag-1 autocorrelation of RSSI residuals.

    The HMM takes successive steps as independent given the state, but body shadowing and a
    shopper standing still at one spot make a tag's RSSI at an antenna persist for seconds; the
    evidence of n correlated steps is worth about n (1 - rho) / (1 + rho) independent ones (AR(1)).
    ``rho`` is measured on the decoded stays: the detection ``pairs`` (:func:`_successive_pairs`)
    whose two steps are in the same state, residual against that state's RSSI model.
    """
    i, j = pairs
    s_here = states[o_step[i]]
    same = states[o_step[j]] == s_here
    if same.sum() < 100:
        return 1.0
    i, j, s_here = i[same], j[same], s_here[same]
    ant = o_ant[i]
    sd = np.maximum(model.sd_db, _SD_MIN_DB)[s_here, ant]
    mu = model.mu_dbm[s_here, ant]
    zi = (o_rssi[i] - mu) / sd
    zj = (o_rssi[j] - mu) / sd
    rho = float(np.sum(zi * zj) / np.sqrt(np.sum(zi * zi) * np.sum(zj * zj)))
    rho = min(max(rho, 0.0), 0.99)
    return float(np.clip((1 - rho) / (1 + rho), _EMIT_W_MIN, _EMIT_W_MAX))


def _coverage_constraint(p: np.ndarray, mu: np.ndarray, own: np.ndarray, inside: np.ndarray,
                         beside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An antenna is installed to cover its zone. In the zone, and beside it, no other antenna
    reads the tag more often or stronger than the zone's own antennas; beside the zone, its own
    antennas read less often and weaker than inside, and far from every zone less often and weaker
    still. Without this, hard EM can let one state take
    over what another should explain (e.g. "beside C01" swallowing the inside of C01)."""
    p, mu = p.copy(), mu.copy()
    for s_in, s_by in zip(inside, beside):
        mine = own[s_in]
        for s_ in (s_in, s_by):
            p[s_, ~mine] = np.minimum(p[s_, ~mine], p[s_, mine].max())
            mu[s_, ~mine] = np.minimum(mu[s_, ~mine], mu[s_, mine].max())
        p[s_by, mine] = np.minimum(p[s_by, mine], p[s_in, mine])
        mu[s_by, mine] = np.minimum(mu[s_by, mine], mu[s_in, mine])
        # "far" is far from every antenna: read less often and weaker than beside any zone
        p[0, mine] = np.minimum(p[0, mine], p[s_by, mine])
        mu[0, mine] = np.minimum(mu[0, mine], mu[s_by, mine])
    return p, mu
