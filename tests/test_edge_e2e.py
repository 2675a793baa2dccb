"""Edge agent through faults: a private Mosquitto that goes down and comes back, and kill -9 of the agent.

Each test starts its own ``mosquitto`` (persistence on, so the test subscriber's QoS 1 session and its
queued messages survive the broker restart, as ingest's would) on a free port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.config import parse_config
from storeflow.wire import decode_batch
from test_edge_plugin import make_counter, parse_epc

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
#: mosquitto started as root drops to user "mosquitto", which cannot enter pytest's private tmp dirs
RUN_AS = "user root\n" if os.geteuid() == 0 else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    """A mosquitto subprocess on its own port, stoppable and restartable (same port, same persistence)."""

    def __init__(self, workdir: Path) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.fail("mosquitto binary not found; install it (apt-get install mosquitto) or run "
                        "bash scripts/services.sh", pytrace=False)
        self.port = _free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nautosave_interval 1\n"
                             f"max_queued_messages 100000\nlog_dest none\n{RUN_AS}")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"private mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    d = tmp_path / "broker"
    d.mkdir()
    b = PrivateBroker(d)
    b.start()
    yield b
    b.stop()


class DurableSubscriber:
    """A QoS 1 subscriber with a persistent session: nothing published while it reconnects is lost."""

    def __init__(self, port: int, prefix: str) -> None:
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()
        self._sub = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:10]}", clean_session=False)
        c.reconnect_delay_set(1, 1)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/+/+/reads", qos=1)
        c.on_subscribe = lambda *_: self._sub.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self._sub.wait(5)
        self.client = c

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(msg.payload)

    def batches(self) -> list:
        with self.lock:
            return [decode_batch(p) for p in self.payloads]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reads_of(batch: Any) -> list[tuple[str, int, int]]:
    """(reader, run, i) of every read in a batch, in record order."""
    return [(batch.antennas[r["antenna"]][0], *parse_epc(batch.epcs[r["epc"]])) for r in batch.records]


def check_duplicates(batches: list) -> dict[tuple[str, int], Any]:
    """Duplicates must be whole batches with the same (stream, seq) and the same content; returns them unique."""
    unique: dict[tuple[str, int], Any] = {}
    owner: dict[tuple[str, int, int], tuple[str, int]] = {}
    for b in batches:
        key = (b.stream, b.seq)
        if key in unique:
            assert reads_of(unique[key]) == reads_of(b), f"batch {key} re-sent with other content"
            continue
        unique[key] = b
        for r in reads_of(b):
            assert r not in owner, f"read {r} in batches {owner[r]} and {key}"
            owner[r] = key
    return unique


def wait_for(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_uplink_outage_loses_nothing_and_keeps_order(tmp_path, broker, unique_prefix):
    sub = DurableSubscriber(broker.port, unique_prefix)
    cfg = parse_config({
        "agent": "box-outage", "store": "mini-store",
        "readers": [{"reader": r, "protocol": "test_edge_plugin:make_counter",
                     "options": {"rate_hz": 2000, "run": n, "chunk": 20}} for n, r in enumerate(["R1", "R2"])],
        "uplink": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": unique_prefix, "reconnect_max_s": 1,
                   "inflight": 4},
        "spool": {"dir": str(tmp_path / "spool")},
        "batch": {"max_reads": 250, "max_delay_s": 0.1},
    })
    drivers = [(dev, make_counter(dev, cfg)) for dev in cfg.readers]
    agent = Agent(cfg, drivers=drivers)
    agent.start()
    try:
        assert wait_for(lambda: len(sub.batches()) >= 4, 10), "nothing arrived before the outage"
        broker.stop()
        backlog = []
        for _ in range(10):  # 2 s outage while the readers keep reading
            time.sleep(0.2)
            backlog.append(agent.health()["spool"]["records"])
        assert not agent.uplink.connected
        broker.start()
        time.sleep(1.5)  # replay while new reads keep flowing
    finally:
        agent.stop(publish_grace_s=10)
        emitted = {d.name: d.emitted for _, d in drivers}
    try:
        assert max(backlog) > 2000, f"the spool should have held the outage's reads: {backlog}"
        assert agent.uplink.disconnects >= 1 and agent.uplink.connects >= 2
        total = sum(emitted.values())
        if not wait_for(lambda: sum(len(b.records) for b in check_duplicates(sub.batches()).values()) >= total, 20):
            got = check_duplicates(sub.batches())
            pytest.fail(f"received {sum(len(b.records) for b in got.values())} of {total} reads; seqs "
                        f"{sorted(k[1] for k in got)}; agent published {agent.published}, acked {agent.acked}")
        unique = check_duplicates(sub.batches())
        per_reader: dict[str, list[int]] = defaultdict(list)
        for key in sorted(unique):
            for reader, _, i in reads_of(unique[key]):
                per_reader[reader].append(i)
        for reader, n in emitted.items():
            assert per_reader[reader] == list(range(n)), f"{reader}: lost or reordered reads"
        assert len({k[0] for k in unique}) == 1, "one spool, one stream"
    finally:
        sub.close()


def _spooled(spool_dir: Path) -> dict[tuple[str, int], list]:
    """(stream, seq) -> reads of every batch still in a (killed) agent's spool."""
    db = sqlite3.connect(spool_dir / "spool.sqlite3")
    try:
        out = {}
        for payload, in db.execute("SELECT payload FROM batches WHERE kind = 'reads' ORDER BY seq"):
            b = decode_batch(payload)
            out[(b.stream, b.seq)] = reads_of(b)
        return out
    finally:
        db.close()


def _agent_proc(cfg_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", str(cfg_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_mid_stream_loses_nothing_spooled(tmp_path, broker, unique_prefix):
    sub = DurableSubscriber(broker.port, unique_prefix)
    base = {
        "agent": "box-kill", "store": "mini-store",
        "uplink": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": unique_prefix, "reconnect_max_s": 1},
        "spool": {"dir": str(tmp_path / "spool"), "sync": "full"},
        "batch": {"max_reads": 200, "max_delay_s": 0.05},
        "health_interval_s": 1,
    }
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump({**base, "readers": [{"reader": "R1", "protocol": "test_edge_plugin:make_counter",
                                                          "options": {"rate_hz": 3000, "run": 1}}]}))
    # the second run holds its reads in memory (long batch delay) until SIGTERM must flush them
    second.write_text(yaml.safe_dump({**base, "batch": {"max_reads": 60000, "max_delay_s": 600}, "readers": [{
        "reader": "R1", "protocol": "test_edge_plugin:make_counter",
        "options": {"rate_hz": 3000, "run": 2, "limit": 2500}}]}))
    proc = _agent_proc(first)
    try:
        assert wait_for(lambda: len(sub.batches()) >= 3, 15), "first agent published nothing"
        broker.stop()      # the backlog now builds up in the spool ...
        time.sleep(1.0)
        proc.kill()        # ... and the agent dies without any chance to clean up
        proc.wait(5)
        received_before = check_duplicates(sub.batches())
        spooled = _spooled(tmp_path / "spool")
        assert sum(len(v) for v in spooled.values()) > 1000, "the kill should leave a backlog in the spool"
        broker.start()
        proc = _agent_proc(second)
        if not wait_for(lambda: all(k in check_duplicates(sub.batches()) for k in spooled), 20):
            proc.kill()
            got = check_duplicates(sub.batches())
            pytest.fail(f"the restarted agent did not replay the spool: missing {sorted(set(spooled) - set(got))[:5]}, "
                        f"got {sorted(got)[-5:]}" + proc.communicate()[0].decode()[-3000:])
        time.sleep(2.0)    # the second run's 2500 reads take ~0.9 s
        assert not any(r[1] == 2 for b in sub.batches() for r in reads_of(b)), "held until the flush"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
        accepted = int(re.search(rb"records accepted: R1 (\d+)", out).group(1))
        assert accepted > 0
    finally:
        if proc.poll() is None:
            proc.kill()
    try:
        assert wait_for(lambda: sum(r[1] == 2 for b in check_duplicates(sub.batches()).values()
                                    for r in reads_of(b)) >= accepted, 10)
        unique = check_duplicates(sub.batches())
        for key, reads in spooled.items():          # everything spooled at the kill arrived, unchanged
            assert reads_of(unique[key]) == reads
        for key in received_before:
            assert key in unique
        streams = {k[0] for k in unique}
        assert len(streams) == 1, "the restarted agent continues the spool's stream"
        first_seqs = [k[1] for k in list(received_before) + list(spooled)]
        run2 = sorted(k[1] for k, b in unique.items() if any(r[1] == 2 for r in reads_of(b)))
        assert min(run2) > max(first_seqs), "a restarted agent never reuses a seq"
        i2 = sorted(r[2] for b in unique.values() for r in reads_of(b) if r[1] == 2)
        assert i2 == list(range(accepted)), "SIGTERM must flush every read the second run accepted"
        run1 = [r[2] for k in sorted(unique) for r in reads_of(unique[k]) if r[1] == 1]
        assert run1 == sorted(run1), "the first run's reads keep their order"
    finally:
        sub.close()


def test_last_will_says_offline_when_the_agent_dies(tmp_path, mqtt_broker, unique_prefix):
    host, port = mqtt_broker
    states: list[dict] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe(f"{unique_prefix}/+/+/status", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda c, u, m: states.append(json.loads(m.payload)) if m.payload else None
    sub.connect(host, port)
    sub.loop_start()
    assert ready.wait(5)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump({
        "agent": "box-will", "store": "mini-store",
        "readers": [{"reader": "R1", "protocol": "test_edge_plugin:make_counter", "options": {"rate_hz": 100}}],
        "uplink": {"host": host, "port": port, "topic_prefix": unique_prefix},
        "spool": {"dir": str(tmp_path / "spool")}}))
    proc = _agent_proc(cfg)
    try:
        assert wait_for(lambda: [s["state"] for s in states] == ["online"], 15)
        proc.kill()
        proc.wait(5)
        assert wait_for(lambda: [s["state"] for s in states] == ["online", "offline"], 5), states
        assert states[1]["agent"] == "box-will" and states[1]["stream"] == states[0]["stream"]
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.publish(f"{unique_prefix}/mini-store/box-will/status", b"", qos=1, retain=True).wait_for_publish(5)
        sub.disconnect()
        sub.loop_stop()
