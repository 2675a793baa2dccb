"""Schema migrations, layout validation, the wire codec and the settings reference."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import psycopg
import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from storeflow.contract import BadInput, parse_epc, parse_ts_us
from storeflow.db import has_timescaledb, migrate, migrations
from storeflow.layout import load_layout, parse_layout
from storeflow.settings import Settings, settings_markdown
from storeflow.store import load_store_dims, upsert_layout
from storeflow.wire import READ_DTYPE, Batch, WireError, decode_batch, encode_batch

ROOT = Path(__file__).resolve().parents[1]


# --- migrations -------------------------------------------------------------------------------------

@pytest.mark.db
def test_migrations_create_hypertables_under_timescaledb(db: psycopg.Connection) -> None:
    assert has_timescaledb(db)
    hyper = {r[0] for r in db.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert {"tag_reads", "door_counts", "visits", "trips", "heatmap_cells"} <= hyper
    done = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert done == [m.version for m in migrations()]
    assert migrate(db) == []  # idempotent


@pytest.mark.db
def test_migrations_without_timescaledb_use_plain_tables_with_brin(pg_template: str) -> None:
    from tests.conftest import _admin, _drop_db, db_url_for

    name = f"sf_plain_{pg_template[-6:]}"
    with _admin() as a:
        a.execute(f'DROP DATABASE IF EXISTS "{name}"')
        a.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(db_url_for(name)) as conn:
            migrate(conn, Settings(timescaledb="off"))
            assert not has_timescaledb(conn)
            idx = {r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'tag_reads'")}
            assert any("USING brin" in d for d in idx), idx
    finally:
        _drop_db(name)


# --- layout -------------------------------------------------------------------------------------

def test_mini_layout_loads(mini_layout_path: Path) -> None:
    lay = load_layout(mini_layout_path)
    assert lay.store == "mini-store"
    assert [z.zone for z in lay.counters] == ["C01", "C02", "C03"]
    assert parse_layout(lay.to_dict()) == parse_layout(lay.to_dict())
    assert parse_layout(lay.to_dict()).zones == lay.zones


def _mutated(path: Path, fn) -> dict:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(path.read_text())
    fn(data)
    return data


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["zones"][0].update(floor=7), r"zones\[0\] \(zone 'C01'\)\.floor: unknown floor 7"),
        (lambda d: d["readers"][0]["antennas"][0].update(zone="C99"),
         r"readers\[0\] \(reader 'R1'\)\.antennas\[0\]\.zone: unknown zone 'C99'"),
        (lambda d: d["zones"][1].update(polygon=[[0, 0], [4, 4], [4, 0], [0, 4]]),
         r"zones\[1\] \(zone 'C02'\)\.polygon: self-intersecting"),
        (lambda d: d["zones"].append(copy.deepcopy(d["zones"][0])), r"zones\[5\] \(zone 'C01'\)\.zone: duplicate zone id"),
        (lambda d: d["readers"].append(copy.deepcopy(d["readers"][0])), r"readers\[2\].*duplicate reader id 'R1'"),
        (lambda d: d["readers"][1]["antennas"][0].update(x=31.0),
         r"readers\[1\] \(reader 'R2'\)\.antennas\[0\]\.x: antenna at \(31.0, 5.0\) is outside floor 1"),
        (lambda d: d["readers"][1]["antennas"][0].update(y=-1.0), r"antennas\[0\]\.y: .* outside floor 1"),
        (lambda d: d.update(store="Bad Store"), r"layout\.store: 'Bad Store' is not a store id"),
        (lambda d: d.update(timezone="Mars/Olympus"), r"layout\.timezone: 'Mars/Olympus' is not an IANA"),
        (lambda d: d["doors"].append(dict(d["doors"][0])), r"doors\[1\] \(door 'D1'\)\.door: duplicate door id"),
        (lambda d: d["floors"].append(dict(d["floors"][0])), r"floors\[1\] \(floor 1\)\.floor: duplicate floor"),
        (lambda d: d["readers"][0]["antennas"][1].update(port=1), r"antennas\[1\]\.port: duplicate port 1"),
        (lambda d: d["zones"][2].update(kind="shop"), r"zones\[2\] \(zone 'C03'\)\.kind: 'shop' is not one of"),
        (lambda d: d["zones"][2].pop("polygon"), r"zones\[2\] \(zone 'C03'\)\.polygon: missing"),
    ],
)
def test_layout_rejections_name_entry_and_field(mini_layout_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=expected):
        parse_layout(_mutated(mini_layout_path, mutate))


def test_layout_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_layout(bad)
    with pytest.raises(BadInput, match="cannot read layout"):
        load_layout(tmp_path / "missing.yaml")


@given(st.lists(st.tuples(st.floats(0, 30), st.floats(0, 20)), min_size=0, max_size=8))
@hsettings(max_examples=200, deadline=None)
def test_layout_polygon_fuzz_never_crashes(points: list[tuple[float, float]]) -> None:
    data = {"store": "s1", "timezone": "UTC", "floors": [{"floor": 1, "width_m": 30, "depth_m": 20}],
            "zones": [{"zone": "Z", "kind": "counter", "floor": 1, "polygon": [list(p) for p in points]}]}
    try:
        lay = parse_layout(data)
    except BadInput as e:
        assert "zones[0]" in str(e)
    else:
        assert len(lay.zones[0].polygon) >= 3


@pytest.mark.db
def test_layout_upsert_is_idempotent(db: psycopg.Connection, mini_layout_path: Path) -> None:
    lay = load_layout(mini_layout_path)
    sid = upsert_layout(db, lay)
    assert upsert_layout(db, lay) == sid
    dims = load_store_dims(db, "mini-store")
    assert set(dims.zone_ids) == {"C01", "C02", "C03", "E1", "K1"}
    assert set(dims.antenna_ids) == {("R1", 1), ("R1", 2), ("R2", 1), ("R2", 2)}
    assert db.execute("SELECT count(*) FROM antennas").fetchone() == (4,)
    with pytest.raises(BadInput, match="unknown store 'nope'"):
        load_store_dims(db, "nope")


# --- values -------------------------------------------------------------------------------------

def test_timestamps() -> None:
    assert parse_ts_us("2026-11-20T10:00:00.250+08:00") == parse_ts_us("2026-11-20T02:00:00.250+00:00")
    assert parse_ts_us("1763604000250000") == 1763604000250000
    with pytest.raises(BadInput, match="no UTC offset"):
        parse_ts_us("2026-11-20T10:00:00")
    assert parse_epc("e200001d8817005312345678") == "E200001D8817005312345678"
    with pytest.raises(BadInput, match="EPC"):
        parse_epc("E20")


# --- wire ---------------------------------------------------------------------------------------

def _batch(n: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, READ_DTYPE)
    rec["ts_us"] = 1_763_604_000_000_000 + rng.integers(0, 10**9, n)
    rec["antenna"] = rng.integers(0, 3, n)
    rec["epc"] = rng.integers(0, 2, n)
    rec["rssi_cdbm"] = rng.integers(-9000, -3000, n)
    rec["count"] = 1
    return Batch("reads", "mini-store", "agent-1", "s0", 7, 1_763_604_000_000_000, rec,
                 antennas=[("R1", 1), ("R1", 2), ("R2", 1)], epcs=["E2000000AAAA", "E2000000BBBB"])


def test_wire_round_trip() -> None:
    b = _batch(100)
    out = decode_batch(encode_batch(b))
    assert np.array_equal(out.records, b.records)
    assert (out.store, out.agent, out.stream, out.seq, out.antennas, out.epcs) == (
        b.store, b.agent, b.stream, b.seq, b.antennas, b.epcs)


def test_wire_rejects_index_past_table() -> None:
    b = _batch(5)
    b.records["epc"][3] = 9
    with pytest.raises(WireError, match="epc index 9"):
        encode_batch(b)


@given(st.binary(max_size=300))
@hsettings(max_examples=300, deadline=None)
def test_wire_fuzz_random_bytes(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_batch(data)


@given(st.integers(0, 400), st.binary(max_size=8))
@hsettings(max_examples=200, deadline=None)
def test_wire_fuzz_truncated_and_spliced(cut: int, junk: bytes) -> None:
    payload = encode_batch(_batch(10))
    mangled = payload[:cut] + junk
    if mangled == payload:
        return
    try:
        decode_batch(mangled)
    except WireError:
        pass
    else:
        # only a splice that happens to keep a well-formed payload may decode
        assert len(mangled) == len(payload)


# --- settings -----------------------------------------------------------------------------------

def test_settings_reference_is_generated_and_complete() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_markdown(), "docs/settings.md is stale: run storeflow settings --markdown > docs/settings.md"
    for name in Settings.model_fields:
        assert f"STOREFLOW_{name.upper()}" in doc
