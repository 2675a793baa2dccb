"""Visit boundaries refined with the position estimates.

The zone-presence decoder (:mod:`analytics.presence`) is good at *which* counter a tag stays at, but
a counter's antenna also reads a shopper who is walking up to it or along its edge, so a decoded
visit starts a few seconds early, ends a few seconds late, and a pass-by along the edge can come
out as a short visit. The position estimates (:mod:`analytics.positions`, with their posterior
variance) say *where* the tag is at each step, independently of the zone model. Here each counter
visit keeps only the steps whose position posterior puts at least ``min_mass`` of its mass inside
the visit's zone polygon: the visit then runs from the first such step to the end of the last one
(never beyond the decoded visit), dwell and pass-by are recomputed (SPEC section 3), and a visit
with position rows but no such step is dropped (the tag was near the counter, not in it). A visit
without any position row (positions are only estimated for customers) is kept as decoded.

Measured against simulator ground truth (400 shoppers x 2 h, seed 11, threshold 0.3): department
hard visit F1 0.830 -> 0.870, boutique easy 0.902 -> 0.925; median dwell error halves (the decoded
visits were ~8-11 s too long).

Pass-bys: a shopper who only clips a counter while walking along it is read strongly for as long
as the approach lasts, and each step of the walk along the edge puts a good part of its posterior
inside, so the cut visit still spans 11-24 s. Its expected time in the zone (the sum over the kept
steps of the mass inside, times the step) says how much of that the tag actually spent inside: when
it is under ``min_dwell_s`` the visit is a pass-by (SPEC section 3) lasting that expected time,
centred on the mass-weighted mean time. Measured on 400 shoppers x 2 h (seeds 11 / 12), visit F1:
department hard 0.871 / 0.814 -> 0.900 / 0.850, department easy 0.892 / 0.896 -> 0.901 / 0.905,
boutique hard 0.867 / 0.884 -> 0.879 / 0.902, boutique easy 0.925 / 0.930 -> 0.924 / 0.935.

:func:`presence_in_visits` carries the cut over to the heatmap: the presence spans at a counter are
kept only within the refined visits, and the time given up is placed by the position alone. On
1,000 shoppers x 3 h (seed 7, ``bench/heatmap_accuracy.py``) the estimated share of time in the
zones moves to the truth in hard RF (boutique 94 -> 89 %, true 82 %; department 75 / 78 -> 71 / 73 %,
true 72 / 73 %) and heatmap r rises 0.745 -> 0.765 (boutique hard), 0.390 / 0.440 -> 0.394 / 0.448
(department hard); easy RF is unchanged to 0.001.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from analytics.config import NJIT, NJIT_PARALLEL
from analytics.positions import Positions, points_in_polygon
from analytics.presence import Presence
from analytics.visits import Visits
from storeflow.layout import Zone

__all__ = ["ZoneMasks", "presence_in_visits", "refine_visits", "zone_masks"]

#: The default share of a step's position posterior that must lie in the zone for the step to count
#: as "in the zone". A plain probability threshold (below one half: the posterior of a tag standing
#: inside near an edge spills out), not fitted to a store.
MIN_MASS = 0.3


@dataclass(frozen=True)
class ZoneMasks:
    """Each zone's polygon rasterised on ``cell_m`` cells over its bounding box (cell centre inside)."""

    floor: np.ndarray    # int32 per zone
    x0_m: np.ndarray     # float64 per zone: bounding box corner (metres)
    y0_m: np.ndarray
    nx: np.ndarray       # int64 per zone: cells along x / y
    ny: np.ndarray
    offset: np.ndarray   # int64 per zone + 1: start of the zone's cells in ``mask`` (ix * ny + iy)
    mask: np.ndarray     # bool
    cell_m: float


def zone_masks(zones: Sequence[Zone], cell_m: float = 0.5) -> ZoneMasks:
    """Rasterise ``zones`` (e.g. ``layout.zones``: the zone indices are positions in it) on ``cell_m``
    metre cells."""
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m: must be a positive number of metres, got {cell_m!r}")
    fl, x0, y0, nx, ny, parts = [], [], [], [], [], []
    for z in zones:
        xs = [p[0] for p in z.polygon]
        ys = [p[1] for p in z.polygon]
        bx, by = min(xs), min(ys)
        cx_n = max(1, int(math.ceil((max(xs) - bx) / cell_m - 1e-9)))
        cy_n = max(1, int(math.ceil((max(ys) - by) / cell_m - 1e-9)))
        cx = np.repeat(bx + (np.arange(cx_n) + 0.5) * cell_m, cy_n)
        cy = np.tile(by + (np.arange(cy_n) + 0.5) * cell_m, cx_n)
        parts.append(points_in_polygon(cx, cy, z.polygon))
        fl.append(z.floor)
        x0.append(bx)
        y0.append(by)
        nx.append(cx_n)
        ny.append(cy_n)
    off = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=off[1:])
    return ZoneMasks(np.array(fl, np.int32), np.array(x0, np.float64), np.array(y0, np.float64),
                     np.array(nx, np.int64), np.array(ny, np.int64), off,
                     np.concatenate(parts) if parts else np.zeros(0, np.bool_), float(cell_m))


@numba.njit(**NJIT)
def _mass_in_zone(x, y, sd, z, zx0, zy0, znx, zny, zoff, mask, cell_m):  # pragma: no cover - jit
    """Mass of N((x, y), sd^2 I) over zone ``z``'s masked cells (separable Gaussian, +-5 sd window)."""
    nxz, nyz = znx[z], zny[z]
    s = sd * math.sqrt(2.0)
    ia = max(0, int(math.floor((x - 5.0 * sd - zx0[z]) / cell_m)))
    ib = min(nxz, int(math.floor((x + 5.0 * sd - zx0[z]) / cell_m)) + 1)
    ja = max(0, int(math.floor((y - 5.0 * sd - zy0[z]) / cell_m)))
    jb = min(nyz, int(math.floor((y + 5.0 * sd - zy0[z]) / cell_m)) + 1)
    if ia >= ib or ja >= jb:
        return 0.0
    my = np.empty(jb - ja)
    for j in range(ja, jb):
        lo = zy0[z] + j * cell_m
        my[j - ja] = 0.5 * (math.erf((lo + cell_m - y) / s) - math.erf((lo - y) / s))
    total = 0.0
    for i in range(ia, ib):
        lo = zx0[z] + i * cell_m
        mx = 0.5 * (math.erf((lo + cell_m - x) / s) - math.erf((lo - x) / s))
        if mx <= 0.0:
            continue
        row = zoff[z] + i * nyz
        acc = 0.0
        for j in range(ja, jb):
            if mask[row + j]:
                acc += my[j - ja]
        total += mx * acc
    return total


@numba.njit(**NJIT_PARALLEL)
def _refine_kernel(v_zone, v_start, v_end, row_lo, row_hi, p_ts, p_floor, p_x, p_y, p_sd, step_us,
                   zfl, zx0, zy0, znx, zny, zoff, mask, cell_m, min_mass,
                   out_start, out_end, out_keep, out_in_s, out_mid):  # pragma: no cover - jit
    """Per visit: rows ``[row_lo, row_hi)`` of its tag (sorted by time); steps whose middle lies in the
    visit count. ``out_in_s``: the posterior expected time in the zone over the kept steps (seconds,
    -1 when the visit has no rows); ``out_mid``: its mass-weighted mean time (microseconds)."""
    half = step_us // 2
    step_s = step_us / 1e6
    for i in numba.prange(v_zone.shape[0]):
        z = v_zone[i]
        out_start[i] = v_start[i]
        out_end[i] = v_end[i]
        out_keep[i] = True
        out_in_s[i] = -1.0
        out_mid[i] = 0
        first = -1
        last = -1
        seen = False
        # sums of mass and mass x time from the first kept step on, and their values at the last one
        m_sum = 0.0
        mt_sum = 0.0
        m_last = 0.0
        mt_last = 0.0
        # the scan starts at the visit's first step
        r0 = row_lo[i] + np.searchsorted(p_ts[row_lo[i]:row_hi[i]], v_start[i] - step_us)
        for r in range(r0, row_hi[i]):
            mid = p_ts[r] + half
            if mid < v_start[i]:
                continue
            if mid >= v_end[i]:
                break
            seen = True
            if p_floor[r] != zfl[z]:
                continue
            m = _mass_in_zone(p_x[r], p_y[r], p_sd[r], z, zx0, zy0, znx, zny, zoff, mask, cell_m)
            if m >= min_mass and first < 0:
                first = r
            if first < 0:
                continue
            m_sum += m
            mt_sum += m * (mid - v_start[i])
            if m >= min_mass:
                last = r
                m_last = m_sum
                mt_last = mt_sum
        if not seen:
            continue
        if first < 0:
            out_keep[i] = False
            continue
        out_start[i] = max(v_start[i], p_ts[first])
        out_end[i] = min(v_end[i], p_ts[last] + step_us)
        out_in_s[i] = m_last * step_s
        out_mid[i] = v_start[i] + int(round(mt_last / m_last))


def refine_visits(visits: Visits, pos: Positions, masks: ZoneMasks, *, min_dwell_s: float = 10.0,
                  min_mass: float = MIN_MASS, zones: np.ndarray | None = None) -> Visits:
    """``visits`` with boundaries cut to the steps the positions place in the zone (module docstring).

    ``masks``: :func:`zone_masks` of the zones the visits' zone indices refer to. ``zones``: bool
    per zone, which zones to refine (default all; e.g. counters only). ``min_dwell_s`` (seconds)
    re-decides pass-bys: a cut visit whose expected time in the zone is under it becomes a pass-by
    of that length; so does one whose cut dwell is under it. Points without a variance
    (``pos.var_m2`` None) count by the cell they fall in.
    """
    if not (0.0 < min_mass <= 1.0):
        raise ValueError(f"min_mass: must be in (0, 1], got {min_mass!r}")
    if not (np.isfinite(min_dwell_s) and min_dwell_s >= 0):
        raise ValueError(f"min_dwell_s must be a finite number >= 0, got {min_dwell_s}")
    n_zones = len(masks.floor)
    if len(visits) and (visits.zone.min() < 0 or visits.zone.max() >= n_zones):
        raise ValueError(f"visits.zone: zone indices must be in [0, {n_zones}) (the masks' zones)")
    if len(visits) == 0:
        return visits
    sel = np.ones(len(visits), np.bool_) if zones is None else np.asarray(zones, np.bool_)[visits.zone]
    ptag = np.asarray(pos.tag)
    if len(ptag) > 1 and (np.diff(ptag.astype(np.int64)) < 0).any():
        raise ValueError("positions: must be sorted by (tag, ts_us)")
    row_lo = np.searchsorted(ptag, visits.tag, side="left").astype(np.int64)
    row_hi = np.searchsorted(ptag, visits.tag, side="right").astype(np.int64)
    row_hi[~sel] = row_lo[~sel]  # no rows: kept as decoded
    step_us = int(round(pos.step_s * 1e6))
    key_ts = np.asarray(pos.ts_us, np.int64)
    # a point estimate counts by its cell: a tiny spread
    sd = (np.sqrt(np.asarray(pos.var_m2, np.float64)) if pos.var_m2 is not None
          else np.full(len(pos), 1e-3 * masks.cell_m))
    out_start = np.empty(len(visits), np.int64)
    out_end = np.empty(len(visits), np.int64)
    keep = np.empty(len(visits), np.bool_)
    in_s = np.empty(len(visits), np.float64)
    mid = np.empty(len(visits), np.int64)
    _refine_kernel(visits.zone, visits.start_us, visits.end_us, row_lo, row_hi, key_ts,
                   np.asarray(pos.floor, np.int32), np.asarray(pos.x_m, np.float64), np.asarray(pos.y_m, np.float64),
                   np.maximum(sd, 1e-6), step_us, masks.floor, masks.x0_m, masks.y0_m, masks.nx, masks.ny,
                   masks.offset, masks.mask, masks.cell_m, float(min_mass), out_start, out_end, keep, in_s, mid)
    # a pass-by: expected time in the zone under min_dwell_s; it keeps that much time, centred on its
    # mass-weighted mean time and within the cut visit (module docstring)
    dwell_us = out_end - out_start
    brief = (in_s >= 0) & (in_s < min_dwell_s)
    if brief.any():
        span = np.minimum(np.round(in_s[brief] * 1e6).astype(np.int64), dwell_us[brief])
        lo, hi = out_start[brief], out_end[brief]
        s = np.clip(mid[brief] - span // 2, lo, hi - span)
        out_start[brief] = s
        out_end[brief] = s + span
    dwell = (out_end - out_start) / 1e6
    passby = brief | (dwell < min_dwell_s)
    return Visits(visits.tag[keep], visits.zone[keep], out_start[keep], out_end[keep], dwell[keep], passby[keep])


@numba.njit(**NJIT)
def _clip_kernel(p_tag, p_zone, p_start, p_end, clip, v_tag, v_zone, v_start, v_end,
                 o_tag, o_zone, o_start, o_end):  # pragma: no cover - jit
    """Spans whose zone has ``clip`` set cut to their overlap with same-tag, same-zone visits; the
    others copied. Both inputs sorted by (tag, start), neither overlapping within a tag."""
    n = 0
    j = 0
    nv = v_tag.shape[0]
    for i in range(p_tag.shape[0]):
        t = p_tag[i]
        z = p_zone[i]
        s = p_start[i]
        e = p_end[i]
        if z < 0 or not clip[z]:
            o_tag[n] = t
            o_zone[n] = z
            o_start[n] = s
            o_end[n] = e
            n += 1
            continue
        # visits that end by this span's start cannot overlap it or any later span of the tag
        while j < nv and (v_tag[j] < t or (v_tag[j] == t and v_end[j] <= s)):
            j += 1
        k = j
        while k < nv and v_tag[k] == t and v_start[k] < e:
            if v_zone[k] == z:
                a = max(s, v_start[k])
                b = min(e, v_end[k])
                if a < b:
                    o_tag[n] = t
                    o_zone[n] = z
                    o_start[n] = a
                    o_end[n] = b
                    n += 1
            k += 1
    return n


def presence_in_visits(presence: Presence, visits: Visits, zones: np.ndarray) -> Presence:
    """``presence`` with the spans in the ``zones`` (bool per zone index) kept only where a visit of
    the same tag at the same zone covers them (e.g. the counter visits after :func:`refine_visits`).

    The time a refined visit gave up (the tag was near the counter, not in it) then has no span: the
    heatmap places it by the position alone, so the heatmap's counter time agrees with the visits'
    dwell. Other spans are kept as they are.
    """
    zones = np.asarray(zones, np.bool_)
    if len(presence) and presence.zone.max() >= len(zones):
        raise ValueError(f"presence.zone: zone index {int(presence.zone.max())} has no entry in zones ({len(zones)})")
    n_max = len(presence) + len(visits)
    o_tag = np.empty(n_max, np.int32)
    o_zone = np.empty(n_max, np.int32)
    o_start = np.empty(n_max, np.int64)
    o_end = np.empty(n_max, np.int64)
    n = _clip_kernel(np.asarray(presence.tag, np.int32), np.asarray(presence.zone, np.int32),
                     np.asarray(presence.start_us, np.int64), np.asarray(presence.end_us, np.int64), zones,
                     np.asarray(visits.tag, np.int32), np.asarray(visits.zone, np.int32),
                     np.asarray(visits.start_us, np.int64), np.asarray(visits.end_us, np.int64),
                     o_tag, o_zone, o_start, o_end)
    return Presence(o_tag[:n].copy(), o_zone[:n].copy(), o_start[:n].copy(), o_end[:n].copy())
