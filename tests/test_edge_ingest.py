"""The whole uplink chain: edge agent -> real Mosquitto -> ingest service -> TimescaleDB, exactly once.

The agent is restarted on the same spool half way, and one batch is published a second time (as after
a lost PUBACK) to check that ingest and the agent agree on what identifies a batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.clock import now_us
from edge.config import parse_config
from edge.readers.base import DoorCount, TagRead
from ingest.metrics import parse_text
from ingest.service import IngestService
from storeflow.layout import load_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout
from storeflow.wire import decode_batch
from test_edge_plugin import ManualDriver

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as c:
        return int(c.execute(sql).fetchone()[0])


def test_agent_to_database_exactly_once(db_url, mini_layout_path: Path, mqtt_broker, unique_prefix, tmp_path):
    with psycopg.connect(db_url) as c:
        upsert_layout(c, load_layout(mini_layout_path))
    host, port = mqtt_broker
    svc = IngestService(Settings(
        database_url=db_url, data_dir=tmp_path / "data", mqtt_url=f"mqtt://{host}:{port}", topic_prefix=unique_prefix,
        ingest_group=f"g-{unique_prefix}", ingest_client_id=f"c-{unique_prefix}-{uuid.uuid4().hex[:6]}",
        ingest_metrics_port=0, ingest_max_batch_delay_s=0.15))
    svc.start()
    assert svc.wait_connected(10)
    time.sleep(0.3)  # SUBACK
    cfg = parse_config({
        "agent": "box-db", "store": "mini-store",
        "readers": [{"reader": "R1", "protocol": "test_edge_plugin:make_manual"},
                    {"reader": "R2", "protocol": "test_edge_plugin:make_manual", "antennas": {3: 1, 4: 2}}],
        "doors": [{"door": "D1", "protocol": "test_edge_plugin:make_manual"}],
        "uplink": {"host": host, "port": port, "topic_prefix": unique_prefix},
        "spool": {"dir": str(tmp_path / "spool")},
        "batch": {"max_reads": 300, "max_delay_s": 0.1},
    })
    t0 = now_us() - 120_000_000  # within the default 300 s clock bound: device times are kept
    want: set[tuple] = set()
    payloads: list[tuple[str, bytes]] = []
    tap = mqtt.Client(CallbackAPIVersion.VERSION2)  # keeps raw payloads to publish one again later
    tapped = threading.Event()
    tap.on_connect = lambda c, *_: c.subscribe(f"{unique_prefix}/+/+/reads", qos=1)
    tap.on_subscribe = lambda *_: tapped.set()
    tap.on_message = lambda c, u, m: payloads.append((m.topic, m.payload))
    tap.connect(host, port)
    tap.loop_start()
    assert tapped.wait(5)
    try:
        for run in range(2):
            drv = {n: ManualDriver(n) for n in ("R1", "R2", "D1")}
            agent = Agent(cfg, drivers=[(d, drv[getattr(d, "reader", None) or d.door])
                                        for d in [*cfg.readers, *cfg.doors]])
            agent.start()
            assert agent.uplink.wait_connected(5)
            for i in range(1000):
                reader, port_reported = ("R1", 1 + i % 2) if i % 3 else ("R2", 3 + i % 2)
                ts = t0 + (run * 1000 + i) * 1000
                rssi = -40.0 - (i % 50) - 0.5
                drv[reader].emit([TagRead(reader, port_reported, f"E2801160{i % 97:016X}", rssi, ts)])
                want.add((ts, reader, port_reported - 2 if reader == "R2" else port_reported,
                          f"E2801160{i % 97:016X}", round(rssi * 100), 1, 0))
            drv["D1"].emit([DoorCount("D1", t0 + run * 60_000_000, 5 + run, 3)])
            assert _wait(lambda: agent.backlog() == 0, 10)
            agent.stop()
        # a batch arrives twice, byte for byte (same stream and seq), as after a lost PUBACK
        assert _wait(lambda: len(payloads) >= 7, 5)
        tap.publish(*payloads[3], qos=1).wait_for_publish(5)
        ids = {}
        with psycopg.connect(db_url) as c:
            for r, p, i in c.execute("SELECT r.reader, a.port, a.antenna_id FROM antennas a JOIN readers r "
                                     "USING (reader_id)"):
                ids[(r, int(p))] = int(i)
        want_rows = {(ts, ids[(r, p)], e, cdbm, n, f) for ts, r, p, e, cdbm, n, f in want}
        assert _wait(lambda: _scalar(db_url, "SELECT count(*) FROM tag_reads") >= 2000, 20)
        assert _wait(lambda: parse_text(svc.metrics.render()).get("storeflow_ingest_messages_duplicate_total") == 1, 10)
        with psycopg.connect(db_url) as c:
            got = c.execute("SELECT (extract(epoch FROM r.ts) * 1e6)::bigint, r.antenna_id, t.epc, r.rssi_cdbm, "
                            "r.read_count, r.flags FROM tag_reads r JOIN tags t USING (tag_id)").fetchall()
            doors = c.execute("SELECT entries, exits FROM door_counts ORDER BY ts").fetchall()
            rejects = c.execute("SELECT count(*) FROM rejects").fetchone()[0]
        assert len(got) == 2000 and set(got) == want_rows
        assert doors == [(5, 3), (6, 3)] and rejects == 0
        assert len({decode_batch(p).stream for _, p in payloads}) == 1, "a restart continues the spool's stream"
        seqs = [decode_batch(p).seq for _, p in payloads]
        assert seqs[:-1] == sorted(set(seqs[:-1])) and seqs[-1] == seqs[3]
    finally:
        svc.stop()
        tap.disconnect()
        tap.loop_stop()
