"""`storeflow report ...` through storeflow.cli.main on the hand-written fixture (see test_reports.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from test_reports import STORE, load_report_fixture

from analytics.render import PNG_SIGNATURE
from storeflow.cli import main

DAY = ["--from", "2026-11-20", "--to", "2026-11-21"]


@pytest.fixture
def url(db: psycopg.Connection, db_url: str, mini_layout_path: Path) -> str:
    load_report_fixture(db, mini_layout_path)
    return db_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_counters_json_has_exactly_the_spec_keys(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "counters", "--store", STORE, *DAY, "--format", "json",
                         "--database-url", url)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["zone"] for r in rows] == ["C01", "C02", "C03"]
    assert all(list(r) == ["zone", "visitors", "visits", "passbys", "dwell_median_s", "dwell_p90_s",
                           "dwell_total_s", "buyers", "conversion", "revenue", "revenue_per_visitor",
                           "attraction"] for r in rows)
    assert (rows[0]["visitors"], rows[0]["buyers"], rows[0]["revenue"]) == (3, 2, 560.0)
    assert rows[2]["conversion"] is None


def test_counters_default_period_and_parquet(url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # No --from/--to: yesterday in the store's time zone (no fixture data then): zero rows per counter.
    code, out, err = run(capsys, "report", "counters", "--store", STORE, "--database-url", url)
    assert code == 0, err
    assert [(r["zone"], r["visitors"], r["conversion"]) for r in json.loads(out)] == [
        ("C01", 0, None), ("C02", 0, None), ("C03", 0, None)]
    # ... and one line on stderr saying which dates hold visits
    assert err.count("\n") == 1 and err.startswith("storeflow: note: no visits from ")
    with psycopg.connect(url) as conn:
        first, last = conn.execute(
            "SELECT min(start_ts AT TIME ZONE s.timezone)::date, max(start_ts AT TIME ZONE s.timezone)::date "
            "FROM visits v JOIN stores s USING (store_id) WHERE s.store = %s", (STORE,)).fetchone()
    assert f"analysed visits run from {first} to {last}: pass --from/--to" in err
    code, out, err = run(capsys, "report", "counters", "--store", STORE, *DAY, "--database-url", url)
    assert (code, err) == (0, "")
    target = tmp_path / "c.parquet"
    code, _, err = run(capsys, "report", "counters", "--store", STORE, *DAY, "--by", "day", "--format", "parquet",
                       "-o", str(target), "--database-url", url)
    assert code == 0, err
    t = pq.read_table(target)
    assert t.column_names[:2] == ["day", "zone"] and t.column("visitors").to_pylist() == [3, 5, 0]
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM visits")
    code, out, err = run(capsys, "report", "paths", "--store", STORE, *DAY, "--database-url", url)
    assert code == 0 and err.startswith(f"storeflow: note: no visits analysed for store {STORE} yet")


def test_counters_csv_breakdown_and_compare(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "counters", "--store", STORE, *DAY, "--format", "csv",
                         "--by", "tier", "--database-url", url)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    gold = next(r for r in rows if r["tier"] == "gold" and r["zone"] == "C01")
    assert (gold["visitors"], gold["revenue"]) == ("1", "20.0")
    vip = next(r for r in rows if r["tier"] == "vip" and r["zone"] == "C01")
    assert vip["attraction"] == ""  # null
    code, out, err = run(capsys, "report", "counters", "--store", STORE, *DAY, "--compare", "year",
                         "--database-url", url)
    assert code == 0, err
    c01 = json.loads(out)[0]
    assert (c01["visitors"], c01["visitors_prev"], c01["visitors_delta"]) == (3, 1, 2)


def test_store_json_is_one_object(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "store", "--store", STORE, *DAY, "--database-url", url)
    assert code == 0, err
    assert json.loads(out) == {"footfall": 50, "tags_seen": 5, "transactions": 7, "conversion": 0.14,
                               "trip_median_s": 1200.0}
    code, out, _ = run(capsys, "report", "store", "--store", STORE, *DAY, "--by", "hour", "--database-url", url)
    assert code == 0 and len(json.loads(out)) == 24


def test_visits_csv(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "visits", "--store", STORE, *DAY, "--format", "csv", "--database-url", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "epc,member,zone,start,end,dwell_s"
    assert lines[1] == "E2000002,M2,C02,2026-11-19T16:05:00+00:00,2026-11-19T16:15:00+00:00,600.0"
    assert len(lines) == 1 + 9
    # the anonymous tag has an empty member field
    assert any(line.startswith("E2000003,,") for line in lines)


def test_paths_json_csv_parquet(url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "report", "paths", "--store", STORE, *DAY, "--top", "2", "--database-url", url)
    assert code == 0, err
    assert json.loads(out) == [{"path": ["C02"], "trips": 2}, {"path": ["C01"], "trips": 1}]
    code, out, _ = run(capsys, "report", "paths", "--store", STORE, *DAY, "--format", "csv", "--database-url", url)
    assert out.splitlines()[:3] == ["path,trips", "C02,2", "C01,1"]
    target = tmp_path / "paths.parquet"
    code, _, err = run(capsys, "report", "paths", "--store", STORE, *DAY, "--format", "parquet",
                       "--output", str(target), "--database-url", url)
    assert code == 0, err
    table = pq.read_table(target)
    assert table.column("trips").to_pylist() == [2, 1, 1, 1]
    assert table.column("path").to_pylist()[2] == ["C01", "C02", "C01"]


def test_heatmap_outputs(url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "report", "heatmap", "--store", STORE, "--floor", "1", *DAY, "--cell", "1",
                         "--format", "csv", "--database-url", url)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 600 and rows[0] == {"x_m": "0.5", "y_m": "0.5", "seconds": "36.0"}
    png = tmp_path / "h.png"
    code, _, err = run(capsys, "report", "heatmap", "--store", STORE, "--floor", "1", *DAY, "--format", "png",
                       "--engine", "builtin", "--output", str(png), "--database-url", url)
    assert code == 0, err
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert int.from_bytes(data[16:20], "big") == 960 and int.from_bytes(data[20:24], "big") == 640  # 60x40 cells, 16 px
    html = tmp_path / "h.html"
    code, _, err = run(capsys, "report", "heatmap", "--store", STORE, "--floor", "1", *DAY, "--format", "html",
                       "--output", str(html), "--database-url", url)
    assert code == 0, err
    text = html.read_text(encoding="utf-8")
    assert "storeflow-heatmap" in text and "Plotly.newPlot" in text and '"type":"heatmap"' in text


def test_member_journey_cli(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "member", "--store", STORE, "--member", "M1", "--from", "2026-11-20",
                         "--to", "2026-11-22", "--database-url", url)
    assert code == 0, err
    j = json.loads(out)
    assert [t["path"] for t in j["trips"]] == [["C01", "C02", "C01"], ["C03"]]
    assert "E2000001" not in out and "E2000001" not in err
    code, out, err = run(capsys, "report", "member", "--store", STORE, "--member", "M999", *DAY, "--database-url", url)
    assert (code, out) == (2, "")
    assert err.strip() == "storeflow: member 'M999' not found"


def test_ranking_and_concentration_cli(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "ranking", "--store", STORE, *DAY, "--format", "csv", "--database-url", url)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["rank"], r["zone"], r["label"]) for r in rows][0] == ("1", "C01", "attracts and converts")
    code, out, err = run(capsys, "report", "concentration", "--store", STORE, *DAY, "--database-url", url)
    assert code == 0, err
    assert json.loads(out)["top_share"] == pytest.approx(200 / 415)


@pytest.mark.parametrize("argv, needle", [
    (["report", "counters", "--store", "nope", *DAY], "unknown store 'nope'"),
    (["report", "counters", "--store", STORE, "--from", "2026-11-21", "--to", "2026-11-20"], "is not before"),
    (["report", "counters", "--store", STORE, *DAY, "--format", "xml"], "invalid choice: 'xml'"),
    (["report", "store", "--store", STORE, "--from", "2026-11-20T10:00"], "no UTC offset"),
    (["report", "heatmap", "--store", STORE, "--floor", "1", *DAY, "--cell", "0.75"], "whole multiple"),
    (["report", "paths", "--store", STORE, *DAY, "--top", "0"], "must be at least 1"),
    (["report", "counters", "--store", STORE, *DAY, "--by", "day", "--compare", "previous"], "--by day"),
])
def test_bad_arguments_exit_2_with_one_line(url: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            needle: str) -> None:
    code, out, err = run(capsys, *argv, "--database-url", url)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err
