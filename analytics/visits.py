"""Visits, pass-bys and dwell from presence (SPEC section 3).

Input: presence spans (tag, zone, start_us, end_us) sorted by (tag, start_us), zone -1 = placed
nowhere. A per-read zone assignment is the special case start_us == end_us == the read's time.

A visit is a maximal run of one tag's spans in one zone in which each span starts at most
``gap_s`` after the previous one ended and no span in another zone lies between them ("short
absences without being placed elsewhere do not split a visit"); spans with zone -1 neither extend
nor split a visit. ``start`` / ``end`` are the run's first start and last end, ``dwell_s = end -
start``, and a visit with ``dwell_s < min_dwell_s`` is a pass-by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from analytics.config import NJIT, NJIT_PARALLEL

__all__ = ["Visits", "visits_from_presence", "first_unsorted", "tag_blocks", "stage_offsets"]


@numba.njit(**NJIT)
def first_unsorted(tag, ts) -> int:
    """Index of the first row breaking (tag, ts) order, -1 when sorted (one pass, no temporaries)."""
    for i in range(1, tag.shape[0]):
        if tag[i] < tag[i - 1] or (tag[i] == tag[i - 1] and ts[i] < ts[i - 1]):
            return i
    return -1


@numba.njit(**NJIT)
def _first_negative_span(start, end) -> int:
    for i in range(start.shape[0]):
        if end[i] < start[i]:
            return i
    return -1


@dataclass(frozen=True)
class Visits:
    """Visits and pass-bys sorted by (tag, start_us)."""

    tag: np.ndarray        # int32
    zone: np.ndarray       # int32 zone index
    start_us: np.ndarray   # int64 estimated entry time
    end_us: np.ndarray     # int64 estimated exit time
    dwell_s: np.ndarray    # float64 seconds
    passby: np.ndarray     # bool: dwell_s < min_dwell_s

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    def take(self, mask_or_idx: np.ndarray) -> Visits:
        return Visits(self.tag[mask_or_idx], self.zone[mask_or_idx], self.start_us[mask_or_idx],
                      self.end_us[mask_or_idx], self.dwell_s[mask_or_idx], self.passby[mask_or_idx])


# Staging room per block: one output row per this many input rows (a block with more output rows
# fills the rest in the second pass, from the row where its staging room overflowed).
_STAGE_ROWS_PER_OUTPUT = 16


@numba.njit(**NJIT)
def stage_offsets(bounds: np.ndarray) -> np.ndarray:
    """Offsets of each block's room in the staging arrays of a two-pass kernel (at least 16 rows)."""
    nb = bounds.shape[0] - 1
    soff = np.zeros(nb + 1, np.int64)
    for b in range(nb):
        soff[b + 1] = soff[b] + (bounds[b + 1] - bounds[b]) // _STAGE_ROWS_PER_OUTPUT + 16
    return soff


@numba.njit(**NJIT)
def output_offsets(counts: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, int]:
    """Each block's offset in the output of a two-pass kernel from its output count, and the first
    bad row of the first block that has one (-1: none; the offsets after it are left 0)."""
    nb = counts.shape[0]
    off = np.zeros(nb + 1, np.int64)
    for b in range(nb):
        if bad[b] >= 0:
            return off, bad[b]
        off[b + 1] = off[b] + counts[b]
    return off, -1


@numba.njit(**NJIT)
def _visit_runs(tag, zone, start_us, end_us, gap_us, lo, hi, v_tag, v_zone, v_start, v_end, j0, cap):
    """Visits of rows ``lo:hi`` (``lo`` starts a tag or a visit); the first ``cap`` go to ``v_*[j0:]``.

    One pass that also checks the rows (row ``lo`` against ``lo - 1`` too). Returns (visits, row
    where visit ``cap + 1`` starts or ``hi``, first row out of (tag, start) order or with end <
    start, -1 when none; on such a row the scan stops there).
    """
    c = 0
    resume = hi
    cur_tag = 0
    cur_zone = 0
    cur_end = 0
    k = lo - 1 if lo > 0 else lo
    p_tag = tag[k]
    p_start = start_us[k]
    for i in range(lo, hi):
        t = tag[i]
        s = start_us[i]
        e = end_us[i]
        if t < p_tag or (t == p_tag and s < p_start) or e < s:
            return c, resume, i
        p_tag = t
        p_start = s
        z = zone[i]
        if z < 0:
            continue
        if c > 0 and t == cur_tag and z == cur_zone and s - cur_end <= gap_us:
            if e > cur_end:
                cur_end = e
        else:
            if 0 < c <= cap:
                v_end[j0 + c - 1] = cur_end
            if c == cap:
                resume = i
            c += 1
            if c <= cap:
                v_tag[j0 + c - 1] = t
                v_zone[j0 + c - 1] = z
                v_start[j0 + c - 1] = s
            cur_tag = t
            cur_zone = z
            cur_end = e
    if 0 < c <= cap:
        v_end[j0 + c - 1] = cur_end
    return c, resume, -1


@numba.njit(**NJIT_PARALLEL)
def _visits_kernel(tag, zone, start_us, end_us, gap_us, bounds):
    """Visits over blocks of whole tags (``bounds``: block offsets), and the first bad row (-1: none).

    Pass 1 checks and counts every block, keeping its first visits in a staging room; pass 2 copies
    them to their place and scans again only the part of a block whose staging room overflowed.
    """
    nb = bounds.shape[0] - 1
    soff = stage_offsets(bounds)
    s_tag = np.empty(soff[nb], np.int32)
    s_zone = np.empty(soff[nb], np.int32)
    s_start = np.empty(soff[nb], np.int64)
    s_end = np.empty(soff[nb], np.int64)
    counts = np.zeros(nb, np.int64)
    resume = np.zeros(nb, np.int64)
    bad = np.full(nb, -1, np.int64)
    for b in numba.prange(nb):
        c, r, bd = _visit_runs(tag, zone, start_us, end_us, gap_us, bounds[b], bounds[b + 1],
                               s_tag, s_zone, s_start, s_end, soff[b], soff[b + 1] - soff[b])
        counts[b] = c
        resume[b] = r
        bad[b] = bd
    off, first_bad = output_offsets(counts, bad)
    n = off[nb] if first_bad < 0 else 0
    v_tag = np.empty(n, np.int32)
    v_zone = np.empty(n, np.int32)
    v_start = np.empty(n, np.int64)
    v_end = np.empty(n, np.int64)
    if first_bad < 0:
        for b in numba.prange(nb):
            k = min(counts[b], soff[b + 1] - soff[b])
            v_tag[off[b]:off[b] + k] = s_tag[soff[b]:soff[b] + k]
            v_zone[off[b]:off[b] + k] = s_zone[soff[b]:soff[b] + k]
            v_start[off[b]:off[b] + k] = s_start[soff[b]:soff[b] + k]
            v_end[off[b]:off[b] + k] = s_end[soff[b]:soff[b] + k]
            if counts[b] > k:
                _visit_runs(tag, zone, start_us, end_us, gap_us, resume[b], bounds[b + 1],
                            v_tag, v_zone, v_start, v_end, off[b] + k, counts[b] - k)
    return v_tag, v_zone, v_start, v_end, first_bad


def tag_blocks(tag: np.ndarray, n_blocks: int) -> np.ndarray:
    """Offsets splitting rows sorted by tag into about ``n_blocks`` blocks of whole tags."""
    n = tag.shape[0]
    if n == 0:
        return np.zeros(1, np.int64)
    cuts = np.linspace(0, n, n_blocks + 1).astype(np.int64)[1:-1]
    # move each cut forward to the start of the next tag
    cuts = np.searchsorted(tag, tag[cuts], side="left") if cuts.size else cuts
    return np.unique(np.concatenate(([0], cuts, [n]))).astype(np.int64)


def visits_from_presence(tag: np.ndarray, zone: np.ndarray, start_us: np.ndarray, end_us: np.ndarray | None = None,
                         *, gap_s: float = 30.0, min_dwell_s: float = 10.0) -> Visits:
    """Visits and pass-bys from presence spans (or per-read zones when ``end_us`` is None).

    Arrays must be sorted by (tag, start_us); ``gap_s`` and ``min_dwell_s`` in seconds.
    """
    tag = np.ascontiguousarray(tag, np.int32)
    zone = np.ascontiguousarray(zone, np.int32)
    start_us = np.ascontiguousarray(start_us, np.int64)
    end_us = start_us if end_us is None else np.ascontiguousarray(end_us, np.int64)
    n = tag.shape[0]
    for name, arr in (("zone", zone), ("start_us", start_us), ("end_us", end_us)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},) like tag")
    if not (np.isfinite(gap_s) and gap_s >= 0):
        raise ValueError(f"gap_s must be a finite number >= 0, got {gap_s}")
    if not (np.isfinite(min_dwell_s) and min_dwell_s >= 0):
        raise ValueError(f"min_dwell_s must be a finite number >= 0, got {min_dwell_s}")
    bounds = tag_blocks(tag, 8 * numba.get_num_threads())
    gap_us = int(round(gap_s * 1e6))
    v_tag, v_zone, v_start, v_end, bad = _visits_kernel(tag, zone, start_us, end_us, gap_us, bounds)
    if bad >= 0:
        # a span with end < start anywhere is named first; without one, ``bad`` is the first unsorted row
        neg = _first_negative_span(start_us, end_us) if end_us is not start_us else -1
        if neg >= 0:
            raise ValueError(f"end_us < start_us at row {neg}")
        raise ValueError(f"presence is not sorted by (tag, start_us) at row {bad}")
    dwell_s = (v_end - v_start) / 1e6
    return Visits(v_tag, v_zone, v_start, v_end, dwell_s, dwell_s < min_dwell_s)
