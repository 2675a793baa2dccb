"""The analyze job against the real TimescaleDB: binary COPY load, re-runs, range boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from analytics.data import Reads, antenna_map, zone_map
from analytics.job import PG_EPOCH_US, _position_models_from_json, analyze, load_reads, parse_pgcopy_reads
from analytics.positions import estimate_positions
from analytics.presence import fit_presence_model, zone_presence
from analytics.refine import refine_visits, zone_masks
from analytics.visits import visits_from_presence
from storeflow.cli import main
from storeflow.contract import parse_ts_us
from storeflow.layout import load_layout
from storeflow.settings import Settings
from storeflow.store import load_store_dims, upsert_layout
from tests.test_presence import T0, S, _random_plans, _synthetic

pytestmark = pytest.mark.db
H = 3600 * S


def _load_store(db, layout_path, n_tags=40, seed=7):
    lay = load_layout(layout_path)
    sid = upsert_layout(db, lay)
    dims = load_store_dims(db, lay.store)
    am, zm = antenna_map(lay, dims.antenna_ids), zone_map(lay)
    rng = np.random.default_rng(seed)
    reads = _synthetic(am, zm, _random_plans(zm, rng, n_tags), rng)
    # spread tags over two hours so that trips and visits cross the hour boundary
    shift = (reads.tag.astype(np.int64) * 150 * S)
    tag_ids = []
    with db.transaction():
        for t in range(n_tags):
            kind = "staff" if t == 0 else None
            tag_ids.append(db.execute("INSERT INTO tags (epc, kind) VALUES (%s, %s) RETURNING tag_id",
                                      (f"E2{t:022X}", kind)).fetchone()[0])
        tid = np.array(tag_ids, np.int32)[reads.tag]
        with db.cursor().copy("COPY tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, read_count) FROM STDIN") as cp:
            from analytics.job import _tstz

            for ts, a, t, r in zip(_tstz(reads.ts_us + shift), am.antenna_id[reads.antenna].tolist(), tid.tolist(),
                                   np.round(reads.rssi_dbm * 100).astype(int).tolist()):
                cp.write_row((ts, sid, a, t, r, 1))
    return lay, sid, am, zm, Reads.sorted_from(tid, reads.ts_us + shift, reads.antenna,
                                               np.round(reads.rssi_dbm * 100) / 100), tag_ids[0]


def _rows(db, table, cols):
    return db.execute(f"SELECT {cols} FROM {table} ORDER BY 1, 2, 3").fetchall()


def _assert_rollups_hold_the_visits(db, sid, lo_us, hi_us):
    """The visit rollups cover the range's local days and hold exactly its customer visits."""
    from analytics.job import _dt
    from analytics.rollups import covered_days, load_visit_columns

    tz = db.execute("SELECT timezone FROM stores WHERE store_id = %s", (sid,)).fetchone()[0]
    start, end = _dt(lo_us), _dt(hi_us)
    assert covered_days(db, sid, tz, start, end)
    a = load_visit_columns(db, sid, tz, start, end)
    b = load_visit_columns(db, sid, tz, start, end, use_rollups=False)
    assert a.from_rollups >= 1 and b.from_rollups == 0
    rows = lambda c: sorted(zip(c.tag_id.tolist(), c.start_us.tolist(), c.zone_id.tolist(),  # noqa: E731
                                c.dwell_s.tolist(), c.passby.tolist(), c.trip_end_us.tolist()))
    assert rows(a) == rows(b) and len(a) > 0


def test_analyze_writes_reruns_and_splits_ranges(db, mini_layout_path):
    lay, sid, am, zm, reads, staff = _load_store(db, mini_layout_path)
    st_ = Settings(analyze_margin_s=3600)
    lo = T0 - T0 % H
    hi = lo + 3 * H
    # the binary COPY loader gives exactly the reads we wrote
    got, dropped = load_reads(db, sid, lo, hi, am)
    assert dropped == 0 and len(got) == len(reads)
    assert np.array_equal(got.tag, reads.tag) and np.array_equal(got.ts_us, reads.ts_us)
    assert np.array_equal(got.antenna, reads.antenna)
    assert np.allclose(got.rssi_dbm, reads.rssi_dbm, atol=0.006)
    # the job's visits are the kernels' visits (counters only, start in range)
    res = analyze(db, lay.store, lo, hi, st_, with_heatmap=False)
    model = fit_presence_model(got, am, zm)
    p = zone_presence(got, model, am, 1200).zones_only()
    v = visits_from_presence(p.tag, p.zone, p.start_us, p.end_us, gap_s=30, min_dwell_s=10)
    counter = np.array([k == "counter" for k in zm.kind])
    # customers' visits refined with their positions, estimated with the stored position models
    (pm_json,) = db.execute("SELECT position_model FROM presence_models").fetchone()
    pl, rm = _position_models_from_json(pm_json)
    customers = np.setdiff1d(np.unique(got.tag), [staff])
    pos = estimate_positions(got, am, lay, model=pl, range_model=rm, tags=customers)
    v = refine_visits(v, pos, zone_masks(lay.zones), zones=counter)
    assert res.visits + res.passbys == int(counter[v.zone].sum()) > 20
    vis = _rows(db, "visits", "tag_id, start_ts, zone_id, end_ts, dwell_s, passby, customer")
    assert len(vis) == res.visits + res.passbys
    assert all(c == (t != staff) for t, *_, c in vis)
    trips = _rows(db, "trips", "tag_id, start_ts, end_ts, n_reads, path, customer")
    assert len(trips) == len(np.unique(reads.tag)) and sum(t[3] for t in trips) == len(reads)
    _assert_rollups_hold_the_visits(db, sid, lo, hi)
    # re-running gives the same rows
    analyze(db, lay.store, lo, hi, st_, with_heatmap=False)
    assert _rows(db, "visits", "tag_id, start_ts, zone_id, end_ts, dwell_s, passby, customer") == vis
    assert _rows(db, "trips", "tag_id, start_ts, end_ts, n_reads, path, customer") == trips
    # two adjacent ranges split at an hour store every visit and trip exactly once
    db.execute("DELETE FROM visits; DELETE FROM trips")
    db.commit()
    analyze(db, lay.store, lo, lo + H + H // 2, st_, with_heatmap=False)
    analyze(db, lay.store, lo + H + H // 2, hi, st_, with_heatmap=False)
    assert _rows(db, "visits", "tag_id, start_ts, zone_id, end_ts, dwell_s, passby, customer") == vis
    assert _rows(db, "trips", "tag_id, start_ts, end_ts, n_reads, path, customer") == trips
    runs = db.execute("SELECT count(*), count(finished_at) FROM analysis_runs").fetchone()
    assert runs == (4, 4)
    assert db.execute("SELECT count(*), count(position_model) FROM presence_models").fetchone() == (1, 1)
    _assert_rollups_hold_the_visits(db, sid, lo, hi)


def test_analyze_in_tag_blocks_and_heatmap(db, mini_layout_path):
    lay, sid, am, zm, reads, staff = _load_store(db, mini_layout_path, n_tags=20, seed=3)
    lo = T0 - T0 % H
    st_ = Settings()
    one = analyze(db, lay.store, lo, lo + 2 * H, st_, with_heatmap=True)
    heat = db.execute("SELECT sum(seconds), count(*) FROM heatmap_cells").fetchone()
    assert one.heatmap_cells == heat[1] > 0 and heat[0] > 0
    trips = _rows(db, "trips", "tag_id, start_ts, end_ts, n_reads, path, customer")
    many = analyze(db, lay.store, lo, lo + 2 * H, st_, block_reads=len(reads) // 5, with_heatmap=True)
    assert many.blocks >= 5
    assert _rows(db, "trips", "tag_id, start_ts, end_ts, n_reads, path, customer") == trips
    heat2 = db.execute("SELECT sum(seconds), count(*) FROM heatmap_cells").fetchone()
    # the heatmap's path-loss model is fitted on the first block, so cells may move; the customer
    # tag-seconds do not depend on it (cells from different blocks are summed, not duplicated)
    assert heat2[0] == pytest.approx(heat[0], rel=1e-4)


def test_cli_analyze(db_url, db, mini_layout_path, capsys, monkeypatch):
    lay, *_ = _load_store(db, mini_layout_path, n_tags=5)
    db.commit()
    assert main(["analyze", "--store", lay.store, "--no-heatmap", "--database-url", db_url]) == 0
    out = capsys.readouterr().out
    assert '"visits"' in out
    assert main(["analyze", "--store", "nope", "--database-url", db_url]) == 2
    assert "unknown store" in capsys.readouterr().err
    assert main(["analyze", "--store", lay.store, "--from", "2026-01-01T00:00:00", "--database-url", db_url]) == 2
    assert main(["analyze", "--store", lay.store, "--from", "2026-01-02T00:00:00+00:00",
                 "--to", "2026-01-01T00:00:00+00:00", "--database-url", db_url]) == 2


def _pgcopy(rows, nf=5):
    head = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    body = b""
    for tag, ts, ant, rssi, cnt in rows:
        body += nf.to_bytes(2, "big", signed=True)
        for v, n in ((tag, 4), (ts - PG_EPOCH_US, 8), (ant, 4), (rssi, 2), (cnt, 2)):
            body += n.to_bytes(4, "big") + int(v).to_bytes(n, "big", signed=True)
    return head + body + b"\xff\xff"


@hsettings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(946_684_800 * S, 4_102_444_800 * S),
                          st.integers(0, 2**31 - 1), st.integers(-32768, 32767), st.integers(-32768, 32767)),
                max_size=30))
def test_pgcopy_parser_round_trip(rows):
    cols = parse_pgcopy_reads(_pgcopy(rows))
    assert [tuple(int(c[i]) for c in cols) for i in range(len(rows))] == [tuple(r) for r in rows]


def test_pgcopy_parser_rejects_malformed():
    good = _pgcopy([(1, 1_700_000_000 * S, 2, -6150, 1)])
    with pytest.raises(ValueError, match="signature"):
        parse_pgcopy_reads(b"COPY" + good[4:])
    with pytest.raises(ValueError, match="trailer"):
        parse_pgcopy_reads(good[:-2])
    with pytest.raises(ValueError, match="whole number"):
        parse_pgcopy_reads(good[:-3] + b"\xff\xff")
    with pytest.raises(ValueError, match="fields, expected 5"):
        parse_pgcopy_reads(_pgcopy([(1, 1_700_000_000 * S, 2, -6150, 1)], nf=6))
    null = bytearray(good)
    null[19 + 2:19 + 6] = (0xFFFFFFFF).to_bytes(4, "big")  # tag length -1 = NULL
    with pytest.raises(ValueError, match="column tag"):
        parse_pgcopy_reads(bytes(null))


def test_real_copy_matches_parser(db):
    """The server's own binary output for the column types we select parses as expected."""
    with db.cursor() as cur:
        buf = bytearray()
        with cur.copy("COPY (SELECT 7::int4, '2026-11-20T02:00:00.25+00'::timestamptz, 3::int4, "
                      "(-6150)::int2, 2::int2) TO STDOUT (FORMAT BINARY)") as cp:
            for chunk in cp:
                buf += chunk
    tag, ts, ant, rssi, cnt = parse_pgcopy_reads(buf)
    assert (tag[0], ant[0], rssi[0], cnt[0]) == (7, 3, -6150, 2)
    assert ts[0] == parse_ts_us("2026-11-20T02:00:00.25+00:00") == 1_795_140_000_250_000


def test_analyze_range_without_reads(db, mini_layout_path):
    lay = load_layout(mini_layout_path)
    upsert_layout(db, lay)
    res = analyze(db, lay.store, T0, T0 + H, Settings(), block_reads=1)
    assert (res.reads, res.visits, res.trips, res.heatmap_cells) == (0, 0, 0, 0)
    assert db.execute("SELECT count(*) FROM presence_models").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM analysis_runs WHERE finished_at IS NOT NULL").fetchone()[0] == 1
    with pytest.raises(Exception, match="empty range"):
        analyze(db, lay.store, T0, T0, Settings())
