"""Edge agent in-process against the real Mosquitto: drivers -> agent -> broker -> a test subscriber."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.clock import now_us
from edge.config import parse_config
from edge.readers.base import DoorCount, TagRead
from storeflow.wire import FLAG_AGENT_CLOCK, Batch, decode_batch
from test_edge_plugin import ManualDriver

pytestmark = pytest.mark.mqtt


class Subscriber:
    """Collects every message under ``prefix/#`` (batches decoded)."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.batches: list[Batch] = []
        self.other: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self._ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/#", qos=1)
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        assert self._ready.wait(5), "subscriber did not get SUBACK"
        self.client = c

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.endswith(("/reads", "/doors")):
                self.batches.append(decode_batch(msg.payload))
            else:
                self.other.append((msg.topic, msg.payload, msg.retain))

    def reads(self) -> list[tuple[str, int, str, int, int, int, int]]:
        """(reader, antenna, epc, ts_us, rssi_cdbm, count, flags) of every read received, in arrival order."""
        out = []
        with self.lock:
            for b in self.batches:
                if b.kind == "reads":
                    for r in b.records:
                        rd, port = b.antennas[r["antenna"]]
                        out.append((rd, port, b.epcs[r["epc"]], int(r["ts_us"]), int(r["rssi_cdbm"]),
                                    int(r["count"]), int(r["flags"])))
        return out

    def wait(self, pred: Any, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.02)
        return pred()

    def close(self) -> None:
        for t in {t for t, _, _ in self.other if t.endswith("/status")}:  # leave no retained messages behind
            self.client.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def make_cfg(tmp_path: Path, host: str, port: int, prefix: str, **over: Any) -> Any:
    data: dict[str, Any] = {
        "agent": "box-1", "store": "mini-store",
        "readers": [{"reader": "R1", "protocol": "test_edge_plugin:make_manual", "antennas": {7: 2}},
                    {"reader": "R2", "protocol": "test_edge_plugin:make_manual"}],
        "doors": [{"door": "D1", "protocol": "test_edge_plugin:make_manual"}],
        "uplink": {"host": host, "port": port, "topic_prefix": prefix, "client_id": f"agent-{prefix}"},
        "spool": {"dir": str(tmp_path / "spool")},
        "batch": {"max_reads": 50, "max_delay_s": 0.1},
        "health_interval_s": 0.3,
    }
    data.update(over)
    return parse_config(data)


@pytest.fixture
def sub(mqtt_broker: tuple[str, int], unique_prefix: str):
    s = Subscriber(*mqtt_broker, unique_prefix)
    yield s
    s.close()


def start_agent(cfg: Any) -> tuple[Agent, dict[str, ManualDriver]]:
    drivers = {d.reader if hasattr(d, "reader") else d.door: ManualDriver("x") for d in [*cfg.readers, *cfg.doors]}
    agent = Agent(cfg, drivers=[(d, drivers[getattr(d, "reader", None) or d.door])
                                for d in [*cfg.readers, *cfg.doors]])
    agent.start()
    assert agent.uplink is not None and agent.uplink.wait_connected(5)
    return agent, drivers


def test_reads_and_doors_arrive_exactly_once(tmp_path, mqtt_broker, unique_prefix, sub):
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix)
    agent, drv = start_agent(cfg)
    now = now_us()
    sent = []
    try:
        for i in range(230):  # > 4 batches of 50
            r = TagRead("ignored", 1 + i % 2, f"E200{i:020X}", -40.0 - i % 20 - 0.25, now + i * 1000)
            (drv["R1"] if i % 3 else drv["R2"]).emit([r])
            sent.append(("R1" if i % 3 else "R2", r.antenna, r.epc, r.ts_us, round(r.rssi_dbm * 100), 1, 0))
        drv["R1"].emit([TagRead("R1", 7, "e2000000000000000000abcd", -60.0, now)])  # mapped 7 -> 2, lower-case
        drv["D1"].emit([DoorCount("D1", now, 3, 1)])
        assert sub.wait(lambda: len(sub.reads()) >= 231 and any(b.kind == "doors" for b in sub.batches))
        time.sleep(0.3)
        got = sub.reads()
        assert sorted(x for x in got if not x[2].endswith("ABCD")) == sorted(sent)
        assert ("R1", 2, "E2000000000000000000ABCD", now, -6000, 1, 0) in got
        assert len(got) == 231
        doors = [b for b in sub.batches if b.kind == "doors"]
        assert len(doors) == 1 and doors[0].doors == ["D1"]
        assert [(int(r["entries"]), int(r["exits"]), int(r["ts_us"])) for r in doors[0].records] == [(3, 1, now)]
        seqs = [b.seq for b in sub.batches]
        assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)
        assert {b.stream for b in sub.batches} == {agent.spool.stream}
        assert all(len(b.records) <= 50 for b in sub.batches)
        assert sub.wait(lambda: agent.spool.stats().batches == 0, 5), "acked batches must leave the spool"
        status = [(t, json.loads(p), ret) for t, p, ret in sub.other if t.endswith("/status")]
        assert status and status[0][1]["state"] == "online" and status[0][1]["stream"] == agent.spool.stream
        assert sub.wait(lambda: any(t.endswith("/health") for t, _, _ in sub.other), 3)
        health = [json.loads(p) for t, p, _ in sub.other if t.endswith("/health")][-1]
        assert set(health["devices"]) == {"R1", "R2", "D1"} and "spool" in health and "publish_lag_s" in health
    finally:
        agent.stop()
    assert sub.wait(lambda: any(t.endswith("/status") and json.loads(p)["state"] == "offline"
                                for t, p, _ in sub.other), 3)


def test_clock_choice_flags_agent_time(tmp_path, mqtt_broker, unique_prefix, sub):
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix, clock={"max_skew_s": 60})
    agent, drv = start_agent(cfg)
    now = now_us()
    try:
        drv["R1"].emit([
            TagRead("R1", 1, "AA000001", -50, now - 5_000_000),            # sane: kept
            TagRead("R1", 1, "AA000002", -50, 946_684_800_000_000 + 7),   # unset clock (2000-01-01)
            TagRead("R1", 1, "AA000003", -50, now + 3_600_000_000),       # an hour ahead: skewed
            TagRead("R1", 1, "AA000004", -50, None),                      # protocol without time
        ])
        assert sub.wait(lambda: len(sub.reads()) == 4)
        by_epc = {r[2]: r for r in sub.reads()}
        assert by_epc["AA000001"][3] == now - 5_000_000 and by_epc["AA000001"][6] == 0
        for e in ("AA000002", "AA000003", "AA000004"):
            ts, flags = by_epc[e][3], by_epc[e][6]
            assert flags & FLAG_AGENT_CLOCK and abs(ts - now) < 5_000_000
        assert agent.health()["devices"]["R1"]["agent_clock"] == 3
    finally:
        agent.stop()


def test_bad_records_are_counted_not_fatal(tmp_path, mqtt_broker, unique_prefix, sub):
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix)
    agent, drv = start_agent(cfg)
    now = now_us()
    try:
        drv["R2"].emit([TagRead("R2", 1, "XYZ", -50, now), TagRead("R2", 1, "AB12CD34", 99.0, now),
                        TagRead("R2", 0, "AB12CD34", -50, now), TagRead("R2", 1, "AB12CD34", -50, now)])
        assert sub.wait(lambda: len(sub.reads()) == 1)
        h = agent.health()["devices"]["R2"]
        assert h["rejected"] == 3 and h["accepted"] == 1 and h["last_reject"]
    finally:
        agent.stop()


def test_smoothing_end_to_end(tmp_path, mqtt_broker, unique_prefix, sub):
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix, smoothing={"window_s": 0.5})
    agent, drv = start_agent(cfg)
    now = now_us()
    try:
        # 10 reads within 0.3 s on one antenna, then one 0.6 s after the first: two records
        drv["R1"].emit([TagRead("R1", 1, "AA000001", -70.0 + i, now + i * 30_000) for i in range(10)])
        drv["R1"].emit([TagRead("R1", 1, "AA000001", -65.0, now + 600_000)])
        drv["R1"].emit([TagRead("R1", 2, "AA000001", -80.0, now)])  # other antenna: its own record
        assert sub.wait(lambda: sum(r[5] for r in sub.reads()) == 12, 5)
        time.sleep(0.2)
        got = sorted(sub.reads(), key=lambda r: (r[1], r[3]))
        assert got == [("R1", 1, "AA000001", now, -6100, 10, 0), ("R1", 1, "AA000001", now + 600_000, -6500, 1, 0),
                       ("R1", 2, "AA000001", now, -8000, 1, 0)]
    finally:
        agent.stop()


def test_restart_keeps_stream_and_never_reuses_seq(tmp_path, mqtt_broker, unique_prefix, sub):
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix)
    for round_ in range(2):
        agent, drv = start_agent(cfg)
        drv["R1"].emit([TagRead("R1", 1, f"BB{round_:02X}{i:06X}", -50, now_us()) for i in range(120)])
        agent.stop()  # clean stop flushes what is pending to the spool and publishes it
    assert sub.wait(lambda: len(sub.reads()) == 240, 5)
    seqs = [b.seq for b in sub.batches]
    assert len({b.stream for b in sub.batches}) == 1
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs) and seqs[0] == 1


def test_spool_write_errors_hold_records_in_memory(tmp_path, mqtt_broker, unique_prefix, sub):
    """A full disk (SQLite max_page_count) must not lose records: they wait in memory and go out later."""
    cfg = make_cfg(tmp_path, *mqtt_broker, unique_prefix)
    agent, drv = start_agent(cfg)
    db = agent.spool._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    now = now_us()
    try:
        drv["R1"].emit([TagRead("R1", 1, f"CC{i:06X}", -50, now + i) for i in range(2000)])
        assert sub.wait(lambda: agent.spool_errors > 0, 5)
        time.sleep(0.3)
        held = agent.backlog()
        assert held > 1000 and len(sub.reads()) == 2000 - held  # the few batches that fitted went out
        db.execute("PRAGMA max_page_count = 1073741823")
        assert sub.wait(lambda: len(sub.reads()) == 2000, 10)
        assert sorted(r[2] for r in sub.reads()) == [f"CC{i:06X}" for i in range(2000)]
        seqs = [b.seq for b in sub.batches]
        assert seqs == list(range(1, len(seqs) + 1)), "no seq is skipped by a failed write"
    finally:
        agent.stop()
