"""Trips and paths (SPEC section 3).

A trip is one store visit of one tag: its reads with no gap longer than ``trip_gap_s``. A trip's
path is the ordered list of its counter visits (pass-bys excluded). From paths: the zone-to-zone
transition matrix, the most frequent paths and the first counter after the entrance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numba
import numpy as np

from analytics.config import NJIT, NJIT_PARALLEL
from analytics.visits import Visits, output_offsets, stage_offsets, tag_blocks

__all__ = ["Trips", "Paths", "trips_from_reads", "paths_from_visits", "transition_matrix", "top_paths",
           "first_counter_after_entrance"]


@dataclass(frozen=True)
class Trips:
    """Trips sorted by (tag, start_us)."""

    tag: np.ndarray        # int32
    start_us: np.ndarray   # int64: first read
    end_us: np.ndarray     # int64: last read
    n_reads: np.ndarray    # int64: rows of the trip

    def __len__(self) -> int:
        return int(self.tag.shape[0])


@dataclass(frozen=True)
class Paths:
    """Per trip, its counter visits in order: zones of trip i are ``zone[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray     # int64 (n_trips + 1,)
    zone: np.ndarray        # int32 zone indices
    visit_trip: np.ndarray  # int64: for every input visit, the index of its trip (-1: none)

    def path(self, i: int) -> np.ndarray:
        return self.zone[self.offsets[i]:self.offsets[i + 1]]


@numba.njit(**NJIT)
def _trip_runs(tag, ts_us, gap_us, lo, hi, t_tag, t_start, t_end, t_n, j0, cap):
    """Trips of rows ``lo:hi`` (``lo`` starts a tag or a trip); the first ``cap`` go to ``t_*[j0:]``.

    One pass that also checks the order (row ``lo`` against ``lo - 1`` too). Returns (trips, row
    where trip ``cap + 1`` starts or ``hi``, first row out of (tag, ts) order, -1 when none; on
    such a row the scan stops there).
    """
    c = 0
    resume = hi
    first = lo
    k = lo - 1 if lo > 0 else lo
    p_tag = tag[k]
    p_ts = ts_us[k]
    for i in range(lo, hi):
        t = tag[i]
        s = ts_us[i]
        if t < p_tag or (t == p_tag and s < p_ts):
            return c, resume, i
        if i == lo or t != p_tag or s - p_ts > gap_us:
            if 0 < c <= cap:
                t_end[j0 + c - 1] = p_ts
                t_n[j0 + c - 1] = i - first
            if c == cap:
                resume = i
            c += 1
            if c <= cap:
                t_tag[j0 + c - 1] = t
                t_start[j0 + c - 1] = s
            first = i
        p_tag = t
        p_ts = s
    if 0 < c <= cap:
        t_end[j0 + c - 1] = p_ts
        t_n[j0 + c - 1] = hi - first
    return c, resume, -1


@numba.njit(**NJIT_PARALLEL)
def _trips_kernel(tag, ts_us, gap_us, bounds):
    """Trips over blocks of whole tags, and the first unsorted row (-1: none); passes as in
    ``analytics.visits._visits_kernel``."""
    nb = bounds.shape[0] - 1
    soff = stage_offsets(bounds)
    s_tag = np.empty(soff[nb], np.int32)
    s_start = np.empty(soff[nb], np.int64)
    s_end = np.empty(soff[nb], np.int64)
    s_n = np.empty(soff[nb], np.int64)
    counts = np.zeros(nb, np.int64)
    resume = np.zeros(nb, np.int64)
    bad = np.full(nb, -1, np.int64)
    for b in numba.prange(nb):
        c, r, bd = _trip_runs(tag, ts_us, gap_us, bounds[b], bounds[b + 1], s_tag, s_start, s_end, s_n,
                              soff[b], soff[b + 1] - soff[b])
        counts[b] = c
        resume[b] = r
        bad[b] = bd
    off, first_bad = output_offsets(counts, bad)
    n = off[nb] if first_bad < 0 else 0
    t_tag = np.empty(n, np.int32)
    t_start = np.empty(n, np.int64)
    t_end = np.empty(n, np.int64)
    t_n = np.empty(n, np.int64)
    if first_bad < 0:
        for b in numba.prange(nb):
            k = min(counts[b], soff[b + 1] - soff[b])
            t_tag[off[b]:off[b] + k] = s_tag[soff[b]:soff[b] + k]
            t_start[off[b]:off[b] + k] = s_start[soff[b]:soff[b] + k]
            t_end[off[b]:off[b] + k] = s_end[soff[b]:soff[b] + k]
            t_n[off[b]:off[b] + k] = s_n[soff[b]:soff[b] + k]
            if counts[b] > k:
                _trip_runs(tag, ts_us, gap_us, resume[b], bounds[b + 1], t_tag, t_start, t_end, t_n,
                           off[b] + k, counts[b] - k)
    return t_tag, t_start, t_end, t_n, first_bad


def trips_from_reads(tag: np.ndarray, ts_us: np.ndarray, *, trip_gap_s: float = 1200.0) -> Trips:
    """Trips from reads sorted by (tag, ts_us); ``trip_gap_s`` in seconds."""
    tag = np.ascontiguousarray(tag, np.int32)
    ts_us = np.ascontiguousarray(ts_us, np.int64)
    if ts_us.shape != tag.shape:
        raise ValueError(f"ts_us has shape {ts_us.shape}, expected {tag.shape} like tag")
    if not (np.isfinite(trip_gap_s) and trip_gap_s >= 0):
        raise ValueError(f"trip_gap_s must be a finite number >= 0, got {trip_gap_s}")
    bounds = tag_blocks(tag, 8 * numba.get_num_threads())
    t_tag, t_start, t_end, t_n, bad = _trips_kernel(tag, ts_us, int(round(trip_gap_s * 1e6)), bounds)
    if bad >= 0:
        raise ValueError(f"reads are not sorted by (tag, ts_us) at row {bad}")
    return Trips(t_tag, t_start, t_end, t_n)


@numba.njit(**NJIT)
def _assign(t_tag, t_start, t_end, v_tag, v_start):
    """Trip index of each visit: the trip of the same tag with start <= visit start <= end (merge walk)."""
    out = np.full(v_tag.shape[0], -1, np.int64)
    j = 0
    nt = t_tag.shape[0]
    for i in range(v_tag.shape[0]):
        while j < nt and (t_tag[j] < v_tag[i] or (t_tag[j] == v_tag[i] and t_end[j] < v_start[i])):
            j += 1
        if j < nt and t_tag[j] == v_tag[i] and t_start[j] <= v_start[i]:
            out[i] = j
    return out


def paths_from_visits(trips: Trips, visits: Visits, path_zone: np.ndarray) -> Paths:
    """Assign visits to trips; a trip's path = its visits that are not pass-bys and whose zone
    ``path_zone[zone]`` is true (counters), in start order."""
    vt = _assign(trips.tag, trips.start_us, trips.end_us, visits.tag, visits.start_us)
    keep = (vt >= 0) & ~visits.passby & path_zone[visits.zone] if len(visits) else np.zeros(0, bool)
    trip_of = vt[keep]
    # visits are sorted by (tag, start) and trips by (tag, start): trip_of is non-decreasing
    counts = np.bincount(trip_of, minlength=len(trips)) if trip_of.size else np.zeros(len(trips), np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return Paths(offsets, visits.zone[keep].astype(np.int32), vt)


def transition_matrix(paths: Paths, n_zones: int, trip_mask: np.ndarray | None = None) -> np.ndarray:
    """int64 (Z, Z): how often a path goes from zone i directly to zone j (next counter visit)."""
    m = np.zeros((n_zones, n_zones), np.int64)
    n_trips = len(paths.offsets) - 1
    if paths.zone.size < 2:
        return m
    trip_idx = np.repeat(np.arange(n_trips), np.diff(paths.offsets))
    same = trip_idx[1:] == trip_idx[:-1]
    if trip_mask is not None:
        same &= trip_mask[trip_idx[1:]]
    np.add.at(m, (paths.zone[:-1][same], paths.zone[1:][same]), 1)
    return m


def top_paths(paths: Paths, zone_codes: list[str], n: int = 10,
              trip_mask: np.ndarray | None = None) -> list[tuple[tuple[str, ...], int]]:
    """The ``n`` most frequent non-empty paths as (zone codes, trips), most frequent first (ties by path)."""
    c: Counter[tuple[int, ...]] = Counter()
    for i in range(len(paths.offsets) - 1):
        if trip_mask is not None and not trip_mask[i]:
            continue
        p = paths.path(i)
        if p.size:
            c[tuple(p.tolist())] += 1
    ranked = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(tuple(zone_codes[z] for z in p), k) for p, k in ranked]


def first_counter_after_entrance(trips: Trips, visits: Visits, paths: Paths, entrance_zone: np.ndarray,
                                 counter_zone: np.ndarray) -> np.ndarray:
    """int32 per trip: the first counter visited (not a pass-by) after the trip's first entrance
    stay; when no entrance stay was detected, the trip's first counter visit. -1 when none."""
    out = np.full(len(trips), -1, np.int32)
    entered = np.full(len(trips), np.iinfo(np.int64).min, np.int64)
    vt = paths.visit_trip
    if len(visits) == 0:
        return out
    ent = (vt >= 0) & entrance_zone[visits.zone]
    # first entrance stay per trip (visits are in start order)
    idx = np.flatnonzero(ent)
    first = np.unique(vt[idx], return_index=True)
    entered[first[0]] = visits.end_us[idx[first[1]]]
    ok = (vt >= 0) & ~visits.passby & counter_zone[visits.zone]
    ok &= visits.start_us >= np.where(vt >= 0, entered[np.maximum(vt, 0)], 0)
    idx = np.flatnonzero(ok)
    trips_hit, pos = np.unique(vt[idx], return_index=True)
    out[trips_hit] = visits.zone[idx[pos]]
    return out
