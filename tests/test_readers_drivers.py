"""Drivers end to end: simulated device -> pty/Mosquitto -> driver -> sink, noise on, reconnects."""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from edge.readers import PROTOCOLS, build_driver
from edge.readers.base import Record
from simulators.devices import (
    MqttDoorDevice, MqttReaderDevice, Noise, SerialDoorDevice, SerialReaderDevice, synthetic_door_counts,
    synthetic_reads,
)

EPCS = [f"E2801160600002{i:010X}" for i in range(40)]


class Collect:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.lock = threading.Lock()

    def __call__(self, recs: list[Record]) -> None:
        with self.lock:
            self.records.extend(recs)


def _wait(cond, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    t = time.monotonic()
    while time.monotonic() - t < timeout_s:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.mark.parametrize("proto", ["impinj-r2000", "chafon-288m"])
def test_serial_reader_end_to_end_with_noise(proto: str) -> None:
    chunks = list(synthetic_reads(2, 4, EPCS, seconds=5, reads_per_s=400, seed=11))
    noise = Noise(seed=5, flip_p=0.001, drop_p=0.001, split_p=0.3)
    dev = SerialReaderDevice(proto, chunks, EPCS, reader_index=1, noise=noise).start()
    sink = Collect()
    drv = build_driver(proto, "R2", port=dev.port, antennas=[1, 2, 3, 4], round_timeout_s=0.2)
    drv.start(sink)
    try:
        assert _wait(dev.done, 30), "device still has reads nobody asked for"
        time.sleep(0.3)
    finally:
        drv.stop()
        dev.stop()
    got = Counter((r.antenna, r.epc, r.rssi_dbm) for r in sink.records)
    assert got == Counter(dev.sent)                        # exactly what left the device intact
    assert dev.destroyed > 0 and len(dev.sent) + dev.destroyed == sum(int((c["reader"] == 1).sum()) for c in chunks)
    h = drv.health()
    # every damaged frame shows up as a checksum error or skipped bytes
    assert h["checksum_errors"] > 0 and h["dropped_bytes"] >= dev.frames_damaged
    assert h["records"] == len(sink.records) and h["last_frame_us"] is not None and h["commands_sent"] > 4
    assert all(r.reader == "R2" and r.ts_us is None for r in sink.records)


def test_serial_driver_reconnects_after_port_loss() -> None:
    chunks = list(synthetic_reads(1, 1, EPCS, seconds=1, reads_per_s=50, seed=2))
    dev = SerialReaderDevice("impinj-r2000", chunks, EPCS).start()
    sink = Collect()
    drv = build_driver("impinj-r2000", "R1", port=dev.port, antennas=[1], round_timeout_s=0.2, backoff_max_s=0.5)
    drv.start(sink)
    try:
        assert _wait(lambda: drv.health()["connected"] and drv.health()["rounds"], 5)
        dev.stop()                                          # the line dies (pty closed)
        assert _wait(lambda: drv.health()["connect_failures"] + drv.health()["reconnects"] > 0, 5)
        h = drv.health()
        assert h["connect_failures"] + h["reconnects"] >= 1 and h["last_error"]
    finally:
        drv.stop()
    assert Counter((r.antenna, r.epc, r.rssi_dbm) for r in sink.records) == Counter(dev.sent)


def test_sink_errors_do_not_stop_the_driver() -> None:
    chunks = list(synthetic_reads(1, 1, EPCS, seconds=2, reads_per_s=100, seed=3))
    dev = SerialReaderDevice("chafon-288m", chunks, EPCS).start()
    calls = []

    def flaky(recs: list[Record]) -> None:
        calls.append(len(recs))
        if len(calls) == 1:
            raise RuntimeError("spool full")

    drv = build_driver("chafon-288m", "R1", port=dev.port, antennas=[1])
    drv.start(flaky)
    try:
        assert _wait(dev.done, 10)
        time.sleep(0.2)
    finally:
        drv.stop()
        dev.stop()
    assert drv.health()["sink_errors"] == 1 and sum(calls) == len(dev.sent)


def test_serial_door_counter_end_to_end() -> None:
    rows = list(synthetic_door_counts(1, rows=300, seed=4))
    dev = SerialDoorDevice(rows, noise=Noise(seed=9, flip_p=0.003, split_p=0.3), start_count=65000)
    sink = Collect()
    drv = build_driver("terabee-evo", "D1", port=dev.port)
    drv.start(sink)
    dev.start()
    try:
        assert dev.finished.wait(20)
        assert _wait(lambda: sum(r.entries for r in sink.records) == sum(e for e, _ in dev.sent), 5)
    finally:
        drv.stop()
        dev.stop()
    # cumulative registers: damaged frames lose nothing, the next intact frame carries the counts (16-bit wrap)
    assert sum(r.entries for r in sink.records) == int(rows[0]["entries"].sum())
    assert sum(r.exits for r in sink.records) == int(rows[0]["exits"].sum())
    assert dev.destroyed > 0 and drv.health()["checksum_errors"] + drv.health()["dropped_bytes"] > 0


@pytest.mark.mqtt
@pytest.mark.parametrize("proto,batch", [("impinj-iot", 1), ("impinj-iot", 25), ("zebra-iot", 7)])
def test_mqtt_reader_end_to_end(mqtt_broker: tuple[str, int], unique_prefix: str, proto: str, batch: int) -> None:
    host, port = mqtt_broker
    topic = f"{unique_prefix}/reader"
    chunks = list(synthetic_reads(1, 4, EPCS, seconds=3, reads_per_s=200, seed=6))
    sink = Collect()
    drv = build_driver(proto, "R5", topic=topic, broker={"host": host, "port": port})
    drv.start(sink)
    try:
        assert drv.subscribed.wait(10)
        dev = MqttReaderDevice(proto, chunks, EPCS, host=host, port=port, topic=topic, batch=batch,
                               heartbeat_s=0.5, b64_every=3)
        n = dev.run()
        assert _wait(lambda: len(sink.records) >= n, 10)
    finally:
        drv.stop()
    assert n == len(dev.sent) > 0
    assert Counter((r.antenna, r.epc, r.rssi_dbm, r.ts_us) for r in sink.records) == Counter(dev.sent)
    h = drv.health()
    assert h["malformed"] == 0 and h["records"] == n
    if proto == "zebra-iot":
        assert dev.heartbeats > 1 and h["x_heartbeats"] == dev.heartbeats and h["last_heartbeat_us"]


@pytest.mark.mqtt
@pytest.mark.parametrize("proto", ["irisys", "milesight"])
def test_mqtt_door_counters_end_to_end(mqtt_broker: tuple[str, int], unique_prefix: str, proto: str) -> None:
    host, port = mqtt_broker
    topic = f"{unique_prefix}/door"
    rows = list(synthetic_door_counts(2, rows=40, seed=8))
    sink = Collect()
    drv = PROTOCOLS[proto].build("D2", topic=topic, broker={"host": host, "port": port})
    drv.start(sink)
    try:
        assert drv.subscribed.wait(10)   # type: ignore[attr-defined]
        dev = MqttDoorDevice(proto, rows, host=host, port=port, topic=topic, door_index=1,
                             start_register=0xFFFFFF00)   # Irisys registers roll over mid-stream
        n = dev.run()
        want = sum(e for e, _ in dev.sent), sum(x for _, x in dev.sent)
        assert _wait(lambda: (sum(r.entries for r in sink.records), sum(r.exits for r in sink.records)) == want, 10)
    finally:
        drv.stop()
    assert n == 40 and all(r.door == "D2" and r.ts_us is not None for r in sink.records)


def test_registry_from_agent_config_entry() -> None:
    device = SimpleNamespace(reader="R1", protocol="impinj-r2000", serial=SimpleNamespace(port="/dev/null", baud=None),
                             mqtt=None, options={"variant": "8port"}, antennas={5: 1, 6: 2})
    drv = PROTOCOLS["impinj-r2000"](device, SimpleNamespace())
    assert drv.baudrate == 115200 and len(drv.poller.steps) == 2 and drv.parser.variant.ports == 8  # type: ignore
    bad = SimpleNamespace(**{**vars(device), "options": {"antena": [1]}})
    with pytest.raises(ValueError, match="unknown option.*antena.*allowed"):
        PROTOCOLS["impinj-r2000"](bad, SimpleNamespace())
    door = SimpleNamespace(door="D9", protocol="irisys", serial=None, options={"in_registers": ["A"]},
                           mqtt=SimpleNamespace(topic="t/#", broker=None))
    broker = SimpleNamespace(host="h", effective_port=1883, tls=False, ca_file=None, insecure=False, username=None,
                             effective_password=lambda: None, keepalive_s=30, client_id="box1")
    drv2 = PROTOCOLS["irisys"](door, SimpleNamespace(source_broker=broker))
    assert (drv2.name, drv2.topic, drv2.host, drv2.client_id) == ("D9", "t/#", "h", "box1-D9")  # type: ignore
    with pytest.raises(ValueError, match="needs a serial"):
        PROTOCOLS["chafon-288m"](SimpleNamespace(reader="R", serial=None, mqtt=None, options={}), None)
