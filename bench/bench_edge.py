"""Edge agent throughput: reads/s from a driver through the durable spool to PUBACK on the local Mosquitto.

Compared in the same run with the obvious alternatives:
  * one MQTT message per read, JSON, QoS 1 (what many reader bridges do);
  * a SQLite spool without batching (one row and one commit per read, WAL, synchronous=FULL and NORMAL).

Usage: .venv/bin/python bench/bench_edge.py [--reads N] [--host 127.0.0.1] [--port 1883]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.batcher import encode_reads
from edge.clock import now_us
from edge.config import ReaderConfig, parse_config
from edge.readers.base import Sink, TagRead
from edge.records import AgentRead
from edge.spool import Spool


def make_reads(n: int, t0: int) -> list[TagRead]:
    """n reads of 2,000 tags on 4 antennas, 1 ms apart."""
    return [TagRead("R1", 1 + i % 4, f"E28011{i % 2000:018X}", -40.0 - (i % 400) / 10, t0 + i * 1000)
            for i in range(n)]


class BurstDriver:
    """Pushes a prepared list of reads into the agent as fast as the sink takes them (chunks of 500)."""

    name = "burst"

    def __init__(self, reads: list[TagRead]) -> None:
        self.reads = reads
        self.done = threading.Event()

    def start(self, sink: Sink) -> None:
        def run() -> None:
            for i in range(0, len(self.reads), 500):
                sink(self.reads[i:i + 500])
            self.done.set()
        threading.Thread(target=run, daemon=True).start()

    def stop(self) -> None:
        pass

    def health(self) -> dict[str, object]:
        return {}


def bench_agent(reads: list[TagRead], host: str, port: int, sync: str, tmp: Path) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    cfg = parse_config({
        "agent": "bench", "store": "bench-store",
        "uplink": {"host": host, "port": port, "topic_prefix": prefix, "inflight": 16},
        "spool": {"dir": str(tmp / f"spool-{sync}"), "sync": sync},
        "batch": {"max_reads": 5000, "max_delay_s": 0.2},
        "health_interval_s": 3600,
    })
    drv = BurstDriver(reads)
    dev = ReaderConfig(reader="R1", protocol="bench")
    agent = Agent(cfg, drivers=[(dev, drv)])
    agent.start()
    assert agent.uplink is not None and agent.uplink.wait_connected(10), "broker not reachable"
    t0 = time.perf_counter()
    drv.done.wait()
    while agent.backlog():
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    agent.stop()
    return len(reads) / dt


def bench_spool_only(reads: list[TagRead], sync: str, tmp: Path) -> float:
    sp = Spool(tmp / f"spool-only-{sync}", 2**40, sync)
    recs = [AgentRead(r.ts_us, r.reader, r.antenna, r.epc, r.rssi_dbm, 1, 0) for r in reads]
    t0 = time.perf_counter()
    for i in range(0, len(recs), 5000):
        chunk = recs[i:i + 5000]
        sp.append("reads", len(chunk), lambda seq, c=chunk: encode_reads(
            c, store="bench-store", agent="bench", stream=sp.stream, seq=seq, sent_us=now_us()), now_us())
    dt = time.perf_counter() - t0
    sp.close()
    return len(reads) / dt


def bench_json_per_read(reads: list[TagRead], host: str, port: int) -> float:
    acked = threading.Semaphore(0)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-json-{uuid.uuid4().hex[:6]}")
    c.max_inflight_messages_set(16)
    c.on_publish = lambda *a: acked.release()
    c.connect(host, port)
    c.loop_start()
    topic = f"bench-{uuid.uuid4().hex[:8]}/json/reads"
    t0 = time.perf_counter()
    for r in reads:
        c.publish(topic, json.dumps({"reader": r.reader, "antenna": r.antenna, "epc": r.epc,
                                     "rssi_dbm": r.rssi_dbm, "ts_us": r.ts_us}), qos=1)
    for _ in reads:
        acked.acquire()
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return len(reads) / dt


def bench_sqlite_per_read(reads: list[TagRead], sync: str, tmp: Path) -> float:
    db = sqlite3.connect(tmp / f"rows-{sync}.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={sync.upper()}")
    db.execute("CREATE TABLE reads (id INTEGER PRIMARY KEY, ts_us INT, reader TEXT, antenna INT, epc TEXT, rssi REAL)")
    t0 = time.perf_counter()
    for r in reads:
        db.execute("INSERT INTO reads (ts_us, reader, antenna, epc, rssi) VALUES (?, ?, ?, ?, ?)",
                   (r.ts_us, r.reader, r.antenna, r.epc, r.rssi_dbm))
    dt = time.perf_counter() - t0
    db.close()
    return len(reads) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=200_000, help="reads through the agent")
    ap.add_argument("--alt-reads", type=int, default=20_000,
                    help="reads through each (slower) alternative (a tenth for the fsync-per-read one)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    a = ap.parse_args()
    t = now_us()
    reads, alt = make_reads(a.reads, t), make_reads(a.alt_reads, t)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [
            ("agent: batches -> SQLite spool (sync=full) -> QoS 1 PUBACK", bench_agent(reads, a.host, a.port, "full", tmp)),
            ("agent: same with spool sync=normal", bench_agent(reads, a.host, a.port, "normal", tmp)),
            ("spool alone: encode + append 5000-read batches (sync=full)", bench_spool_only(reads, "full", tmp)),
            ("alternative: one JSON MQTT message per read, QoS 1, no spool", bench_json_per_read(alt, a.host, a.port)),
            ("alternative: SQLite row + commit per read (sync=full)",
             bench_sqlite_per_read(alt[:a.alt_reads // 10], "full", tmp)),
            ("alternative: SQLite row + commit per read (sync=normal)", bench_sqlite_per_read(alt, "normal", tmp)),
        ]
    base = rows[0][1]
    print(f"edge agent throughput ({a.reads} reads through the agent, {a.alt_reads} per alternative; "
          f"broker {a.host}:{a.port})")
    for name, rate in rows:
        print(f"  {name:<64} {rate:>12,.0f} reads/s   agent is x{base / rate:,.1f}")


if __name__ == "__main__":
    main()
