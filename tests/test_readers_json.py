"""MQTT JSON codecs (Impinj IoT, Zebra IoT, Irisys, Milesight): documented examples, malformed input, fuzz."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.readers import build_parser
from edge.readers import impinj_iot, irisys, milesight, zebra_iot

IMPINJ_DOC_EVENT = {
    "timestamp": "2021-03-26T17:43:33.727289216Z", "hostname": "impinj-13-e2-45", "eventType": "tagInventory",
    "tagInventoryEvent": {"epc": "MAAAAAAAAAAAAAAA", "epcHex": "300000000000000000000000", "antennaPort": 1,
                          "antennaName": "Antenna 1", "peakRssiCdbm": -5400, "frequency": 920250,
                          "transmitPowerCdbm": 3000, "lastSeenTime": "2021-03-26T17:43:33.726955Z"}}


def test_impinj_iot_documented_event_and_base64_epc() -> None:
    p = impinj_iot.ImpinjIotParser("R1")
    (r,) = p.feed(json.dumps(IMPINJ_DOC_EVENT).encode(), 0)
    assert (r.antenna, r.epc, r.rssi_dbm, r.ts_us) == (1, "300000000000000000000000", -54.0, 1616780613727289)
    ev = dict(IMPINJ_DOC_EVENT, tagInventoryEvent={k: v for k, v in IMPINJ_DOC_EVENT["tagInventoryEvent"].items()
                                                   if k != "epcHex"})
    (r2,) = p.feed(json.dumps([ev, {"eventType": "inventoryStatus", "inventoryStatusEvent": {}}]).encode(), 0)
    assert r2.epc == "300000000000000000000000"
    assert p.stats.extra["event_inventoryStatus"] == 1


@given(st.lists(st.tuples(st.binary(min_size=4, max_size=32), st.integers(1, 32), st.integers(-12000, 0),
                          st.integers(0, 4_000_000_000_000_000), st.booleans()), min_size=1, max_size=20))
def test_impinj_iot_round_trip(events: list[tuple[bytes, int, int, int, bool]]) -> None:
    payload = impinj_iot.dumps([impinj_iot.encode_event(e.hex(), p, c, t, epc_b64=b) for e, p, c, t, b in events])
    recs = impinj_iot.ImpinjIotParser("R1").feed(payload, 0)
    assert [(r.epc, r.antenna, r.rssi_dbm, r.ts_us) for r in recs] == \
        [(e.hex().upper(), p, c / 100, t) for e, p, c, t, _ in events]


@given(st.lists(st.tuples(st.binary(min_size=4, max_size=32), st.integers(1, 32), st.integers(-120, 0),
                          st.integers(0, 4_000_000_000_000_000)), min_size=1, max_size=20))
def test_zebra_round_trip(events: list[tuple[bytes, int, int, int]]) -> None:
    payload = zebra_iot.dumps([zebra_iot.encode_event(e.hex(), p, r, t) for e, p, r, t in events])
    recs = zebra_iot.ZebraIotParser("R1").feed(payload, 0)
    assert [(r.epc, r.antenna, r.rssi_dbm, r.ts_us) for r in recs] == \
        [(e.hex().upper(), p, float(r), t - t % 1000) for e, p, r, t in events]


def test_zebra_documented_event_and_heartbeat() -> None:
    p = zebra_iot.ZebraIotParser("R7")
    doc = {"data": {"eventNum": 1, "format": "epc", "idHex": "e2801160600002054cc2096f", "antenna": 1,
                    "peakRssi": -52, "reads": 3}, "timestamp": "2020-09-01T11:09:13.186+0000", "type": "SIMPLE"}
    (r,) = p.feed(json.dumps(doc).encode(), 5)
    assert (r.epc, r.antenna, r.rssi_dbm, r.count, r.ts_us) == ("E2801160600002054CC2096F", 1, -52.0, 3,
                                                               1598958553186000)
    assert p.feed(json.dumps({"data": {}, "timestamp": doc["timestamp"], "type": "heartbeat"}).encode(), 99) == []
    assert p.last_heartbeat_us == 99 and p.stats.extra["heartbeats"] == 1


@pytest.mark.parametrize("proto,payload,why", [
    ("impinj-iot", b"\xff\xfe", "not JSON"),
    ("impinj-iot", b"42", "JSON int"),
    ("impinj-iot", b'{"tagInventoryEvent":{"epcHex":"XYZ","antennaPort":1,"peakRssiCdbm":-1}}', "epcHex"),
    ("impinj-iot", b'{"tagInventoryEvent":{"epcHex":"30000000","antennaPort":0,"peakRssiCdbm":-1}}', "antennaPort"),
    ("impinj-iot", b'{"tagInventoryEvent":{"epcHex":"30000000","antennaPort":1,"peakRssiCdbm":"x"}}', "peakRssiCdbm"),
    ("impinj-iot", b'{"tagInventoryEvent":{"epc":"!!!","antennaPort":1,"peakRssiCdbm":-1}}', "epc"),
    ("zebra-iot", b'{"data":{"idHex":"123","antenna":1,"peakRssi":-50}}', "idHex"),
    ("zebra-iot", b'{"data":{"idHex":"30000000","antenna":true,"peakRssi":-50}}', "antenna"),
    ("zebra-iot", b'[{"data":{"idHex":"30000000","antenna":1,"peakRssi":999}}]', "peakRssi"),
    ("milesight", b'{"in_counted":-1,"out_counted":2}', "counts"),
    ("irisys", b'{"counts":[{"name":"In"}]}', "count"),
])
def test_malformed_messages_are_named(proto: str, payload: bytes, why: str) -> None:
    p = build_parser(proto, "X1")
    assert p.feed(payload, 0) == []
    assert p.stats.malformed >= 1 and why in (p.stats.last_error or "")


def test_malformed_item_keeps_good_neighbours() -> None:
    good = impinj_iot.encode_event("30000000", 1, -5000, 1)
    bad = {"tagInventoryEvent": {"epcHex": "zz", "antennaPort": 1, "peakRssiCdbm": 0}}
    p = impinj_iot.ImpinjIotParser("R1")
    assert len(p.feed(json.dumps([good, bad, 7, good]).encode(), 0)) == 2
    assert p.stats.malformed == 2


def test_irisys_deltas_resets_and_register_mapping() -> None:
    p = irisys.IrisysParser("D1", in_registers=["Line 1 Fwd", "Line 2 Fwd"], out_registers=["Line 1 Back"])
    msgs = [({"Line 1 Fwd": 100, "Line 2 Fwd": 5, "Line 1 Back": 90}, 1_000_000),
            ({"Line 1 Fwd": 103, "Line 2 Fwd": 6, "Line 1 Back": 92}, 2_000_000),
            ({"Line 1 Fwd": 2, "Line 2 Fwd": 6, "Line 1 Back": 93}, 3_000_000),          # reset of one register
            ({"Line 1 Fwd": 2, "Line 2 Fwd": 6, "Line 1 Back": 93, "Occupancy": 4}, 4_000_000)]
    out = []
    for regs, ts in msgs:
        out += p.feed(irisys.encode_counts(regs, ts), 0)
    assert [(r.ts_us, r.entries, r.exits) for r in out] == [(1_000_000, 4, 2), (2_000_000, 2, 1)]
    assert p.stats.extra["counter_resets"] == 1 and p.stats.extra["other_registers"] == 1
    q = irisys.IrisysParser("D1")
    q.feed(irisys.encode_counts({"In": 0xFFFFFFF0, "Out": 1}), 0)
    (r,) = q.feed(irisys.encode_counts({"In": 0x10, "Out": 1}), 0)
    assert r.entries == 0x20 and r.ts_us is None


def test_milesight_layouts() -> None:
    p = milesight.MilesightParser("D2", line=2)
    (a,) = p.feed(milesight.encode_interval(12, 9, 1_763_604_000_000_000, 1_763_604_900_000_000), 0)
    assert (a.ts_us, a.entries, a.exits) == (1_763_604_000_000_000, 12, 9)
    (b,) = p.feed(milesight.encode_trigger(1, 0, 1_763_604_000_000_000, tz_h=-5), 0)
    assert (b.ts_us, b.entries) == (1_763_604_000_000_000, 1)
    vs125 = {"line_trigger_data": [{"line": 1, "total": {"in": 5, "out": 5}}, {"line": 2, "total": {"in": 0, "out": 3}}],
             "time_info": {"time": "2026/11/20 10:00:00", "time_zone": "x", "timezone": "UTC+8:00"}}
    (c,) = p.feed(json.dumps(vs125).encode(), 0)
    assert (c.entries, c.exits, c.ts_us) == (0, 3, milesight.parse_device_time("2026-11-20T02:00:00Z", None))
    assert p.feed(b'{"event":"Region People Counting","current_total":3}', 0) == []
    assert p.stats.extra["event_Region People Counting"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "idHex", "antenna", "peakRssi", "type", "timestamp", "tagInventoryEvent", "epcHex",
                         "epc", "antennaPort", "peakRssiCdbm", "counts", "name", "count", "in_counted",
                         "out_counted", "line_trigger_data", "time_info", "time", "in", "out", "line", "total"]),
        children, max_size=6),
    max_leaves=25)


@pytest.mark.parametrize("proto", ["impinj-iot", "zebra-iot", "irisys", "milesight"])
@settings(max_examples=150, deadline=None)
@given(doc=json_values, raw=st.binary(max_size=200))
def test_json_parsers_never_raise(proto: str, doc: object, raw: bytes) -> None:
    p = build_parser(proto, "X1")
    p.feed(json.dumps(doc).encode(), 0)
    p.feed(raw, 0)
    assert p.stats.frames >= 0
