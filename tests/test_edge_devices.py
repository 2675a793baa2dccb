"""End to end with the simulated devices: serial readers on ptys (R2000, Chafon 288M, with line noise),
MQTT readers (Impinj IoT, Zebra IoT) and door counters (Irisys over MQTT, Terabee over a pty)
-> the agent built from its config -> the real Mosquitto -> a subscriber gets exactly what the devices sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from edge.agent import Agent
from edge.clock import now_us
from edge.config import parse_config
from simulators.devices import (MqttDoorDevice, MqttReaderDevice, Noise, SerialDoorDevice, SerialReaderDevice,
                                synthetic_door_counts, synthetic_reads)
from storeflow.wire import FLAG_AGENT_CLOCK
from test_edge_agent import Subscriber

pytestmark = pytest.mark.mqtt

EPCS = [f"E28011{i:018X}" for i in range(40)]


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _doors(sub: Subscriber) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with sub.lock:
        for b in sub.batches:
            if b.kind == "doors":
                for r in b.records:
                    d = out[b.doors[r["door"]]]
                    d[0] += int(r["entries"])
                    d[1] += int(r["exits"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def _start(cfg: Any) -> Agent:
    agent = Agent(cfg)
    agent.start()
    assert agent.uplink is not None and agent.uplink.wait_connected(5)
    for _, drv in agent.drivers:
        sub = getattr(drv, "subscribed", None)
        if sub is not None:
            assert sub.wait(5), f"{drv.name} did not subscribe"
    return agent


def test_simulated_devices_to_subscriber_exactly(tmp_path, mqtt_broker, unique_prefix):
    host, port = mqtt_broker
    start = now_us() - 20_000_000          # sane device clocks: the MQTT readers' times are kept
    serial_reads = list(synthetic_reads(2, 4, EPCS, seconds=10, reads_per_s=60, seed=1, start_us=start))
    mqtt_reads = list(synthetic_reads(2, 4, EPCS, seconds=10, reads_per_s=60, seed=2, start_us=start))
    door_rows = list(synthetic_door_counts(2, rows=5, seed=3, start_us=start))
    r1 = SerialReaderDevice("impinj-r2000", serial_reads, EPCS, reader_index=0,
                            noise=Noise(seed=7, flip_p=0.002, split_p=0.1)).start()
    r2 = SerialReaderDevice("chafon-288m", serial_reads, EPCS, reader_index=1,
                            noise=Noise(seed=8, drop_p=0.002, split_p=0.1)).start()
    d2 = SerialDoorDevice(door_rows, door_index=1).start()
    t = lambda leaf: f"{unique_prefix}-dev/{leaf}"  # noqa: E731
    cfg = parse_config({
        "agent": "box-dev", "store": "mini-store",
        "readers": [
            {"reader": "R1", "protocol": "impinj-r2000", "serial": {"port": r1.port},
             "options": {"cycle_s": 0.02, "antennas": [1, 2, 3, 4]}},
            {"reader": "R2", "protocol": "chafon-288m", "serial": {"port": r2.port},
             "options": {"cycle_s": 0.02, "antennas": [1, 2, 3, 4]}},
            {"reader": "R3", "protocol": "impinj-iot", "mqtt": {"topic": t("impinj")}},
            {"reader": "R4", "protocol": "zebra-iot", "mqtt": {"topic": t("zebra")}, "antennas": {1: 11, 2: 12}},
        ],
        "doors": [{"door": "D1", "protocol": "irisys", "mqtt": {"topic": t("irisys")}},
                  {"door": "D2", "protocol": "terabee-evo", "serial": {"port": d2.port}}],
        "source_broker": {"host": host, "port": port},
        "uplink": {"host": host, "port": port, "topic_prefix": unique_prefix},
        "spool": {"dir": str(tmp_path / "spool")},
        "batch": {"max_reads": 500, "max_delay_s": 0.1},
    })
    sub = Subscriber(host, port, unique_prefix)
    agent = _start(cfg)
    devices = [MqttReaderDevice("impinj-iot", mqtt_reads, EPCS, host=host, port=port, topic=t("impinj"),
                                reader_index=0, batch=7, b64_every=5),
               MqttReaderDevice("zebra-iot", mqtt_reads, EPCS, host=host, port=port, topic=t("zebra"),
                                reader_index=1, batch=3),
               MqttDoorDevice("irisys", door_rows, host=host, port=port, topic=t("irisys"), door_index=0)]
    threads = [threading.Thread(target=d.run, daemon=True) for d in devices]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert _wait(lambda: r1.done() and r2.done() and d2.finished.is_set(), 30), (
            f"serial devices not drained: R1 {r1.done()} {r1.pending} {r1.commands}, R2 {r2.done()} {r2.pending} "
            f"{r2.commands}, D2 {d2.finished.is_set()}; {agent.health()['devices']}")
        expected = (len(r1.sent) + len(r2.sent) + len(devices[0].sent) + len(devices[1].sent))
        assert _wait(lambda: len(sub.reads()) >= expected and len(_doors(sub)) == 2, 20), \
            f"{len(sub.reads())} of {expected} reads arrived"
        time.sleep(0.5)
        got = sub.reads()
        assert len(got) == expected
        by_reader: dict[str, list] = defaultdict(list)
        for reader, ant, epc, ts, cdbm, count, flags in got:
            by_reader[reader].append((ant, epc, cdbm, ts, flags))
        # serial readers carry no clock: the agent's receive time, flagged
        for name, dev in (("R1", r1), ("R2", r2)):
            assert Counter((a, e, c) for a, e, c, _, _ in by_reader[name]) == \
                Counter((p, e, round(rssi * 100)) for p, e, rssi in dev.sent), name
            assert all(f & FLAG_AGENT_CLOCK and abs(ts - now_us()) < 60e6 for _, _, _, ts, f in by_reader[name])
        assert r1.destroyed + r2.destroyed > 0, "the line noise should have destroyed some frames"
        # MQTT readers carry their own sane clock: kept exactly, not flagged; R4's antennas are mapped
        amap = {"R3": {}, "R4": {1: 11, 2: 12}}
        for name, dev in (("R3", devices[0]), ("R4", devices[1])):
            assert Counter(by_reader[name]) == Counter(
                (amap[name].get(p, p), e, round(rssi * 100), ts, 0) for p, e, rssi, ts in dev.sent), name
        want_doors = {"D1": tuple(map(sum, zip(*devices[2].sent))), "D2": tuple(map(sum, zip(*d2.sent)))}
        assert _doors(sub) == want_doors
        h = agent.health()["devices"]
        assert h["R1"]["checksum_errors"] + h["R2"]["checksum_errors"] > 0
        assert h["R4"]["last_heartbeat_us"] is not None
    finally:
        for d in devices:
            d.stop()
        agent.stop()
        for d in (r1, r2, d2):
            d.stop()
        sub.close()


def test_simulated_mqtt_reader_with_smoothing(tmp_path, mqtt_broker, unique_prefix):
    """Smoothing as specified: counts kept, each published time is a read time, every read is covered
    by a record of its (antenna, tag) less than one window earlier, and the volume drops."""
    host, port = mqtt_broker
    window_us = 1_000_000
    reads = list(synthetic_reads(1, 2, EPCS[:5], seconds=8, reads_per_s=150, seed=4, start_us=now_us() - 10_000_000))
    topic = f"{unique_prefix}-dev/impinj"
    cfg = parse_config({
        "agent": "box-smooth", "store": "mini-store",
        "readers": [{"reader": "R3", "protocol": "impinj-iot", "mqtt": {"topic": topic}}],
        "source_broker": {"host": host, "port": port},
        "uplink": {"host": host, "port": port, "topic_prefix": unique_prefix},
        "spool": {"dir": str(tmp_path / "spool")},
        "smoothing": {"window_s": window_us / 1e6},
        "batch": {"max_reads": 500, "max_delay_s": 0.1},
    })
    sub = Subscriber(host, port, unique_prefix)
    agent = _start(cfg)
    dev = MqttReaderDevice("impinj-iot", reads, EPCS, host=host, port=port, topic=topic, batch=20)
    try:
        dev.run()
        assert _wait(lambda: sum(r[5] for r in sub.reads()) >= len(dev.sent), 15)
        got = sub.reads()
        assert sum(r[5] for r in got) == len(dev.sent)
        assert len(got) < len(dev.sent) / 5, f"smoothing should cut volume: {len(got)} of {len(dev.sent)}"
        raw = defaultdict(list)
        for p, e, rssi, ts in dev.sent:
            raw[(p, e)].append((ts, round(rssi * 100)))
        pub = defaultdict(list)
        for _, ant, epc, ts, cdbm, count, _ in got:
            pub[(ant, epc)].append(ts)
            assert ts in {t for t, _ in raw[(ant, epc)]}
            assert cdbm == max(c for t, c in raw[(ant, epc)] if ts <= t < ts + window_us)
        for key, rs in raw.items():
            for ts, _ in rs:
                assert any(p <= ts < p + window_us for p in pub[key]), (key, ts)
    finally:
        dev.stop()
        agent.stop()
        sub.close()
