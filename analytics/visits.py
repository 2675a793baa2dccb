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

__all__ = ["Visits", "visits_from_presence", "first_unsorted", "tag_blocks"]


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


@numba.njit(**NJIT_PARALLEL)
def _visits_kernel(tag, zone, start_us, end_us, gap_us, bounds):
    """Two passes over blocks of whole tags (``bounds``: block offsets): count, then fill."""
    nb = bounds.shape[0] - 1
    counts = np.zeros(nb, np.int64)
    for b in numba.prange(nb):
        c = 0
        cur_tag = -1
        cur_zone = -1
        cur_end = 0
        have = False
        for i in range(bounds[b], bounds[b + 1]):
            z = zone[i]
            if z < 0:
                continue
            if have and tag[i] == cur_tag and z == cur_zone and start_us[i] - cur_end <= gap_us:
                if end_us[i] > cur_end:
                    cur_end = end_us[i]
            else:
                c += 1
                have = True
                cur_tag = tag[i]
                cur_zone = z
                cur_end = end_us[i]
        counts[b] = c
    off = np.zeros(nb + 1, np.int64)
    for b in range(nb):
        off[b + 1] = off[b] + counts[b]
    n = off[nb]
    v_tag = np.empty(n, np.int32)
    v_zone = np.empty(n, np.int32)
    v_start = np.empty(n, np.int64)
    v_end = np.empty(n, np.int64)
    for b in numba.prange(nb):
        j = off[b] - 1
        cur_tag = -1
        cur_zone = -1
        cur_end = 0
        have = False
        for i in range(bounds[b], bounds[b + 1]):
            z = zone[i]
            if z < 0:
                continue
            if have and tag[i] == cur_tag and z == cur_zone and start_us[i] - cur_end <= gap_us:
                if end_us[i] > cur_end:
                    cur_end = end_us[i]
                    v_end[j] = cur_end
            else:
                j += 1
                have = True
                cur_tag = tag[i]
                cur_zone = z
                cur_end = end_us[i]
                v_tag[j] = cur_tag
                v_zone[j] = z
                v_start[j] = start_us[i]
                v_end[j] = cur_end
    return v_tag, v_zone, v_start, v_end


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
    if n:
        bad = _first_negative_span(start_us, end_us) if end_us is not start_us else -1
        if bad >= 0:
            raise ValueError(f"end_us < start_us at row {bad}")
        bad = first_unsorted(tag, start_us)
        if bad >= 0:
            raise ValueError(f"presence is not sorted by (tag, start_us) at row {bad}")
    bounds = tag_blocks(tag, 8 * numba.get_num_threads())
    v_tag, v_zone, v_start, v_end = _visits_kernel(tag, zone, start_us, end_us, int(round(gap_s * 1e6)), bounds)
    dwell_s = (v_end - v_start) / 1e6
    return Visits(v_tag, v_zone, v_start, v_end, dwell_s, dwell_s < min_dwell_s)
