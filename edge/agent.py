"""The edge agent: drivers -> clock check -> smoothing -> batches -> durable spool -> uplink (QoS 1).

Threads: each driver calls its sink from its own thread (the sink only converts records and queues
them); paho runs the network in its own thread (callbacks only queue message ids); everything else
(smoothing, batching, the SQLite spool, publishing, health) runs in the agent loop, one thread, so
the spool needs no locking.

A record is *accepted* when its batch is committed to the spool; a batch leaves the spool only when
the broker's PUBACK arrives. Publishing walks the spool in sequence order with a bounded window of
unacknowledged batches, so after an outage the backlog goes out oldest first while new batches are
appended behind it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.batcher import Pending, encode_doors, encode_reads
from edge.clock import choose_ts, now_us
from edge.config import DoorConfig, EdgeConfig, ReaderConfig
from edge.publisher import Uplink
from edge.readers.base import DoorCount, Driver, Record, TagRead
from edge.records import AgentDoor, AgentRead
from edge.smoothing import Smoother
from edge.spool import Spool
from storeflow.contract import BadInput
from storeflow.wire import topic

__all__ = ["Agent", "DeviceCounters"]

log = logging.getLogger("storeflow.edge.agent")

_EPC_RE = re.compile(r"(?:[0-9A-F]{2}){4,32}")


def _mono_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass
class DeviceCounters:
    """What the agent counted for one reader or door counter (reported next to the driver's health)."""

    records: int = 0          # records accepted from the driver
    rejected: int = 0         # records the agent could not use (bad EPC, RSSI, counts)
    agent_clock: int = 0      # records stamped with the agent's receive time
    last_reject: str | None = None
    last_record_us: int | None = None
    unmapped_antennas: dict[int, int] = field(default_factory=dict)


class Agent:
    """One in-store agent. ``start()``, then ``stop()`` (or :meth:`run` until an event is set)."""

    def __init__(self, cfg: EdgeConfig, drivers: list[tuple[ReaderConfig | DoorConfig, Driver]] | None = None,
                 clock_us: Callable[[], int] = now_us) -> None:
        self.cfg = cfg
        self._clock_us = clock_us
        self._given_drivers = drivers
        self.drivers: list[tuple[ReaderConfig | DoorConfig, Driver]] = []
        self.counters: dict[str, DeviceCounters] = {}
        self._inbox_reads: list[AgentRead] = []
        self._inbox_doors: list[AgentDoor] = []
        self._inbox_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._max_skew_us = int(cfg.clock.max_skew_s * 1e6)
        self.smoother = Smoother(int(cfg.smoothing.window_s * 1e6))
        delay_us = int(cfg.batch.max_delay_s * 1e6)
        self._pending_reads = Pending(cfg.batch.max_reads, delay_us)
        self._pending_doors = Pending(cfg.batch.max_reads, delay_us)
        self.spool: Spool | None = None
        self.uplink: Uplink | None = None
        self._inflight: dict[int, int] = {}       # paho mid -> spool seq
        self._last_sent_seq = 0
        self._spool_retry_at = 0
        self._spool_error_logged = -10**15
        self.spool_errors = 0
        self._ack_retry: list[int] = []
        self.published = 0
        self.acked = 0
        self._next_health_us = 0
        self.error: BaseException | None = None

    # ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the spool, connect the uplink, start the drivers and the agent loop."""
        cfg = self.cfg
        if self._given_drivers is not None:
            self.drivers = list(self._given_drivers)
        else:  # built first: a device that cannot be built stops the start before anything runs
            from edge.drivers import make_driver

            self.drivers = []
            for kind, devs in (("readers", cfg.readers), ("doors", cfg.doors)):
                for i, dev in enumerate(devs):
                    try:
                        self.drivers.append((dev, make_driver(dev, cfg)))
                    except (ValueError, LookupError, OSError) as e:
                        name = dev.reader if isinstance(dev, ReaderConfig) else dev.door
                        raise BadInput(f"{kind}[{i}] ({name}): cannot build the {dev.protocol} driver: {e}") from None
        self.spool = Spool(cfg.spool.dir, int(cfg.spool.max_mb * 2**20), cfg.spool.sync)
        st = self.spool.stats()
        log.info("agent %s (store %s): spool %s, stream %s, next seq %d, %d batch(es) / %d record(s) waiting",
                 cfg.agent, cfg.store, self.spool.path, st.stream, st.next_seq, st.batches, st.records)
        self.uplink = Uplink(cfg.uplink, cfg.store, cfg.agent, {"stream": st.stream})
        self.uplink.start()
        self._topics = {k: topic(cfg.uplink.topic_prefix, cfg.store, cfg.agent, k) for k in ("reads", "doors", "health")}
        self._thread = threading.Thread(target=self._loop, name="edge-agent", daemon=True)
        self._thread.start()
        for dev, drv in self.drivers:
            name = dev.reader if isinstance(dev, ReaderConfig) else dev.door
            self.counters[name] = DeviceCounters()
            drv.start(self._make_sink(dev, self.counters[name]))

    def run(self, stop: threading.Event) -> None:
        """start(), wait for ``stop``, then a clean stop()."""
        self.start()
        try:
            while not stop.wait(0.5):
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError(f"agent loop died: {self.error!r}")
        finally:
            self.stop()

    def stop(self, publish_grace_s: float = 2.0) -> None:
        """Stop the drivers, flush everything to the spool, give the uplink a moment to drain, disconnect."""
        for dev, drv in self.drivers:
            try:
                drv.stop()
            except Exception:  # noqa: BLE001 - one broken driver must not stop the flush
                log.exception("stopping driver %s failed", getattr(drv, "name", dev))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.spool is not None:
            deadline = time.monotonic() + publish_grace_s
            while self.uplink and self.uplink.connected and self.spool.stats().batches and time.monotonic() < deadline:
                self._pump()
                time.sleep(0.02)
            self._pump()
        if self.uplink is not None:
            self.uplink.stop()
        if self.spool is not None:
            st = self.spool.stats()
            accepted = ", ".join(f"{name} {c.records}" for name, c in self.counters.items())
            log.info("agent stopped: %d batch(es) / %d record(s) left in the spool for the next start; "
                     "records accepted: %s", st.batches, st.records, accepted or "none")
            self.spool.close()
            self.spool = None

    # driver threads -------------------------------------------------------------------------------------
    def _make_sink(self, dev: ReaderConfig | DoorConfig, c: DeviceCounters) -> Callable[[list[Record]], None]:
        max_skew = self._max_skew_us
        clock = self._clock_us
        if isinstance(dev, ReaderConfig):
            reader_id, amap = dev.reader, dev.antennas
        else:
            reader_id, amap = None, {}
        door_id = dev.door if isinstance(dev, DoorConfig) else None

        def sink(records: list[Record]) -> None:
            recv = clock()
            reads: list[AgentRead] = []
            doors: list[AgentDoor] = []
            for r in records:
                try:
                    if isinstance(r, TagRead):
                        epc = r.epc.upper() if isinstance(r.epc, str) else ""
                        if not _EPC_RE.fullmatch(epc):
                            raise ValueError(f"EPC {str(r.epc)[:70]!r} is not 8..64 hex digits")
                        if not (-150.0 <= r.rssi_dbm <= 20.0) or not 1 <= r.count:
                            raise ValueError(f"rssi {r.rssi_dbm!r} dBm / count {r.count!r} out of range")
                        port = amap.get(r.antenna, r.antenna)
                        if not 1 <= port <= 65535:
                            raise ValueError(f"antenna {r.antenna!r} is not a port >= 1")
                        if amap and r.antenna not in amap:
                            c.unmapped_antennas[r.antenna] = c.unmapped_antennas.get(r.antenna, 0) + 1
                        ts, flags = choose_ts(r.ts_us, recv, max_skew)
                        reads.append(AgentRead(ts, reader_id or r.reader, port, epc, float(r.rssi_dbm),
                                               int(r.count), flags))
                    elif isinstance(r, DoorCount):
                        if r.entries < 0 or r.exits < 0:
                            raise ValueError(f"negative count {r.entries}/{r.exits}")
                        ts, flags = choose_ts(r.ts_us, recv, max_skew)
                        doors.append(AgentDoor(ts, door_id or r.door, int(r.entries), int(r.exits), flags))
                    else:
                        raise ValueError(f"not a record: {type(r).__name__}")
                    c.agent_clock += flags & 1
                except (ValueError, TypeError, AttributeError) as e:
                    c.rejected += 1
                    c.last_reject = str(e)
            c.records += len(reads) + len(doors)
            if reads or doors:
                c.last_record_us = recv
                with self._inbox_lock:
                    self._inbox_reads.extend(reads)
                    self._inbox_doors.extend(doors)
                self._wake.set()

        return sink

    # the agent loop -------------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            tick_s = min(0.05, self.cfg.batch.max_delay_s / 4, self.cfg.smoothing.window_s / 4 or 1)
            while True:
                stopping = self._stop.is_set()
                self._wake.wait(tick_s)
                self._wake.clear()
                self._step(force=stopping)
                if stopping:
                    return
        except BaseException as e:  # noqa: BLE001 - logged, and run() turns it into an exit
            self.error = e
            log.exception("agent loop failed")
            raise

    def _step(self, force: bool = False) -> None:
        mono = _mono_us()
        with self._inbox_lock:
            reads, self._inbox_reads = self._inbox_reads, []
            doors, self._inbox_doors = self._inbox_doors, []
        closed = self.smoother.push(reads, mono)
        closed += self.smoother.flush() if force else self.smoother.due(mono)
        self._pending_reads.add(closed, mono)
        self._pending_doors.add(doors, mono)
        self._spool_due(mono, force)
        self._pump()
        now = self._clock_us()
        if now >= self._next_health_us:
            self._next_health_us = now + int(self.cfg.health_interval_s * 1e6)
            self._publish_health(now)

    def _spool_due(self, mono: int, force: bool) -> None:
        assert self.spool is not None
        cfg, spool = self.cfg, self.spool
        if mono < self._spool_retry_at and not force:
            return
        for kind, pending, enc in (("reads", self._pending_reads, encode_reads),
                                   ("doors", self._pending_doors, encode_doors)):
            chunks = pending.take(mono, force)
            for i, chunk in enumerate(chunks):
                created = self._clock_us()
                try:
                    spool.append(kind, sum(r.count for r in chunk) if kind == "reads" else len(chunk),
                                 lambda seq, chunk=chunk, enc=enc, created=created: enc(
                                     chunk, store=cfg.store, agent=cfg.agent, stream=spool.stream, seq=seq,
                                     sent_us=created),
                                 created)
                except sqlite3.Error as e:
                    # disk full, I/O error: keep the records in memory and retry; never drop them here
                    pending.put_back(chunks[i:])
                    self.spool_errors += 1
                    self._spool_retry_at = mono + 1_000_000
                    if mono - self._spool_error_logged >= 60_000_000:
                        self._spool_error_logged = mono
                        log.error("cannot write the spool %s (%s); %d record(s) held in memory, retrying",
                                  spool.path, e, len(pending))
                    return

    def _pump(self) -> None:
        """Apply PUBACKs, then publish spooled batches oldest first within the in-flight window."""
        assert self.spool is not None and self.uplink is not None
        acked = []
        for mid in self.uplink.take_acks():
            # mids are mapped on this thread before take_acks() runs again, so an unknown mid is
            # a status or health message, never a batch
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                acked.append(seq)
        if acked or self._ack_retry:
            acked, self._ack_retry = self._ack_retry + acked, []
            try:
                self.spool.ack(acked)
                self.acked += len(acked)
            except sqlite3.Error as e:
                self._ack_retry = acked  # the batches stay spooled; worst case they are re-sent (same seq)
                self.spool_errors += 1
                log.warning("cannot delete acknowledged batches from the spool (%s); will retry", e)
        if not self.uplink.connected:
            return
        room = self.cfg.uplink.inflight - len(self._inflight)
        if room <= 0:
            return
        for b in self.spool.pending(self._last_sent_seq, room):
            mid = self.uplink.publish(self._topics[b.kind], b.payload, qos=1)
            if mid is None:
                break
            self._last_sent_seq = b.seq
            self.published += 1
            self._inflight[mid] = b.seq

    def backlog(self) -> int:
        """Records accepted from drivers and not yet acknowledged by the broker (memory + spool)."""
        with self._inbox_lock:
            n = len(self._inbox_reads) + len(self._inbox_doors)
        n += len(self.smoother) + len(self._pending_reads) + len(self._pending_doors)
        return n + (self.spool.stats().records if self.spool is not None else 0)

    # health ----------------------------------------------------------------------------------------------
    def health(self, now: int | None = None) -> dict[str, Any]:
        """The health message: per device driver health + agent counters, spool, uplink, smoothing."""
        now = self._clock_us() if now is None else now
        devices: dict[str, Any] = {}
        for dev, drv in self.drivers:
            name = dev.reader if isinstance(dev, ReaderConfig) else dev.door
            try:
                h = dict(drv.health())
            except Exception as e:  # noqa: BLE001 - a driver bug must not stop health reporting
                h = {"health_error": f"{type(e).__name__}: {e}"}
            c = self.counters.get(name, DeviceCounters())
            h.update(kind="reader" if isinstance(dev, ReaderConfig) else "door", protocol=dev.protocol,
                     accepted=c.records, rejected=c.rejected, agent_clock=c.agent_clock,
                     last_reject=c.last_reject, last_record_us=c.last_record_us,
                     unmapped_antennas={str(k): v for k, v in c.unmapped_antennas.items()})
            devices[name] = h
        out: dict[str, Any] = {"agent": self.cfg.agent, "store": self.cfg.store, "ts_us": now, "devices": devices}
        if self.spool is not None:
            st = self.spool.stats()
            out["stream"] = st.stream
            out["spool"] = {"batches": st.batches, "records": st.records, "bytes": st.bytes, "errors": self.spool_errors,
                            "max_bytes": st.max_bytes, "next_seq": st.next_seq,
                            "dropped_batches": st.dropped_batches, "dropped_records": st.dropped_records}
            out["publish_lag_s"] = (now - st.oldest_created_us) / 1e6 if st.oldest_created_us else 0.0
        if self.uplink is not None:
            out["uplink"] = {"connected": self.uplink.connected, "connects": self.uplink.connects,
                             "disconnects": self.uplink.disconnects, "published": self.published,
                             "acked": self.acked, "inflight": len(self._inflight),
                             "last_error": self.uplink.last_error}
        out["backlog_records"] = self.backlog()
        out["smoothing"] = {"window_s": self.cfg.smoothing.window_s, "reads_in": self.smoother.reads_in,
                            "records_out": self.smoother.records_out, "open": len(self.smoother)}
        return out

    def _publish_health(self, now: int) -> None:
        if self.uplink is None or not self.uplink.connected:
            return
        payload = json.dumps(self.health(now), separators=(",", ":"), default=str).encode()
        self.uplink.publish(self._topics["health"], payload, qos=0)
