"""Floor-change transit: the unread time of a shopper changing floors, put back into the positions.

A shopper riding an escalator (or taking stairs or a lift) is usually unread from the last read on
the floor left, through the ride, to the first read on the floor reached: longer than the positions'
``max_gap_s``, so those seconds were in no heatmap cell at all. Here a *floor change* is two
consecutive position rows of one tag on different floors, at least one step apart and no more than
``trip_gap_s`` (a longer gap is the end of a trip).

Transfer points are learnt per ordered floor pair (A -> B) from all floor changes in the data, never
from the layout (real layouts have no escalator positions): where shoppers leave A (``from_xy``) and
where they arrive on B (``to_xy``). Model of one change's missing time ``G`` (seconds)::

    G = |last_A - from_xy| / speed_mps + ride_s + |to_xy - first_B| / speed_mps + noise

The points minimise the summed absolute residual (``ride_s`` is the median remainder), by
coordinate descent over a lattice of walkable candidate points from the geometric medians. The gap
timing is what locates them: the last reads before a ride are at the counters around the escalator
well, on all sides, so the centre of those positions alone misses it by metres.

Each change's missing steps are then filled in order: a straight walk from the last position on A to
``from_xy`` at ``speed_mps``, the ride (the remainder: ``ride_share`` of it on A, the rest on B,
moving in plan from ``from_xy`` to ``to_xy`` when that is no farther than walking would go in the
ride time, else waiting at each point), then a straight walk from ``to_xy`` to the first position on
B. When ``G`` is shorter than the two walks, both are shortened in proportion and there is no ride.
The rows carry a generous variance (heatmap spreading): the endpoints' own, the floor pair's typical
endpoint variance at the transfer points, and a route detour (``_DETOUR`` of the walk's length as a
sigma at mid-way), since the real route follows the aisles and the points are estimates.

With ``same_floor=True``, same-floor gaps (longer than the positions' bridging, up to
``trip_gap_s``) are filled too, interpolated with the same detour variance (measured: no change of
the heatmap's correlation with the simulator's truth, so off by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from analytics.config import NJIT as _NJIT
from analytics.positions import Positions, floor_geometry, lattice_walkable
from storeflow.layout import Layout

__all__ = ["TransferPoints", "floor_changes", "fit_transfer_points", "transit_positions"]

#: Sigma of a walk's deviation from the straight line at mid-way, as a fraction of its length.
_DETOUR = 0.25
#: At most this many floor changes per floor pair go into the fit (evenly subsampled; the cost is
#: candidates x changes per round).
_MAX_FIT_CHANGES = 2000
#: Candidate transfer points: a lattice of at least 1 m spacing and at most about this many per floor.
_MAX_CANDIDATES = 8000
_FIT_ROUNDS = 12


@dataclass(frozen=True)
class TransferPoints:
    """Learnt transfer points, one entry per ordered floor pair that has floor changes in the data."""

    floor_from: np.ndarray   # int32: floor left
    floor_to: np.ndarray     # int32: floor reached
    from_xy: np.ndarray      # float64 (n, 2): where shoppers leave floor_from (metres, its plan)
    to_xy: np.ndarray        # float64 (n, 2): where they arrive on floor_to (metres, its plan)
    ride_s: np.ndarray       # float64: median time not explained by the two walks (seconds)
    var_m2: np.ndarray       # float64: median position variance of the changes' endpoints (m^2 per axis)
    n_changes: np.ndarray    # int64: floor changes of the pair in the data

    def __len__(self) -> int:
        return int(self.floor_from.shape[0])

    @staticmethod
    def empty() -> TransferPoints:
        z = np.zeros(0)
        i = np.zeros(0, np.int32)
        return TransferPoints(i, i.copy(), np.zeros((0, 2)), np.zeros((0, 2)), z, z.copy(),
                              np.zeros(0, np.int64))


# --------------------------------------------------------------------------------------------------
# kernels


@njit(**_NJIT)
def _gaps(tag, ts_us, floor, step_us, trip_gap_us, same_floor):  # pragma: no cover - jit
    """Row indices i where rows i and i + 1 are one tag, at least two steps apart, at most trip_gap_us, on
    different floors (or, with same_floor, any floors)."""
    out = np.empty(max(tag.shape[0] - 1, 0), np.int64)
    n = 0
    for i in range(tag.shape[0] - 1):
        if tag[i + 1] != tag[i]:
            continue
        g = ts_us[i + 1] - ts_us[i]
        if g < 2 * step_us or g > trip_gap_us:
            continue
        if same_floor or floor[i + 1] != floor[i]:
            out[n] = i
            n += 1
    return out[:n]


@njit(**_NJIT)
def _best_candidate(base_s, ex, ey, inv_speed, cand_x, cand_y):  # pragma: no cover - jit
    """Index of the candidate c minimising sum_e |base_s[e] - dist(e, c) * inv_speed| (first on ties)."""
    best = np.inf
    arg = -1
    for c in range(cand_x.shape[0]):
        cx = cand_x[c]
        cy = cand_y[c]
        s = 0.0
        for e in range(ex.shape[0]):
            s += abs(base_s[e] - math.sqrt((ex[e] - cx) ** 2 + (ey[e] - cy) ** 2) * inv_speed)
            if s >= best:
                break
        if s < best:
            best = s
            arg = c
    return arg


@njit(**_NJIT)
def _fill_kernel(tag, ts_us, floor, x_m, y_m, var_m2, ev, ev_pair, n_new, step_us, speed_mps, ride_share,
                 pf_x, pf_y, pt_x, pt_y, p_var, detour,
                 o_tag, o_ts, o_fl, o_x, o_y, o_v):  # pragma: no cover - jit
    """Copy the rows, with each gap's n_new[k] filled steps right after its row ev[k] (ev ascending).

    ev_pair[k]: transfer-point pair of a floor change, -1 for a same-floor gap (interpolated)."""
    step_s = step_us * 1e-6
    o = 0
    k = 0
    for r in range(tag.shape[0]):
        o_tag[o] = tag[r]
        o_ts[o] = ts_us[r]
        o_fl[o] = floor[r]
        o_x[o] = x_m[r]
        o_y[o] = y_m[r]
        o_v[o] = var_m2[r]
        o += 1
        if k >= ev.shape[0] or ev[k] != r:
            continue
        n = n_new[k]
        q = ev_pair[k]
        xa = float(x_m[r])
        ya = float(y_m[r])
        xb = float(x_m[r + 1])
        yb = float(y_m[r + 1])
        va = float(var_m2[r])
        vb = float(var_m2[r + 1])
        if q < 0:
            d = math.sqrt((xb - xa) ** 2 + (yb - ya) ** 2)
            for j in range(n):
                u = (j + 1) / (n + 1)
                o_tag[o] = tag[r]
                o_ts[o] = ts_us[r] + (j + 1) * step_us
                o_fl[o] = floor[r]
                o_x[o] = xa + u * (xb - xa)
                o_y[o] = ya + u * (yb - ya)
                o_v[o] = (1.0 - u) * va + u * vb + 4.0 * u * (1.0 - u) * (detour * d) ** 2
                o += 1
            k += 1
            continue
        px = pf_x[q]
        py = pf_y[q]
        qx = pt_x[q]
        qy = pt_y[q]
        pv = p_var[q]
        g = n * step_s
        da = math.sqrt((px - xa) ** 2 + (py - ya) ** 2)
        db = math.sqrt((qx - xb) ** 2 + (qy - yb) ** 2)
        ta = da / speed_mps
        tb = db / speed_mps
        if ta + tb >= g:
            f = g / (ta + tb)
            ta *= f
            tb *= f
            ride = 0.0
        else:
            ride = g - ta - tb
        t_on_a = ta + ride_share * ride
        # moving from from_xy to to_xy during the ride only when that is no faster than walking
        line = ride > 0.0 and math.sqrt((qx - px) ** 2 + (qy - py) ** 2) <= ride * speed_mps
        for j in range(n):
            s = (j + 0.5) * step_s  # mid-step, seconds after the last row on floor A ends
            on_a = s < t_on_a
            if on_a and s < ta:
                u = s / ta
                cx = xa + u * (px - xa)
                cy = ya + u * (py - ya)
                cv = (1.0 - u) * va + u * pv + 4.0 * u * (1.0 - u) * (detour * da) ** 2
            elif (not on_a) and g - s < tb:
                u = (g - s) / tb
                cx = xb + u * (qx - xb)
                cy = yb + u * (qy - yb)
                cv = (1.0 - u) * vb + u * pv + 4.0 * u * (1.0 - u) * (detour * db) ** 2
            else:
                if line:
                    u = min(max((s - ta) / ride, 0.0), 1.0)
                    cx = px + u * (qx - px)
                    cy = py + u * (qy - py)
                elif on_a:
                    cx = px
                    cy = py
                else:
                    cx = qx
                    cy = qy
                cv = pv
            o_tag[o] = tag[r]
            o_ts[o] = ts_us[r] + (j + 1) * step_us
            o_fl[o] = floor[r] if on_a else floor[r + 1]
            o_x[o] = cx
            o_y[o] = cy
            o_v[o] = cv
            o += 1
        k += 1
    return o


# --------------------------------------------------------------------------------------------------
# public


def _check(trip_gap_s: float, speed_mps: float, pos: Positions) -> tuple[int, int]:
    if not (math.isfinite(trip_gap_s) and trip_gap_s >= 0):
        raise ValueError(f"trip_gap_s: must be a finite number of seconds >= 0, got {trip_gap_s!r}")
    if not (math.isfinite(speed_mps) and speed_mps > 0):
        raise ValueError(f"speed_mps: must be a positive number of metres per second, got {speed_mps!r}")
    step_us = int(round(pos.step_s * 1e6))
    if step_us <= 0:
        raise ValueError(f"pos.step_s: must be positive, got {pos.step_s!r}")
    return step_us, int(round(trip_gap_s * 1e6))


def floor_changes(pos: Positions, trip_gap_s: float = 1200.0) -> np.ndarray:
    """Row indices ``i`` (int64, ascending) where rows ``i`` and ``i + 1`` are a floor change: the same tag
    on different floors, at least one missing step and at most ``trip_gap_s`` seconds apart."""
    step_us, trip_us = _check(trip_gap_s, 1.0, pos)
    return _gaps(pos.tag, pos.ts_us, pos.floor, step_us, trip_us, False)


def _geometric_median(x: np.ndarray, y: np.ndarray, rounds: int = 50) -> tuple[float, float]:
    cx, cy = float(np.median(x)), float(np.median(y))
    for _ in range(rounds):  # Weiszfeld
        w = 1.0 / np.maximum(np.hypot(x - cx, y - cy), 1e-3)
        nx, ny = float((w * x).sum() / w.sum()), float((w * y).sum() / w.sum())
        if abs(nx - cx) + abs(ny - cy) < 1e-4:
            return nx, ny
        cx, cy = nx, ny
    return cx, cy


def _candidates(layout: Layout) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per floor number the walkable lattice points (cell centres) that may be a transfer point."""
    fl_num, fl_w, fl_d = floor_geometry(layout)
    out = {}
    for k, (f, w, d) in enumerate(zip(fl_num, fl_w, fl_d)):
        g = max(1.0, math.sqrt(w * d / _MAX_CANDIDATES))  # lattice_walkable's layout, floors in order
        sizes = [int(np.ceil(a / g - 1e-9)) * int(np.ceil(b / g - 1e-9)) for a, b in zip(fl_w, fl_d)]
        off = sum(sizes[:k])
        ok = lattice_walkable(layout, g)[off:off + sizes[k]]
        nx, ny = int(np.ceil(w / g - 1e-9)), int(np.ceil(d / g - 1e-9))
        cx = np.repeat((np.arange(nx) + 0.5) * g, ny)
        cy = np.tile((np.arange(ny) + 0.5) * g, nx)
        out[int(f)] = (np.minimum(cx[ok], w), np.minimum(cy[ok], d))
    return out


def fit_transfer_points(pos: Positions, layout: Layout, trip_gap_s: float = 1200.0,
                        speed_mps: float = 1.2) -> TransferPoints:
    """Learn per ordered floor pair where shoppers leave one floor and arrive on the other (module doc).

    ``trip_gap_s``: longest gap (seconds) that is still a floor change within a trip; ``speed_mps``:
    walking speed (metres per second) that turns distances into time.
    """
    step_us, trip_us = _check(trip_gap_s, speed_mps, pos)
    ev = _gaps(pos.tag, pos.ts_us, pos.floor, step_us, trip_us, False)
    if len(ev) == 0:
        return TransferPoints.empty()
    cands = _candidates(layout)
    fa_all, fb_all = pos.floor[ev], pos.floor[ev + 1]
    pairs = np.unique(np.stack([fa_all, fb_all], 1), axis=0)
    inv_v = 1.0 / speed_mps
    rows = []
    for a, b in pairs:
        e = ev[(fa_all == a) & (fb_all == b)]
        n_changes = len(e)
        if len(e) > _MAX_FIT_CHANGES:
            e = e[np.linspace(0, len(e) - 1, _MAX_FIT_CHANGES).round().astype(np.int64)]
        g_s = ((pos.ts_us[e + 1] - pos.ts_us[e]) // step_us - 1) * (step_us * 1e-6)
        ax, ay = pos.x_m[e].astype(np.float64), pos.y_m[e].astype(np.float64)
        bx, by = pos.x_m[e + 1].astype(np.float64), pos.y_m[e + 1].astype(np.float64)
        p = np.array(_geometric_median(ax, ay))
        q = np.array(_geometric_median(bx, by))
        ca, cb = cands[int(a)], cands[int(b)]
        for _ in range(_FIT_ROUNDS):
            old = (p.copy(), q.copy())
            walk_b = np.hypot(bx - q[0], by - q[1]) * inv_v
            ride = float(np.median(g_s - np.hypot(ax - p[0], ay - p[1]) * inv_v - walk_b))
            if len(ca[0]):
                i = _best_candidate(g_s - ride - walk_b, ax, ay, inv_v, ca[0], ca[1])
                p = np.array([ca[0][i], ca[1][i]])
            walk_a = np.hypot(ax - p[0], ay - p[1]) * inv_v
            ride = float(np.median(g_s - walk_a - np.hypot(bx - q[0], by - q[1]) * inv_v))
            if len(cb[0]):
                i = _best_candidate(g_s - ride - walk_a, bx, by, inv_v, cb[0], cb[1])
                q = np.array([cb[0][i], cb[1][i]])
            if np.array_equal(old[0], p) and np.array_equal(old[1], q):
                break
        walks = (np.hypot(ax - p[0], ay - p[1]) + np.hypot(bx - q[0], by - q[1])) * inv_v
        ride = float(np.median(g_s - walks))
        var = (float(np.median(np.concatenate((pos.var_m2[e], pos.var_m2[e + 1])))) if pos.var_m2 is not None
               else 0.0)
        rows.append((int(a), int(b), p, q, ride, var, n_changes))
    col = (lambda k, dt: np.array([r[k] for r in rows], dt))
    return TransferPoints(col(0, np.int32), col(1, np.int32), col(2, np.float64).reshape(-1, 2),
                          col(3, np.float64).reshape(-1, 2), col(4, np.float64), col(5, np.float64),
                          col(6, np.int64))


def transit_positions(pos: Positions, layout: Layout, trip_gap_s: float = 1200.0, speed_mps: float = 1.2,
                      ride_share: float = 0.5, same_floor: bool = False,
                      points: TransferPoints | None = None) -> Positions:
    """``pos`` with the missing steps of every floor change filled (module doc); sorted by (tag, ts_us).

    ``trip_gap_s`` (seconds): longer gaps are trip ends, left alone. ``speed_mps``: walking speed
    (metres per second). ``ride_share``: fraction of the ride time (what the walks do not explain)
    counted on the floor left. ``same_floor``: also fill same-floor gaps up to ``trip_gap_s``.
    ``points``: transfer points (default: learnt from ``pos`` by :func:`fit_transfer_points`); a change
    between floors without a learnt pair is left unfilled. Returns ``pos`` itself when nothing is
    filled; else new positions with variances (0 on original rows that had none).
    """
    step_us, trip_us = _check(trip_gap_s, speed_mps, pos)
    if not (math.isfinite(ride_share) and 0.0 <= ride_share <= 1.0):
        raise ValueError(f"ride_share: must be a fraction in [0, 1], got {ride_share!r}")
    if points is None:
        points = fit_transfer_points(pos, layout, trip_gap_s, speed_mps)
    ev = _gaps(pos.tag, pos.ts_us, pos.floor, step_us, trip_us, bool(same_floor))
    var = pos.var_m2 if pos.var_m2 is not None else np.zeros(len(pos), np.float32)
    fa, fb = pos.floor[ev].astype(np.int64), pos.floor[ev + 1].astype(np.int64)
    key_p = points.floor_from.astype(np.int64) * (1 << 32) + points.floor_to.astype(np.int64)
    order = np.argsort(key_p)
    key_e = fa * (1 << 32) + fb
    j = np.searchsorted(key_p[order], key_e)
    jc = np.minimum(j, max(len(key_p) - 1, 0))
    known = (j < len(key_p)) & (key_p[order][jc] == key_e) if len(key_p) else np.zeros(len(ev), np.bool_)
    ev_pair = np.where(fa == fb, -1, np.where(known, order[jc] if len(key_p) else -1, -2)).astype(np.int64)
    keep = ev_pair >= -1
    ev, ev_pair = ev[keep], ev_pair[keep]
    if len(ev) == 0:
        return pos
    n_new = (pos.ts_us[ev + 1] - pos.ts_us[ev]) // step_us - 1
    n_out = len(pos) + int(n_new.sum())
    o_tag = np.empty(n_out, np.int32)
    o_ts = np.empty(n_out, np.int64)
    o_fl = np.empty(n_out, np.int32)
    o_x = np.empty(n_out, np.float32)
    o_y = np.empty(n_out, np.float32)
    o_v = np.empty(n_out, np.float32)
    pxy, qxy = np.ascontiguousarray(points.from_xy.T), np.ascontiguousarray(points.to_xy.T)
    _fill_kernel(pos.tag, pos.ts_us, pos.floor, pos.x_m, pos.y_m, var, ev, ev_pair, n_new, step_us,
                 float(speed_mps), float(ride_share), pxy[0], pxy[1], qxy[0], qxy[1],
                 points.var_m2.astype(np.float64), _DETOUR, o_tag, o_ts, o_fl, o_x, o_y, o_v)
    return Positions(o_tag, o_ts, o_fl, o_x, o_y, pos.step_s, pos.model, pos.range_model, o_v)
