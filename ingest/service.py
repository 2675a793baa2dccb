"""The ingest service: MQTT batches from edge agents -> TimescaleDB, each batch stored exactly once.

Flow (one process; start more with the same ``ingest_group`` to scale out)::

    paho network thread     decoder thread                writer thread (the only DB user)
    on_message -> queue ->  collect many messages    ->   resolve ids (cached); one transaction:
    (never blocks)          (ingest_max_batch_reads,      binary COPY reads, door counts, rejects,
                            ingest_max_batch_delay_s),    ingest_ledger rows (agent, stream, seq);
                            decode + validate (numpy)     commit -> client.ack(mid, qos) each

Exactly-once effect: a message is acknowledged only after the transaction holding its rows and its
ledger row committed. A redelivered batch (after a crash, a reconnect or an agent resend) finds its
ledger row and is skipped; two processes racing on the same batch collide on the ledger's primary
key and the loser retries (and then skips it). During a database outage the writer keeps its
unacknowledged messages and retries with backoff; the broker stops sending once the receive window
is full, so the backlog stays on the broker.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import queue
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.copybin import TAG_READS_COLUMNS, tag_reads_copy_buffer
from ingest.metrics import MetricsServer, Registry
from storeflow.contract import BadInput
from storeflow.db import connect, has_timescaledb
from storeflow.settings import Settings
from storeflow.store import StoreDims, load_store_dims
from storeflow.wire import Batch, WireError, decode_batch, parse_topic

__all__ = ["IngestService", "ingest_client_id", "mqtt_endpoint", "subscription_topics"]

log = logging.getLogger(__name__)

#: Raw payload kept in a reject row (bytes, before base64).
REJECT_RAW_MAX_BYTES = 64 * 1024
#: Offending records shown in a row-level reject (the reason carries the full count).
REJECT_SAMPLE_ROWS = 20
#: An unknown store or antenna triggers a reload of the store's dimensions at most this often (s).
DIMS_RELOAD_S = 10.0
#: The EPC -> tag_id cache is cleared when it grows past this many entries.
TAG_CACHE_MAX = 2_000_000
_INT2_MAX = 32_767
_INT4_MAX = 2_147_483_647
_LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_COMMIT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Any fixed number: only one ingest process of the chain runs a retention pass at a time.
_RETENTION_LOCK = 0x5F0F_1E7E


def mqtt_endpoint(settings: Settings) -> tuple[str, int, bool]:
    """(host, port, tls) of the broker from ``mqtt_url`` (default mqtt://127.0.0.1:1883)."""
    url = settings.mqtt_url or "mqtt://127.0.0.1:1883"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BadInput(f"mqtt_url {url!r} is not mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


def subscription_topics(settings: Settings, shared: bool = True) -> list[str]:
    """The (shared) subscriptions of the ingest group: reads and door counts of every agent."""
    base = f"{settings.topic_prefix}/+/+"
    if shared:
        base = f"$share/{settings.ingest_group}/{base}"
    return [f"{base}/reads", f"{base}/doors"]


def ingest_client_id(settings: Settings) -> tuple[str, Any]:
    """(client id, lock handle): ``ingest_client_id`` or ``<group>-<host>-<slot>``.

    The persistent MQTT session belongs to the client id, so it must survive a restart; several
    processes on one host must still differ. The slot is the lowest number whose lock file under
    ``data_dir`` this process can lock (the OS drops the lock when the process dies, even by kill -9).
    Keep the returned handle open for the life of the process.
    """
    if settings.ingest_client_id:
        return settings.ingest_client_id, None
    lock_dir = Path(settings.data_dir) / "ingest"
    lock_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0] or "host"
    for slot in range(1024):
        fh = open(lock_dir / f"{settings.ingest_group}-{slot}.lock", "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return f"{settings.ingest_group}-{host}-{slot}", fh
    raise RuntimeError(f"no free ingest client slot under {lock_dir}")


@dataclass(slots=True)
class Message:
    """One received MQTT message, not yet acknowledged."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int  # MQTT connection it arrived on; an ack is only valid on that connection
    received: float  # time.monotonic()


@dataclass(slots=True)
class _Item:
    """A message in a flush: decoded once, resolved again on every attempt."""

    msg: Message
    batch: Batch | None = None
    reject: str | None = None  # whole-message reject reason
    store_id: int | None = None
    outcome: str = ""  # stored | duplicate | rejected
    rows_stored: int = 0
    rows_rejected: int = 0

    @property
    def n_records(self) -> int:
        return len(self.batch.records) if self.batch is not None else 1


@dataclass
class _StoreCache:
    dims: StoreDims | None
    loaded: float  # time.monotonic()


@dataclass
class _FlushStats:
    stored: list[_Item] = field(default_factory=list)
    duplicates: list[_Item] = field(default_factory=list)
    rejected: list[_Item] = field(default_factory=list)
    door_rows: int = 0


class _Outage(Exception):
    """The database is unreachable; keep the messages and retry."""


def _raw_text(payload: bytes) -> str:
    """A payload for the rejects table: base64 of at most REJECT_RAW_MAX_BYTES, marked when cut."""
    text = "base64:" + base64.b64encode(payload[:REJECT_RAW_MAX_BYTES]).decode()
    if len(payload) > REJECT_RAW_MAX_BYTES:
        text += f" (first {REJECT_RAW_MAX_BYTES} of {len(payload)} bytes)"
    return text


def _is_outage(e: BaseException, conn: psycopg.Connection | None) -> bool:
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError, OSError)) or (
        conn is not None and (conn.closed or conn.broken)
    )


class IngestService:
    """Consume the edge agents' batches from MQTT and store them in the database.

    ``start()`` connects and returns; ``stop()`` flushes what was received, acknowledges it and
    disconnects (the persistent session keeps everything else on the broker). ``run()`` does both
    around SIGTERM/SIGINT for the CLI.
    """

    def __init__(
        self, settings: Settings, database_url: str | None = None, *, shared: bool = True, leave: bool = False
    ) -> None:
        """``shared=False``: plain subscriptions over MQTT 3.1.1 (clean_session=False), for brokers
        without MQTT 5 shared subscriptions (the demo's amqtt); then run a single ingest process.

        ``leave=True`` (scale-down): resume this client id's session without subscribing, unsubscribe,
        store what the broker still holds for it, then end the session (see :meth:`drain`).
        """
        self.settings = settings
        self.shared = shared
        self.leave = leave
        self._last_message = time.monotonic()
        self.database_url = database_url or settings.database_url
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._decoder: threading.Thread | None = None
        self._batches: queue.Queue[list[_Item]] = queue.Queue(maxsize=1)
        self._writer_done = threading.Event()
        self._decoder_done = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._timescale = False
        self._stores: dict[str, _StoreCache] = {}
        self._tags: dict[str, int] = {}
        self._gen_lock = threading.Lock()
        self._generation = 0
        self._connected = threading.Event()
        self._next_retention = time.monotonic() + 5.0
        self._metrics_server: MetricsServer | None = None
        self._client_lock_handle: Any = None
        self.client_id = ""
        # Three transactions' worth of messages can be unacknowledged: committing, decoded, collecting.
        self._max_msgs = max(1, settings.ingest_inflight // 3)
        self._client: mqtt.Client | None = None
        self._fatal: BaseException | None = None
        self._init_metrics()

    # --- metrics -------------------------------------------------------------------------------
    def _init_metrics(self) -> None:
        r = self.metrics = Registry()
        p = "storeflow_ingest_"
        self.m_msgs_received = r.counter(p + "messages_received_total", "MQTT messages received.")
        self.m_reads_received = r.counter(
            p + "reads_received_total", "Tag reads in received (decodable) batches."
        )
        self.m_msgs_committed = r.counter(p + "messages_committed_total", "Batches stored (committed).")
        self.m_reads_committed = r.counter(p + "reads_committed_total", "Tag reads stored (committed).")
        self.m_doors_committed = r.counter(p + "door_counts_committed_total", "Door count rows stored.")
        self.m_msgs_duplicate = r.counter(
            p + "messages_duplicate_total",
            "Batches skipped because their (agent, stream, seq) was already stored.",
        )
        self.m_reads_duplicate = r.counter(
            p + "reads_duplicate_total", "Tag reads in skipped duplicate batches."
        )
        self.m_msgs_rejected = r.counter(p + "messages_rejected_total", "Messages rejected as a whole.")
        self.m_rows_rejected = r.counter(
            p + "rows_rejected_total", "Records rejected (whole rejected batches and single bad rows)."
        )
        self.m_commits = r.counter(p + "commits_total", "Committed transactions.")
        self.m_db_errors = r.counter(p + "db_errors_total", "Failed commit attempts (outages, conflicts).")
        self.m_db_up = r.gauge(p + "db_up", "1 while the last database operation succeeded.")
        self.m_mqtt_up = r.gauge(p + "mqtt_connected", "1 while connected to the broker.")
        self.m_pending = r.gauge(p + "pending_messages", "Messages received and not yet acknowledged.")
        self.m_lag_last = r.gauge(
            p + "lag_seconds_last", "Largest commit time - batch sent_us in the last commit (seconds)."
        )
        self.m_commit_s = r.histogram(
            p + "commit_seconds", "Duration of one write transaction (seconds).", _COMMIT_BUCKETS_S
        )
        self.m_lag = r.histogram(
            p + "lag_seconds",
            "Commit time - the batch's sent_us, per stored batch (seconds).",
            _LAG_BUCKETS_S,
        )
        self.m_retention = r.counter(p + "retention_runs_total", "Retention passes run.")
        self._unacked = 0
        self._unacked_lock = threading.Lock()

    def _pending_add(self, n: int) -> None:
        with self._unacked_lock:
            self._unacked += n
            self.m_pending.set(self._unacked)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the database (migrating it), the metrics endpoint and the MQTT session; start writing.

        Raises :class:`BadInput` when the database cannot be reached at start.
        """
        self._conn = connect(self.database_url, autocommit=True, settings=self.settings)
        self._timescale = has_timescaledb(self._conn)
        self.m_db_up.set(1)
        if self.settings.ingest_metrics_port:
            try:
                self._metrics_server = MetricsServer(
                    self.metrics, "0.0.0.0", self.settings.ingest_metrics_port
                )
                log.info("metrics on http://0.0.0.0:%d/metrics", self._metrics_server.port)
            except OSError as e:  # e.g. a second process on this host: ingest matters more than metrics
                log.warning(
                    "metrics endpoint off: port %d: %s (set STOREFLOW_INGEST_METRICS_PORT)",
                    self.settings.ingest_metrics_port,
                    e,
                )
        self.client_id, self._client_lock_handle = ingest_client_id(self.settings)
        self._client = self._make_client()
        host, port, _ = mqtt_endpoint(self.settings)
        if self.shared:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(self.settings.ingest_session_expiry_s)
            props.ReceiveMaximum = min(65535, max(1, self.settings.ingest_inflight))
            self._client.connect_async(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        self._decoder = threading.Thread(target=self._decoder_main, name="ingest-decoder", daemon=True)
        self._writer = threading.Thread(target=self._writer_main, name="ingest-writer", daemon=True)
        self._decoder.start()
        self._writer.start()
        log.info(
            "ingest %s: %s -> database, group %s",
            self.client_id,
            ", ".join(subscription_topics(self.settings, self.shared)),
            self.settings.ingest_group,
        )

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics endpoint listens on (None when off)."""
        return self._metrics_server.port if self._metrics_server else None

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """True once the MQTT session is up and subscribed."""
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Flush and acknowledge what was received, then disconnect (the session stays on the broker)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in (self._decoder, self._writer):
            if t is not None:
                t.join(max(0.1, deadline - time.monotonic()))
        if self._client is not None:
            if self.leave and self.shared:
                end = Properties(PacketTypes.DISCONNECT)
                end.SessionExpiryInterval = 0  # the session ends with this connection
                self._client.disconnect(properties=end)
            else:
                self._client.disconnect()
            self._client.loop_stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self._conn is not None:
            self._conn.close()
        if self._client_lock_handle is not None:
            self._client_lock_handle.close()

    def drain(self, quiet_s: float = 2.0, timeout_s: float = 600.0) -> None:
        """(leave mode) Wait until the session's backlog is stored: connected, nothing pending and no
        message for ``quiet_s``; then ask the service to stop."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._unacked_lock:
                idle = self._unacked == 0
            if self._connected.is_set() and idle and time.monotonic() - self._last_message > quiet_s:
                break
            time.sleep(0.1)
        log.info("session %s drained; ending it", self.client_id)
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: flushing and stopping", signum)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        if self.leave:
            self.drain()
        while not self._stop.wait(0.5):
            if self._writer is not None and not self._writer.is_alive():
                break
        self.stop()
        if self._fatal is not None:
            raise self._fatal
        return 0

    # --- MQTT (network thread: never touches the database) --------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        if self.shared:
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if s.mqtt_username:
            c.username_pw_set(s.mqtt_username, s.mqtt_password)
        if mqtt_endpoint(s)[2]:
            c.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        c.max_inflight_messages_set(max(20, s.ingest_inflight))
        c.reconnect_delay_set(0.5, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        with self._gen_lock:
            self._generation += 1
        if self.leave:
            # The broker routes a share of the group's messages to every member's session, even an
            # offline one: leaving the group means unsubscribing, then draining what is queued.
            client.unsubscribe(subscription_topics(self.settings, self.shared))
        else:
            qos: Any = SubscribeOptions(qos=1) if self.shared else 1
            client.subscribe([(t, qos) for t in subscription_topics(self.settings, self.shared)])
        self.m_mqtt_up.set(1)
        self._last_message = time.monotonic()
        self._connected.set()
        log.info("MQTT connected (session present: %s)", getattr(flags, "session_present", "?"))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self.m_mqtt_up.set(0)
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Message(msg.mid, msg.qos, msg.topic, msg.payload, self._generation, time.monotonic()))
        self.m_msgs_received.inc()
        self._pending_add(1)
        self._last_message = time.monotonic()

    def _ack(self, msgs: list[Message]) -> None:
        assert self._client is not None
        with self._gen_lock:
            gen = self._generation
            for m in msgs:
                # After a reconnect the broker redelivers unacked messages with new ids: an old id
                # must not be acked on the new connection (the redelivery is then a duplicate).
                if m.qos > 0 and m.generation == gen:
                    self._client.ack(m.mid, m.qos)
        self._pending_add(-len(msgs))

    # --- decoder and writer threads ------------------------------------------------------------
    # The decoder collects and decodes the next transaction's messages while the writer commits the
    # previous one (the database releases the GIL while it works): the two stages overlap.
    def _decoder_main(self) -> None:
        try:
            while not self._writer_done.is_set():
                stopping = self._stop.is_set()
                items = self._collect(drain=stopping)
                if items:
                    while not self._writer_done.is_set():
                        try:
                            self._batches.put(items, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                elif stopping:
                    return
        except BaseException as e:
            log.exception("ingest decoder failed")
            self._fatal = e
            self._stop.set()
        finally:
            self._decoder_done.set()

    def _writer_main(self) -> None:
        try:
            while True:
                try:
                    items = self._batches.get(timeout=0.2)
                except queue.Empty:
                    if self._decoder_done.is_set():
                        return  # stopped and everything received is stored
                    self._maybe_retention()
                    continue
                if not self._flush(items):
                    return  # stopping during an outage: leave them unacked
                self._maybe_retention()
        except BaseException as e:
            log.exception("ingest writer failed")
            self._fatal = e
            self._stop.set()
        finally:
            self._writer_done.set()

    def _collect(self, drain: bool) -> list[_Item]:
        """Decoded messages for one transaction: until ingest_max_batch_reads records, a third of the
        receive window, or ingest_max_batch_delay_s after the first one arrived."""
        try:
            first = self._queue.get_nowait() if drain else self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [self._decode(first)]
        records = items[0].n_records
        deadline = first.received + self.settings.ingest_max_batch_delay_s
        while records < self.settings.ingest_max_batch_reads and len(items) < self._max_msgs:
            remaining = deadline - time.monotonic()
            try:
                m = (
                    self._queue.get_nowait()
                    if (remaining <= 0 or drain)
                    else self._queue.get(timeout=remaining)
                )
            except queue.Empty:
                break
            items.append(self._decode(m))
            records += items[-1].n_records
        return items

    def _flush(self, items: list[_Item]) -> bool:
        """Store and acknowledge the messages; retries through database outages. False if stopped first."""
        msgs = [it.msg for it in items]
        backoff = 0.2
        while True:
            try:
                stats = self._write_all(items)
                break
            except _Outage as e:
                self.m_db_errors.inc()
                self.m_db_up.set(0)
                if self._stop.is_set():
                    log.warning(
                        "stopping during a database outage: %d messages left unacknowledged", len(msgs)
                    )
                    return False
                log.warning(
                    "database unavailable (%s); %d messages held, retrying in %.1f s",
                    str(e.__cause__ or e).strip().splitlines()[0] if str(e.__cause__ or e).strip() else e,
                    len(msgs),
                    backoff,
                )
                self._stop.wait(backoff * (0.75 + 0.5 * random.random()))
                backoff = min(backoff * 2, 10.0)
        self.m_db_up.set(1)
        self._account(stats)
        self._ack(msgs)
        return True

    def _write_all(self, items: list[_Item]) -> _FlushStats:
        """One transaction for all items; on a data error, one per item, rejecting the one that fails."""
        try:
            return self._write(items)
        except _Outage:
            raise
        except Exception as e:  # noqa: BLE001 - a poison batch must not stop the stream
            if len(items) == 1:
                return self._reject_alone(items[0], e)
            log.warning("transaction of %d messages failed (%s); writing them one by one", len(items), e)
            total = _FlushStats()
            for it in items:
                try:
                    one = self._write([it])
                except _Outage:
                    raise
                except Exception as e1:  # noqa: BLE001
                    one = self._reject_alone(it, e1)
                total.stored += one.stored
                total.duplicates += one.duplicates
                total.rejected += one.rejected
                total.door_rows += one.door_rows
            return total

    def _reject_alone(self, it: _Item, e: BaseException) -> _FlushStats:
        log.warning("message on %s rejected: %s", it.msg.topic, e)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        it.reject = f"database refused the batch: {type(e).__name__}: {first_line}"
        it.batch = None
        return self._write([it])

    # --- decode and resolve --------------------------------------------------------------------
    def _decode(self, m: Message) -> _Item:
        it = _Item(m)
        try:
            store, agent, leaf = parse_topic(self.settings.topic_prefix, m.topic)
            b = decode_batch(m.payload)
        except WireError as e:
            it.reject = str(e)
            return it
        if b.kind != leaf:
            it.reject = f"a {b.kind} batch on a {leaf} topic"
        elif b.store != store or b.agent != agent:
            it.reject = (
                f"batch of store {b.store!r} agent {b.agent!r} "
                f"published on the topic of store {store!r} agent {agent!r}"
            )
        else:
            it.batch = b
            if b.kind == "reads":
                self.m_reads_received.inc(len(b.records))
        return it

    def _dims(self, store: str, want_fresh: bool = False) -> StoreDims | None:
        now = time.monotonic()
        c = self._stores.get(store)
        if c is None or ((c.dims is None or want_fresh) and now - c.loaded > DIMS_RELOAD_S):
            assert self._conn is not None
            try:
                dims: StoreDims | None = load_store_dims(self._conn, store)
            except BadInput:
                dims = None
            c = self._stores[store] = _StoreCache(dims, now)
        return c.dims

    def _resolve_targets(self, b: Batch) -> tuple[StoreDims | None, np.ndarray]:
        """The store's dims and the antenna_id (reads) or door_id (doors) of each table entry (-1 unknown)."""
        for fresh in (False, True):
            dims = self._dims(b.store, want_fresh=fresh)
            if dims is None:
                continue
            if b.kind == "reads":
                table = np.array([dims.antenna_ids.get((r, p), -1) for r, p in b.antennas], dtype=np.int64)
            else:
                table = np.array([dims.door_ids.get(d, -1) for d in b.doors], dtype=np.int64)
            if fresh or not (table < 0).any():
                return dims, table
        return None, np.empty(0, dtype=np.int64)

    def _register_tags(self, epcs: set[str]) -> None:
        """tag_id of every EPC (unknown ones inserted as anonymous tags, kind NULL), into the cache."""
        assert self._conn is not None
        missing = sorted(e for e in epcs if e not in self._tags)
        if not missing:
            return
        if len(self._tags) + len(missing) > TAG_CACHE_MAX:
            self._tags.clear()
        with self._conn.transaction():
            # Sorted, so concurrent ingest processes take the unique-index locks in one order.
            self._conn.execute(
                "INSERT INTO tags (epc) SELECT e FROM unnest(%s::text[]) AS u(e) ORDER BY e "
                "ON CONFLICT (epc) DO NOTHING",
                (missing,),
            )
        for epc, tag_id in self._conn.execute("SELECT epc, tag_id FROM tags WHERE epc = ANY(%s)", (missing,)):
            self._tags[epc] = int(tag_id)

    # --- one transaction -----------------------------------------------------------------------
    def _write(self, items: list[_Item], attempt: int = 0) -> _FlushStats:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._open_db()
            return self._write_tx(items)
        except _Outage:
            raise
        except BaseException as e:
            if _is_outage(e, self._conn):
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise _Outage(str(e)) from e
            if isinstance(e, psycopg.errors.UniqueViolation | psycopg.errors.TransactionRollbackError):
                # Another process committed one of these batches meanwhile, or a deadlock/serialization
                # failure: the next attempt sees the ledger rows and skips those batches.
                self.m_db_errors.inc()
                if attempt < 5:
                    return self._write(items, attempt + 1)
            raise

    def _write_tx(self, items: list[_Item]) -> _FlushStats:
        conn = self._conn
        assert conn is not None
        stats = _FlushStats()
        good: list[_Item] = []
        for it in items:
            it.outcome, it.rows_stored, it.rows_rejected, it.store_id = "", 0, 0, None
            if it.reject is None and it.batch is not None:
                good.append(it)

        # Duplicates: in this flush (first one wins) and already in the ledger.
        seen: set[tuple[str, str, int]] = set()
        keyed: list[_Item] = []
        for it in good:
            b = it.batch
            assert b is not None
            key = (b.agent, b.stream, b.seq)
            if key in seen:
                it.outcome = "duplicate"
            else:
                seen.add(key)
                keyed.append(it)
        if keyed:
            done = set(
                conn.execute(
                    "SELECT l.agent, l.stream, l.seq FROM ingest_ledger l "
                    "JOIN unnest(%s::text[], %s::text[], %s::bigint[]) "
                    "AS u(agent, stream, seq) USING (agent, stream, seq)",
                    (
                        [it.batch.agent for it in keyed],
                        [it.batch.stream for it in keyed],  # type: ignore[union-attr]
                        [it.batch.seq for it in keyed],
                    ),
                ).fetchall()
            )  # type: ignore[union-attr]
            for it in keyed:
                b = it.batch
                assert b is not None
                if (b.agent, b.stream, b.seq) in done:
                    it.outcome = "duplicate"

        fresh = [it for it in keyed if not it.outcome]
        read_batches = [it.batch for it in fresh if it.batch is not None and it.batch.kind == "reads"]
        self._register_tags({e for b in read_batches for e in b.epcs})

        reject_rows: list[tuple[int | None, str, str | None, str, str | None]] = []
        cols: dict[str, list[np.ndarray]] = {c: [] for c in TAG_READS_COLUMNS}
        doors: dict[str, list[np.ndarray]] = {
            c: [] for c in ("ts", "store_id", "door_id", "entries", "exits")
        }
        ledger: list[tuple[str, str, int, int, int]] = []
        for it in fresh:
            b = it.batch
            assert b is not None
            dims, table = self._resolve_targets(b)
            if dims is None:
                it.reject = f"unknown store {b.store!r} (no layout imported) for agent {b.agent!r}"
                continue
            it.store_id = dims.store_id
            r = b.records
            target = (
                table[r["antenna"] if b.kind == "reads" else r["door"]] if len(r) else np.empty(0, np.int64)
            )
            bad = target < 0
            if b.kind == "reads":
                bad |= r["count"] > _INT2_MAX
            else:
                bad |= (r["entries"] > _INT4_MAX) | (r["exits"] > _INT4_MAX)
            if bad.any():
                reject_rows.extend(self._row_rejects(it, dims.store_id, table, bad))
            any_bad = bool(bad.any())
            keep = ~bad
            n_keep = int(keep.sum()) if any_bad else len(r)
            it.rows_stored, it.rows_rejected = n_keep, len(r) - n_keep
            if n_keep:
                k = r[keep] if any_bad else r
                kept_target = target[keep] if any_bad else target
                if b.kind == "reads":
                    tag_table = np.array([self._tags[e] for e in b.epcs], dtype=np.int64)
                    cols["ts"].append(k["ts_us"])
                    cols["store_id"].append(np.full(n_keep, dims.store_id, dtype=np.int32))
                    cols["antenna_id"].append(kept_target)
                    cols["tag_id"].append(tag_table[k["epc"]])
                    cols["rssi_cdbm"].append(k["rssi_cdbm"])
                    cols["read_count"].append(k["count"])
                    cols["flags"].append(k["flags"])
                else:
                    doors["ts"].append(k["ts_us"])
                    doors["store_id"].append(np.full(n_keep, dims.store_id, dtype=np.int32))
                    doors["door_id"].append(kept_target)
                    doors["entries"].append(k["entries"])
                    doors["exits"].append(k["exits"])
            ledger.append((b.agent, b.stream, b.seq, dims.store_id, n_keep))
            it.outcome = "stored"

        for it in items:
            if it.reject is not None:
                it.outcome = "rejected"
                reject_rows.append(
                    (
                        it.store_id,
                        f"mqtt:{it.msg.topic}",
                        self._location(it),
                        it.reject,
                        _raw_text(it.msg.payload),
                    )
                )
        ledger.sort()

        t0 = time.perf_counter()
        with conn.transaction():
            if cols["ts"]:
                buf = tag_reads_copy_buffer(*(np.concatenate(cols[c]) for c in TAG_READS_COLUMNS))
                with conn.cursor().copy(
                    f"COPY tag_reads ({', '.join(TAG_READS_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.write(buf)
            if doors["ts"]:
                cur = conn.execute(
                    # Counts of one door for the same interval start add up (two counter frames read
                    # in the same instant get the same receive time); batches are stored once (ledger).
                    "INSERT INTO door_counts (ts, store_id, door_id, entries, exits) "
                    "SELECT timestamptz 'epoch' + t * interval '1 microsecond', s, d, sum(e), sum(x) "
                    "FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[], %s::int[]) "
                    "AS u(t, s, d, e, x) GROUP BY t, s, d "
                    "ON CONFLICT (door_id, ts) DO UPDATE SET entries = door_counts.entries + EXCLUDED.entries, "
                    "exits = door_counts.exits + EXCLUDED.exits",
                    [
                        np.concatenate(doors[c]).tolist()
                        for c in ("ts", "store_id", "door_id", "entries", "exits")
                    ],
                )
                stats.door_rows = max(cur.rowcount, 0)
            if reject_rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO rejects (store_id, source, location, reason, raw) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        reject_rows,
                    )
            if ledger:
                conn.execute(
                    "INSERT INTO ingest_ledger (agent, stream, seq, store_id, n_rows, committed_at) "
                    "SELECT a, s, q, st, n, clock_timestamp() "
                    "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::int[], %s::int[]) "
                    "AS u(a, s, q, st, n)",
                    [list(col) for col in zip(*ledger)],
                )
        commit_s = time.perf_counter() - t0
        self.m_commit_s.observe(commit_s)
        log.debug(
            "committed %d messages: %d reads, %d door rows, %d reject rows in %.3f s (queued: %d)",
            len(items),
            sum(len(c) for c in cols["ts"]),
            sum(len(c) for c in doors["ts"]),
            len(reject_rows),
            commit_s,
            self._queue.qsize(),
        )
        for it in items:
            {"stored": stats.stored, "duplicate": stats.duplicates, "rejected": stats.rejected}[
                it.outcome
            ].append(it)
        return stats

    def _location(self, it: _Item) -> str:
        b = it.batch
        if b is not None:
            return f"agent {b.agent} stream {b.stream} seq {b.seq}"
        return f"mqtt mid {it.msg.mid}"

    def _row_rejects(
        self, it: _Item, store_id: int, table: np.ndarray, bad: np.ndarray
    ) -> list[tuple[int | None, str, str | None, str, str | None]]:
        """One reject row per reason (unknown antenna/door, value too large) with a sample of the records."""
        b = it.batch
        assert b is not None
        r = b.records
        out = []
        idx_field = "antenna" if b.kind == "reads" else "door"
        names = b.antennas if b.kind == "reads" else b.doors
        unknown = table[r[idx_field]] < 0
        groups: list[tuple[str, np.ndarray]] = []
        for i in np.unique(r[idx_field][unknown]):
            what = (
                f"unknown antenna {names[i][0]} port {names[i][1]}"
                if b.kind == "reads"  # type: ignore[index]
                else f"unknown door {names[i]!r}"
            )
            groups.append((what, np.flatnonzero(unknown & (r[idx_field] == i))))
        other = np.flatnonzero(bad & ~unknown)
        if len(other):
            groups.append(
                ("count above 32767" if b.kind == "reads" else "entries/exits above 2147483647", other)
            )
        for what, rows in groups:
            sample = []
            for j in rows[:REJECT_SAMPLE_ROWS]:
                rec = r[j]
                if b.kind == "reads":
                    sample.append(
                        {
                            "ts_us": int(rec["ts_us"]),
                            "reader": b.antennas[rec["antenna"]][0],
                            "port": b.antennas[rec["antenna"]][1],
                            "epc": b.epcs[rec["epc"]],
                            "rssi_cdbm": int(rec["rssi_cdbm"]),
                            "count": int(rec["count"]),
                            "flags": int(rec["flags"]),
                        }
                    )
                else:
                    sample.append(
                        {
                            "ts_us": int(rec["ts_us"]),
                            "door": b.doors[rec["door"]],
                            "entries": int(rec["entries"]),
                            "exits": int(rec["exits"]),
                        }
                    )
            reason = f"{what} in store {b.store!r}: {len(rows)} of {len(r)} records rejected"
            out.append(
                (
                    store_id,
                    f"mqtt:{it.msg.topic}",
                    f"{self._location(it)} records {int(rows[0])}..",
                    reason,
                    json.dumps(sample),
                )
            )
        return out

    def _account(self, stats: _FlushStats) -> None:
        now_us = time.time() * 1e6
        self.m_commits.inc()
        lag_max = 0.0
        for it in stats.stored:
            b = it.batch
            assert b is not None
            self.m_msgs_committed.inc()
            if b.kind == "reads":
                self.m_reads_committed.inc(it.rows_stored)
            if it.rows_rejected:
                self.m_rows_rejected.inc(it.rows_rejected)
            lag = max(0.0, (now_us - b.sent_us) / 1e6)
            lag_max = max(lag_max, lag)
            self.m_lag.observe(lag)
        self.m_doors_committed.inc(stats.door_rows)
        if stats.stored:
            self.m_lag_last.set(lag_max)
        for it in stats.duplicates:
            self.m_msgs_duplicate.inc()
            if it.batch is not None and it.batch.kind == "reads":
                self.m_reads_duplicate.inc(len(it.batch.records))
        for it in stats.rejected:
            self.m_msgs_rejected.inc()
            if it.batch is not None:
                self.m_rows_rejected.inc(len(it.batch.records))
            log.info("rejected message on %s: %s", it.msg.topic, it.reject)

    # --- database ------------------------------------------------------------------------------
    def _open_db(self) -> psycopg.Connection:
        try:
            conn = connect(self.database_url, autocommit=True, settings=self.settings)
        except BadInput as e:
            raise _Outage(str(e)) from e
        self._timescale = has_timescaledb(conn)
        self.m_db_up.set(1)
        return conn

    def _maybe_retention(self) -> None:
        """Drop raw reads/door counts older than retention_days (drop_chunks; DELETE without TimescaleDB)."""
        if time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + self.settings.ingest_retention_interval_s
        days = self.settings.retention_days
        if days <= 0:
            return
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._open_db()
            run_retention(self._conn, days, self._timescale)
            self.m_retention.inc()
        except Exception as e:  # noqa: BLE001 - retention must never stop ingest; it runs again later
            log.warning("retention pass failed: %s", e)


def run_retention(conn: psycopg.Connection, retention_days: float, timescale: bool) -> bool:
    """One retention pass (autocommit connection); False when another process holds the retention lock."""
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_RETENTION_LOCK,)).fetchone()
        if not got or not got[0]:
            return False
        cutoff = ("now() - make_interval(secs => %s)", (retention_days * 86400.0,))
        for table in ("tag_reads", "door_counts"):
            if timescale:
                conn.execute(f"SELECT drop_chunks('{table}', older_than => {cutoff[0]})", cutoff[1])
            else:
                conn.execute(f"DELETE FROM {table} WHERE ts < {cutoff[0]}", cutoff[1])
        conn.execute(f"DELETE FROM ingest_ledger WHERE committed_at < {cutoff[0]}", cutoff[1])
    log.info("retention: dropped raw data older than %g days", retention_days)
    return True
