"""HTTP API: authentication and roles, stores, layout, occupancy, health, token management."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_token, hash_token, revoke_token
from storeflow.layout import load_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout

pytestmark = pytest.mark.db


@pytest.fixture
def app_db(db_url: str, mini_layout_path: Path) -> Iterator[tuple[TestClient, dict[str, str], psycopg.Connection]]:
    """A client on the API over a database holding the mini store, and one token per role."""
    conn = psycopg.connect(db_url)
    upsert_layout(conn, load_layout(mini_layout_path))
    other = load_layout(mini_layout_path).to_dict() | {"store": "other-store"}
    from storeflow.layout import parse_layout

    upsert_layout(conn, parse_layout(other))
    tokens = {
        "viewer": create_token(conn, "viewer", ["mini-store"])[1],
        "analyst": create_token(conn, "analyst", ["mini-store"])[1],
        "admin": create_token(conn, "admin", None)[1],
        "expired": create_token(conn, "admin", None)[1],
    }
    conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE token_id = 4")
    conn.commit()
    app = create_app(Settings(database_url=db_url), db_url)
    with TestClient(app) as client:
        yield client, tokens, conn
    conn.close()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_bad_token_expired_token(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    assert client.get("/api/v1/stores").status_code == 401
    assert client.get("/api/v1/stores", headers=_h("sf_nope")).status_code == 401
    r = client.get("/api/v1/stores", headers=_h(tokens["expired"]))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_viewer_sees_only_granted_stores(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    stores = client.get("/api/v1/stores", headers=_h(tokens["viewer"])).json()
    assert [s["store"] for s in stores] == ["mini-store"]
    assert client.get("/api/v1/stores/other-store/layout", headers=_h(tokens["viewer"])).status_code == 403
    admin = client.get("/api/v1/stores", headers=_h(tokens["admin"])).json()
    assert [s["store"] for s in admin] == ["mini-store", "other-store"]
    assert client.get("/api/v1/stores/nope/layout", headers=_h(tokens["admin"])).status_code == 404


def test_layout_round_trips(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    lay = client.get("/api/v1/stores/mini-store/layout", headers=_h(tokens["viewer"])).json()
    assert lay["store"] == "mini-store" and [z["zone"] for z in lay["zones"]][:3] == ["C01", "C02", "C03"]


def test_token_management_is_admin_only(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    for role in ("viewer", "analyst"):
        assert client.get("/api/v1/tokens", headers=_h(tokens[role])).status_code == 403
        assert client.post("/api/v1/tokens", json={"role": "admin"}, headers=_h(tokens[role])).status_code == 403
    r = client.post("/api/v1/tokens", json={"role": "viewer", "stores": ["mini-store"]}, headers=_h(tokens["admin"]))
    assert r.status_code == 201
    new = r.json()
    assert client.get("/api/v1/stores", headers=_h(new["token"])).status_code == 200
    listed = client.get("/api/v1/tokens", headers=_h(tokens["admin"])).json()
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert client.delete(f"/api/v1/tokens/{new['token_id']}", headers=_h(tokens["admin"])).status_code == 200
    assert client.get("/api/v1/stores", headers=_h(new["token"])).status_code == 401
    bad = client.post("/api/v1/tokens", json={"role": "root"}, headers=_h(tokens["admin"]))
    assert bad.status_code == 422 and "role" in bad.json()["detail"]
    for days in (True, "2", 0):  # a JSON boolean or string is not a number of days (no lax coercion)
        r = client.post("/api/v1/tokens", json={"role": "viewer", "expires_days": days}, headers=_h(tokens["admin"]))
        assert r.status_code == 422 and "expires_days" in r.json()["detail"], (days, r.text)
    unknown = client.post("/api/v1/tokens", json={"role": "viewer", "stores": ["zzz"]}, headers=_h(tokens["admin"]))
    assert unknown.status_code == 400 and "zzz" in unknown.json()["detail"]


def test_occupancy_from_door_counts(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, conn = app_db
    now = datetime.now(timezone.utc)
    conn.execute("INSERT INTO door_counts (ts, store_id, door_id, entries, exits) "
                 "SELECT %s, store_id, door_id, 12, 5 FROM doors WHERE door = 'D1' AND store_id = "
                 "(SELECT store_id FROM stores WHERE store = 'mini-store')", (now,))
    conn.commit()
    occ = client.get("/api/v1/stores/mini-store/occupancy", headers=_h(tokens["viewer"])).json()
    assert (occ["footfall"], occ["exits"], occ["occupancy"]) == (12, 5, 7)


def test_health_lists_every_antenna(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    h = client.get("/api/v1/stores/mini-store/health", headers=_h(tokens["viewer"])).json()
    assert len(h["antennas"]) == 4 and all(a["silent"] for a in h["antennas"])
    assert client.get("/api/v1/stores/mini-store/health?minutes=0", headers=_h(tokens["viewer"])).status_code == 422


def test_dashboard_requires_login_and_serves_pages(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    r = client.get("/counters", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get(f"/login?token={tokens['viewer']}", follow_redirects=False).status_code == 303
    page = client.get("/counters")
    assert page.status_code == 200 and 'data-page="counters"' in page.text
    assert client.get("/plotly.min.js").status_code == 200
    assert client.get("/api/v1/stores").status_code == 200  # the cookie authenticates API calls too


def test_plotly_js_is_served_gzipped_and_cacheable(app_db) -> None:  # type: ignore[no-untyped-def]
    client, tokens, _ = app_db
    import plotly

    assert client.get(f"/login?token={tokens['viewer']}", follow_redirects=False).status_code == 303
    page = client.get("/floor?store=mini-store")
    assert f'src="/plotly.min.js?v={plotly.__version__}"' in page.text
    raw = client.get("/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert raw.status_code == 200 and "content-encoding" not in raw.headers and b"plotly" in raw.content[:2000].lower()
    packed = client.get(f"/plotly.min.js?v={plotly.__version__}", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and "immutable" in packed.headers["cache-control"]
    assert packed.content == raw.content  # (httpx decodes) the same file
    assert int(packed.headers["content-length"]) < len(raw.content) / 2
    again = client.get("/plotly.min.js", headers={"If-None-Match": raw.headers["etag"]})
    assert again.status_code == 304 and not again.content


def _wait(check, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_token_cache_refuses_expired_and_revoked_tokens(app_db, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Verified tokens are kept in memory, but an expiry still applies and a revoke by another process
    (as `storeflow token revoke` does) reaches the server through NOTIFY."""
    client, _, conn = app_db
    cache = client.app.state.tokens
    assert _wait(lambda: cache.listening)  # the listener connection is up
    _, short = create_token(conn, "viewer", ["mini-store"], expires_days=3 / 86400)  # 3 s
    expires = time.monotonic() + 3
    assert client.get("/api/v1/stores", headers=_h(short)).status_code == 200
    assert cache.get(hash_token(short)) is not None  # the next request needs no query
    assert client.get("/api/v1/stores", headers=_h(short)).status_code == 200
    time.sleep(max(0.0, expires - time.monotonic()) + 0.2)
    r = client.get("/api/v1/stores", headers=_h(short))
    assert r.status_code == 401 and "expired" in r.json()["detail"]

    token_id, token = create_token(conn, "analyst", ["mini-store"])
    assert client.get("/api/v1/stores", headers=_h(token)).status_code == 200
    assert cache.get(hash_token(token)) is not None
    with psycopg.connect(db_url) as other:
        assert revoke_token(other, token_id)
    assert _wait(lambda: cache.get(hash_token(token)) is None, 5.0)
    assert client.get("/api/v1/stores", headers=_h(token)).status_code == 401


def test_layout_coverage(app_db) -> None:  # type: ignore[no-untyped-def]
    from storeflow.layout import parse_layout

    client, tokens, conn = app_db
    # the mini store's two neighbouring counters meet exactly on their antennas' bisector: all covered
    rows = client.get("/api/v1/stores/mini-store/layout/coverage", headers=_h(tokens["viewer"])).json()
    assert sorted(r["zone"] for r in rows) == ["C01", "C02", "C03"]
    assert all(r["share_nearer_other"] == 0 and not r["flagged"] and r["suggested_antennas"] == [] for r in rows)
    # a long counter with one antenna at one end, beside another: the far 35 % is nearer the neighbour's
    data = load_layout(Path(__file__).parent / "data" / "mini_store.yaml").to_dict() | {"store": "cov-api"}
    data["zones"] = [{"zone": "A", "kind": "counter", "floor": 1, "polygon": [[0, 0], [10, 0], [10, 2], [0, 2]]},
                     {"zone": "B", "kind": "counter", "floor": 1, "polygon": [[10, 0], [20, 0], [20, 2], [10, 2]]}]
    data["readers"] = [{"reader": "R1", "antennas": [{"port": 1, "floor": 1, "x": 2.5, "y": 1.0, "zone": "A"},
                                                     {"port": 2, "floor": 1, "x": 10.5, "y": 1.0, "zone": "B"}]}]
    data["doors"] = []
    upsert_layout(conn, parse_layout(data))
    conn.commit()
    assert client.get("/api/v1/stores/cov-api/layout/coverage", headers=_h(tokens["viewer"])).status_code == 403
    rows = client.get("/api/v1/stores/cov-api/layout/coverage", headers=_h(tokens["admin"])).json()
    assert [r["zone"] for r in rows] == ["A", "B"]
    assert rows[0]["share_nearer_other"] == pytest.approx(0.35) and rows[0]["nearer_to"] == "B"
    assert rows[0]["flagged"] and rows[0]["suggested_antennas"] == [[8.25, 1.0]] and rows[0]["floor"] == 1
    assert rows[1]["share_nearer_other"] == 0 and not rows[1]["flagged"]
    assert client.get("/api/v1/stores/nope/layout/coverage", headers=_h(tokens["admin"])).status_code == 404
