"""Dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against a
real uvicorn server over a test database: each page loads with data, the heatmap renders over the
floor plan image, the time range picker changes the figures, no console errors. Screenshots at
tablet (1024 px) and laptop (1440 px) width go to artifacts/screenshots/."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from api.app import create_app
from api.auth import create_token
from bench.bench_api import populate, synth_layout
from storeflow.layout import parse_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout
from tests.conftest import _drop_db, _fresh_db, db_url_for
from tests.test_reports import load_report_fixture

pytestmark = [pytest.mark.db, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
STORE = "demo-12"
DAY1, DAY2 = "2026-11-18", "2026-11-19"   # DAY2 is a Thursday like DAY1; its data differs (other seed draws)
PAGES = ("floor", "counters", "paths", "traffic")


def tiny_png(width: int = 64, height: int = 40) -> bytes:
    """A small RGB PNG: a light floor with darker walls and a grid (no imaging library needed)."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            wall = x in (0, width - 1) or y in (0, height - 1)
            grid = x % 8 == 0 or y % 8 == 0
            v = 90 if wall else 215 if grid else 240
            row += bytes((v, v, v + 10 if v < 245 else 250))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """uvicorn serving an app in a background thread on 127.0.0.1:port."""

    def __init__(self, app: Any, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def site(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server over a database with the mini store (report fixture) and a 12-counter store with a
    floor plan image and two days of synthetic data; a viewer token for both."""
    name = _fresh_db(pg_template)
    url = db_url_for(name)
    layout_dir = tmp_path_factory.mktemp("layout")
    (layout_dir / "plan.png").write_bytes(tiny_png())
    try:
        with psycopg.connect(url) as conn:
            load_report_fixture(conn, Path(__file__).parent / "data" / "mini_store.yaml")
            upsert_layout(conn, parse_layout(synth_layout(STORE, 12, plan="plan.png",
                                                          name="Demo department store"), source_dir=layout_dir))
            populate(conn, STORE, date(2026, 11, 18), 2, 40, seed=7, tag_id_base=1000)
            token = create_token(conn, "viewer", [STORE, "mini-store"])[1]
        with ThreadServer(create_app(Settings(database_url=url), url), free_port()) as server:
            yield {"url": server.url, "token": token, "db_url": url}
    finally:
        _drop_db(name)


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (we never download a browser)", pytrace=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A signed-in page that records console errors, failed requests and page errors."""

    def __init__(self, browser: Any, site: dict[str, Any], width: int = 1440, height: int = 900):
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        self.base = site["url"]
        self.page.goto(f"{self.base}/login?token={site['token']}")
        self.drawn = 0

    def open(self, path: str) -> None:
        self.errors.clear()
        self.page.goto(self.base + path)
        self.drawn = 0  # a new document counts its draws from 1
        self.wait_drawn()

    def wait_drawn(self) -> None:
        self.drawn += 1
        self.page.wait_for_selector(f'body[data-drawn="{self.drawn}"]', state="attached", timeout=15000)

    def pick(self, from_: str, to: str) -> None:
        self.page.fill("#from", from_)
        self.page.fill("#to", to)
        self.page.click("#apply")
        self.wait_drawn()

    def status(self) -> str:
        return str(self.page.text_content("#status") or "")

    def cards(self) -> list[str]:
        return [str(t) for t in self.page.locator(".card b").all_text_contents()]

    def plot_data(self, div: str) -> Any:
        return self.page.evaluate(f"document.getElementById('{div}').data")

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture(scope="module")
def _laptop(browser: Any, site: dict[str, Any]) -> Iterator[Page]:
    p = Page(browser, site)  # one signed-in context for the module: plotly.js is parsed from cache
    yield p
    p.close()


@pytest.fixture
def page(_laptop: Page) -> Page:
    return _laptop


def _first_period(p: Page, view: str) -> None:
    p.open(f"/{view}?store={STORE}&from={DAY1}&to={DAY1}")
    assert p.status() == "", p.status()


def test_floor_heatmap_over_plan_image_and_picker(page: Page) -> None:
    _first_period(page, "floor")
    data = page.plot_data("plot")
    heat = [t for t in data if t["type"] == "heatmap"]
    assert len(heat) == 1
    z1 = [v for row in heat[0]["z"] for v in row if v]
    assert z1 and max(z1) > 0
    outlines = [t for t in data if t["type"] == "scatter"]
    assert {t["name"] for t in outlines} >= {"C01", "C12", "E1"}
    layout = page.page.evaluate("document.getElementById('plot').layout")
    assert layout["images"][0]["source"] == f"/api/v1/stores/{STORE}/floors/1/plan"
    # the plan image is really drawn (an <image> element whose data loaded without error)
    assert page.page.locator("#plot image").count() >= 1
    total1 = page.cards()[0]
    page.shot("floor-1440")
    page.pick(DAY2, DAY2)
    z2 = [v for row in page.plot_data("plot")[0]["z"] for v in row if v]
    assert z2 and z2 != z1
    total2 = page.cards()[0]
    assert total2 != total1
    page.pick(DAY1, DAY2)  # both days: more tag-hours than either alone
    num = lambda t: float(t.replace(",", ""))  # noqa: E731
    assert num(page.cards()[0]) > max(num(total1), num(total2))
    assert page.page.url.endswith(f"from={DAY1}&to={DAY2}&floor=1")
    assert page.errors == []


def test_floor_hover_shows_counter_kpis(page: Page) -> None:
    _first_period(page, "floor")
    c01 = next(t for t in page.plot_data("plot") if t.get("name") == "C01")
    assert "visitors" in c01["text"] and "conversion" in c01["text"]
    assert page.errors == []


def test_counters_table_sort_quadrant_and_picker(page: Page) -> None:
    _first_period(page, "counters")
    rows = page.page.locator("#table tbody tr")
    assert rows.count() == 12
    quad = page.plot_data("quadrant")[0]
    assert len(quad["x"]) > 0 and all(0 <= x <= 1 for x in quad["x"])
    cards1 = page.cards()
    revenue = [float(t.replace(",", "")) for t in page.page.locator("#table tbody td:nth-child(10)").all_text_contents()]
    assert revenue == sorted(revenue, reverse=True)  # default sort: revenue, descending
    page.page.click("#table th[data-k=visitors]")
    visitors = [int(t.replace(",", "")) for t in page.page.locator("#table tbody td:nth-child(3)").all_text_contents()]
    assert visitors == sorted(visitors, reverse=True)
    page.shot("counters-1440")
    page.pick(DAY2, DAY2)
    assert page.cards() != cards1
    every_tier = int(page.cards()[1].replace(",", ""))

    page.page.select_option("#tier", "regular")
    page.page.click("#apply")
    page.wait_drawn()
    regular = int(page.cards()[1].replace(",", ""))
    assert 0 < regular < every_tier
    assert page.errors == []


def test_paths_sankey_and_picker(page: Page) -> None:
    _first_period(page, "paths")
    sankey = page.plot_data("sankey")[0]
    assert sankey["type"] == "sankey" and "Entrance" in sankey["node"]["label"]
    assert sum(sankey["link"]["value"]) > 0
    table1 = page.page.locator("table tbody").inner_text()
    page.shot("paths-1440")
    page.pick(DAY2, DAY2)
    assert page.page.locator("table tbody").inner_text() != table1
    assert page.errors == []


def test_traffic_hourly_and_picker(page: Page) -> None:
    _first_period(page, "traffic")
    hourly = page.plot_data("hourly")
    entries = hourly[0]["y"]
    assert len(entries) == 24 and sum(entries) > 0 and sum(entries[:10]) == 0  # opens at 10:00
    footfall1 = page.cards()[0]
    assert int(footfall1.replace(",", "")) == sum(entries)
    page.shot("traffic-1440")
    page.pick(DAY1, DAY2)
    assert int(page.cards()[0].replace(",", "")) > int(footfall1.replace(",", ""))
    assert len(page.plot_data("daily")[0]["x"]) == 2
    assert page.errors == []


def test_tablet_width_no_horizontal_overflow(browser: Any, site: dict[str, Any]) -> None:
    p = Page(browser, site, width=1024, height=768)
    try:
        for view in PAGES:
            _first_period(p, view)
            overflow = p.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{view}: page is {overflow} px wider than a 1024 px tablet"
            p.shot(f"{view}-1024")
            assert p.errors == [], view
    finally:
        p.close()


def test_store_without_data_in_period_says_so(page: Page) -> None:
    page.open("/counters?store=mini-store&from=2020-01-01&to=2020-01-01")
    assert page.page.locator("#table tbody tr").count() == 3
    assert "No counter visits" in page.status()
    page.pick("2026-11-20", "2026-11-20")  # the report fixture's day: C01 has 3 visitors (tests/test_reports.py)
    assert page.status() == ""
    c01 = page.page.locator("#table tbody tr", has_text="C01").locator("td").all_text_contents()
    assert c01[2] == "3"
    assert page.errors == []


def test_bad_token_is_refused_and_pages_redirect(browser: Any, site: dict[str, Any]) -> None:
    ctx = browser.new_context()
    try:
        pg = ctx.new_page()
        resp = pg.goto(f"{site['url']}/login?token=sf_wrong")
        assert resp is not None and resp.status == 401
        assert "not valid" in pg.text_content("body")
        pg.goto(f"{site['url']}/traffic")
        assert pg.url.endswith("/login")
    finally:
        ctx.close()


def test_floor_without_plan_image_draws_zone_outlines(page: Page) -> None:
    page.open("/floor?store=mini-store&from=2026-11-20&to=2026-11-20")
    layout = page.page.evaluate("document.getElementById('plot').layout")
    assert not layout.get("images")
    data = page.plot_data("plot")
    assert {t["name"] for t in data if t["type"] == "scatter"} == {"C01", "C02", "C03", "E1", "K1"}
    z = [v for row in data[0]["z"] for v in row if v]
    # the fixture's heatmap cells on 2026-11-20 hold 10+20+... tag-seconds; the page shows minutes
    heat = page.page.evaluate("fetch('/api/v1/stores/mini-store/heatmap?floor=1&cell=1&from=2026-11-20&to=2026-11-21')"
                              ".then((r) => r.json())")
    assert z and abs(sum(z) * 60 - sum(c["seconds"] for c in heat["cells"])) < 1e-6
    assert page.errors == []
