"""Visit rollups (analytics.rollups): reports read from them give exactly what they give from the
visits table, on random data, for any period and breakdown; and both agree with plain SQL aggregates
written straight from SPEC section 3."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from analytics import reports as R
from analytics.rollups import covered_days, load_visit_columns, local_day_hour, rebuild_visit_rollups
from storeflow.layout import parse_layout
from storeflow.store import upsert_layout

pytestmark = pytest.mark.db
STORE = "rollup-store"
TZ = ZoneInfo("Europe/Berlin")  # summer time ends on 2026-10-25: that local day has 25 hours
FIRST = datetime(2026, 10, 22, tzinfo=TZ)
DAYS = 6
WINDOW_S = 1234  # not the default, so that the store parameter must be used


def _layout(n_counters: int = 5) -> dict[str, Any]:
    zones = [{"zone": f"C{i + 1:02d}", "kind": "counter", "floor": 1, "name": f"Counter {i + 1}",
              "polygon": [[1 + 5 * i, 1], [5 + 5 * i, 1], [5 + 5 * i, 5], [1 + 5 * i, 5]]}
             for i in range(n_counters)]
    return {"store": STORE, "name": "Rollup store", "timezone": TZ.key,
            "floors": [{"floor": 1, "width_m": 40.0, "depth_m": 10.0}], "zones": zones,
            "doors": [{"door": "D1", "floor": 1, "x": 20.0, "y": 0.0}]}


def _populate(db: psycopg.Connection, seed: int) -> int:
    """Random customer and staff visits (incl. pass-bys, ties, visits around midnight), trips and
    purchases, some exactly at the trip window's edges."""
    rng = np.random.default_rng(seed)
    sid = upsert_layout(db, parse_layout(_layout()))
    zone_ids = [z for (z,) in db.execute("SELECT zone_id FROM zones WHERE store_id = %s ORDER BY zone",
                                         (sid,))]
    tiers = ["regular", "gold", "vip"]
    n_tags = 60
    with db.transaction():
        for i in range(40):
            if i % 10 != 9:  # M9, M19, ... are not in the members table: tier "unknown"
                db.execute("INSERT INTO members (member, tier) VALUES (%s, %s)", (f"M{i}", tiers[i % 3]))
        tag_ids = []
        for i in range(n_tags):
            member = f"M{i % 40}" if i < 50 else None        # two tags share a member now and then
            kind = "staff" if i >= 57 else ("member" if member else None)
            tag_ids.append(db.execute(
                "INSERT INTO tags (epc, member, kind) VALUES (%s, %s, %s) RETURNING tag_id",
                (f"E2{i:022X}", member, kind)).fetchone()[0])
        visits, trips, purchases = [], [], []
        for _ in range(400):
            i = int(rng.integers(0, n_tags))
            # trips start any time of day (some cross midnight and the summer-time change)
            t = FIRST + timedelta(seconds=float(rng.uniform(-3600, DAYS * 86400)))
            t = t.replace(microsecond=int(rng.integers(0, 1_000_000)))
            trip_start = t
            rows = []
            for _ in range(int(rng.integers(1, 6))):
                tie = rng.random() < 0.2  # equal dwell times, and exactly min_dwell_s
                dwell = float(rng.choice([4.0, 10.0, 30.5])) if tie else float(rng.exponential(200))
                t = t + timedelta(seconds=float(rng.uniform(0, 300)))
                rows.append((zone_ids[int(rng.integers(0, len(zone_ids)))], t, dwell))
                t = t + timedelta(seconds=dwell)
            trip_end = t + timedelta(seconds=30)
            customer = i < 57
            trips.append((sid, tag_ids[i], trip_start, trip_end, 10, [], customer))
            for zone, vs, dwell in rows:
                visits.append((sid, tag_ids[i], zone, vs, vs + timedelta(seconds=dwell), dwell, dwell < 10,
                               customer, trip_start, trip_end))
                if i < 50 and rng.random() < 0.3:
                    edge = rng.integers(0, 4)
                    ts = [trip_start, trip_end + timedelta(seconds=WINDOW_S),
                          trip_end + timedelta(seconds=WINDOW_S, microseconds=1),
                          trip_start - timedelta(microseconds=1)][edge] if rng.random() < 0.5 else \
                        vs + timedelta(seconds=float(rng.uniform(0, 3000)))
                    purchases.append((sid, ts, f"M{i % 40}", zone, round(float(rng.uniform(1, 500)), 2),
                                      f"R{len(purchases)}"))
        purchases.append((sid, FIRST + timedelta(hours=12), None, zone_ids[0], 99.0, "R-anon"))
        with db.cursor() as cur:
            with cur.copy("COPY trips (store_id, tag_id, start_ts, end_ts, n_reads, path, customer) "
                          "FROM STDIN") as cp:
                for r in trips:
                    cp.write_row(r)
            with cur.copy("COPY visits (store_id, tag_id, zone_id, start_ts, end_ts, dwell_s, passby, "
                          "customer, trip_start, trip_end) FROM STDIN") as cp:
                for r in visits:
                    cp.write_row(r)
            with cur.copy("COPY purchases (store_id, ts, member, zone_id, amount, receipt) FROM STDIN") as cp:
                for r in purchases:
                    cp.write_row(r)
    db.commit()
    return sid


PERIODS = [
    (FIRST, FIRST + timedelta(days=DAYS)),                                          # whole local days
    (FIRST + timedelta(hours=7, minutes=13), FIRST + timedelta(days=4, hours=2)),   # cut days
    (datetime(2026, 10, 25, tzinfo=TZ), datetime(2026, 10, 26, tzinfo=TZ)),         # the 25-hour day
    (FIRST - timedelta(days=3), FIRST - timedelta(days=2)),                         # no data
]


def _all_reports(db: psycopg.Connection) -> list[Any]:
    out: list[Any] = []
    for start, end in PERIODS:
        for by in (None, "hour", "day", "tier"):
            out.append(R.counter_kpis(db, STORE, start, end, by))
    out.append(R.counter_kpis_compare(db, STORE, *PERIODS[1], "previous", "tier"))
    return out


def _reference(db: psycopg.Connection, sid: int, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """The counter KPIs by plain SQL aggregates over the visits table (SPEC section 3)."""
    p = {"sid": sid, "start": start, "end": end, "w": WINDOW_S}
    rows = db.execute("""
        SELECT z.zone, count(DISTINCT v.tag_id) FILTER (WHERE NOT v.passby),
               count(*) FILTER (WHERE NOT v.passby), count(*) FILTER (WHERE v.passby),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY v.dwell_s) FILTER (WHERE NOT v.passby),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY v.dwell_s) FILTER (WHERE NOT v.passby),
               sum(v.dwell_s::float8) FILTER (WHERE NOT v.passby),
               (SELECT count(DISTINCT b.tag_id) FROM visits b JOIN tags t ON t.tag_id = b.tag_id
                JOIN purchases pu ON pu.member = t.member AND pu.zone_id = b.zone_id
                                 AND pu.store_id = b.store_id
                 AND pu.ts >= b.trip_start AND pu.ts <= b.trip_end + %(w)s * interval '1 second'
                WHERE b.store_id = %(sid)s AND b.zone_id = z.zone_id AND b.start_ts >= %(start)s
                  AND b.start_ts < %(end)s AND b.customer AND NOT b.passby)
        FROM zones z LEFT JOIN visits v ON v.zone_id = z.zone_id AND v.start_ts >= %(start)s
                                        AND v.start_ts < %(end)s AND v.customer
        WHERE z.store_id = %(sid)s AND z.kind = 'counter' GROUP BY z.zone_id, z.zone""", p).fetchall()
    keys = ("visitors", "visits", "passbys", "dwell_median_s", "dwell_p90_s", "dwell_total_s", "buyers")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


@pytest.mark.parametrize("seed", [1, 2])
def test_reports_from_rollups_equal_reports_from_visits(db: psycopg.Connection, seed: int) -> None:
    sid = _populate(db, seed)
    db.execute("UPDATE stores SET settings = settings || %s::jsonb WHERE store_id = %s",
               (f'{{"purchase_window_s": {WINDOW_S}}}', sid))
    db.commit()
    raw = _all_reports(db)                   # no rollups yet: everything from the visits table
    assert covered_days(db, sid, TZ.key, FIRST - timedelta(days=9), FIRST + timedelta(days=9)) == []
    # the raw path agrees with plain SQL aggregates
    for start, end in PERIODS[:3]:
        ref = _reference(db, sid, start, end)
        for row in R.counter_kpis(db, STORE, start, end):
            exp = ref[row["zone"]]
            for k in ("visitors", "visits", "passbys", "buyers"):
                assert row[k] == exp[k], (row["zone"], k)
            for k in ("dwell_median_s", "dwell_p90_s"):
                assert (row[k] is None) == (exp[k] is None), (row["zone"], k)
            for k in ("dwell_median_s", "dwell_p90_s", "dwell_total_s"):
                assert (row[k] or 0.0) == pytest.approx(exp[k] or 0.0, abs=1e-3), (row["zone"], k)
        assert sum(r["buyers"] for r in R.counter_kpis(db, STORE, *PERIODS[0])) > 0
    # some days rolled up: mixed reads give the same
    with db.transaction():
        assert rebuild_visit_rollups(db, sid, FIRST + timedelta(days=1), FIRST + timedelta(days=3)) == 2
    assert _all_reports(db) == raw
    # every day rolled up (the days around too): the same again, and the rollups hold all the visits
    with db.transaction():
        rebuild_visit_rollups(db, sid, FIRST - timedelta(days=2), FIRST + timedelta(days=DAYS + 2))
    assert _all_reports(db) == raw
    start, end = FIRST - timedelta(days=1), FIRST + timedelta(days=DAYS + 1)
    a = load_visit_columns(db, sid, TZ.key, start, end)
    b = load_visit_columns(db, sid, TZ.key, start, end, use_rollups=False)
    assert a.from_rollups == DAYS + 2 and b.from_rollups == 0
    n_visits = db.execute("SELECT count(*) FROM visits WHERE customer").fetchone()[0]  # type: ignore[index]
    assert len(a) == len(b) == n_visits
    key = lambda c: np.lexsort((c.zone_id, c.tag_id, c.start_us))  # noqa: E731
    for name in ("zone_id", "day", "hour", "start_us", "tag_id", "dwell_s", "trip_start_us", "trip_end_us",
                 "passby"):
        assert np.array_equal(getattr(a, name)[key(a)], getattr(b, name)[key(b)]), name
    # the local day and hour of each visit are the store's (25-hour day included)
    day = np.array([datetime.fromtimestamp(u / 1e6, TZ).date().toordinal() for u in b.start_us.tolist()])
    hour = np.array([datetime.fromtimestamp(u / 1e6, TZ).hour for u in b.start_us.tolist()])
    assert np.array_equal(b.day, day) and np.array_equal(b.hour, hour)
    # a store whose time zone changed is not covered by rollups built in the old zone
    db.execute("UPDATE stores SET timezone = 'Asia/Shanghai' WHERE store_id = %s", (sid,))
    assert covered_days(db, sid, "Asia/Shanghai", start, end) == []
    shanghai_days = R.counter_kpis(db, STORE, *PERIODS[0], by="day")
    db.execute("DELETE FROM visit_rollup_days")
    assert R.counter_kpis(db, STORE, *PERIODS[0], by="day") == shanghai_days


def test_rebuild_replaces_whole_local_days(db: psycopg.Connection) -> None:
    sid = _populate(db, 3)
    with db.transaction():
        assert rebuild_visit_rollups(db, sid, FIRST, FIRST + timedelta(days=DAYS)) == DAYS
    before = R.counter_kpis(db, STORE, *PERIODS[0])
    # new visits in a covered day are seen once that day is rebuilt (as the analyze job does)
    with db.transaction():
        db.execute("DELETE FROM visits WHERE start_ts >= %s AND start_ts < %s",
                   (FIRST + timedelta(days=2, hours=12), FIRST + timedelta(days=2, hours=13)))
        assert rebuild_visit_rollups(db, sid, FIRST + timedelta(days=2, hours=12),
                                     FIRST + timedelta(days=2, hours=13)) == 1
    after = R.counter_kpis(db, STORE, *PERIODS[0])
    raw_days = db.execute("SELECT count(*) FROM visit_rollup_days WHERE store_id = %s", (sid,)).fetchone()
    assert raw_days == (DAYS,)
    visits = db.execute("SELECT count(*) FROM visits WHERE customer AND start_ts >= %s AND start_ts < %s",
                        PERIODS[0]).fetchone()[0]  # type: ignore[index]
    assert sum(r["visits"] + r["passbys"] for r in after) == visits
    assert sum(r["visits"] + r["passbys"] for r in after) < sum(r["visits"] + r["passbys"] for r in before)
    assert date(2026, 10, 24) in [d for d, _, _ in covered_days(db, sid, TZ.key, *PERIODS[0])]


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe", "Asia/Kathmandu",
                                "Asia/Shanghai"])
def test_local_day_hour_matches_postgresql(db: psycopg.Connection, tz: str) -> None:
    # instants all through 2026 and every minute around its offset changes (St John's changes at
    # 02:00 local = 05:30 UTC, Lord Howe by half an hour)
    rng = np.random.default_rng(7)
    lo = int(datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()) * 1_000_000
    us = [rng.integers(lo, lo + 366 * 86_400_000_000, 3000)]
    zone = ZoneInfo(tz)
    prev = None
    for h in range(0, 366 * 24):
        t = datetime.fromtimestamp(lo / 1e6 + h * 3600, zone).utcoffset()
        if prev is not None and t != prev:
            minutes = np.arange(-60, 180) * 60_000_000 + rng.integers(0, 60_000_000)
            us.append(lo + (h - 1) * 3_600_000_000 + minutes)
        prev = t
    instants = np.concatenate(us)
    day, hour = local_day_hour(instants, tz)
    got = db.execute("SELECT ((to_timestamp(u / 1e6) AT TIME ZONE %(tz)s)::date - date '0001-01-01' + 1), "
                     "extract(hour FROM to_timestamp(u / 1e6) AT TIME ZONE %(tz)s)::int "
                     "FROM unnest(%(us)s::int8[]) u", {"tz": tz, "us": instants.tolist()}).fetchall()
    assert len(us) > 1 or tz in ("Asia/Kathmandu", "Asia/Shanghai")
    assert day.tolist() == [d for d, _ in got] and hour.tolist() == [h for _, h in got]
