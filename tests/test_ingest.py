"""Ingest service against the real Mosquitto and TimescaleDB: exactly-once, crashes, outages, rejects,
scale-out. Publishers use storeflow.wire.encode_batch, as the edge agent does."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.copybin import TAG_READS_COLUMNS, tag_reads_copy_buffer
from ingest.metrics import parse_text
from ingest.service import IngestService, Message, run_retention
from storeflow.db import migrate
from storeflow.layout import load_layout
from storeflow.settings import Settings
from storeflow.store import upsert_layout
from storeflow.wire import DOOR_DTYPE, READ_DTYPE, Batch, encode_batch, topic

pytestmark = [pytest.mark.db, pytest.mark.mqtt]

STORE = "mini-store"
ANTENNAS = [("R1", 1), ("R1", 2), ("R2", 1), ("R2", 2)]
T0_US = 1_790_000_000_000_000  # 2026-09-21
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --- helpers -------------------------------------------------------------------------------------
def reads_batch(
    agent: str,
    seq: int,
    n: int,
    rng: np.random.Generator,
    stream: str = "s1",
    antennas: list[tuple[str, int]] | None = None,
    n_epcs: int = 40,
) -> Batch:
    """A valid reads batch with distinct timestamps per (agent, stream, seq)."""
    ants = antennas or ANTENNAS
    epcs = [f"E28011{int(x):018X}" for x in rng.choice(500, size=n_epcs, replace=False)]
    rec = np.zeros(n, dtype=READ_DTYPE)
    rec["ts_us"] = T0_US + seq * 1_000_000 + np.arange(n) * 10 + hash((agent, stream)) % 7
    rec["antenna"] = rng.integers(0, len(ants), n)
    rec["epc"] = rng.integers(0, n_epcs, n)
    rec["rssi_cdbm"] = rng.integers(-9000, -3000, n)
    rec["count"] = rng.integers(1, 5, n)
    rec["flags"] = rng.integers(0, 2, n)
    return Batch(
        kind="reads",
        store=STORE,
        agent=agent,
        stream=stream,
        seq=seq,
        sent_us=int(time.time() * 1e6),
        records=rec,
        antennas=list(ants),
        epcs=epcs,
    )


def doors_batch(agent: str, seq: int, n: int) -> Batch:
    rec = np.zeros(n, dtype=DOOR_DTYPE)
    rec["ts_us"] = T0_US + seq * 60_000_000 + np.arange(n) * 10_000_000
    rec["door"] = 0
    rec["entries"] = np.arange(n) + 1
    rec["exits"] = np.arange(n)
    return Batch(
        kind="doors",
        store=STORE,
        agent=agent,
        stream="s1",
        seq=seq,
        sent_us=int(time.time() * 1e6),
        records=rec,
        doors=["D1"],
    )


class Publisher:
    """A paho MQTT 5 publisher (QoS 1, waits for every PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.c.connect(host, port)
        self.c.loop_start()

    def send(self, name: str, payload: bytes) -> None:
        self.c.publish(name, payload, qos=1).wait_for_publish(10)

    def send_batch(self, prefix: str, b: Batch) -> None:
        self.send(topic(prefix, b.store, b.agent, b.kind), encode_batch(b))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(sql).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def expected_rows(batches: list[Batch], ids: dict[tuple[str, int], int]) -> set[tuple]:
    out = set()
    for b in batches:
        for r in b.records:
            out.add(
                (
                    int(r["ts_us"]),
                    ids[b.antennas[r["antenna"]]],
                    b.epcs[r["epc"]],
                    int(r["rssi_cdbm"]),
                    int(r["count"]),
                    int(r["flags"]),
                )
            )
    return out


def stored_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(
            "SELECT (extract(epoch FROM r.ts) * 1e6)::bigint, r.antenna_id, t.epc, r.rssi_cdbm, "
            "r.read_count, "
            "r.flags "
            "FROM tag_reads r JOIN tags t USING (tag_id)"
        ).fetchall()


def antenna_ids(url: str) -> dict[tuple[str, int], int]:
    with psycopg.connect(url) as c:
        return {
            (r, int(p)): int(i)
            for r, p, i in c.execute(
                "SELECT r.reader, a.port, a.antenna_id FROM antennas a JOIN readers r USING (reader_id)"
            )
        }


def load_store(url: str, layout_path: Path) -> None:
    with psycopg.connect(url) as c:
        upsert_layout(c, load_layout(layout_path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(
    url: str, prefix: str, mqtt_broker: tuple[str, int], tmp_path: Path, **kw: object
) -> Settings:
    base: dict[str, object] = {
        "database_url": url,
        "data_dir": tmp_path / "data",
        "mqtt_url": f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}",
        "topic_prefix": prefix,
        "ingest_group": f"g-{prefix}",
        "ingest_client_id": f"c-{prefix}-{uuid.uuid4().hex[:6]}",
        "ingest_metrics_port": 0,
        "ingest_max_batch_delay_s": 0.15,
        "ingest_session_expiry_s": 120,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def service_factory() -> Iterator[Callable[[Settings], IngestService]]:
    started: list[IngestService] = []

    def make(s: Settings) -> IngestService:
        svc = IngestService(s)
        svc.start()
        assert svc.wait_connected(10), "ingest service did not connect to the broker"
        time.sleep(0.2)  # SUBACK
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


def metric(svc: IngestService, name: str) -> float:
    return parse_text(svc.metrics.render()).get(name, 0.0)


# --- pure parts ----------------------------------------------------------------------------------
@hyp_settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), cut=st.integers(0, 400))
def test_any_payload_is_decoded_or_rejected_with_a_reason(payload: bytes, cut: int) -> None:
    svc = IngestService(Settings(topic_prefix="p", ingest_metrics_port=0))
    good = encode_batch(reads_batch("a1", 1, 3, np.random.default_rng(cut)))
    for p in (payload, b"SFB1" + payload, good[:cut], good[:cut] + payload):
        it = svc._decode(Message(1, 1, "p/mini-store/a1/reads", p, 0, time.monotonic()))
        assert (it.batch is None) != (it.reject is None)
        if it.reject is not None:
            assert it.reject.strip()


def test_copy_buffer_round_trips_through_postgres(db: psycopg.Connection) -> None:
    n = 1000
    rng = np.random.default_rng(1)
    ts = T0_US + rng.integers(0, 10**12, n)
    ts[0], ts[1] = 946_684_800_000_000, 4_102_444_799_999_999  # 2000-01-01 and just before 2100
    cols = (
        ts,
        np.full(n, 7, np.int32),
        rng.integers(1, 2**31 - 1, n),
        rng.integers(1, 2**31 - 1, n),
        rng.integers(-32768, 32767, n),
        rng.integers(1, 32767, n),
        rng.integers(0, 255, n),
    )
    with db.cursor().copy(
        f"COPY tag_reads ({', '.join(TAG_READS_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    ) as cp:
        cp.write(tag_reads_copy_buffer(*cols))
    got = db.execute(
        f"SELECT (extract(epoch FROM ts) * 1e6)::bigint, {', '.join(TAG_READS_COLUMNS[1:])} FROM tag_reads"
    ).fetchall()
    assert sorted(got) == sorted(zip(*(c.tolist() for c in cols)))


def test_retention_drops_only_old_raw_data(db: psycopg.Connection) -> None:
    now_us = int(time.time() * 1e6)
    for timescale in (True, False):
        db.execute("TRUNCATE tag_reads")
        ts = np.array([now_us - 100 * 86_400_000_000, now_us - 89 * 86_400_000_000, now_us], dtype=np.int64)
        one = np.ones(3, np.int32)
        with db.cursor().copy(
            f"COPY tag_reads ({', '.join(TAG_READS_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.write(tag_reads_copy_buffer(ts, one, one, one, one, one, one))
        db.commit()
        db.autocommit = True
        assert run_retention(db, 90.0, timescale)
        db.autocommit = False
        left = db.execute("SELECT count(*) FROM tag_reads").fetchone()
        db.commit()
        assert left is not None and left[0] == 2, f"timescale={timescale}"


# --- against the broker and the database ---------------------------------------------------------
def test_exactly_once_with_duplicates_and_redeliveries(
    db_url: str,
    mini_layout_path: Path,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    load_store(db_url, mini_layout_path)
    svc = service_factory(make_settings(db_url, unique_prefix, mqtt_broker, tmp_path))
    rng = np.random.default_rng(7)
    batches = [reads_batch(f"a{k}", seq, 150, rng) for k in range(2) for seq in range(20)]
    doors = [doors_batch("a0", 1000 + seq, 5) for seq in range(3)]  # one seq space per stream
    pub = Publisher(*mqtt_broker)
    try:
        for i, b in enumerate(batches):
            pub.send_batch(unique_prefix, b)
            if i % 4 == 0:  # the agent resends (e.g. after losing a PUBACK)
                pub.send_batch(unique_prefix, b)
        for b in doors + doors[:2]:
            pub.send_batch(unique_prefix, b)
        # An agent whose spool replays old batches long after they were stored.
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") == 43, 20, "first pass")
        for b in batches[:5]:
            pub.send_batch(unique_prefix, b)
    finally:
        pub.close()
    wait_until(
        lambda: metric(svc, "storeflow_ingest_messages_duplicate_total") == 17, 20, "duplicates skipped"
    )
    want = expected_rows(batches, antenna_ids(db_url))
    got = stored_rows(db_url)
    assert len(got) == len(want) == 40 * 150  # every read once ...
    assert set(got) == want  # ... with its values
    assert scalar(db_url, "SELECT count(*) FROM door_counts") == 15
    assert scalar(db_url, "SELECT count(*) FROM tags WHERE kind IS NOT NULL") == 0
    assert scalar(db_url, "SELECT count(*) FROM rejects") == 0
    assert metric(svc, "storeflow_ingest_reads_committed_total") == len(want)
    assert metric(svc, "storeflow_ingest_messages_committed_total") == 43
    assert metric(svc, "storeflow_ingest_pending_messages") == 0
    assert metric(svc, "storeflow_ingest_lag_seconds_count") == 43


def _tamper(payload: bytes, field: str, value: int) -> bytes:
    (hlen,) = struct.unpack_from("<I", payload, 4)
    body = bytearray(payload[8 + hlen :])
    rec = np.frombuffer(body, dtype=READ_DTYPE)
    rec[field][0] = value
    return payload[: 8 + hlen] + bytes(body)


def test_every_kind_of_malformed_message_is_rejected_and_good_ones_stored(
    db_url: str,
    mini_layout_path: Path,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    load_store(db_url, mini_layout_path)
    svc = service_factory(make_settings(db_url, unique_prefix, mqtt_broker, tmp_path))
    rng = np.random.default_rng(3)
    p = unique_prefix
    good = [reads_batch("a1", seq, 50, rng) for seq in range(4)]
    partial = reads_batch("a1", 10, 60, rng, antennas=ANTENNAS + [("R9", 3)])
    door_partial = doors_batch("a1", 11, 6)
    door_partial.doors = ["D1", "D9"]
    door_partial.records["door"][::2] = 1
    valid = encode_batch(reads_batch("a1", 20, 10, rng))
    (hlen,) = struct.unpack_from("<I", valid, 4)
    reads_topic = f"{p}/{STORE}/a1/reads"
    bad_messages = {  # what is wrong -> (topic, payload, expected reason)
        "bad magic": (reads_topic, b"XXXX" + valid[4:], "bad magic"),
        "empty": (reads_topic, b"", "bad magic"),
        "garbage": (reads_topic, b"\x00" + os.urandom(299), "bad magic"),
        "header not JSON": (reads_topic, valid[:8] + b"{not json" + valid[8 + 9 :], "header is not JSON"),
        "header length": (reads_topic, b"SFB1" + struct.pack("<I", 10**6) + b"{}", "exceeds the payload"),
        "header not an object": (reads_topic, b"SFB1" + struct.pack("<I", 2) + b"[]", "not a JSON object"),
        "kind unknown": (
            reads_topic,
            b"SFB1" + struct.pack("<I", 15) + b'{"kind":"xyz"}' + b" ",
            "is not reads or doors",
        ),
        "header field missing": (
            reads_topic,
            b"SFB1" + struct.pack("<I", 24) + b'{"kind":"reads","n":0}  ',
            "header field missing",
        ),
        "truncated": (reads_topic, valid[:-5], "does not hold"),
        "antenna index": (reads_topic, _tamper(valid, "antenna", 99), "past the antenna table"),
        "epc index": (reads_topic, _tamper(valid, "epc", 9999), "past the EPC table"),
        "count 0": (reads_topic, _tamper(valid, "count", 0), "count 0"),
        "time": (reads_topic, _tamper(valid, "ts_us", 5), "outside 2000..2100"),
        "kind": (f"{p}/{STORE}/a1/doors", valid, "a reads batch on a doors topic"),
        "agent": (f"{p}/{STORE}/a2/reads", valid, "published on the topic of store 'mini-store' agent 'a2'"),
        "store": (
            f"{p}/no-such-store/a1/reads",
            encode_batch(Batch(**{**reads_batch("a1", 30, 5, rng).__dict__, "store": "no-such-store"})),
            "unknown store 'no-such-store'",
        ),
    }
    assert hlen > 0
    pub = Publisher(*mqtt_broker)
    try:
        pub.send_batch(p, good[0])
        for name, payload, _ in bad_messages.values():
            pub.send(name, payload)
        pub.send_batch(p, good[1])
        pub.send_batch(p, partial)
        pub.send_batch(p, good[2])
        pub.send_batch(p, door_partial)
        pub.send_batch(p, good[3])
    finally:
        pub.close()
    n_partial_good = int((partial.records["antenna"] < 4).sum())
    wait_until(
        lambda: (
            metric(svc, "storeflow_ingest_pending_messages") == 0
            and metric(svc, "storeflow_ingest_messages_received_total") == len(bad_messages) + 6
        ),
        20,
        "all messages handled",
    )
    with psycopg.connect(db_url) as c:
        rejects = c.execute("SELECT source, location, reason, raw FROM rejects").fetchall()
    reasons = [r[2] for r in rejects]
    for what, (name, payload, reason) in bad_messages.items():
        hits = [
            r
            for r in rejects
            if r[0] == f"mqtt:{name}" and r[3] == "base64:" + base64.b64encode(payload).decode()
        ]
        assert len(hits) == 1, f"{what}: no single reject with its raw payload; got {reasons}"
        assert reason in hits[0][2], f"{what}: reason {hits[0][2]!r} does not say {reason!r}"
    antenna_reject = [r for r in rejects if "unknown antenna R9 port 3" in r[2]]
    assert len(antenna_reject) == 1
    assert f"{60 - n_partial_good} of 60 records rejected" in antenna_reject[0][2]
    assert '"reader": "R9"' in antenna_reject[0][3]
    door_reject = [r for r in rejects if "unknown door 'D9'" in r[2]]
    assert len(door_reject) == 1 and "3 of 6 records rejected" in door_reject[0][2]
    assert scalar(db_url, "SELECT count(*) FROM door_counts") == 3
    assert len(rejects) == len(bad_messages) + 2
    ids = antenna_ids(db_url)
    kept = Batch(**{**partial.__dict__, "records": partial.records[partial.records["antenna"] < 4]})
    assert set(stored_rows(db_url)) == expected_rows(good + [kept], ids)
    assert scalar(db_url, "SELECT count(*) FROM tag_reads") == 4 * 50 + n_partial_good
    assert metric(svc, "storeflow_ingest_messages_rejected_total") == len(bad_messages)


def test_raw_payload_of_a_rejected_message_is_kept(
    db_url: str,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    svc = service_factory(make_settings(db_url, unique_prefix, mqtt_broker, tmp_path))
    small, big = os.urandom(100), os.urandom(200_000)
    pub = Publisher(*mqtt_broker)
    try:
        pub.send(f"{unique_prefix}/{STORE}/a1/reads", small)
        pub.send(f"{unique_prefix}/{STORE}/a1/reads", big)
    finally:
        pub.close()
    wait_until(lambda: scalar(db_url, "SELECT count(*) FROM rejects") == 2, 20, "two rejects")
    with psycopg.connect(db_url) as c:
        raws = [r[0] for r in c.execute("SELECT raw FROM rejects ORDER BY reject_id")]
    assert base64.b64decode(raws[0].removeprefix("base64:")) == small
    head, _, note = raws[1].removeprefix("base64:").partition(" ")
    assert base64.b64decode(head) == big[:65536] and "of 200000 bytes" in note
    assert metric(svc, "storeflow_ingest_messages_rejected_total") == 2


# --- separate processes: kill -9 and scale-out ---------------------------------------------------
def start_ingest(
    url: str, prefix: str, mqtt_broker: tuple[str, int], client_id: str, metrics_port: int, log_path: Path
) -> subprocess.Popen:
    env = {
        **os.environ,
        "STOREFLOW_DATABASE_URL": url,
        "STOREFLOW_TOPIC_PREFIX": prefix,
        "STOREFLOW_MQTT_URL": f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}",
        "STOREFLOW_INGEST_GROUP": f"g-{prefix}",
        "STOREFLOW_INGEST_CLIENT_ID": client_id,
        "STOREFLOW_INGEST_METRICS_PORT": str(metrics_port),
        "STOREFLOW_INGEST_MAX_BATCH_DELAY_S": "0.1",
        "STOREFLOW_INGEST_SESSION_EXPIRY_S": "120",
        "STOREFLOW_DATA_DIR": str(log_path.parent / "data"),
    }
    log_file = open(log_path, "ab")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow.cli", "ingest", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    wait_until(
        lambda: scrape(metrics_port).get("storeflow_ingest_mqtt_connected") == 1.0 or proc.poll() is not None,
        20,
        "ingest process connected",
    )
    assert proc.poll() is None, f"ingest exited: {log_path.read_text()[-2000:]}"
    time.sleep(0.3)  # SUBACK
    return proc


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return parse_text(r.read().decode())
    except OSError:
        return {}


def publish_in_background(
    mqtt_broker: tuple[str, int], prefix: str, batches: list[Batch], pace_s: float
) -> threading.Thread:
    def run() -> None:
        pub = Publisher(*mqtt_broker)
        try:
            for b in batches:
                pub.send_batch(prefix, b)
                time.sleep(pace_s)
        finally:
            pub.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(
    db_url: str, mini_layout_path: Path, unique_prefix: str, mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    load_store(db_url, mini_layout_path)
    rng = np.random.default_rng(11)
    batches = [reads_batch(f"a{k}", seq, 200, rng) for seq in range(60) for k in range(3)]
    client_id, port = f"c-{unique_prefix}", free_port()
    log_path = tmp_path / "ingest.log"
    proc = start_ingest(db_url, unique_prefix, mqtt_broker, client_id, port, log_path)
    try:
        pub = publish_in_background(mqtt_broker, unique_prefix, batches, 0.01)
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") >= 40, 20, "some commits")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stored_at_kill = scalar(db_url, "SELECT count(*) FROM ingest_ledger")
        assert stored_at_kill < len(batches), "the stream finished before the kill; make it longer"
        time.sleep(0.5)
        proc = start_ingest(db_url, unique_prefix, mqtt_broker, client_id, port, log_path)
        pub.join(30)
        wait_until(
            lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") == len(batches),
            30,
            f"all {len(batches)} batches stored",
        )
        time.sleep(0.5)  # any late duplicate would land now
        got = stored_rows(db_url)
        want = expected_rows(batches, antenna_ids(db_url))
        assert len(got) == len(want) == len(batches) * 200
        assert set(got) == want
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()[-2000:]


def test_two_processes_in_one_group_split_the_stream(
    db_url: str, mini_layout_path: Path, unique_prefix: str, mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    load_store(db_url, mini_layout_path)
    rng = np.random.default_rng(5)
    batches = [reads_batch(f"a{k}", seq, 100, rng) for seq in range(30) for k in range(4)]
    ports = [free_port(), free_port()]
    procs = [
        start_ingest(
            db_url, unique_prefix, mqtt_broker, f"c{i}-{unique_prefix}", ports[i], tmp_path / f"ingest{i}.log"
        )
        for i in range(2)
    ]
    try:
        publish_in_background(mqtt_broker, unique_prefix, batches, 0.002).join(30)
        wait_until(
            lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") == len(batches), 30, "all batches"
        )
        time.sleep(0.3)
        per_process = [scrape(p).get("storeflow_ingest_messages_committed_total", 0.0) for p in ports]
        assert all(n > 0 for n in per_process), per_process
        assert sum(per_process) == len(batches)
        got = stored_rows(db_url)
        assert len(got) == len(batches) * 100
        assert set(got) == expected_rows(batches, antenna_ids(db_url))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for i, proc in enumerate(procs):
            assert proc.wait(20) == 0, (tmp_path / f"ingest{i}.log").read_text()[-2000:]


# --- a private PostgreSQL that the test may restart ----------------------------------------------
class PrivatePostgres:
    """A throw-away PostgreSQL 15 + TimescaleDB cluster (run as the postgres user) on a free port."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.fail(
                f"{PG_BIN}/initdb not found; install postgresql-15 (scripts/services.sh)", pytrace=False
            )
        self.dir = Path(tempfile.mkdtemp(prefix="sf-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n"
                "fsync = off\nshared_buffers = 32MB\nmax_connections = 20\n"
            )
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/storeflow"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE storeflow")
        with psycopg.connect(self.url) as c:
            migrate(c, Settings(timescaledb="require", database_url=self.url))

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def test_database_restart_pauses_and_resumes_without_loss(
    mini_layout_path: Path,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    pg = PrivatePostgres()
    try:
        load_store(pg.url, mini_layout_path)
        svc = service_factory(make_settings(pg.url, unique_prefix, mqtt_broker, tmp_path))
        rng = np.random.default_rng(13)
        batches = [reads_batch(f"a{k}", seq, 200, rng) for seq in range(50) for k in range(2)]
        pub = publish_in_background(mqtt_broker, unique_prefix, batches, 0.02)
        wait_until(
            lambda: metric(svc, "storeflow_ingest_messages_committed_total") >= 10, 20, "first commits"
        )
        pg.stop("fast")
        held_from = metric(svc, "storeflow_ingest_messages_committed_total")
        time.sleep(1.5)  # outage: the service must hold and not ack
        assert metric(svc, "storeflow_ingest_messages_committed_total") == held_from
        assert metric(svc, "storeflow_ingest_db_up") == 0
        assert metric(svc, "storeflow_ingest_pending_messages") > 0
        pg.start()
        pub.join(30)
        wait_until(
            lambda: scalar(pg.url, "SELECT count(*) FROM ingest_ledger") == len(batches),
            30,
            "all batches after the restart",
        )
        time.sleep(0.3)
        got = stored_rows(pg.url)
        assert len(got) == len(batches) * 200
        assert set(got) == expected_rows(batches, antenna_ids(pg.url))
        assert metric(svc, "storeflow_ingest_db_errors_total") > 0
        assert metric(svc, "storeflow_ingest_db_up") == 1
    finally:
        pg.destroy()


def test_leave_drains_an_offline_members_share_and_ends_its_session(
    db_url: str,
    mini_layout_path: Path,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    load_store(db_url, mini_layout_path)
    s_a = make_settings(db_url, unique_prefix, mqtt_broker, tmp_path)
    s_b = make_settings(db_url, unique_prefix, mqtt_broker, tmp_path)
    service_factory(s_a)
    b = IngestService(s_b)
    b.start()
    assert b.wait_connected(10)
    time.sleep(0.3)
    b.stop()  # stopped, not left: its session keeps its share
    rng = np.random.default_rng(17)
    first = [reads_batch("a1", seq, 20, rng) for seq in range(20)]
    publish_in_background(mqtt_broker, unique_prefix, first, 0.0).join(20)
    time.sleep(1.0)
    held = len(first) - scalar(db_url, "SELECT count(*) FROM ingest_ledger")
    assert held > 0, "the broker gave the offline member no share (broker behaviour changed?)"
    leaver = IngestService(s_b, leave=True)
    leaver.start()
    leaver.drain(quiet_s=1.0, timeout_s=20)
    leaver.stop()
    assert scalar(db_url, "SELECT count(*) FROM ingest_ledger") == len(first)
    assert metric(leaver, "storeflow_ingest_messages_committed_total") == held
    second = [reads_batch("a1", 100 + seq, 20, rng) for seq in range(10)]
    publish_in_background(mqtt_broker, unique_prefix, second, 0.0).join(20)
    wait_until(
        lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") == len(first) + len(second),
        10,
        "the remaining member stores everything once the other left",
    )
    assert scalar(db_url, "SELECT count(*) FROM tag_reads") == (len(first) + len(second)) * 20


def test_plain_mqtt311_subscription_mode(
    db_url: str, mini_layout_path: Path, unique_prefix: str, mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    """--no-shared (brokers without MQTT 5, e.g. the demo's amqtt): same storage, same dedup."""
    load_store(db_url, mini_layout_path)
    svc = IngestService(make_settings(db_url, unique_prefix, mqtt_broker, tmp_path), shared=False)
    svc.start()
    try:
        assert svc.wait_connected(10)
        time.sleep(0.3)
        rng = np.random.default_rng(23)
        batches = [reads_batch("a1", seq, 30, rng) for seq in range(5)]
        publish_in_background(mqtt_broker, unique_prefix, batches + batches[:2], 0.0).join(20)
        wait_until(lambda: metric(svc, "storeflow_ingest_messages_duplicate_total") == 2, 10, "duplicates")
        assert set(stored_rows(db_url)) == expected_rows(batches, antenna_ids(db_url))
        assert scalar(db_url, "SELECT count(*) FROM tag_reads") == 150
    finally:
        svc.stop()


def test_broker_disconnect_mid_stream_redelivers_without_loss_or_doubles(
    db_url: str,
    mini_layout_path: Path,
    unique_prefix: str,
    mqtt_broker: tuple[str, int],
    tmp_path: Path,
    service_factory: Callable[[Settings], IngestService],
) -> None:
    """A session takeover drops the service's connection while messages are unacknowledged: after
    its reconnect the broker redelivers them under new ids; old ids are never acked on the new one."""
    load_store(db_url, mini_layout_path)
    s = make_settings(db_url, unique_prefix, mqtt_broker, tmp_path, ingest_max_batch_delay_s=0.4)
    svc = service_factory(s)
    rng = np.random.default_rng(29)
    batches = [reads_batch(f"a{k}", seq, 50, rng) for seq in range(40) for k in range(2)]
    pub = publish_in_background(mqtt_broker, unique_prefix, batches, 0.01)
    wait_until(lambda: metric(svc, "storeflow_ingest_messages_committed_total") >= 10, 20, "first commits")
    for _ in range(2):
        # Take the session over (as a second process with the same id would), without acking anything.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 120
        rogue = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=s.ingest_client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        rogue.connect(*mqtt_broker, clean_start=False, properties=props)
        rogue.loop_start()
        time.sleep(0.3)
        rogue.disconnect()
        rogue.loop_stop()
        time.sleep(0.8)
    pub.join(30)
    wait_until(
        lambda: scalar(db_url, "SELECT count(*) FROM ingest_ledger") == len(batches), 30, "all batches stored"
    )
    wait_until(lambda: metric(svc, "storeflow_ingest_pending_messages") == 0, 20, "everything acknowledged")
    got = stored_rows(db_url)
    assert len(got) == len(batches) * 50
    assert set(got) == expected_rows(batches, antenna_ids(db_url))
    assert metric(svc, "storeflow_ingest_mqtt_connected") == 1
    # The takeovers did cost redeliveries (else this test proved nothing).
    assert metric(svc, "storeflow_ingest_messages_received_total") > len(batches), svc.metrics.render()[:400]
