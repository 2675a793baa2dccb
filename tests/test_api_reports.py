"""Report endpoints: each is the JSON twin of the query layer, roles are enforced on every endpoint,
bad parameters give clear 4xx errors."""

from __future__ import annotations

import json
from datetime import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient

from analytics import reports as R
from api.app import create_app
from api.auth import create_token
from storeflow.settings import Settings
from tests.test_reports import DAY, STORE, load_report_fixture

pytestmark = pytest.mark.db
Q = "from=2026-11-20&to=2026-11-21"

#: endpoint -> lowest role allowed
ENDPOINTS: dict[str, str] = {
    f"/api/v1/stores/{STORE}/counters?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/counters?{Q}&by=tier": "viewer",
    f"/api/v1/stores/{STORE}/counters?{Q}&compare=previous": "viewer",
    f"/api/v1/stores/{STORE}/kpis?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/ranking?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/concentration?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/paths?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/heatmap?floor=1&{Q}": "viewer",
    f"/api/v1/stores/{STORE}/traffic?{Q}": "viewer",
    f"/api/v1/stores/{STORE}/tiers": "viewer",
    f"/api/v1/stores/{STORE}/layout": "viewer",
    f"/api/v1/stores/{STORE}/occupancy": "viewer",
    f"/api/v1/stores/{STORE}/health": "viewer",
    f"/api/v1/stores/{STORE}/visits?{Q}": "analyst",
    f"/api/v1/stores/{STORE}/members/M1/journey?{Q}": "analyst",
    "/api/v1/tokens": "admin",
}
ROLES = ("viewer", "analyst", "admin")


@pytest.fixture
def client(db: psycopg.Connection, db_url: str, mini_layout_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    load_report_fixture(db, mini_layout_path)
    tokens = {role: create_token(db, role, [STORE] if role != "admin" else None)[1] for role in ROLES}
    tokens["other-store viewer"] = create_token(db, "viewer", None)[1]
    db.execute("UPDATE api_tokens SET stores = ARRAY['somewhere-else'] WHERE name = 'viewer token' AND token_id = 4")
    db.commit()
    with TestClient(create_app(Settings(database_url=db_url), db_url)) as c:
        yield c, tokens


def _get(c: TestClient, url: str, token: str) -> Any:
    return c.get(url, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_enforces_roles(client, role: str) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    for url, needed in ENDPOINTS.items():
        r = _get(c, url, tokens[role])
        allowed = ROLES.index(role) >= ROLES.index(needed)
        assert r.status_code == (200 if allowed else 403), (url, role, r.status_code, r.text[:200])
        assert c.get(url).status_code == 401, url


def test_store_not_granted_is_forbidden(client) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    for url in ENDPOINTS:
        if "/stores/" in url:
            assert _get(c, url, tokens["other-store viewer"]).status_code == 403, url


def test_member_level_data_never_reaches_a_viewer(client) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    fixture = json.loads((Path(__file__).parent / "data" / "report_fixture.json").read_text())
    epcs = {t["epc"] for t in fixture["tags"]}
    members = {t["member"] for t in fixture["tags"] if t["member"]}
    for url, needed in ENDPOINTS.items():
        if needed != "viewer":
            continue
        body = _get(c, url, tokens["viewer"]).text
        assert not any(e in body for e in epcs), url
        assert not any(f'"{m}"' in body for m in members), url


def test_reports_are_twins_of_the_query_layer(client, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    t = tokens["analyst"]
    assert _get(c, f"/api/v1/stores/{STORE}/counters?{Q}", t).json() == jsonable_encoder(
        R.counter_kpis(db, STORE, *DAY))
    rows = _get(c, f"/api/v1/stores/{STORE}/counters?{Q}", t).json()
    assert all(list(r) == list(R.COUNTER_KEYS) for r in rows)
    assert _get(c, f"/api/v1/stores/{STORE}/kpis?{Q}", t).json() == jsonable_encoder(R.store_kpis(db, STORE, *DAY)[0])
    assert _get(c, f"/api/v1/stores/{STORE}/paths?{Q}&top=3", t).json() == R.top_paths(db, STORE, *DAY, top=3)
    api_visits = _get(c, f"/api/v1/stores/{STORE}/visits?{Q}", t).json()
    for v in api_visits:
        v["start"], v["end"] = datetime.fromisoformat(v["start"]), datetime.fromisoformat(v["end"])
    assert api_visits == R.visit_rows(db, STORE, *DAY) and api_visits
    assert _get(c, f"/api/v1/stores/{STORE}/ranking?{Q}", t).json() == jsonable_encoder(
        R.counter_ranking(db, STORE, *DAY))
    grid = R.heatmap(db, STORE, 1, *DAY)
    heat = _get(c, f"/api/v1/stores/{STORE}/heatmap?floor=1&{Q}", t).json()
    assert heat["cells"] == [r for r in grid.rows() if r["seconds"] > 0]
    assert sum(x["seconds"] for x in heat["cells"]) == pytest.approx(float(grid.seconds.sum()))
    tier_rows = R.counter_kpis(db, STORE, *DAY, by="tier")
    gold = _get(c, f"/api/v1/stores/{STORE}/counters?{Q}&tier=gold", t).json()
    assert gold == jsonable_encoder([{k: v for k, v in r.items() if k != "tier"} for r in tier_rows if r["tier"] == "gold"])


def test_traffic_sums_door_counts(client, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    t = _get(c, f"/api/v1/stores/{STORE}/traffic?{Q}", tokens["viewer"]).json()
    assert t["footfall"] == R.store_kpis(db, STORE, *DAY)[0]["footfall"]
    assert sum(d["entries"] for d in t["days"]) == t["footfall"]
    assert len(t["hours"]) == 24


def test_traffic_by_hour_and_day_with_the_previous_period(client, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    """Door counts on the report day and the day before: hours and days in store time, the previous
    period's entries per hour, all as the plain per-period SQL sums give them."""
    c, tokens = client
    db.execute("INSERT INTO door_counts (ts, store_id, door_id, entries, exits) "
               "SELECT (t::timestamp AT TIME ZONE s.timezone), s.store_id, d.door_id, n, n - 1 "
               "FROM stores s JOIN doors d USING (store_id), "
               "(VALUES ('2026-11-19 10:15', 7), ('2026-11-19 23:45', 3), ('2026-11-20 00:15', 5), "
               "        ('2026-11-20 10:30', 11), ('2026-11-20 23:59', 2)) v(t, n) WHERE s.store = %s", (STORE,))
    db.commit()
    tz = db.execute("SELECT timezone FROM stores WHERE store = %s", (STORE,)).fetchone()[0]  # type: ignore[index]

    def per_hour(start: str, end: str) -> dict[int, tuple[int, int]]:
        rows = db.execute(
            "SELECT extract(hour FROM ts AT TIME ZONE %(tz)s)::int, sum(entries)::int, sum(exits)::int "
            "FROM door_counts c JOIN stores s USING (store_id) WHERE s.store = %(store)s "
            "AND ts >= (%(start)s::timestamp AT TIME ZONE %(tz)s) AND ts < (%(end)s::timestamp AT TIME ZONE %(tz)s) "
            "GROUP BY 1", {"tz": tz, "store": STORE, "start": start, "end": end}).fetchall()
        return {h: (e, x) for h, e, x in rows}

    now, before = per_hour("2026-11-20", "2026-11-21"), per_hour("2026-11-19", "2026-11-20")
    t = _get(c, f"/api/v1/stores/{STORE}/traffic?{Q}", tokens["viewer"]).json()
    assert [(h["entries"], h["exits"]) for h in t["hours"]] == [now.get(h, (0, 0)) for h in range(24)]
    assert [h["previous_entries"] for h in t["hours"]] == [before.get(h, (0, 0))[0] for h in range(24)]
    assert t["previous_footfall"] == sum(e for e, _ in before.values()) > 0
    assert t["footfall"] == sum(e for e, _ in now.values()) == sum(d["entries"] for d in t["days"])
    assert [d["day"] for d in t["days"]] == ["2026-11-20"]
    two = _get(c, f"/api/v1/stores/{STORE}/traffic?from=2026-11-19&to=2026-11-21", tokens["viewer"]).json()
    assert [d["day"] for d in two["days"]] == ["2026-11-19", "2026-11-20"]
    assert two["footfall"] == sum(d["entries"] for d in two["days"]) == t["footfall"] + t["previous_footfall"]


@pytest.mark.parametrize("url, status, words", [
    (f"/api/v1/stores/{STORE}/counters?from=2026-11-21&to=2026-11-20", 400, "not before"),
    (f"/api/v1/stores/{STORE}/counters?from=yesterday", 400, "neither a date"),
    (f"/api/v1/stores/{STORE}/counters?from=2026-11-20T10:00:00", 400, "no UTC offset"),
    (f"/api/v1/stores/{STORE}/counters?{Q}&by=week", 422, "by"),
    (f"/api/v1/stores/{STORE}/heatmap?{Q}", 422, "floor"),
    (f"/api/v1/stores/{STORE}/heatmap?floor=9&{Q}", 400, "no floor 9"),
    (f"/api/v1/stores/{STORE}/heatmap?floor=1&cell=0.7&{Q}", 400, "multiple"),
    (f"/api/v1/stores/{STORE}/paths?{Q}&top=0", 422, "top"),
    (f"/api/v1/stores/{STORE}/members/NOBODY/journey?{Q}", 404, "not found"),
    ("/api/v1/stores/nowhere/counters", 404, "unknown store"),
])
def test_bad_parameters_give_clear_errors(client, url: str, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    c, tokens = client
    r = _get(c, url, tokens["admin"])
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_row_cap_applies_to_visits(client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    _, tokens = client
    with TestClient(create_app(Settings(database_url=db_url, query_max_rows=1), db_url)) as small:
        r = _get(small, f"/api/v1/stores/{STORE}/visits?{Q}", tokens["analyst"])
        assert r.status_code == 413 and "narrow" in r.json()["detail"]
