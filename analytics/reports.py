"""The report query layer: counter and store KPIs, breakdowns, comparisons, rankings, visits, paths,
heatmaps and member journeys, read from the tables the analytics job precomputes (SPEC section 3).

Every public function takes an open connection, a store code and a period ``[start, end)`` of
timezone-aware datetimes, and returns plain data (dicts, lists, small dataclasses) that the CLI
(:mod:`analytics.report_cli`) and the HTTP API both render. Nothing here prints or logs member data.

Definitions shared by all reports (beyond SPEC section 3):

- *customer*: a tag whose ``kind`` is NULL (unknown tag, anonymous) or ``member``; staff and asset
  tags are excluded everywhere, through the ``customer`` flag the analytics job writes on visits and
  trips (re-run ``storeflow analyze`` for a period after re-classifying tags).
- a visit, pass-by or trip belongs to the period its start falls in; a purchase to the period its
  ``ts`` falls in; door counts to the period their interval start falls in.
- *tags seen* (store ``tags_seen`` and the ``attraction`` denominator): distinct customer tags with
  a trip that overlaps the period (``trip start < end`` and ``trip end >= start``).
- percentiles are linear interpolations between order statistics (PostgreSQL ``percentile_cont``,
  numpy's default); counter dwell statistics are rounded to the millisecond.
- breakdowns (``by``): ``tier`` = the member's tier (``anonymous`` for tags and sales without a
  member, ``unknown`` for a member id missing from the members table); ``hour`` = hour of day (0..23)
  and ``day`` = calendar date, both in the store's time zone. In a ``tier`` breakdown the store's
  ``footfall`` and ``conversion`` are null (door counters do not know tiers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import psycopg
from psycopg.pq import TransactionStatus

from analytics.rollups import VisitColumns, fetch_arrays, from_unix_us, load_visit_columns
from storeflow.contract import PG_EPOCH_US, BadInput
from storeflow.settings import store_params

__all__ = [
    "COUNTER_KEYS",
    "STORE_KEYS",
    "QUADRANT_LABELS",
    "By",
    "Compare",
    "CounterKpis",
    "StoreKpis",
    "StoreInfo",
    "Period",
    "HeatmapGrid",
    "MemberNotFound",
    "store_info",
    "parse_bound",
    "resolve_period",
    "comparison_period",
    "counter_kpis",
    "store_kpis",
    "compare_rows",
    "counter_kpis_compare",
    "store_kpis_compare",
    "rank_counters",
    "counter_ranking",
    "revenue_concentration",
    "visit_rows",
    "top_paths",
    "heatmap",
    "member_journey",
]

#: Keys of one counter row, in SPEC order (SPEC section 3, counter KPI table).
COUNTER_KEYS: tuple[str, ...] = (
    "zone", "visitors", "visits", "passbys", "dwell_median_s", "dwell_p90_s", "dwell_total_s",
    "buyers", "conversion", "revenue", "revenue_per_visitor", "attraction",
)
#: Keys of the store KPI object, in SPEC order.
STORE_KEYS: tuple[str, ...] = ("footfall", "tags_seen", "transactions", "conversion", "trip_median_s")
#: Counter metrics compared by ``--compare`` (all counter keys but the id).
COUNTER_METRICS: tuple[str, ...] = COUNTER_KEYS[1:]

By = Literal["tier", "hour", "day"]
Compare = Literal["previous", "year"]

#: Plain-words label per (attracts, converts) quadrant.
QUADRANT_LABELS: dict[tuple[bool, bool], str] = {
    (True, True): "attracts and converts",
    (True, False): "attracts but does not convert",
    (False, True): "converts the few it attracts",
    (False, False): "neither attracts nor converts — candidate to replace",
}


class CounterKpis(TypedDict):
    """One counter's KPIs for a period (SPEC section 3); times in seconds, money in store currency."""

    zone: str
    visitors: int
    visits: int
    passbys: int
    dwell_median_s: float | None
    dwell_p90_s: float | None
    dwell_total_s: float
    buyers: int
    conversion: float | None
    revenue: float
    revenue_per_visitor: float | None
    attraction: float | None


class StoreKpis(TypedDict):
    """The store's KPIs for a period (SPEC section 3)."""

    footfall: int | None
    tags_seen: int
    transactions: int
    conversion: float | None
    trip_median_s: float | None


class MemberNotFound(BadInput):
    """The member id is neither in the members table nor on any tag."""


# ------------------------------------------------------------------------------------------------
# store and period


@dataclass(frozen=True)
class StoreInfo:
    """What reports need to know about a store."""

    store_id: int
    store: str
    name: str
    timezone: str
    params: dict[str, float]                       # analytics parameters (purchase_window_s, cell_m, ...)
    counters: tuple[tuple[int, str, bool], ...]   # (zone_id, zone code, active), by code
    floors: dict[int, tuple[float, float]] = field(default_factory=dict)  # floor -> (width_m, depth_m)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def store_info(conn: psycopg.Connection, store: str) -> StoreInfo:
    """Load a store's id, time zone, parameters, counters and floors; :class:`BadInput` if unknown."""
    row = conn.execute(
        "SELECT store_id, name, timezone, settings FROM stores WHERE store = %s", (store,)
    ).fetchone()
    if row is None:
        raise BadInput(f"unknown store {store!r}; import its layout first (storeflow import layout FILE)")
    sid, name, tz, overrides = int(row[0]), str(row[1]), str(row[2]), row[3]
    counters = tuple(
        (int(z), str(code), bool(active)) for z, code, active in conn.execute(
            "SELECT zone_id, zone, active FROM zones WHERE store_id = %s AND kind = 'counter' ORDER BY zone",
            (sid,))
    )
    floors = {int(f): (float(w), float(d)) for f, w, d in conn.execute(
        "SELECT floor, width_m, depth_m FROM floors WHERE store_id = %s", (sid,))}
    return StoreInfo(sid, store, name, tz, store_params(overrides), counters, floors)


@dataclass(frozen=True)
class Period:
    """A half-open time range ``[start, end)`` (timezone-aware)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise BadInput("period bounds need a time zone")
        if self.start >= self.end:
            raise BadInput(f"--from {self.start.isoformat()} is not before --to {self.end.isoformat()}")


def parse_bound(text: str, tz: str | ZoneInfo) -> datetime:
    """A ``--from``/``--to`` value: a date (``2026-11-20``, the start of that day in the store's time
    zone) or an ISO 8601 time with a UTC offset (``2026-11-20T10:00+08:00``)."""
    zone = tz if isinstance(tz, ZoneInfo) else _zone(tz)
    s = text.strip()
    try:
        if len(s) == 10:
            return datetime.combine(date.fromisoformat(s), time(0), zone)
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadInput(f"time {s!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise BadInput(f"time {s!r} has no UTC offset; add one (e.g. +08:00) or give a date")
    return dt


def resolve_period(from_text: str | None, to_text: str | None, tz: str | ZoneInfo,
                   now: datetime | None = None) -> Period:
    """The report period from optional ``--from``/``--to`` texts (``to`` is exclusive).

    Neither given: the last full day in the store's time zone (yesterday). Only ``--from``: up to now.
    Only ``--to``: the day before ``--to``.
    """
    zone = tz if isinstance(tz, ZoneInfo) else _zone(tz)
    now = now or datetime.now(timezone.utc)
    start = parse_bound(from_text, zone) if from_text else None
    end = parse_bound(to_text, zone) if to_text else None
    if start is None and end is None:
        today = datetime.combine(now.astimezone(zone).date(), time(0), zone)
        start, end = _local_shift(today, days=-1, zone=zone), today
    elif start is None:
        assert end is not None
        start = _local_shift(end, days=-1, zone=zone)
    elif end is None:
        end = now
    return Period(start, end)


def comparison_period(start: datetime, end: datetime, mode: Compare, tz: str | ZoneInfo) -> Period:
    """The period to compare with: ``previous`` = the same length just before; ``year`` = the same
    local dates and times one year earlier (29 February maps to 28 February)."""
    zone = tz if isinstance(tz, ZoneInfo) else _zone(tz)
    if mode == "previous":
        return Period(start - (end - start), start)
    if mode == "year":
        return Period(_year_back(start, zone), _year_back(end, zone))
    raise BadInput(f"unknown comparison {mode!r} (choose previous or year)")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name!r}") from None


def _local_shift(dt: datetime, *, days: int, zone: ZoneInfo) -> datetime:
    local = dt.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=days), local.timetz().replace(tzinfo=None), zone)


def _year_back(dt: datetime, zone: ZoneInfo) -> datetime:
    local = dt.astimezone(zone)
    d = local.date()
    try:
        prev = d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        prev = d.replace(year=d.year - 1, day=28)
    return datetime.combine(prev, local.time(), zone)


# ------------------------------------------------------------------------------------------------
# group expressions per breakdown

# Staff and asset tags are excluded through the customer flag the analytics job writes on every visit
# and trip (tags.kind at analysis time), so the chain-wide tags table is only joined when a report
# needs the member.
_JOIN_TAGS = "JOIN tags t ON t.tag_id = {a}.tag_id LEFT JOIN members m ON m.member = t.member"
_TIER_TAG = "CASE WHEN t.member IS NULL THEN 'anonymous' ELSE coalesce(m.tier, 'unknown') END"
_TIER_PURCHASE = "CASE WHEN p.member IS NULL THEN 'anonymous' ELSE coalesce(m.tier, 'unknown') END"


def _group_expr(by: By | None, ts_col: str, tier_expr: str) -> str:
    """SQL for the breakdown label of a row whose time is ``ts_col`` (``%(tz)s`` = store zone)."""
    if by is None:
        return "0"
    if by == "tier":
        return tier_expr
    if by == "hour":
        return f"extract(hour FROM {ts_col} AT TIME ZONE %(tz)s)::int"
    if by == "day":
        return f"({ts_col} AT TIME ZONE %(tz)s)::date"
    raise BadInput(f"unknown breakdown {by!r} (choose tier, hour or day)")


def _tags_join(by: By | None, alias: str) -> str:
    return _JOIN_TAGS.format(a=alias) if by == "tier" else ""


@contextmanager
def _report_scan(conn: psycopg.Connection) -> Iterator[None]:
    """Planner settings for aggregating a period of visits: sorts in memory, and no index scan (the
    (store, zone, start) index hands rows over in zone order, revisiting every heap page once per
    zone: 4x slower than a sequential or bitmap scan and a sort). Restored afterwards."""
    names = ("work_mem", "enable_indexscan", "jit", "plan_cache_mode")
    old = conn.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)).fetchone()
    # JIT compilation costs ~100 ms per query here and saves less on a few hundred thousand rows.
    # psycopg prepares a query run 5 times; PostgreSQL then switches to a generic plan that cannot
    # prune chunks by the period and misjudges it (3x slower in a long-lived API connection).
    conn.execute("SELECT set_config('work_mem', '64MB', false), set_config('enable_indexscan', 'off', false), "
                 "set_config('jit', 'off', false), set_config('plan_cache_mode', 'force_custom_plan', false)")
    try:
        yield
    finally:
        # After an error inside a transaction the rollback undoes the settings by itself.
        if old is not None and conn.info.transaction_status != TransactionStatus.INERROR:
            conn.execute("SELECT " + ", ".join(f"set_config('{n}', %s, false)" for n in names), old)


def _group_key(by: By | None, tier_expr: str) -> str:
    """GROUP BY items for the label: for tiers the columns the label is made of, so that the planner
    sees a few groups (from column statistics) and hashes instead of sorting every row by text."""
    if by != "tier":
        return "1"
    member = "t.member" if tier_expr == _TIER_TAG else "p.member"
    return f"({member} IS NULL), m.tier"


def _seen_sql(by: By | None) -> str:
    """Customer tags whose trips overlap the period (an array per breakdown label: count the distinct)."""
    base = (f"FROM trips tr {_tags_join(by, 'tr')} "
            "{lateral} WHERE tr.store_id = %(sid)s AND tr.start_ts < %(end)s AND tr.end_ts >= %(start)s "
            "AND tr.customer")
    if by in (None, "tier"):
        return f"SELECT {_group_expr(by, '', _TIER_TAG)} AS g, array_agg(tr.tag_id) " \
               + base.format(lateral="") + f" GROUP BY {_group_key(by, _TIER_TAG)}"
    step = "hour" if by == "hour" else "day"
    # Every local hour (day) the trip overlaps, clipped to the period.
    lateral = (
        f"CROSS JOIN LATERAL generate_series("
        f"date_trunc('{step}', greatest(tr.start_ts, %(start)s) AT TIME ZONE %(tz)s), "
        f"date_trunc('{step}', least(tr.end_ts, %(end)s - interval '1 microsecond') AT TIME ZONE %(tz)s), "
        f"interval '1 {step}') AS b(local_ts)"
    )
    label = "extract(hour FROM b.local_ts)::int" if by == "hour" else "b.local_ts::date"
    return f"SELECT {label} AS g, array_agg(tr.tag_id) " + base.format(lateral=lateral) + " GROUP BY 1"


def _all_groups(by: By | None, period: Period, zone: ZoneInfo, seen: Iterable[Any]) -> list[Any]:
    if by is None:
        return [0]
    if by == "hour":
        return list(range(24))
    if by == "day":
        first = period.start.astimezone(zone).date()
        last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return sorted(set(seen) | {"anonymous"})


def _label(by: By | None, g: Any) -> Any:
    return g.isoformat() if isinstance(g, date) else g


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _money(x: Any) -> float:
    return 0.0 if x is None else float(round(Decimal(x), 2))


def _ratio(num: float | int, den: float | int) -> float | None:
    return None if not den else num / den


# ------------------------------------------------------------------------------------------------
# binary arrays straight into numpy


def _n_distinct(values: np.ndarray) -> int:
    s = np.sort(values)  # a sort and a neighbour comparison: faster here than np.unique's hashing
    return int(s.size and 1 + np.count_nonzero(s[1:] != s[:-1]))


def _sorted_percentile(d: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per group, the q-quantile of ``d`` (sorted within each group; groups at ``starts`` with
    ``counts`` values), interpolated linearly as numpy's percentile and PostgreSQL's percentile_cont."""
    pos = (counts - 1) * q
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    a = d[starts + lo]
    b = d[starts + np.minimum(lo + 1, counts - 1)]
    diff = b - a
    return np.where(frac >= 0.5, b - diff * (1 - frac), a + diff * frac)  # numpy's lerp, bit for bit


def _buying_visits(tag: np.ndarray, zone: np.ndarray, trip_start_us: np.ndarray, trip_end_us: np.ndarray,
                   purchases: np.ndarray, window_us: int) -> np.ndarray:
    """Per visit: did its tag's member buy at its counter within [trip start, trip end + window]?
    ``purchases``: records with ``tag`` (every tag of the buying member), ``zone`` and ``ts_us``."""
    out = np.zeros(tag.shape[0], bool)
    if not purchases.size or not tag.size:
        return out
    pkey = (purchases["tag"].astype(np.int64) << 32) | purchases["zone"].astype(np.int64)
    # candidates: visits whose tag bought anything (a lookup table), then whose (tag, counter) did
    bought_tag = np.zeros(int(max(tag.max(), purchases["tag"].max())) + 1, bool)
    bought_tag[purchases["tag"]] = True
    cand = np.flatnonzero(bought_tag[tag])
    vkey = (tag[cand].astype(np.int64) << 32) | zone[cand].astype(np.int64)
    keep = _isin_sorted(vkey, np.sort(pkey))
    cand, vkey = cand[keep], vkey[keep]
    if not cand.size:
        return out
    # Sort visits (at their trip start) and purchases together by (tag, counter, time), a visit before
    # a purchase at the same instant; the first purchase at or after a visit in the sort order is the
    # earliest one of its tag and counter not before the trip start.
    keys = np.concatenate((vkey, pkey))
    times = np.concatenate((trip_start_us[cand], purchases["ts_us"].astype(np.int64)))
    is_p = np.concatenate((np.zeros(cand.size, bool), np.ones(pkey.size, bool)))
    order = np.lexsort((is_p, times, keys))
    n = order.size
    nxt = np.minimum.accumulate(np.where(is_p[order], np.arange(n), n)[::-1])[::-1]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    j = nxt[rank[:cand.size]]
    ok = j < n
    first = order[j[ok]]
    hit = np.zeros(cand.size, bool)
    hit[ok] = (keys[first] == vkey[ok]) & (times[first] <= trip_end_us[cand][ok] + window_us)
    out[cand] = hit
    return out


def _isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ref)`` for a sorted reference (a binary search, no hashing)."""
    if not sorted_ref.size:
        return np.zeros(values.shape, bool)
    at = np.minimum(np.searchsorted(sorted_ref, values), sorted_ref.size - 1)
    return sorted_ref[at] == values


def _distinct_per_group(group: np.ndarray, tag: np.ndarray, n_groups: int) -> np.ndarray:
    """Distinct tags per dense group index."""
    # a sort and a neighbour comparison: 3-5x faster here than np.unique's hashing on int64
    pairs = np.sort((group.astype(np.int64) << 32) | tag.astype(np.int64))
    first = np.ones(pairs.size, bool)
    first[1:] = pairs[1:] != pairs[:-1]
    return np.bincount(pairs[first] >> 32, minlength=n_groups)


def _sort_within_groups(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (float32) sorted by (group, value), as float64."""
    if not np.signbit(values).any():
        # floats without a sign bit order like their bit patterns: one int64 sort instead of a lexsort
        packed = np.sort((group.astype(np.int64) << 32) | values.view(np.uint32).astype(np.int64))
        return (packed & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)
    return values[np.lexsort((values, group))].astype(np.float64)


def _labels(conn: psycopg.Connection, by: By | None, cols: VisitColumns) -> tuple[np.ndarray, list[Any]]:
    """Per visit a label code (-1: none: a tier breakdown drops visits whose tag is missing from the
    tags table, as a join would) and the label values by code."""
    n = len(cols)
    if by is None:
        return np.zeros(n, np.int64), [0]
    if by == "hour":
        return cols.hour.astype(np.int64), list(range(24))
    if by == "day":
        first = int(cols.day.min()) if n else 0
        last = int(cols.day.max()) if n else -1
        return (cols.day - first).astype(np.int64), [date.fromordinal(d) for d in range(first, last + 1)]
    if by == "tier":
        tags = np.unique(cols.tag_id)
        found = conn.execute(
            f"SELECT t.tag_id, {_TIER_TAG} FROM unnest(%s::int4[]) AS u(tag_id) "
            "JOIN tags t ON t.tag_id = u.tag_id LEFT JOIN members m ON m.member = t.member", (tags.tolist(),)).fetchall()
        names = sorted({label for _, label in found})
        code_of = {name: i for i, name in enumerate(names)}
        lut = np.full(tags.size, -1, np.int64)
        at = np.searchsorted(tags, np.array([t for t, _ in found], np.int64))
        lut[at] = [code_of[lb] for _, lb in found]
        return lut[np.searchsorted(tags, cols.tag_id)], names
    raise BadInput(f"unknown breakdown {by!r} (choose tier, hour or day)")


_VisitKpis = tuple[int, int, int, float | None, float | None, float, int]  # see _visit_kpis


def _visit_kpis(conn: psycopg.Connection, by: By | None, cols: VisitColumns, purchases_of: Any,
                window_us: int) -> dict[tuple[Any, int], _VisitKpis]:
    """(visitors, visits, passbys, dwell median, dwell p90, dwell total, buyers) per (label, zone id)
    with visits or pass-bys; ``purchases_of(p_from_us, p_to_us)`` fetches the purchases for buyers."""
    code, names = _labels(conn, by, cols)
    if not len(cols):
        return {}
    zones = np.flatnonzero(np.bincount(cols.zone_id))  # zone ids are small positive integers
    zone_lut = np.zeros(int(zones[-1]) + 1, np.int64)
    zone_lut[zones] = np.arange(zones.size)
    has = code >= 0
    group = code * zones.size + zone_lut[cols.zone_id]  # dense (label, zone) index
    n_groups = len(names) * zones.size
    real = has & ~cols.passby
    g = group[real]
    tag = cols.tag_id[real]
    passbys = np.bincount(group[has & cols.passby], minlength=n_groups)
    visits = np.bincount(g, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(visits)[:-1]))
    d = _sort_within_groups(g, cols.dwell_s[real])
    nz = np.flatnonzero(visits)
    totals = np.zeros(n_groups)
    med = np.zeros(n_groups)
    p90 = np.zeros(n_groups)
    if nz.size:
        totals[nz] = np.add.reduceat(d, starts[nz])  # summed in sorted order: independent of visit order
        med[nz] = _sorted_percentile(d, starts[nz], visits[nz], 0.5)
        p90[nz] = _sorted_percentile(d, starts[nz], visits[nz], 0.9)
    visitors = _distinct_per_group(g, tag, n_groups)
    buyers = np.zeros(n_groups, np.int64)
    if g.size:
        ts0, ts1 = cols.trip_start_us[real], cols.trip_end_us[real]
        purchases = purchases_of(int(ts0.min()), int(ts1.max()))
        bought = _buying_visits(tag, cols.zone_id[real], ts0, ts1, purchases, window_us)
        buyers = _distinct_per_group(g[bought], tag[bought], n_groups)
    out: dict[tuple[Any, int], _VisitKpis] = {}
    for i in np.flatnonzero(visits + passbys).tolist():
        n = int(visits[i])
        # Dwell times are stored as real (float4): report them to the millisecond, not float4 noise.
        out[(names[i // zones.size], int(zones[i % zones.size]))] = (
            int(visitors[i]), n, int(passbys[i]), round(float(med[i]), 3) if n else None,
            round(float(p90[i]), 3) if n else None, round(float(totals[i]), 3), int(buyers[i]))
    return out


# ------------------------------------------------------------------------------------------------
# counter KPIs


def counter_kpis(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
                 by: By | None = None) -> list[dict[str, Any]]:
    """Counter KPIs (SPEC section 3) for ``[start, end)``, one row per counter zone (zero-visit
    counters included; a counter removed from the layout only when it has data in the period).

    Without ``by`` each row has exactly :data:`COUNTER_KEYS`; with ``by`` each row starts with the
    breakdown label (``tier``, ``hour`` or ``day``) and there is one row per label and counter.

    Visits come from the visit rollups where the analyze job wrote them, else from the visits table
    (:mod:`analytics.rollups`); the statistics are computed in numpy, so a month of visits costs no
    per-visit work in the server.
    """
    info = store_info(conn, store)
    period = Period(start, end)
    _group_expr(by, "", "")  # rejects an unknown breakdown before any query
    p = {"sid": info.store_id, "start": period.start, "end": period.end, "tz": info.timezone,
         "window": info.params["purchase_window_s"]}
    window_us = int(round(info.params["purchase_window_s"] * 1e6))

    def purchases_of(lo_us: int, hi_us: int) -> np.ndarray:
        # every tag of the member that bought, so that the sale joins the member's visits by tag;
        # packed into one row of binary vectors (as the visit rollups)
        row = conn.execute(
            "SELECT string_agg(int4send(t.tag_id), ''::bytea), string_agg(int4send(p.zone_id), ''::bytea), "
            "string_agg(timestamptz_send(p.ts), ''::bytea) "
            "FROM purchases p JOIN tags t ON t.member = p.member WHERE p.store_id = %s AND p.ts >= %s AND p.ts <= %s",
            (info.store_id, from_unix_us(lo_us), from_unix_us(hi_us + window_us)), binary=True).fetchone()
        tags, zones, ts = row if row is not None and row[0] is not None else (b"", b"", b"")
        out = np.zeros(len(tags) // 4, [("tag", np.int32), ("zone", np.int32), ("ts_us", np.int64)])
        out["tag"] = np.frombuffer(tags, ">i4")
        out["zone"] = np.frombuffer(zones, ">i4")
        out["ts_us"] = np.frombuffer(ts, ">i8").astype(np.int64) + PG_EPOCH_US
        return out

    gp = _group_expr(by, "p.ts", _TIER_PURCHASE)
    revenue_sql = f"""
        SELECT {gp} AS g, p.zone_id, sum(p.amount)
        FROM purchases p {"LEFT JOIN members m ON m.member = p.member" if by == "tier" else ""}
        WHERE p.store_id = %(sid)s AND p.ts >= %(start)s AND p.ts < %(end)s
        GROUP BY {_group_key(by, _TIER_PURCHASE)}, 2"""
    with _report_scan(conn):
        cols = load_visit_columns(conn, info.store_id, info.timezone, period.start, period.end)
        vis = _visit_kpis(conn, by, cols, purchases_of, window_us)
        seen = {g: _n_distinct(tags) for g, tags in fetch_arrays(conn, _seen_sql(by), p)}
        revenue = {(g, z): a for g, z, a in conn.execute(revenue_sql, p)}  # type: ignore[arg-type]

    groups = _all_groups(by, period, info.tz, [*seen, *(g for g, _ in vis), *(g for g, _ in revenue)])
    with_data = {z for _, z in vis} | {z for _, z in revenue}
    counters = [(zid, code) for zid, code, active in info.counters if active or zid in with_data]
    rows: list[dict[str, Any]] = []
    for g in groups:
        for zid, code in counters:
            visitors, visits, passbys, med, p90, total, n_buyers = vis.get(
                (g, zid), (0, 0, 0, None, None, 0.0, 0))
            rev = _money(revenue.get((g, zid)))
            row: dict[str, Any] = {} if by is None else {by: _label(by, g)}
            row.update({
                "zone": code,
                "visitors": int(visitors),
                "visits": int(visits),
                "passbys": int(passbys),
                "dwell_median_s": med,
                "dwell_p90_s": p90,
                "dwell_total_s": total,
                "buyers": n_buyers,
                "conversion": _ratio(n_buyers, visitors),
                "revenue": rev,
                "revenue_per_visitor": _ratio(rev, visitors),
                "attraction": _ratio(visitors, seen.get(g, 0)),
            })
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# store KPIs


def store_kpis(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
               by: By | None = None) -> list[dict[str, Any]]:
    """Store KPIs (SPEC section 3) for ``[start, end)``.

    Without ``by``: a one-element list whose row has exactly :data:`STORE_KEYS`. With ``by``: one row
    per label, starting with the label. ``footfall`` and ``conversion`` are null per tier.
    """
    info = store_info(conn, store)
    period = Period(start, end)
    p = {"sid": info.store_id, "start": period.start, "end": period.end, "tz": info.timezone}
    foot: dict[Any, int] = {}
    trans: dict[Any, int] = {}
    trip_med: dict[Any, float | None] = {}
    seen: dict[Any, int] = {}
    with _report_scan(conn):
        _store_queries(conn, by, p, foot, trans, trip_med, seen)
    groups = _all_groups(by, period, info.tz, [*seen, *trans, *trip_med])
    rows: list[dict[str, Any]] = []
    for g in groups:
        footfall = None if by == "tier" else foot.get(g, 0)
        n_trans = trans.get(g, 0)
        row: dict[str, Any] = {} if by is None else {by: _label(by, g)}
        row.update({
            "footfall": footfall,
            "tags_seen": seen.get(g, 0),
            "transactions": n_trans,
            "conversion": None if footfall is None else _ratio(n_trans, footfall),
            "trip_median_s": trip_med.get(g),
        })
        rows.append(row)
    return rows


def _store_queries(conn: psycopg.Connection, by: By | None, p: dict[str, Any], foot: dict[Any, int],
                   trans: dict[Any, int], trip_med: dict[Any, float | None], seen: dict[Any, int]) -> None:
    if by != "tier":
        gd = _group_expr(by, "d.ts", "")
        foot.update({g: int(n) for g, n in conn.execute(  # type: ignore[call-overload]
            f"SELECT {gd} AS g, sum(d.entries) FROM door_counts d "
            "WHERE d.store_id = %(sid)s AND d.ts >= %(start)s AND d.ts < %(end)s GROUP BY 1", p)})
    gp = _group_expr(by, "p.ts", _TIER_PURCHASE)
    trans.update({g: int(n) for g, n in conn.execute(  # type: ignore[call-overload]
        f"SELECT {gp} AS g, count(DISTINCT p.receipt) FROM purchases p "
        f"{'LEFT JOIN members m ON m.member = p.member' if by == 'tier' else ''} "
        "WHERE p.store_id = %(sid)s AND p.ts >= %(start)s AND p.ts < %(end)s GROUP BY " + _group_key(by, _TIER_PURCHASE), p)})
    gt = _group_expr(by, "tr.start_ts", _TIER_TAG)
    trip_med.update({g: _f(x) for g, x in conn.execute(  # type: ignore[call-overload]
        f"SELECT {gt} AS g, percentile_cont(0.5) WITHIN GROUP "
        "(ORDER BY extract(epoch FROM tr.end_ts - tr.start_ts)::float8) "
        f"FROM trips tr {_tags_join(by, 'tr')} "
        "WHERE tr.store_id = %(sid)s AND tr.start_ts >= %(start)s AND tr.start_ts < %(end)s AND tr.customer "
        "GROUP BY " + _group_key(by, _TIER_TAG), p)})
    seen.update({g: _n_distinct(tags) for g, tags in fetch_arrays(conn, _seen_sql(by), p)})


# ------------------------------------------------------------------------------------------------
# comparison


def compare_rows(current: Sequence[dict[str, Any]], previous: Sequence[dict[str, Any]],
                 keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Join two report row lists on ``keys``; per metric ``m`` add ``m_prev`` and ``m_delta``
    (current - previous, null when either is null). Rows only in ``previous`` are dropped."""
    prev = {tuple(r[k] for k in keys): r for r in previous}
    out = []
    for r in current:
        old = prev.get(tuple(r[k] for k in keys), {})
        row = {k: r[k] for k in keys}
        for m in metrics:
            cur_v, old_v = r.get(m), old.get(m)
            row[m] = cur_v
            row[f"{m}_prev"] = old_v
            row[f"{m}_delta"] = None if cur_v is None or old_v is None else cur_v - old_v
        out.append(row)
    return out


def _check_compare_by(by: By | None) -> None:
    if by == "day":
        raise BadInput("--compare cannot be combined with --by day (the days differ); use --by hour or tier")


def counter_kpis_compare(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
                         mode: Compare, by: By | None = None) -> list[dict[str, Any]]:
    """Counter KPIs with ``<key>_prev`` and ``<key>_delta`` for the comparison period (see
    :func:`comparison_period`); optionally broken down by ``tier`` or ``hour``."""
    _check_compare_by(by)
    info = store_info(conn, store)
    other = comparison_period(start, end, mode, info.tz)
    cur = counter_kpis(conn, store, start, end, by)
    old = counter_kpis(conn, store, other.start, other.end, by)
    keys = ("zone",) if by is None else (by, "zone")
    return compare_rows(cur, old, keys, COUNTER_METRICS)


def store_kpis_compare(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
                       mode: Compare, by: By | None = None) -> list[dict[str, Any]]:
    """Store KPIs with ``<key>_prev`` and ``<key>_delta`` for the comparison period."""
    _check_compare_by(by)
    info = store_info(conn, store)
    other = comparison_period(start, end, mode, info.tz)
    cur = store_kpis(conn, store, start, end, by)
    old = store_kpis(conn, store, other.start, other.end, by)
    return compare_rows(cur, old, () if by is None else (by,), STORE_KEYS)


# ------------------------------------------------------------------------------------------------
# ranking and the 80/20 view


def rank_counters(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rank counter rows (from :func:`counter_kpis`) for merchandising.

    A counter *attracts* when its attraction is above zero and at least the median attraction of the
    store's counters; it *converts* when its conversion is above zero and at least the median
    conversion of the counters that had visitors. ``rank`` 1 = highest revenue per visitor (counters
    without visitors last, then by conversion and attraction). ``label`` says the quadrant in words.
    """
    attr = [r["attraction"] or 0.0 for r in rows]
    conv = [r["conversion"] for r in rows if r["conversion"] is not None]
    attr_med = float(np.median(attr)) if attr else 0.0
    conv_med = float(np.median(conv)) if conv else 0.0
    out = []
    for r in rows:
        a = r["attraction"] or 0.0
        c = r["conversion"]
        attracts = a > 0 and a >= attr_med
        converts = c is not None and c > 0 and c >= conv_med
        out.append({
            "zone": r["zone"], "visitors": r["visitors"], "attraction": r["attraction"],
            "conversion": r["conversion"], "revenue": r["revenue"],
            "revenue_per_visitor": r["revenue_per_visitor"],
            "attracts": attracts, "converts": converts, "label": QUADRANT_LABELS[(attracts, converts)],
        })
    out.sort(key=lambda r: (r["revenue_per_visitor"] is None, -(r["revenue_per_visitor"] or 0.0),
                            -(r["conversion"] or 0.0), -(r["attraction"] or 0.0), r["zone"]))
    for i, r in enumerate(out, 1):
        r["rank"] = i
    return out


def counter_ranking(conn: psycopg.Connection, store: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Counters ranked by revenue per visitor with their attraction/conversion quadrant label
    (see :func:`rank_counters`)."""
    return rank_counters(counter_kpis(conn, store, start, end))


def revenue_concentration(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
                          top_fraction: float = 0.2) -> dict[str, Any]:
    """The 80/20 view: of the members who made at least one counter visit in the period, the share of
    their in-store revenue (purchases in the period, all counters) that the top ``top_fraction`` of
    them (by revenue, rounded up) brought. ``top_share`` is null when they spent nothing."""
    if not 0 < top_fraction <= 1:
        raise BadInput(f"top fraction {top_fraction} is not in (0, 1]")
    info = store_info(conn, store)
    period = Period(start, end)
    p = {"sid": info.store_id, "start": period.start, "end": period.end}
    with _report_scan(conn):
        rows = conn.execute("""
            WITH visitors AS (
                SELECT DISTINCT t.member FROM visits v JOIN tags t ON t.tag_id = v.tag_id
                WHERE v.store_id = %(sid)s AND v.start_ts >= %(start)s AND v.start_ts < %(end)s
                  AND NOT v.passby AND v.customer AND t.member IS NOT NULL)
            SELECT coalesce(sum(p.amount), 0) FROM visitors vi
            LEFT JOIN purchases p ON p.member = vi.member AND p.store_id = %(sid)s
                                 AND p.ts >= %(start)s AND p.ts < %(end)s
            GROUP BY vi.member""", p).fetchall()
    spend = [_money(a) for (a,) in rows]
    spend.sort(reverse=True)
    n_top = math.ceil(len(spend) * top_fraction - 1e-9)
    total = round(sum(spend), 2)
    top = round(sum(spend[:n_top]), 2)
    return {
        "members_visited": len(spend),
        "top_fraction": top_fraction,
        "top_members": n_top,
        "revenue_members": total,
        "revenue_top": top,
        "top_share": _ratio(top, total),
    }


# ------------------------------------------------------------------------------------------------
# visits and paths


def visit_rows(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Customer counter visits (not pass-bys) starting in ``[start, end)``, ordered by start:
    ``epc, member, zone, start, end, dwell_s`` (times as UTC datetimes, dwell in seconds).
    Member-level data: only for roles allowed to see it."""
    info = store_info(conn, store)
    period = Period(start, end)
    sql = """
        SELECT t.epc, t.member, z.zone, v.start_ts, v.end_ts, v.dwell_s::float8
        FROM visits v JOIN tags t ON t.tag_id = v.tag_id JOIN zones z ON z.zone_id = v.zone_id
        WHERE v.store_id = %(sid)s AND v.start_ts >= %(start)s AND v.start_ts < %(end)s
          AND NOT v.passby AND v.customer
        ORDER BY v.start_ts, t.epc, z.zone""" + (" LIMIT %(limit)s" if limit is not None else "")
    p = {"sid": info.store_id, "start": period.start, "end": period.end, "limit": limit}
    return [
        {"epc": epc, "member": member, "zone": zone, "start": s.astimezone(timezone.utc),
         "end": e.astimezone(timezone.utc), "dwell_s": float(d)}
        for epc, member, zone, s, e, d in conn.execute(sql, p, prepare=False)  # type: ignore[call-overload]
    ]


def top_paths(conn: psycopg.Connection, store: str, start: datetime, end: datetime,
              top: int | None = 20) -> list[dict[str, Any]]:
    """The most frequent paths (ordered counter visits of a trip, SPEC section 3) of customer trips
    starting in ``[start, end)``: ``[{"path": [...], "trips": n}]``, most frequent first (ties by
    path). Trips without a counter visit are left out. ``top`` None = all."""
    if top is not None and top < 1:
        raise BadInput(f"--top {top} must be at least 1")
    info = store_info(conn, store)
    period = Period(start, end)
    sql = """
        SELECT tr.path, count(*) FROM trips tr
        WHERE tr.store_id = %(sid)s AND tr.start_ts >= %(start)s AND tr.start_ts < %(end)s
          AND tr.customer AND cardinality(tr.path) > 0
        GROUP BY tr.path ORDER BY 2 DESC, 1""" + (" LIMIT %(top)s" if top is not None else "")
    p = {"sid": info.store_id, "start": period.start, "end": period.end, "top": top}
    with _report_scan(conn):
        rows = conn.execute(sql, p).fetchall()  # type: ignore[call-overload]
    return [{"path": list(path), "trips": int(n)} for path, n in rows]


# ------------------------------------------------------------------------------------------------
# heatmap


@dataclass(frozen=True)
class HeatmapGrid:
    """Customer tag-seconds per cell of one floor. ``seconds[iy, ix]`` covers x_m in
    ``[ix*cell_m, (ix+1)*cell_m)`` and y_m likewise (origin bottom-left, metres)."""

    store: str
    floor: int
    cell_m: float
    width_m: float
    depth_m: float
    start: datetime
    end: datetime
    seconds: np.ndarray = field(repr=False)
    plan_image: bytes | None = field(default=None, repr=False)   # the floor plan (layout ``plan:``), if any
    plan_media_type: str | None = None                           # e.g. image/png

    def rows(self) -> list[dict[str, float]]:
        """Every cell as ``{"x_m", "y_m", "seconds"}`` with the cell centre, row by row from y = 0."""
        ny, nx = self.seconds.shape
        xs = (np.arange(nx) + 0.5) * self.cell_m
        ys = (np.arange(ny) + 0.5) * self.cell_m
        return [{"x_m": round(float(xs[ix]), 6), "y_m": round(float(ys[iy]), 6),
                 "seconds": float(self.seconds[iy, ix])} for iy in range(ny) for ix in range(nx)]


def heatmap(conn: psycopg.Connection, store: str, floor: int, start: datetime, end: datetime,
            cell_m: float | None = None) -> HeatmapGrid:
    """Sum the hourly heatmap cells of one floor whose hour starts in ``[start, end)``.

    ``cell_m`` (metres) must be a whole multiple of the stored cell size; default = the stored size
    (or the store's ``cell_m`` parameter when the period has no data).
    """
    info = store_info(conn, store)
    period = Period(start, end)
    if floor not in info.floors:
        raise BadInput(f"store {store!r} has no floor {floor} (floors: {sorted(info.floors)})")
    width_m, depth_m = info.floors[floor]
    with _report_scan(conn):
        data = conn.execute(
            "SELECT cell_m::float8, ix, iy, sum(seconds)::float8 FROM heatmap_cells "
            "WHERE store_id = %s AND floor = %s AND bucket >= %s AND bucket < %s GROUP BY 1, 2, 3",
            (info.store_id, floor, period.start, period.end)).fetchall()
    stored = sorted({float(c) for c, *_ in data}) or [info.params["cell_m"]]
    cell = float(cell_m) if cell_m is not None else max(stored)
    if not cell > 0:
        raise BadInput(f"--cell {cell_m} must be positive (metres)")
    for base in stored:
        k = cell / base
        if abs(k - round(k)) > 1e-6 or round(k) < 1:
            raise BadInput(f"--cell {cell:g} is not a whole multiple of the stored cell size {base:g} m")
    nx, ny = max(1, math.ceil(width_m / cell - 1e-9)), max(1, math.ceil(depth_m / cell - 1e-9))
    grid = np.zeros((ny, nx), dtype=np.float64)
    if data:
        arr = np.array(data, dtype=np.float64)
        k = np.rint(cell / arr[:, 0]).astype(np.int64)
        jx = np.floor_divide(arr[:, 1].astype(np.int64), k)
        jy = np.floor_divide(arr[:, 2].astype(np.int64), k)
        keep = (jx >= 0) & (jy >= 0)  # negative indices cannot be on the floor
        jx, jy, sec = jx[keep], jy[keep], arr[keep, 3]
        if len(jx):
            nx, ny = max(nx, int(jx.max()) + 1), max(ny, int(jy.max()) + 1)
            grid = np.zeros((ny, nx), dtype=np.float64)
            np.add.at(grid, (jy, jx), sec)
    plan: tuple[Any, ...] | None = None
    has_plan = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'floors' AND column_name = 'plan_image'").fetchone()
    if has_plan:
        plan = conn.execute("SELECT plan_image, plan_media_type FROM floors WHERE store_id = %s AND floor = %s",
                            (info.store_id, floor)).fetchone()
    image, media = (bytes(plan[0]), plan[1]) if plan and plan[0] is not None else (None, None)
    return HeatmapGrid(store, floor, cell, width_m, depth_m, period.start, period.end, grid, image, media)


# ------------------------------------------------------------------------------------------------
# member journey


def member_journey(conn: psycopg.Connection, store: str, member: str, start: datetime,
                   end: datetime) -> dict[str, Any]:
    """One member's trips starting in ``[start, end)``: path, counter visits with dwell, and the
    purchases attributed to each trip (``ts`` within [trip start, trip end + purchase window]);
    purchases in the period outside any trip are listed apart. No EPCs are returned.

    Member-level personal data: only for roles allowed to see it, never logged.
    Raises :class:`MemberNotFound` when the member id is unknown.
    """
    info = store_info(conn, store)
    period = Period(start, end)
    row = conn.execute(
        "SELECT (SELECT tier FROM members WHERE member = %(m)s), "
        "EXISTS (SELECT 1 FROM members WHERE member = %(m)s) OR EXISTS (SELECT 1 FROM tags WHERE member = %(m)s)",
        {"m": member}).fetchone()
    if row is None or not row[1]:
        raise MemberNotFound(f"member {member!r} not found")
    window = timedelta(seconds=info.params["purchase_window_s"])
    p = {"sid": info.store_id, "m": member, "start": period.start, "end": period.end}
    trips = conn.execute(
        "SELECT tr.tag_id, tr.start_ts, tr.end_ts, tr.path FROM trips tr JOIN tags t ON t.tag_id = tr.tag_id "
        "WHERE tr.store_id = %(sid)s AND t.member = %(m)s AND tr.start_ts >= %(start)s AND tr.start_ts < %(end)s "
        "ORDER BY tr.start_ts", p).fetchall()
    first_start = min([s for _, s, _, _ in trips], default=period.start)
    last_end = max([e for _, _, e, _ in trips], default=period.end)
    visits = conn.execute(
        "SELECT v.tag_id, z.zone, v.start_ts, v.end_ts, v.dwell_s::float8 FROM visits v "
        "JOIN tags t ON t.tag_id = v.tag_id JOIN zones z ON z.zone_id = v.zone_id "
        "WHERE v.store_id = %(sid)s AND t.member = %(m)s AND NOT v.passby "
        "AND v.start_ts >= %(first)s AND v.start_ts <= %(last)s ORDER BY v.start_ts",
        {**p, "first": first_start, "last": last_end}).fetchall() if trips else []
    purchases = conn.execute(
        "SELECT p.ts, z.zone, p.amount, p.receipt FROM purchases p JOIN zones z ON z.zone_id = p.zone_id "
        "WHERE p.store_id = %(sid)s AND p.member = %(m)s AND p.ts >= %(start)s AND p.ts <= %(upto)s "
        "ORDER BY p.ts", {**p, "upto": max(last_end + window, period.end)}).fetchall()
    used: set[int] = set()
    out_trips = []
    for tag_id, t0, t1, path in trips:
        tv = [{"zone": z, "start": s.astimezone(timezone.utc), "end": e.astimezone(timezone.utc), "dwell_s": d}
              for tid, z, s, e, d in visits if tid == tag_id and t0 <= s <= t1]
        tp = []
        for i, (ts, zone, amount, receipt) in enumerate(purchases):
            if i not in used and t0 <= ts <= t1 + window:
                used.add(i)
                tp.append({"ts": ts.astimezone(timezone.utc), "zone": zone, "amount": _money(amount),
                           "receipt": receipt})
        out_trips.append({
            "start": t0.astimezone(timezone.utc), "end": t1.astimezone(timezone.utc),
            "duration_s": (t1 - t0).total_seconds(), "path": list(path),
            "dwell_total_s": float(sum(v["dwell_s"] for v in tv)),
            "visits": tv, "purchases": tp,
            "spend": round(sum(x["amount"] for x in tp), 2),
        })
    other = [{"ts": ts.astimezone(timezone.utc), "zone": zone, "amount": _money(amount), "receipt": receipt}
             for i, (ts, zone, amount, receipt) in enumerate(purchases)
             if i not in used and ts < period.end]
    return {"member": member, "tier": row[0], "store": info.store, "from": period.start.astimezone(timezone.utc),
            "to": period.end.astimezone(timezone.utc), "trips": out_trips, "purchases_outside_trips": other}
