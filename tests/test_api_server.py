"""`storeflow serve` as a real process: HTTP over a socket, tokens created with `storeflow token create`,
a bad token refused, a floor plan image served, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import create_token
from tests.conftest import DATA, _drop_db, _fresh_db, db_url_for
from tests.test_dashboard_browser import free_port, tiny_png
from tests.test_reports import load_report_fixture

pytestmark = pytest.mark.db
STOREFLOW = [str(Path(sys.executable).with_name("storeflow"))]  # the installed console script


def _cli(*args: str) -> str:
    out = subprocess.run([*STOREFLOW, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def served(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module (its last test stops it)."""
    name = _fresh_db(pg_template)
    try:
        yield from _serve(db_url_for(name), DATA / "mini_store.yaml", tmp_path_factory.mktemp("serve"))
    finally:
        _drop_db(name)


def _serve(db_url: str, mini_layout_path: Path, tmp_path: Path, workers: int = 1) -> Iterator[dict[str, Any]]:
    with psycopg.connect(db_url) as db:
        load_report_fixture(db, mini_layout_path)
    # the same store again from a copy of its layout with a floor plan, imported through the CLI
    (tmp_path / "plan.png").write_bytes(tiny_png())
    text = mini_layout_path.read_text(encoding="utf-8").replace("    depth_m: 20.0\n", "    depth_m: 20.0\n    plan: plan.png\n")
    (tmp_path / "store.yaml").write_text(text, encoding="utf-8")
    _cli("import", "layout", str(tmp_path / "store.yaml"), "--database-url", db_url)
    with psycopg.connect(db_url) as db:  # (the CLI's token commands are exercised below)
        viewer = create_token(db, "viewer", ["mini-store"])[1]
    port = free_port()
    env = {**os.environ, "STOREFLOW_DATABASE_URL": ""}
    proc = subprocess.Popen([*STOREFLOW, "serve", "--database-url", db_url, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"storeflow serve did not come up: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.2)
        yield {"base": base, "viewer": viewer, "proc": proc, "db_url": db_url}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_real_server_answers_with_tokens(served: dict[str, Any]) -> None:
    base, auth = served["base"], {"Authorization": f"Bearer {served['viewer']}"}
    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.get("/api/v1/stores").status_code == 401
        bad = c.get("/api/v1/stores", headers={"Authorization": "Bearer sf_not-a-token"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert "invalid" in bad.json()["detail"]
        stores = c.get("/api/v1/stores", headers=auth).json()
        assert [s["store"] for s in stores] == ["mini-store"]
        counters = c.get("/api/v1/stores/mini-store/counters?from=2026-11-20&to=2026-11-21", headers=auth)
        assert counters.status_code == 200
        c01 = next(r for r in counters.json() if r["zone"] == "C01")
        assert (c01["visitors"], c01["visits"], c01["revenue"]) == (3, 4, 560.0)  # tests/test_reports.py, by hand
        # a viewer never gets member-level data
        assert c.get("/api/v1/stores/mini-store/visits?from=2026-11-20&to=2026-11-21", headers=auth).status_code == 403
        floors = c.get("/api/v1/stores/mini-store/floors", headers=auth).json()
        assert floors[0]["has_plan_image"] and floors[0]["plan_url"] == "/api/v1/stores/mini-store/floors/1/plan"
        plan = c.get(floors[0]["plan_url"], headers=auth)
        assert plan.status_code == 200 and plan.headers["content-type"] == "image/png"
        assert plan.content == tiny_png() and "sandbox" in plan.headers["content-security-policy"]
        assert c.get("/api/v1/stores/mini-store/floors/2/plan", headers=auth).status_code == 404
        doc = c.get("/openapi.json").json()
        assert "/api/v1/stores/{store}/floors/{floor}/plan" in doc["paths"]
        # the dashboard: login sets the cookie, the page and plotly.js come from this server
        assert c.get("/traffic", follow_redirects=False).headers["location"] == "/login"
        login = c.get(f"/login?token={served['viewer']}", follow_redirects=False)
        assert login.status_code == 303 and "storeflow_token" in login.headers["set-cookie"]
        assert 'data-page="traffic"' in c.get("/traffic").text
        assert c.get("/plotly.min.js").headers["content-type"].startswith("application/javascript")


@pytest.fixture(scope="module")
def served_2(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same with two worker processes (each has its own token and report caches)."""
    name = _fresh_db(pg_template)
    try:
        yield from _serve(db_url_for(name), DATA / "mini_store.yaml", tmp_path_factory.mktemp("serve2"), workers=2)
    finally:
        _drop_db(name)


def test_revoked_token_stops_working_at_once(served: dict[str, Any]) -> None:
    db_url = served["db_url"]
    token = _cli("token", "create", "--role", "analyst", "--name", "to revoke", "--database-url", db_url).split()[-1]
    listed = _cli("token", "list", "--database-url", db_url)
    token_id = re.search(r"^(\d+)\tanalyst\t\*\tactive\tto revoke$", listed, re.M)
    assert token_id, listed
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(served["base"] + "/api/v1/stores", headers=auth).status_code == 200
    _cli("token", "revoke", token_id.group(1), "--database-url", db_url)
    assert httpx.get(served["base"] + "/api/v1/stores", headers=auth).status_code == 401


def test_two_workers_refuse_a_revoked_token_at_once(served_2: dict[str, Any]) -> None:
    """Every worker keeps verified tokens in memory; a revoke from the CLI reaches all of them (NOTIFY)."""
    db_url, base = served_2["db_url"], served_2["base"]
    token = _cli("token", "create", "--role", "viewer", "--name", "two workers", "--database-url", db_url).split()[-1]
    listed = _cli("token", "list", "--database-url", db_url)
    token_id = re.search(r"^(\d+)\tviewer\t\*\tactive\ttwo workers$", listed, re.M)
    assert token_id, listed
    auth = {"Authorization": f"Bearer {token}"}
    url = base + "/api/v1/stores/mini-store/counters?from=2026-11-20&to=2026-11-21"
    # new connections, so that both workers (most likely) see and cache the token
    assert [httpx.get(url, headers=auth).status_code for _ in range(20)] == [200] * 20
    _cli("token", "revoke", token_id.group(1), "--database-url", db_url)
    assert [httpx.get(url, headers=auth).status_code for _ in range(20)] == [401] * 20
    proc = served_2["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) in (0, -signal.SIGTERM)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_report_cache_follows_the_data_version(served: dict[str, Any]) -> None:
    """A closed period's report is reused until an analysis run, import or layout changes the data."""
    url = "/api/v1/stores/mini-store/counters?from=2026-11-20&to=2026-11-21"
    auth = {"Authorization": f"Bearer {served['viewer']}"}
    revenue = lambda: next(r for r in httpx.get(served["base"] + url, headers=auth).json()  # noqa: E731
                           if r["zone"] == "C03")["revenue"]
    before = revenue()
    with psycopg.connect(served["db_url"]) as db:
        db.execute("INSERT INTO purchases (store_id, ts, member, zone_id, amount, receipt) SELECT s.store_id, "
                   "'2026-11-20T15:00:00+08:00', NULL, z.zone_id, 1000, 'R-cache' FROM stores s JOIN zones z "
                   "USING (store_id) WHERE s.store = 'mini-store' AND z.zone = 'C03'")
        db.commit()
        assert revenue() == before  # written behind the importer's back: the cached body is still served
        db.execute("INSERT INTO import_ledger (kind, store_id, file_sha256, chunk, rows_in, rows_rejected) "
                   "SELECT 'purchases', store_id, 'cache-test', 0, 1, 0 FROM stores WHERE store = 'mini-store'")
        db.commit()
    assert revenue() == before + 1000  # an import: recomputed at once


def test_report_cache_computes_concurrent_misses_once() -> None:
    import threading

    from api.views.reports import ReportCache

    cache, calls = ReportCache(ttl_s=60), []

    def slow() -> bytes:
        calls.append(1)
        time.sleep(0.2)
        return b"[1]"

    bodies: list[bytes] = []
    threads = [threading.Thread(target=lambda: bodies.append(cache.get(("k",), slow))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bodies == [b"[1]"] * 10 and len(calls) == 1
    assert cache.get(("other",), lambda: b"[2]") == b"[2]"
    expired = ReportCache(ttl_s=0)
    expired.get(("k",), slow)
    expired.get(("k",), slow)
    assert len(calls) == 3  # a zero TTL recomputes every time


def test_sigterm_stops_the_server(served: dict[str, Any]) -> None:
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why it stopped
    assert proc.wait(15) in (0, -signal.SIGTERM)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    with pytest.raises(httpx.TransportError):
        httpx.get(served["base"] + "/login", timeout=2)
