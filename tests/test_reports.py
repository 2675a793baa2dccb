"""Report query layer (analytics.reports) against a hand-written fixture (tests/data/report_fixture.json).

Every expected value below is worked out by hand from the fixture; the working is in the comments.
The fixture day is 2026-11-20 in Asia/Shanghai (+08:00). Customer tags seen that day (trips overlapping
it, staff excluded): T1, T2 (trip G starts the evening before), T3, T5, T7 = 5.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analytics import reports as R
from analytics.rollups import fetch_arrays
from storeflow.contract import BadInput
from storeflow.layout import load_layout
from storeflow.store import upsert_layout

FIXTURE = Path(__file__).parent / "data" / "report_fixture.json"
STORE = "mini-store"
DAY = (datetime.fromisoformat("2026-11-20T00:00:00+08:00"), datetime.fromisoformat("2026-11-21T00:00:00+08:00"))
TWO_DAYS = (DAY[0], DAY[1] + timedelta(days=1))
EMPTY = (datetime.fromisoformat("2026-11-10T00:00:00+08:00"), datetime.fromisoformat("2026-11-11T00:00:00+08:00"))


def load_report_fixture(conn: psycopg.Connection, layout_path: Path) -> None:
    """Create the mini store and insert the fixture rows (visits, trips, purchases, doors, heatmap)."""
    sid = upsert_layout(conn, load_layout(layout_path))
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    ts = datetime.fromisoformat
    with conn.transaction():
        for m in data["members"]:
            conn.execute("INSERT INTO members (member, tier) VALUES (%s, %s)", (m["member"], m["tier"]))
        tag_ids = {}
        for t in data["tags"]:
            row = conn.execute("INSERT INTO tags (epc, member, kind) VALUES (%s, %s, %s) RETURNING tag_id",
                               (t["epc"], t["member"], t["kind"])).fetchone()
            assert row is not None
            tag_ids[t["epc"]] = row[0]
        zone_ids = dict(conn.execute("SELECT zone, zone_id FROM zones WHERE store_id = %s", (sid,)).fetchall())
        door_ids = dict(conn.execute("SELECT door, door_id FROM doors WHERE store_id = %s", (sid,)).fetchall())
        kinds = {t["epc"]: t["kind"] for t in data["tags"]}
        for tr in data["trips"].values():
            conn.execute(
                "INSERT INTO trips (store_id, tag_id, start_ts, end_ts, n_reads, path, customer) "
                "VALUES (%s, %s, %s, %s, 10, %s, %s)",
                (sid, tag_ids[tr["epc"]], ts(tr["start"]), ts(tr["end"]), tr["path"],
                 kinds[tr["epc"]] in (None, "member")))
        for v in data["visits"]:
            tr = data["trips"][v["trip"]]
            start = ts(v["start"])
            conn.execute(
                "INSERT INTO visits (store_id, tag_id, zone_id, start_ts, end_ts, dwell_s, passby, customer, "
                "trip_start, trip_end) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (sid, tag_ids[tr["epc"]], zone_ids[v["zone"]], start, start + timedelta(seconds=v["dwell_s"]),
                 v["dwell_s"], v["dwell_s"] < 10, kinds[tr["epc"]] in (None, "member"),
                 ts(tr["start"]), ts(tr["end"])))
        for p in data["purchases"]:
            conn.execute(
                "INSERT INTO purchases (store_id, ts, member, zone_id, amount, receipt) VALUES (%s, %s, %s, %s, %s, %s)",
                (sid, ts(p["ts"]), p["member"], zone_ids[p["zone"]], p["amount"], p["receipt"]))
        for d in data["door_counts"]:
            conn.execute("INSERT INTO door_counts (ts, store_id, door_id, entries, exits) VALUES (%s, %s, %s, %s, %s)",
                         (ts(d["ts"]), sid, door_ids[d["door"]], d["entries"], d["exits"]))
        for c in data["heatmap_cells"]:
            conn.execute(
                "INSERT INTO heatmap_cells (store_id, floor, bucket, cell_m, ix, iy, seconds) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (sid, c["floor"], ts(c["bucket"]), c["cell_m"], c["ix"], c["iy"], c["seconds"]))
    conn.commit()


@pytest.fixture
def rdb(db: psycopg.Connection, mini_layout_path: Path) -> psycopg.Connection:
    load_report_fixture(db, mini_layout_path)
    return db


def by_zone(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["zone"]: r for r in rows}


# --- counters --------------------------------------------------------------------------------------


def test_counter_kpis_by_hand(rdb: psycopg.Connection) -> None:
    rows = R.counter_kpis(rdb, STORE, *DAY)
    assert [r["zone"] for r in rows] == ["C01", "C02", "C03"]
    assert all(tuple(r) == R.COUNTER_KEYS for r in rows)
    c = by_zone(rows)
    # C01: visits T1 600, T1 150, T2 1200, T3 480 (staff T4 3600 excluded); pass-bys T2 5 s, T5 6 s.
    # sorted 150 480 600 1200: median (480+600)/2 = 540; p90 at 0.9*3 = 2.7 -> 600 + 0.7*600 = 1020.
    # buyers: T1 (R1 at C01 10:45, trip A 10:00-10:40 + 30 min), T2 (12:00 = trip B end 11:30 + 30 min
    # exactly); T3 anonymous. revenue: 20 + 200 + 300 (M4 did not visit) + 40 (non-member) = 560.
    assert c["C01"] == pytest.approx({
        "zone": "C01", "visitors": 3, "visits": 4, "passbys": 2, "dwell_median_s": 540.0,
        "dwell_p90_s": 1020.0, "dwell_total_s": 2430.0, "buyers": 2, "conversion": 2 / 3,
        "revenue": 560.0, "revenue_per_visitor": 560 / 3, "attraction": 3 / 5})
    # C02: T1 900, T3 300, T7 600, T5 300, T2 600 (trip G, started the evening before).
    # sorted 300 300 600 600 900: median 600; p90 at 3.6 -> 600 + 0.6*300 = 780.
    # buyers: only T1 (R1 10:50); T7's purchase is 30 min + 1 s after trip D: not a buyer.
    # revenue: 100 + 80 + 15 (M1 in the evening, outside any trip) = 195.
    assert c["C02"] == pytest.approx({
        "zone": "C02", "visitors": 5, "visits": 5, "passbys": 0, "dwell_median_s": 600.0,
        "dwell_p90_s": 780.0, "dwell_total_s": 2700.0, "buyers": 1, "conversion": 0.2,
        "revenue": 195.0, "revenue_per_visitor": 39.0, "attraction": 1.0})
    # C03: no visits that day, one non-member sale of 50.
    assert c["C03"] == {
        "zone": "C03", "visitors": 0, "visits": 0, "passbys": 0, "dwell_median_s": None,
        "dwell_p90_s": None, "dwell_total_s": 0.0, "buyers": 0, "conversion": None,
        "revenue": 50.0, "revenue_per_visitor": None, "attraction": 0.0}


def test_counter_kpis_empty_period(rdb: psycopg.Connection) -> None:
    rows = R.counter_kpis(rdb, STORE, *EMPTY)
    assert [r["zone"] for r in rows] == ["C01", "C02", "C03"]
    for r in rows:
        assert (r["visitors"], r["visits"], r["passbys"], r["buyers"], r["revenue"]) == (0, 0, 0, 0, 0.0)
        assert r["conversion"] is None and r["attraction"] is None and r["dwell_median_s"] is None


def test_purchase_window_is_a_store_parameter(rdb: psycopg.Connection) -> None:
    # With a 31-minute window T7's purchase (30 min + 1 s after its trip) makes it a buyer at C02.
    rdb.execute("UPDATE stores SET settings = '{\"purchase_window_s\": 1860}' WHERE store = %s", (STORE,))
    assert by_zone(R.counter_kpis(rdb, STORE, *DAY))["C02"]["buyers"] == 2


def test_non_customer_flag_excludes_everywhere(rdb: psycopg.Connection) -> None:
    # The analytics job marks staff/asset visits and trips customer = false; a tag re-classified as
    # staff and re-analysed (here: T3) leaves C01, C02, the store's tags seen and the paths.
    rdb.execute("UPDATE visits SET customer = false WHERE tag_id = (SELECT tag_id FROM tags WHERE epc = 'E2000003')")
    rdb.execute("UPDATE trips SET customer = false WHERE tag_id = (SELECT tag_id FROM tags WHERE epc = 'E2000003')")
    c = by_zone(R.counter_kpis(rdb, STORE, *DAY))
    assert (c["C01"]["visitors"], c["C02"]["visitors"]) == (2, 4)
    assert c["C01"]["attraction"] == pytest.approx(2 / 4)
    assert R.store_kpis(rdb, STORE, *DAY)[0]["tags_seen"] == 4
    assert {"path": ["C02", "C01"], "trips": 1} not in R.top_paths(rdb, STORE, *DAY)


def test_counter_kpis_by_tier(rdb: psycopg.Connection) -> None:
    rows = R.counter_kpis(rdb, STORE, *DAY, by="tier")
    assert {r["tier"] for r in rows} == {"anonymous", "gold", "regular", "silver", "vip"}
    assert len(rows) == 5 * 3
    t = {(r["tier"], r["zone"]): r for r in rows}
    # gold at C01: T1 600 + 150 (median 375, p90 150 + 0.9*450 = 555), T5's pass-by; R1 20 at C01.
    # gold tags seen: T1, T5 -> attraction 1/2.
    assert t["gold", "C01"] == pytest.approx({
        "tier": "gold", "zone": "C01", "visitors": 1, "visits": 2, "passbys": 1, "dwell_median_s": 375.0,
        "dwell_p90_s": 555.0, "dwell_total_s": 750.0, "buyers": 1, "conversion": 1.0, "revenue": 20.0,
        "revenue_per_visitor": 20.0, "attraction": 0.5})
    # anonymous: T3 at C01, no buyer; the non-member sale R5 of 40.
    a = t["anonymous", "C01"]
    assert (a["visitors"], a["buyers"], a["conversion"], a["revenue"], a["attraction"]) == (1, 0, 0.0, 40.0, 1.0)
    # vip: M4 bought 300 at C01 without visiting; no vip tag seen -> attraction null.
    v = t["vip", "C01"]
    assert (v["visitors"], v["revenue"], v["attraction"], v["conversion"]) == (0, 300.0, None, None)


def test_counter_kpis_by_hour(rdb: psycopg.Connection) -> None:
    rows = R.counter_kpis(rdb, STORE, *DAY, by="hour")
    assert len(rows) == 24 * 3
    h = {(r["hour"], r["zone"]): r for r in rows}
    # 10:00-11:00: T1 at C01 twice, trip A the only customer trip in that hour; R1 20 at 10:45.
    assert (h[10, "C01"]["visitors"], h[10, "C01"]["visits"], h[10, "C01"]["buyers"],
            h[10, "C01"]["revenue"], h[10, "C01"]["attraction"]) == (1, 2, 1, 20.0, 1.0)
    # 11:00: T2 (a visit and a pass-by) bought at 12:00, inside trip B's window; revenue is in hour 12.
    assert (h[11, "C01"]["visitors"], h[11, "C01"]["passbys"], h[11, "C01"]["buyers"],
            h[11, "C01"]["revenue"]) == (1, 1, 1, 0.0)
    assert h[12, "C01"]["revenue"] == 200.0
    # 00:00: T2's C02 visit; trip G is clipped to the period, so hour 23 sees nobody.
    assert (h[0, "C02"]["visitors"], h[0, "C02"]["attraction"]) == (1, 1.0)
    assert h[23, "C02"]["attraction"] is None
    # 16:00 at C01: only T5's pass-by (an empty dwell array from the server).
    assert (h[16, "C01"]["visitors"], h[16, "C01"]["passbys"], h[16, "C01"]["dwell_median_s"]) == (0, 1, None)


def test_binary_array_loader_matches_psycopg(db: psycopg.Connection) -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 5000):
        floats = rng.uniform(0, 1e5, n).astype(np.float32)
        ints = rng.integers(-2**31, 2**31 - 1, n, dtype=np.int64)
        [(f, i)] = fetch_arrays(db, "SELECT %(f)s::real[], %(i)s::integer[]",
                                {"f": floats.tolist(), "i": ints.tolist()})
        assert f.dtype == np.float32 and np.array_equal(f, floats)
        assert np.array_equal(i, ints)


def test_counter_kpis_by_day(rdb: psycopg.Connection) -> None:
    rows = R.counter_kpis(rdb, STORE, *TWO_DAYS, by="day")
    d = {(r["day"], r["zone"]): r for r in rows}
    assert sorted({r["day"] for r in rows}) == ["2026-11-20", "2026-11-21"]
    whole_day = by_zone(R.counter_kpis(rdb, STORE, *DAY))
    for zone in ("C01", "C02", "C03"):
        assert {k: v for k, v in d["2026-11-20", zone].items() if k != "day"} == pytest.approx(whole_day[zone])
    # 11-21: T1 at C03 (trip F), bought R7 70 at C03 during it; only T1 seen.
    c3 = d["2026-11-21", "C03"]
    assert (c3["visitors"], c3["buyers"], c3["revenue"], c3["attraction"]) == (1, 1, 70.0, 1.0)


# --- store -------------------------------------------------------------------------------------------


def test_store_kpis_by_hand(rdb: psycopg.Connection) -> None:
    [row] = R.store_kpis(rdb, STORE, *DAY)
    assert tuple(row) == R.STORE_KEYS
    # doors 30 + 20; receipts R1..R6 and R8 (R1 spans two counters) = 7; customer trips starting that
    # day: A 2400, B 1800, C 1200, D 1200, E 600 s -> median 1200 (G started the day before).
    assert row == pytest.approx({"footfall": 50, "tags_seen": 5, "transactions": 7,
                                 "conversion": 7 / 50, "trip_median_s": 1200.0})


def test_store_kpis_empty_period(rdb: psycopg.Connection) -> None:
    assert R.store_kpis(rdb, STORE, *EMPTY) == [
        {"footfall": 0, "tags_seen": 0, "transactions": 0, "conversion": None, "trip_median_s": None}]


def test_store_kpis_breakdowns(rdb: psycopg.Connection) -> None:
    hours = {r["hour"]: r for r in R.store_kpis(rdb, STORE, *DAY, by="hour")}
    assert len(hours) == 24
    # 10:00: 30 entries, receipt R1 (10:45 and 10:50) -> 1 transaction; trip A seen.
    assert hours[10] == pytest.approx({"hour": 10, "footfall": 30, "tags_seen": 1, "transactions": 1,
                                       "conversion": 1 / 30, "trip_median_s": 2400.0})
    tiers = {r["tier"]: r for r in R.store_kpis(rdb, STORE, *DAY, by="tier")}
    # gold: M1 receipts R1 and R8; tags T1 and T5; trips A 2400 and E 600 -> median 1500.
    assert tiers["gold"] == {"tier": "gold", "footfall": None, "tags_seen": 2, "transactions": 2,
                             "conversion": None, "trip_median_s": 1500.0}
    assert tiers["anonymous"]["transactions"] == 2  # R5, R6
    days = R.store_kpis(rdb, STORE, *TWO_DAYS, by="day")
    assert [(r["day"], r["footfall"], r["transactions"]) for r in days] == [
        ("2026-11-20", 50, 7), ("2026-11-21", 10, 1)]


# --- compare -------------------------------------------------------------------------------------------


def test_compare_previous_and_year(rdb: psycopg.Connection) -> None:
    next_day = (DAY[1], TWO_DAYS[1])
    c = by_zone(R.counter_kpis_compare(rdb, STORE, *next_day, mode="previous"))
    assert (c["C03"]["visitors"], c["C03"]["visitors_prev"], c["C03"]["visitors_delta"]) == (1, 0, 1)
    assert (c["C03"]["revenue"], c["C03"]["revenue_prev"], c["C03"]["revenue_delta"]) == (70.0, 50.0, 20.0)
    assert (c["C01"]["visitors_delta"], c["C01"]["conversion_delta"]) == (-3, None)
    # year: 2025-11-20 had T1 at C01 (trip H).
    y = by_zone(R.counter_kpis_compare(rdb, STORE, *DAY, mode="year"))
    assert (y["C01"]["visitors"], y["C01"]["visitors_prev"], y["C01"]["visitors_delta"]) == (3, 1, 2)
    assert y["C01"]["dwell_median_s_delta"] == pytest.approx(540.0 - 600.0)
    [s] = R.store_kpis_compare(rdb, STORE, *next_day, mode="previous")
    assert (s["footfall"], s["footfall_prev"], s["footfall_delta"]) == (10, 50, -40)
    with pytest.raises(BadInput, match="--by day"):
        R.counter_kpis_compare(rdb, STORE, *DAY, mode="previous", by="day")
    # with a breakdown, rows are matched on (label, counter): gold at C03 on 11-21 vs 11-20
    t = {(r["tier"], r["zone"]): r for r in R.counter_kpis_compare(rdb, STORE, *next_day, "previous", by="tier")}
    assert (t["gold", "C03"]["visitors"], t["gold", "C03"]["visitors_prev"], t["gold", "C03"]["revenue_delta"]) == (
        1, 0, 70.0)
    assert list(t["gold", "C03"])[:5] == ["tier", "zone", "visitors", "visitors_prev", "visitors_delta"]


def test_comparison_periods() -> None:
    p = R.comparison_period(*DAY, "previous", "Asia/Shanghai")
    assert (p.start, p.end) == (DAY[0] - timedelta(days=1), DAY[0])
    y = R.comparison_period(*DAY, "year", "Asia/Shanghai")
    assert y.start == datetime.fromisoformat("2025-11-20T00:00:00+08:00")
    leap = R.comparison_period(datetime.fromisoformat("2028-02-29T00:00:00+08:00"),
                               datetime.fromisoformat("2028-03-01T00:00:00+08:00"), "year", "Asia/Shanghai")
    assert leap.start == datetime.fromisoformat("2027-02-28T00:00:00+08:00")


# --- ranking and 80/20 ---------------------------------------------------------------------------------


def test_counter_ranking(rdb: psycopg.Connection) -> None:
    # attraction C01 0.6, C02 1.0, C03 0 (median 0.6); conversion C01 2/3, C02 0.2 (median 0.433).
    ranked = R.counter_ranking(rdb, STORE, *DAY)
    assert [(r["rank"], r["zone"], r["label"]) for r in ranked] == [
        (1, "C01", "attracts and converts"),
        (2, "C02", "attracts but does not convert"),
        (3, "C03", "neither attracts nor converts — candidate to replace")]


def test_rank_counters_quadrants() -> None:
    def row(zone: str, attraction: float, conversion: float | None, rpv: float | None) -> dict[str, Any]:
        return {"zone": zone, "visitors": 1, "attraction": attraction, "conversion": conversion,
                "revenue": 0.0, "revenue_per_visitor": rpv}

    ranked = R.rank_counters([row("A", 0.9, 0.1, 5.0), row("B", 0.1, 0.9, 50.0), row("C", 0.5, 0.5, 20.0),
                              row("D", 0.05, 0.05, 1.0)])
    assert {r["zone"]: r["label"] for r in ranked} == {
        "A": "attracts but does not convert", "B": "converts the few it attracts",
        "C": "attracts and converts", "D": "neither attracts nor converts — candidate to replace"}
    assert [r["zone"] for r in ranked] == ["B", "C", "A", "D"]


def test_revenue_concentration(rdb: psycopg.Connection) -> None:
    # Members with a counter visit: M1 (120 + 15), M2 200, M3 0 (T5), M5 80; M4 did not visit.
    # top 20 % of 4 -> 1 member (M2): 200 / 415.
    assert R.revenue_concentration(rdb, STORE, *DAY) == pytest.approx({
        "members_visited": 4, "top_fraction": 0.2, "top_members": 1, "revenue_members": 415.0,
        "revenue_top": 200.0, "top_share": 200 / 415})
    empty = R.revenue_concentration(rdb, STORE, *EMPTY)
    assert (empty["members_visited"], empty["top_share"]) == (0, None)


# --- visits, paths, heatmap, member ------------------------------------------------------------------------


def test_visit_rows(rdb: psycopg.Connection) -> None:
    rows = R.visit_rows(rdb, STORE, *DAY)
    assert len(rows) == 9  # 14 visits - staff - 2 pass-bys - trip F (11-21) - trip H (2025)
    assert rows[0] == {"epc": "E2000002", "member": "M2", "zone": "C02",
                       "start": datetime(2026, 11, 19, 16, 5, tzinfo=timezone.utc),
                       "end": datetime(2026, 11, 19, 16, 15, tzinfo=timezone.utc), "dwell_s": 600.0}
    assert {r["epc"] for r in rows}.isdisjoint({"E2000004"})
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)
    assert len(R.visit_rows(rdb, STORE, *DAY, limit=3)) == 3


def test_top_paths(rdb: psycopg.Connection) -> None:
    # trips starting 11-20: A [C01 C02 C01], B [C01], C [C02 C01], D [C02], E [C02]; staff excluded.
    assert R.top_paths(rdb, STORE, *DAY) == [
        {"path": ["C02"], "trips": 2}, {"path": ["C01"], "trips": 1},
        {"path": ["C01", "C02", "C01"], "trips": 1}, {"path": ["C02", "C01"], "trips": 1}]
    assert R.top_paths(rdb, STORE, *DAY, top=1) == [{"path": ["C02"], "trips": 2}]


def test_heatmap(rdb: psycopg.Connection) -> None:
    g = R.heatmap(rdb, STORE, 1, *DAY)
    assert g.cell_m == 0.5 and g.seconds.shape == (40, 60)  # 20 m x 30 m floor
    assert g.seconds[0, 0] == 11.0 and g.seconds[0, 1] == 20.0 and g.seconds.sum() == 43.0
    coarse = R.heatmap(rdb, STORE, 1, *DAY, cell_m=1.0)
    assert coarse.seconds.shape == (20, 30)
    assert (coarse.seconds[0, 0], coarse.seconds[1, 1], coarse.seconds.sum()) == (36.0, 7.0, 43.0)
    rows = coarse.rows()
    assert len(rows) == 600 and rows[0] == {"x_m": 0.5, "y_m": 0.5, "seconds": 36.0}
    with pytest.raises(BadInput, match="multiple"):
        R.heatmap(rdb, STORE, 1, *DAY, cell_m=0.75)
    with pytest.raises(BadInput, match="no floor 7"):
        R.heatmap(rdb, STORE, 7, *DAY)
    assert g.plan_image is None
    rdb.execute("UPDATE floors SET plan_image = %s, plan_media_type = 'image/png'", (b"\x89PNG-plan",))
    assert R.heatmap(rdb, STORE, 1, *DAY).plan_image == b"\x89PNG-plan"


def test_member_journey(rdb: psycopg.Connection) -> None:
    j = R.member_journey(rdb, STORE, "M1", *TWO_DAYS)
    assert (j["member"], j["tier"]) == ("M1", "gold")
    assert [t["path"] for t in j["trips"]] == [["C01", "C02", "C01"], ["C03"]]
    a = j["trips"][0]
    assert [(v["zone"], v["dwell_s"]) for v in a["visits"]] == [("C01", 600.0), ("C02", 900.0), ("C01", 150.0)]
    assert (a["duration_s"], a["dwell_total_s"], a["spend"]) == (2400.0, 1650.0, 120.0)
    assert [(p["zone"], p["amount"], p["receipt"]) for p in a["purchases"]] == [("C01", 20.0, "R1"), ("C02", 100.0, "R1")]
    assert [p["receipt"] for p in j["trips"][1]["purchases"]] == ["R7"]
    assert [p["receipt"] for p in j["purchases_outside_trips"]] == ["R8"]
    assert "E2000001" not in json.dumps(j, default=str)  # no EPCs in a journey
    with pytest.raises(R.MemberNotFound, match="M999"):
        R.member_journey(rdb, STORE, "M999", *DAY)
    # M4 exists but never visited: no trips, its purchase listed apart.
    m4 = R.member_journey(rdb, STORE, "M4", *DAY)
    assert (m4["trips"], [p["receipt"] for p in m4["purchases_outside_trips"]]) == ([], ["R4"])


# --- periods and bad input ----------------------------------------------------------------------------------


def test_resolve_period() -> None:
    now = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)  # 11:00 in Shanghai
    p = R.resolve_period(None, None, "Asia/Shanghai", now=now)
    assert (p.start, p.end) == (datetime.fromisoformat("2026-11-19T00:00+08:00"),
                                datetime.fromisoformat("2026-11-20T00:00+08:00"))
    p = R.resolve_period("2026-11-01", "2026-11-08", "Asia/Shanghai")
    assert p.end - p.start == timedelta(days=7) and p.start.utcoffset() == timedelta(hours=8)
    p = R.resolve_period("2026-11-01T10:00:00Z", None, "Asia/Shanghai", now=now)
    assert p.end == now
    p = R.resolve_period(None, "2026-11-08", "Asia/Shanghai")
    assert p.start == datetime.fromisoformat("2026-11-07T00:00+08:00")
    with pytest.raises(BadInput, match="not before"):
        R.resolve_period("2026-11-08", "2026-11-01", "Asia/Shanghai")
    with pytest.raises(BadInput, match="no UTC offset"):
        R.resolve_period("2026-11-08T10:00", None, "Asia/Shanghai")
    with pytest.raises(BadInput, match="neither a date"):
        R.resolve_period("yesterday", None, "Asia/Shanghai")


def test_unknown_store(db: psycopg.Connection) -> None:
    with pytest.raises(BadInput, match="unknown store 'nope'"):
        R.counter_kpis(db, "nope", *DAY)


def test_reports_restore_the_session_settings(rdb: psycopg.Connection) -> None:
    # Reports tune the planner for their scans and give the caller's connection back as it was.
    rdb.execute("SET work_mem = '8MB'")
    R.counter_kpis(rdb, STORE, *DAY)
    R.store_kpis(rdb, STORE, *DAY, by="hour")
    R.heatmap(rdb, STORE, 1, *DAY)
    settings = rdb.execute("SELECT current_setting('work_mem'), current_setting('enable_indexscan'), "
                           "current_setting('plan_cache_mode')").fetchone()
    assert settings == ("8MB", "on", "auto")


def test_purchase_before_the_period_in_a_trip_that_started_before(rdb: psycopg.Connection) -> None:
    # T2's trip G starts 11-19 23:50 and visits C02 at 00:05 on the 20th. A purchase at C02 at 23:55
    # (before the period, inside the trip) makes T2 a buyer at C02 on the 20th, even when the trip's
    # own row is missing (its start day was never analysed).
    rdb.execute("DELETE FROM trips WHERE start_ts = '2026-11-19T23:50:00+08:00'")
    rdb.execute("INSERT INTO purchases (store_id, ts, member, zone_id, amount, receipt) "
                "SELECT store_id, '2026-11-19T23:55:00+08:00', 'M2', zone_id, 10, 'R9' FROM zones WHERE zone = 'C02'")
    c02 = by_zone(R.counter_kpis(rdb, STORE, *DAY))["C02"]
    assert (c02["buyers"], c02["revenue"]) == (2, 195.0)  # R9 is before the period: not its revenue
