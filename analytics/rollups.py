"""Visit rollups: a store's customer visits packed per local day and counter, for the reports.

The counter report needs every visit of the period: distinct visitors and dwell percentiles are not
additive, and buyers depend on purchases that may be imported after the analysis. So the rollup does
not pre-aggregate; it stores, per (store, local day, counter, pass-by flag), the visits' columns as
packed binary vectors (PostgreSQL's own binary send format, big-endian): a month of a 40-counter
store is ~2,400 rows instead of ~600,000, and the report reads them straight into numpy with no
per-visit work in the server or in Python. Results are identical to reading the ``visits`` table:
the vectors hold the same values, and every statistic computed from them is independent of order.

- ``visit_rollup_days`` says which local days are covered (built with which time zone);
  ``visit_rollups`` holds their vectors. A day is rebuilt from ``visits`` as a whole by
  :func:`rebuild_visit_rollups`, which the analyze job calls in the transaction that replaces a
  range's visits, for every local day the range touches.
- :func:`load_visit_columns` reads covered days from the rollups and the rest of the period (days
  never analysed since the rollups exist, rows written to ``visits`` by other means, a changed time
  zone) from ``visits`` as binary arrays (local days and hours computed in numpy), so a report is
  right either way.
- Only customer visits are rolled up (the ``customer`` flag the job writes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format

from storeflow.contract import PG_EPOCH_US, UNIX_EPOCH

__all__ = ["VisitColumns", "load_visit_columns", "rebuild_visit_rollups", "covered_days", "fetch_arrays",
           "local_day_hour", "from_unix_us"]


# One row per (local day, counter, pass-by flag); the vectors are aligned (one element per visit):
# every string_agg of a group sees the rows in the same order, so no ORDER BY is needed.
_PACK_COLUMNS = """
    (v.start_ts AT TIME ZONE %(tz)s)::date AS day, v.zone_id, v.passby, count(*)::int4 AS n,
    string_agg(timestamptz_send(v.start_ts), ''::bytea) AS start_ts,
    string_agg(int2send(extract(hour FROM v.start_ts AT TIME ZONE %(tz)s)::int2), ''::bytea) AS local_hour,
    string_agg(int4send(v.tag_id), ''::bytea) AS tag_id,
    string_agg(float4send(v.dwell_s), ''::bytea) AS dwell_s,
    string_agg(timestamptz_send(v.trip_start), ''::bytea) AS trip_start,
    string_agg(timestamptz_send(v.trip_end), ''::bytea) AS trip_end"""
_VECTORS = (("start_ts", ">i8"), ("local_hour", ">i2"), ("tag_id", ">i4"), ("dwell_s", ">f4"),
            ("trip_start", ">i8"), ("trip_end", ">i8"))


_FLOAT4_ARRAY_OID = 1021        # real[] (fixed oids of PostgreSQL's built-in types)
_INT4_ARRAY_OID = 1007          # integer[]
_TIMESTAMPTZ_ARRAY_OID = 1185   # timestamptz[]


class _ArrayLoader(Loader):
    """Load a one-dimensional binary array without NULLs as a numpy array (no Python objects)."""

    format = Format.BINARY
    dtype: str = ">f4"

    def load(self, data: Any) -> np.ndarray:
        buf = memoryview(data)
        ndim, flags = struct.unpack_from(">ii", buf, 0)
        if ndim == 0:
            return np.empty(0, dtype=self.dtype[1:])
        if ndim != 1 or flags & 1:
            raise ValueError("expected a one-dimensional array without NULLs")
        (n,) = struct.unpack_from(">i", buf, 12)
        # Each element is its 4-byte length followed by the value.
        rec = np.frombuffer(buf, dtype=[("len", ">i4"), ("v", self.dtype)], count=n, offset=20)
        return rec["v"].astype(self.dtype[1:])


class _Float4ArrayLoader(_ArrayLoader):
    dtype = ">f4"


class _Int4ArrayLoader(_ArrayLoader):
    dtype = ">i4"


class _TimestamptzArrayLoader(_ArrayLoader):
    dtype = ">i8"  # µs since 2000-01-01 UTC


def fetch_arrays(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` in binary mode with real[], integer[] and timestamptz[] columns loaded as numpy
    arrays (float32, int32, int64 µs since 2000-01-01 UTC)."""
    with conn.cursor(binary=True) as cur:
        cur.adapters.register_loader(_FLOAT4_ARRAY_OID, _Float4ArrayLoader)
        cur.adapters.register_loader(_INT4_ARRAY_OID, _Int4ArrayLoader)
        cur.adapters.register_loader(_TIMESTAMPTZ_ARRAY_OID, _TimestamptzArrayLoader)
        cur.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall()


_QUARTER_HOUR_US = 900_000_000
_UNIX_DAY0 = date(1970, 1, 1).toordinal()


def local_day_hour(us: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local date (as ``date.toordinal()``, int32) and hour (int16) of Unix-µs instants in ``tz``, as
    PostgreSQL's ``AT TIME ZONE`` gives them. The UTC offset is looked up once per quarter hour that
    occurs: offsets change on quarter hours (UTC) in every zone of today's tz database."""
    if not us.size:
        return np.zeros(0, np.int32), np.zeros(0, np.int16)
    zone = ZoneInfo(tz)
    q = us // _QUARTER_HOUR_US
    q0 = int(q.min())
    idx = q - q0
    offset_us = np.zeros(int(idx.max()) + 1, np.int64)
    for k in np.flatnonzero(np.bincount(idx)).tolist():
        off = datetime.fromtimestamp((q0 + k) * (_QUARTER_HOUR_US // 1_000_000), zone).utcoffset()
        offset_us[k] = (off.days * 86_400 + off.seconds) * 1_000_000 if off is not None else 0
    local = us + offset_us[idx]
    return ((local // 86_400_000_000) + _UNIX_DAY0).astype(np.int32), \
        ((local // 3_600_000_000) % 24).astype(np.int16)


@dataclass(frozen=True)
class VisitColumns:
    """Customer visits and pass-bys starting in a period, one element per visit (numpy columns)."""

    zone_id: np.ndarray        # int32
    day: np.ndarray            # int32: local date of the start, as date.toordinal()
    hour: np.ndarray           # int16: local hour of the start
    start_us: np.ndarray       # int64: start, Unix µs
    tag_id: np.ndarray         # int32
    dwell_s: np.ndarray        # float32 (as stored)
    trip_start_us: np.ndarray  # int64: the visit's trip, Unix µs
    trip_end_us: np.ndarray    # int64
    passby: np.ndarray         # bool
    from_rollups: int          # how many of the period's local days came from the rollups

    def __len__(self) -> int:
        return int(self.zone_id.shape[0])

    def take(self, mask: np.ndarray) -> VisitColumns:
        """The visits where ``mask`` holds."""
        return VisitColumns(self.zone_id[mask], self.day[mask], self.hour[mask], self.start_us[mask],
                            self.tag_id[mask], self.dwell_s[mask], self.trip_start_us[mask],
                            self.trip_end_us[mask], self.passby[mask], self.from_rollups)


def _local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return (datetime.combine(day, datetime.min.time(), zone),
            datetime.combine(day + timedelta(days=1), datetime.min.time(), zone))


def rebuild_visit_rollups(conn: psycopg.Connection, store_id: int, start: datetime, end: datetime) -> int:
    """Rebuild the rollups of every local day that ``[start, end)`` touches from the ``visits`` table
    (whole days: the visits of a day outside the range are read back as they are). Run it in the
    transaction that changes those visits. Returns the number of days rebuilt."""
    row = conn.execute("SELECT timezone FROM stores WHERE store_id = %s", (store_id,)).fetchone()
    if row is None or end <= start:
        return 0
    tz = str(row[0])
    zone = ZoneInfo(tz)
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    lo, hi = _local_day_bounds(first, zone)[0], _local_day_bounds(last, zone)[1]
    p = {"sid": store_id, "tz": tz, "first": first, "last": last, "lo": lo, "hi": hi}
    for table in ("visit_rollups", "visit_rollup_days"):
        conn.execute(f"DELETE FROM {table} WHERE store_id = %(sid)s AND day BETWEEN %(first)s AND %(last)s",
                     p)  # type: ignore[arg-type]
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO visit_rollup_days (store_id, day, timezone, day_start, day_end) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(store_id, d, tz, *_local_day_bounds(d, zone)) for d in days])
    conn.execute(f"""
        INSERT INTO visit_rollups (store_id, day, zone_id, passby, n, start_ts, local_hour, tag_id, dwell_s,
                                   trip_start, trip_end)
        SELECT %(sid)s, q.* FROM (
            SELECT {_PACK_COLUMNS}
            FROM visits v
            WHERE v.store_id = %(sid)s AND v.start_ts >= %(lo)s AND v.start_ts < %(hi)s AND v.customer
            GROUP BY 1, 2, 3) q""", p)
    return len(days)


def covered_days(conn: psycopg.Connection, store_id: int, tz: str, start: datetime,
                 end: datetime) -> list[tuple[date, datetime, datetime]]:
    """Local days overlapping ``[start, end)`` whose rollups exist and were built in time zone ``tz``:
    ``(day, day start, day end)``, by day."""
    if conn.execute("SELECT to_regclass('visit_rollup_days') IS NOT NULL").fetchone() != (True,):
        return []  # schema older than the rollups
    return [(d, s, e) for d, s, e in conn.execute(
        "SELECT day, day_start, day_end FROM visit_rollup_days WHERE store_id = %s AND timezone = %s "
        "AND day_start < %s AND day_end > %s ORDER BY day", (store_id, tz, end, start))]


def _uncovered(start: datetime, end: datetime, covered: list[tuple[date, datetime, datetime]]
               ) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` minus the covered days, as disjoint intervals."""
    out: list[tuple[datetime, datetime]] = []
    at = start
    for _, s, e in covered:
        if s > at:
            out.append((at, min(s, end)))
        at = max(at, e)
        if at >= end:
            break
    if at < end:
        out.append((at, end))
    return [(a, b) for a, b in out if a < b]


_FIELDS = ("zone_id", "day", "hour", "start_us", "tag_id", "dwell_s", "trip_start_us", "trip_end_us",
           "passby")


def _unpack(rows: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Columns from rollup rows (day, zone_id, passby, n, then the vectors)."""
    n = np.array([r[3] for r in rows], np.int64)
    vec = {}
    for k, (name, dtype) in enumerate(_VECTORS):
        vec[name] = np.frombuffer(b"".join(r[4 + k] for r in rows), dtype)
        if vec[name].shape[0] != n.sum():
            raise ValueError(f"visit rollup vector {name}: {vec[name].shape[0]} values for {n.sum()} visits")
    return {
        "zone_id": np.repeat(np.array([r[1] for r in rows], np.int32), n),
        "day": np.repeat(np.array([r[0].toordinal() for r in rows], np.int32), n),
        "hour": vec["local_hour"].astype(np.int16),
        "start_us": vec["start_ts"].astype(np.int64) + PG_EPOCH_US,
        "tag_id": vec["tag_id"].astype(np.int32),
        "dwell_s": vec["dwell_s"].astype(np.float32),
        "trip_start_us": vec["trip_start"].astype(np.int64) + PG_EPOCH_US,
        "trip_end_us": vec["trip_end"].astype(np.int64) + PG_EPOCH_US,
        "passby": np.repeat(np.array([bool(r[2]) for r in rows], bool), n),
    }


def _from_arrays(rows: list[tuple[Any, ...]], tz: str) -> dict[str, np.ndarray]:
    """Columns from visits-table rows (zone_id, passby, then one array per column)."""
    n = np.array([len(r[3]) for r in rows], np.int64)
    cat = (lambda k: np.concatenate([r[k] for r in rows]) if rows else np.zeros(0))  # noqa: E731
    start_us = cat(2).astype(np.int64) + PG_EPOCH_US
    day, hour = local_day_hour(start_us, tz)
    return {
        "zone_id": np.repeat(np.array([r[0] for r in rows], np.int32), n),
        "day": day, "hour": hour, "start_us": start_us,
        "tag_id": cat(3).astype(np.int32),
        "dwell_s": cat(4).astype(np.float32),
        "trip_start_us": cat(5).astype(np.int64) + PG_EPOCH_US,
        "trip_end_us": cat(6).astype(np.int64) + PG_EPOCH_US,
        "passby": np.repeat(np.array([bool(r[1]) for r in rows], bool), n),
    }


def _concat(parts: list[dict[str, np.ndarray]], from_rollups: int) -> VisitColumns:
    if len(parts) == 1:
        return VisitColumns(**parts[0], from_rollups=from_rollups)
    empty = {"zone_id": np.int32, "day": np.int32, "hour": np.int16, "start_us": np.int64, "tag_id": np.int32,
             "dwell_s": np.float32, "trip_start_us": np.int64, "trip_end_us": np.int64, "passby": bool}
    return VisitColumns(**{f: np.concatenate([p[f] for p in parts]).astype(empty[f]) if parts
                           else np.zeros(0, empty[f]) for f in _FIELDS}, from_rollups=from_rollups)


def load_visit_columns(conn: psycopg.Connection, store_id: int, tz: str, start: datetime, end: datetime,
                       *, use_rollups: bool = True) -> VisitColumns:
    """Customer visits and pass-bys starting in ``[start, end)``: covered local days from the rollups,
    the rest from ``visits`` (``use_rollups=False``: all from ``visits``)."""
    covered = covered_days(conn, store_id, tz, start, end) if use_rollups else []
    p: dict[str, Any] = {"sid": store_id, "tz": tz, "start": start, "end": end}
    rows: list[tuple[Any, ...]] = []
    with conn.cursor(binary=True) as cur:
        if covered:
            cur.execute("SELECT day, zone_id, passby, n, start_ts, local_hour, tag_id, dwell_s, trip_start, "
                        "trip_end FROM visit_rollups WHERE store_id = %(sid)s AND day = ANY(%(days)s)",
                        {**p, "days": [d for d, _, _ in covered]})
            rows += cur.fetchall()
    parts = [_unpack(rows)] if rows else []
    gaps = _uncovered(start, end, covered)
    if gaps:
        ranges = " OR ".join(f"(v.start_ts >= %(a{i})s AND v.start_ts < %(b{i})s)" for i in range(len(gaps)))
        for i, (a, b) in enumerate(gaps):
            p[f"a{i}"], p[f"b{i}"] = a, b
        # straight from the visits table: binary arrays (cheaper for the server than packing, and no
        # time zone conversion per row: local days and hours are computed in numpy)
        parts.append(_from_arrays(fetch_arrays(conn, (
            "SELECT v.zone_id, v.passby, array_agg(v.start_ts), array_agg(v.tag_id), array_agg(v.dwell_s), "
            "array_agg(v.trip_start), array_agg(v.trip_end) FROM visits v WHERE v.store_id = %(sid)s "
            f"AND v.start_ts >= %(start)s AND v.start_ts < %(end)s AND ({ranges}) AND v.customer "
            "GROUP BY 1, 2"), p), tz))
    cols = _concat(parts, len(covered))
    lo_us, hi_us = _us(start), _us(end)
    if covered and not (covered[0][1] >= start and covered[-1][2] <= end):
        cols = cols.take((cols.start_us >= lo_us) & (cols.start_us < hi_us))  # days cut by the period
    return cols


def from_unix_us(us: int) -> datetime:
    """Unix µs -> aware UTC datetime (exact)."""
    return UNIX_EPOCH + timedelta(microseconds=int(us))


def _us(dt: datetime) -> int:
    """Aware datetime -> Unix µs (exact)."""
    delta = dt - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
