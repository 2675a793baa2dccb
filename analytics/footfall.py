"""Door footfall per interval and store occupancy (entries - exits, corrected at closing).

Door counters report entries and exits for an interval starting at ``ts`` (any length). Here each
count row is attributed to the reporting interval that contains its ``ts``; intervals start at
``from_us + k * interval_s``. Door data is small (a row per door per minute at most), so this is
plain vectorised numpy; no kernel needed.

Occupancy is the running sum ``entries - exits``. People counters drift (a few percent, biased on
groups), so the raw sum rarely returns to zero at closing although the store is empty then. The
residual of each business day (between two closing instants) is taken out in proportion to the
traffic (entries + exits) counted so far that day: the correction grows where the counting errors
could have happened, and occupancy is exactly zero at each closing. Values are clipped at zero.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

__all__ = ["FOOTFALL_DTYPE", "OCCUPANCY_DTYPE", "footfall", "occupancy", "local_midnights_us"]

FOOTFALL_DTYPE = np.dtype([("interval_us", "i8"), ("entries", "i8"), ("exits", "i8")])
OCCUPANCY_DTYPE = np.dtype([("interval_us", "i8"), ("entries", "i8"), ("exits", "i8"),
                            ("raw", "i8"), ("occupancy", "f8")])


def _int_array(name: str, v: np.ndarray, n: int | None = None) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name}: must be a 1-D array" + (f" of length {n}" if n is not None else ""))
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: must be integers, got {a.dtype}")
    return a.astype(np.int64)


def footfall(ts_us: np.ndarray, entries: np.ndarray, exits: np.ndarray, interval_s: int,
             from_us: int, to_us: int) -> np.ndarray:
    """Entries and exits summed over all doors per ``interval_s`` interval of ``[from_us, to_us)``.

    ``ts_us``: start of each door-count row (epoch microseconds). Every interval of the range gets a
    row (zeros included); count rows outside the range are ignored. Returns :data:`FOOTFALL_DTYPE`.
    """
    ts = _int_array("ts_us", ts_us)
    n = ts.shape[0]
    ent = _int_array("entries", entries, n)
    ext = _int_array("exits", exits, n)
    if n and (ent.min() < 0 or ext.min() < 0):
        which, arr = ("entries", ent) if ent.min() < 0 else ("exits", ext)
        bad = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{which}: must be >= 0, row {bad} has {int(arr[bad])}")
    if not (isinstance(interval_s, (int, np.integer)) and interval_s > 0):
        raise ValueError(f"interval_s: must be a positive whole number of seconds, got {interval_s!r}")
    from_us, to_us = int(from_us), int(to_us)
    if to_us < from_us:
        raise ValueError(f"to_us ({to_us}) is before from_us ({from_us})")
    iv_us = int(interval_s) * 1_000_000
    n_iv = -(-(to_us - from_us) // iv_us)
    out = np.zeros(n_iv, FOOTFALL_DTYPE)
    out["interval_us"] = from_us + np.arange(n_iv, dtype=np.int64) * iv_us
    inside = (ts >= from_us) & (ts < to_us)
    k = (ts[inside] - from_us) // iv_us
    out["entries"] = np.bincount(k, ent[inside], n_iv).astype(np.int64)
    out["exits"] = np.bincount(k, ext[inside], n_iv).astype(np.int64)
    return out


def occupancy(ff: np.ndarray, close_us: np.ndarray) -> np.ndarray:
    """Occupancy at the end of each footfall interval, corrected to zero at every closing instant.

    ``ff``: :data:`FOOTFALL_DTYPE` rows in time order (from :func:`footfall`). ``close_us``: instants
    (epoch microseconds) when the store is empty; an interval belongs to the business day of the
    first closing instant after its start (intervals after the last closing are left uncorrected).
    ``raw`` is the uncorrected running sum of the day; ``occupancy`` the corrected one (persons).
    """
    if ff.dtype != FOOTFALL_DTYPE:
        raise ValueError(f"ff: must be FOOTFALL_DTYPE rows, got {ff.dtype}")
    if len(ff) > 1 and (np.diff(ff["interval_us"]) <= 0).any():
        raise ValueError("ff: intervals must be in increasing time order")
    close = np.unique(_int_array("close_us", close_us))
    out = np.zeros(len(ff), OCCUPANCY_DTYPE)
    for name in FOOTFALL_DTYPE.names:
        out[name] = ff[name]
    if len(ff) == 0:
        return out
    day = np.searchsorted(close, ff["interval_us"], side="right")  # index of the day's closing instant
    net = ff["entries"] - ff["exits"]
    traffic = (ff["entries"] + ff["exits"]).astype(np.float64)
    starts = np.flatnonzero(np.concatenate(([True], day[1:] != day[:-1])))
    ends = np.concatenate((starts[1:], [len(ff)]))
    raw = np.empty(len(ff), np.int64)
    occ = np.empty(len(ff), np.float64)
    for s, e in zip(starts, ends):
        r = np.cumsum(net[s:e])
        raw[s:e] = r
        if day[s] >= len(close):  # no closing after these intervals: nothing to correct against
            occ[s:e] = r
            continue
        v = np.cumsum(traffic[s:e])
        residual = float(r[-1])
        occ[s:e] = r - (residual * v / v[-1] if v[-1] > 0 else 0.0)
    out["raw"] = raw
    out["occupancy"] = np.maximum(occ, 0.0)
    return out


def local_midnights_us(from_us: int, to_us: int, timezone: str) -> np.ndarray:
    """Local midnights (epoch microseconds) in ``(from_us, to_us]`` of ``timezone`` (default closings)."""
    tz = ZoneInfo(timezone)
    start = datetime.fromtimestamp(from_us / 1e6, tz)
    day = datetime(start.year, start.month, start.day, tzinfo=tz)
    out = []
    while True:
        day = (day + timedelta(days=1, hours=3)).replace(hour=0, minute=0, second=0, microsecond=0)
        us = int(day.timestamp() * 1_000_000)
        if us > to_us:
            break
        if us > from_us:
            out.append(us)
    return np.array(out, np.int64)
