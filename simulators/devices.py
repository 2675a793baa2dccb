"""Simulated devices that speak the real wire protocols from the DEVICE side, driven by simulated reads.

- :class:`SerialReaderDevice`: a reader on a pseudo-terminal (``os.openpty``) answering the host's
  inventory commands in the Impinj R2000 or Chafon 288M protocol with the reads that are due, with
  optional seeded line noise (:class:`Noise`: flipped bytes, dropped bytes, split writes).
- :class:`MqttReaderDevice`: a network reader publishing Impinj IoT or Zebra IoT Connector JSON.
- :class:`MqttDoorDevice` (Irisys cumulative registers, Milesight interval reports) and
  :class:`SerialDoorDevice` (Terabee Evo "PC" frames on a pty): door counters.

Input is any iterator of numpy chunks: reads with :data:`SIM_READ_DTYPE` (``tag`` indexes ``epcs``,
``reader`` indexes the layout's readers, time-ordered within the stream) and door counts with
:data:`SIM_DOOR_DTYPE`. ``speed``: 1 = real time, 10 = ten times faster than the timestamps,
``math.inf`` = as fast as possible. Every device keeps a ledger of what it put on the wire intact
(``sent``) and what the noise destroyed (``destroyed``) so tests can compare exactly.
"""

from __future__ import annotations

import math
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.readers import chafon_288m, impinj_iot, impinj_r2000, irisys, milesight, terabee_evo, zebra_iot

__all__ = [
    "SIM_READ_DTYPE", "SIM_DOOR_DTYPE", "Noise", "SimClock", "SerialReaderDevice", "MqttReaderDevice",
    "MqttDoorDevice", "SerialDoorDevice", "synthetic_reads", "synthetic_door_counts", "SERIAL_READER_PROTOCOLS",
    "MQTT_READER_PROTOCOLS", "DOOR_PROTOCOLS",
]

SIM_READ_DTYPE = np.dtype([("ts_us", "<i8"), ("reader", "<u2"), ("port", "u1"), ("tag", "<u4"), ("rssi_cdbm", "<i2")])
SIM_DOOR_DTYPE = np.dtype([("ts_us", "<i8"), ("door", "<u2"), ("entries", "<u4"), ("exits", "<u4")])
SERIAL_READER_PROTOCOLS = ("impinj-r2000", "chafon-288m")
MQTT_READER_PROTOCOLS = ("impinj-iot", "zebra-iot")
DOOR_PROTOCOLS = ("irisys", "milesight", "terabee-evo")


@dataclass
class Noise:
    """Seeded line noise applied to each frame the device writes (probabilities per byte / per frame)."""

    seed: int = 0
    flip_p: float = 0.0       # a byte is replaced by a different value
    drop_p: float = 0.0       # a byte is lost
    split_p: float = 0.0      # a frame is written in two pieces with a short pause between
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def apply(self, frame: bytes) -> tuple[list[bytes], bool]:
        """(pieces to write, whether the frame's bytes were damaged)."""
        rng = self._rng
        damaged = False
        if self.flip_p or self.drop_p:
            out = bytearray()
            for b in frame:
                r = rng.random()
                if r < self.drop_p:
                    damaged = True
                    continue
                if r < self.drop_p + self.flip_p:
                    damaged = True
                    b ^= rng.randrange(1, 256)
                out.append(b)
            frame = bytes(out)
        if len(frame) > 1 and self.split_p and rng.random() < self.split_p:
            k = rng.randrange(1, len(frame))
            return [frame[:k], frame[k:]], damaged
        return [frame], damaged


class SimClock:
    """Maps simulated time to wall time: ``speed`` x faster than the timestamps (inf: no waiting)."""

    def __init__(self, speed: float = 1.0):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._t0_sim: int | None = None
        self._t0_wall = 0.0

    def now(self) -> float:
        """Current simulated time (epoch µs); +inf at infinite speed or before the first anchor."""
        if self._t0_sim is None or math.isinf(self.speed):
            return math.inf
        return self._t0_sim + (time.monotonic() - self._t0_wall) * 1e6 * self.speed

    def anchor(self, ts_us: int) -> None:
        if self._t0_sim is None:
            self._t0_sim, self._t0_wall = int(ts_us), time.monotonic()

    def wait_until(self, ts_us: int, stop: threading.Event) -> bool:
        """Sleep until simulated ``ts_us``; False when stopped first."""
        self.anchor(ts_us)
        if math.isinf(self.speed):
            return not stop.is_set()
        delay = (ts_us - self.now()) / 1e6 / self.speed
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


def _rows(chunks: Iterable[np.ndarray], key: str, index: int | None) -> Iterator[np.ndarray]:
    for chunk in chunks:
        if index is not None:
            chunk = chunk[chunk[key] == index]
        yield from chunk


class _Pty:
    """The device end of a pseudo-terminal; ``path`` is what the host opens."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)          # no line discipline: bytes pass unchanged both ways
        self.path = os.ttyname(self._slave)

    def read(self, timeout_s: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], timeout_s)
        if not r:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class SerialReaderDevice:
    """A serial RFID reader on a pty answering inventory commands (R2000 or Chafon 288M) from ``chunks``.

    ``sent`` lists (port, EPC, RSSI dBm as the wire carries it) of every read in a frame that left the
    device intact; ``destroyed`` counts tag reads whose frame the noise damaged; ``frames_damaged``
    counts every damaged frame (control frames included).
    """

    def __init__(self, protocol: str, chunks: Iterable[np.ndarray], epcs: Sequence[str], *, reader_index: int = 0,
                 speed: float = math.inf, noise: Noise | None = None, address: int = 0x00, variant: str | None = None,
                 max_tags_per_round: int = 64):
        if protocol not in SERIAL_READER_PROTOCOLS:
            raise ValueError(f"unknown serial reader protocol {protocol!r}; known: {SERIAL_READER_PROTOCOLS}")
        self.protocol = protocol
        self.epcs = epcs
        self.address = address
        self.variant = variant or ("4port" if protocol == "impinj-r2000" else "288m")
        self.noise = noise
        self.max_tags = max_tags_per_round
        self.clock = SimClock(speed)
        self._rows = _rows(chunks, "reader", reader_index)
        self._next: np.void | None = None
        self._pending: dict[int, deque[tuple[int, str, float]]] = {}
        self._work_port = 1
        self._pty = _Pty()
        self.port = self._pty.path
        self._framer: Any = (impinj_r2000.R2000Framer() if protocol == "impinj-r2000" else chafon_288m.ChafonFramer())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent: list[tuple[int, str, float]] = []
        self.destroyed = 0
        self.frames_damaged = 0
        self.frames_written = 0
        self.commands = 0
        self.exhausted = False
        self._lock = threading.Lock()      # the stream is read by the device thread and by done()

    # -- reads due ----------------------------------------------------------------------------------
    def _fill(self) -> None:
        now = self.clock.now()
        while True:
            if self._next is None:
                try:
                    self._next = next(self._rows)
                except StopIteration:
                    self.exhausted = True
                    return
                self.clock.anchor(int(self._next["ts_us"]))
                now = self.clock.now()
            r = self._next
            if r["ts_us"] > now:
                return
            rssi_dbm = int(r["rssi_cdbm"]) / 100.0
            self._pending.setdefault(int(r["port"]), deque()).append(
                (int(r["port"]), self.epcs[int(r["tag"])], rssi_dbm))
            self._next = None

    def _take(self, port: int) -> list[tuple[int, str, float]]:
        with self._lock:
            self._fill()
        q = self._pending.get(port)
        out = []
        while q and len(out) < self.max_tags:
            out.append(q.popleft())
        return out

    @property
    def pending(self) -> int:
        """Reads due but not yet asked for."""
        return sum(len(q) for q in self._pending.values())

    def done(self) -> bool:
        """True when every read of the stream has been answered to the host."""
        with self._lock:
            self._fill()
        return self.exhausted and self._next is None and self.pending == 0

    # -- wire -----------------------------------------------------------------------------------------
    def _emit(self, frame: bytes, reads: list[tuple[int, str, float]]) -> None:
        pieces, damaged = self.noise.apply(frame) if self.noise is not None else ([frame], False)
        for i, p in enumerate(pieces):
            if i:
                time.sleep(0.002)
            self._pty.write(p)
        self.frames_written += 1
        if damaged:
            self.frames_damaged += 1
            self.destroyed += len(reads)
        else:
            self.sent.extend(reads)

    def _wire_rssi(self, rssi_dbm: float) -> float:
        if self.protocol == "impinj-r2000":
            return float(impinj_r2000.rssi_dbm_to_raw(rssi_dbm) - impinj_r2000.RSSI_OFFSET_DB)
        off = chafon_288m.VARIANTS[self.variant].rssi_offset_db
        return float(max(0, min(255, round(rssi_dbm) - off)) + off)

    def _answer_r2000(self, f: impinj_r2000.Frame) -> None:
        a = self.address
        if f.cmd == impinj_r2000.CMD["set_work_antenna"] and len(f.data) == 1:
            port = f.data[0] + 1
            ok = port <= impinj_r2000.VARIANTS[self.variant].ports
            if ok:
                self._work_port = port
            self._emit(impinj_r2000.encode_status(f.cmd, 0x10 if ok else 0x47, addr=a), [])
        elif f.cmd in (0x89, 0x8B):
            port = self._work_port
            reads = self._take(port)
            for r in reads:
                self._emit(impinj_r2000.encode_tag(port, r[1], r[2], addr=a, variant=self.variant),
                           [(port, r[1], self._wire_rssi(r[2]))])
            self._emit(impinj_r2000.encode_round_end(port, len(reads), len(reads), addr=a, cmd=f.cmd), [])
        elif f.cmd == impinj_r2000.CMD["get_firmware_version"]:
            self._emit(impinj_r2000.build_frame(f.cmd, b"\x01\x08", a), [])
        elif f.cmd == impinj_r2000.CMD["reset"]:
            pass
        else:
            self._emit(impinj_r2000.encode_status(f.cmd, 0x11, addr=a), [])

    def _answer_chafon(self, f: chafon_288m.Frame) -> None:
        a = self.address
        if f.cmd == chafon_288m.CMD["inventory"] and len(f.body) >= 9:
            nmask = (f.body[5] + 7) // 8
            ant = f.body[6 + nmask + 1] if len(f.body) > 6 + nmask + 1 else 0x80
            port = ant - 0x80 + 1 if ant >= 0x80 else 1
            if port > chafon_288m.VARIANTS[self.variant].ports:
                self._emit(chafon_288m.build_response(f.cmd, 0xF8, b"\x00", a), [])
                return
            reads = self._take(port)
            frames = chafon_288m.encode_inventory(port, [(r[1], r[2]) for r in reads], addr=a, variant=self.variant)
            # Attribute reads to the frame that carries them (frames are filled in order).
            i = 0
            for fr in frames:
                n = fr[5] if len(fr) > 6 else 0
                self._emit(fr, [(port, r[1], self._wire_rssi(r[2])) for r in reads[i:i + n]])
                i += n
        elif f.cmd == chafon_288m.CMD["get_reader_info"]:
            self._emit(chafon_288m.build_response(f.cmd, 0x00, bytes.fromhex("00160c034e001e0a01000000"), a), [])
        else:
            self._emit(chafon_288m.build_response(f.cmd, 0xFE, b"", a), [])

    def _run(self) -> None:
        answer = self._answer_r2000 if self.protocol == "impinj-r2000" else self._answer_chafon
        while not self._stop.is_set():
            data = self._pty.read(0.05)
            if not data:
                continue
            for f in self._framer.feed(data):
                self.commands += 1
                answer(f)

    def start(self) -> SerialReaderDevice:
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.protocol}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pty.close()

    def __enter__(self) -> SerialReaderDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _mqtt_client(host: str, port: int, client_id: str) -> Any:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect(host, port, keepalive=60)
    c.loop_start()
    return c


class _MqttPublisher:
    def __init__(self, host: str, port: int, topic: str, name: str):
        self.host, self.port, self.topic = host, port, topic
        self._client = _mqtt_client(host, port, f"sim-{name}-{os.getpid()}-{random.randrange(1 << 30):x}")
        self.messages = 0

    def publish(self, payload: bytes, attempts: int = 100) -> None:
        """Publish with QoS 1 and wait for the PUBACK; across a lost connection (paho reconnects by
        itself) retry like a real reader would, giving up after ``attempts``."""
        for _ in range(attempts):
            if not self._client.is_connected():
                time.sleep(0.2)
                continue
            info = self._client.publish(self.topic, payload, qos=1)
            try:
                info.wait_for_publish(timeout=10)
            except RuntimeError:  # the connection dropped before the PUBACK
                continue
            if info.is_published():
                self.messages += 1
                return
        raise RuntimeError(f"could not publish to {self.topic} on {self.host}:{self.port}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class MqttReaderDevice:
    """A network reader publishing its reads as Impinj IoT or Zebra IoT Connector JSON (QoS 1).

    ``batch``: events per message (1 = one JSON object per message, more = a JSON array). Zebra
    devices also publish a heartbeat every ``heartbeat_s`` of simulated time. ``sent`` lists
    (port, EPC, RSSI dBm as published, ts_us as published).
    """

    def __init__(self, protocol: str, chunks: Iterable[np.ndarray], epcs: Sequence[str], *, host: str, port: int,
                 topic: str, reader_index: int = 0, speed: float = math.inf, batch: int = 1,
                 heartbeat_s: float = 30.0, b64_every: int = 0):
        if protocol not in MQTT_READER_PROTOCOLS:
            raise ValueError(f"unknown MQTT reader protocol {protocol!r}; known: {MQTT_READER_PROTOCOLS}")
        self.protocol = protocol
        self.epcs = epcs
        self.clock = SimClock(speed)
        self.batch = max(1, batch)
        self.heartbeat_us = int(heartbeat_s * 1e6)
        self.b64_every = b64_every
        self._rows = _rows(chunks, "reader", reader_index)
        self._pub = _MqttPublisher(host, port, topic, protocol)
        self._stop = threading.Event()
        self.sent: list[tuple[int, str, float, int]] = []
        self.heartbeats = 0

    def run(self) -> int:
        """Publish the whole stream (blocking, paced by ``speed``); returns reads published."""
        pending: list[dict[str, Any]] = []
        last_hb: int | None = None
        n = 0
        try:
            for r in self._rows:
                ts = int(r["ts_us"])
                if not self.clock.wait_until(ts, self._stop):
                    break
                if self.protocol == "zebra-iot" and (last_hb is None or ts - last_hb >= self.heartbeat_us):
                    self._flush(pending)
                    self._pub.publish(zebra_iot.dumps([zebra_iot.encode_heartbeat(ts)]))
                    self.heartbeats += 1
                    last_hb = ts
                port, epc, cdbm = int(r["port"]), self.epcs[int(r["tag"])], int(r["rssi_cdbm"])
                if self.protocol == "impinj-iot":
                    b64 = bool(self.b64_every) and n % self.b64_every == 0
                    pending.append(impinj_iot.encode_event(epc, port, cdbm, ts, epc_b64=b64))
                    self.sent.append((port, epc.upper(), cdbm / 100.0, ts))
                else:
                    pending.append(zebra_iot.encode_event(epc, port, cdbm / 100.0, ts, event_num=n))
                    self.sent.append((port, epc.upper(), float(round(cdbm / 100.0)), ts - ts % 1000))
                n += 1
                if len(pending) >= self.batch:
                    self._flush(pending)
            self._flush(pending)
        finally:
            self._pub.close()
        return n

    def _flush(self, pending: list[dict[str, Any]]) -> None:
        if pending:
            mod = impinj_iot if self.protocol == "impinj-iot" else zebra_iot
            self._pub.publish(mod.dumps(pending))
            pending.clear()

    def stop(self) -> None:
        self._stop.set()


class MqttDoorDevice:
    """A door counter publishing Irisys cumulative registers or Milesight interval reports (QoS 1).

    Irisys: one baseline message first (registers start at ``start_register``), then one message per
    door-count row with the cumulative registers. Milesight: one interval report per row
    (``interval_s`` long). ``sent`` lists (entries, exits) per row published.
    """

    def __init__(self, protocol: str, chunks: Iterable[np.ndarray], *, host: str, port: int, topic: str,
                 door_index: int = 0, speed: float = math.inf, interval_s: float = 60.0, start_register: int = 0):
        if protocol not in ("irisys", "milesight"):
            raise ValueError(f"unknown MQTT door protocol {protocol!r}")
        self.protocol = protocol
        self.clock = SimClock(speed)
        self.interval_us = int(interval_s * 1e6)
        self.registers = {"In": start_register, "Out": start_register}
        self._rows = _rows(chunks, "door", door_index)
        self._pub = _MqttPublisher(host, port, topic, protocol)
        self._stop = threading.Event()
        self.sent: list[tuple[int, int]] = []

    def run(self) -> int:
        n = 0
        first = True
        try:
            for r in self._rows:
                ts = int(r["ts_us"])
                if not first and not self.clock.wait_until(ts, self._stop):
                    break
                self.clock.anchor(ts)
                e, x = int(r["entries"]), int(r["exits"])
                if self.protocol == "irisys":
                    if first:
                        self._pub.publish(irisys.encode_counts(self.registers, ts))
                    self.registers["In"] = (self.registers["In"] + e) & 0xFFFFFFFF
                    self.registers["Out"] = (self.registers["Out"] + x) & 0xFFFFFFFF
                    self._pub.publish(irisys.encode_counts(self.registers, ts + self.interval_us))
                else:
                    self._pub.publish(milesight.encode_interval(e, x, ts, ts + self.interval_us))
                first = False
                self.sent.append((e, x))
                n += 1
        finally:
            self._pub.close()
        return n

    def stop(self) -> None:
        self._stop.set()


class SerialDoorDevice:
    """A Terabee Evo People Counter on a pty: distance frames plus a "PC" frame per door-count row.

    The sensor counts from ``start_count`` (16-bit registers wrap), as after a power cycle. ``sent``
    lists (entries, exits) of rows whose frame left intact; ``destroyed`` counts damaged "PC" frames.
    A baseline frame is written first (the host's first frame is only a baseline).
    """

    def __init__(self, chunks: Iterable[np.ndarray], *, door_index: int = 0, speed: float = math.inf,
                 noise: Noise | None = None, variant: str = "evo-people-counter", start_count: int = 0,
                 sensor_id: int = 0x1234):
        self.variant = variant
        self.noise = noise
        self.clock = SimClock(speed)
        self.sensor_id = sensor_id
        self._rows = _rows(chunks, "door", door_index)
        self._pty = _Pty()
        self.port = self._pty.path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.count_in = self.count_out = start_count
        self.sent: list[tuple[int, int]] = []
        self.destroyed = 0
        self.finished = threading.Event()
        self.start_delay_s = 0.3

    def _emit(self, frame: bytes) -> bool:
        pieces, damaged = self.noise.apply(frame) if self.noise is not None else ([frame], False)
        for p in pieces:
            self._pty.write(p)
        return not damaged

    def _frame(self) -> bytes:
        return terabee_evo.encode_count(self.count_in, self.count_out, sensor_id=self.sensor_id, variant=self.variant)

    def _run(self) -> None:
        if self._stop.wait(self.start_delay_s):       # let the host open the port
            return
        while not self._emit(self._frame()):          # the baseline must arrive
            pass
        for r in self._rows:
            ts = int(r["ts_us"])
            if not self.clock.wait_until(ts, self._stop):
                break
            e, x = int(r["entries"]), int(r["exits"])
            self._emit(terabee_evo.encode_distance(1500, 1500))
            self.count_in, self.count_out = self.count_in + e, self.count_out + x
            if self._emit(self._frame()):
                self.sent.append((e, x))
            else:
                # The next intact frame carries the cumulative counts, so nothing is lost unless it is the last.
                self.destroyed += 1
                self.sent.append((e, x))
        while not self._emit(self._frame()):          # closing frame: carries any count a damaged frame lost
            pass
        self.finished.set()

    def start(self) -> SerialDoorDevice:
        self._thread = threading.Thread(target=self._run, name="sim-terabee", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pty.close()


def synthetic_reads(n_readers: int, ports: int, epcs: Sequence[str], *, seconds: float, reads_per_s: float,
                    seed: int = 0, start_us: int = 1_763_600_000_000_000, chunk: int = 4096) -> Iterator[np.ndarray]:
    """A time-ordered stream of random reads (for tests and the CLI when no simulation is given)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * reads_per_s)
    allr = np.empty(n, SIM_READ_DTYPE)
    allr["ts_us"] = start_us + np.sort(rng.integers(0, int(seconds * 1e6), n))
    allr["reader"] = rng.integers(0, n_readers, n)
    allr["port"] = rng.integers(1, ports + 1, n)
    allr["tag"] = rng.integers(0, len(epcs), n)
    allr["rssi_cdbm"] = rng.integers(-8000, -3000, n)
    for i in range(0, n, chunk):
        yield allr[i:i + chunk]


def synthetic_door_counts(n_doors: int, *, rows: int, interval_s: float = 60.0, seed: int = 0,
                          start_us: int = 1_763_600_000_000_000) -> Iterator[np.ndarray]:
    """Random door-count rows, one per door and interval."""
    rng = np.random.default_rng(seed)
    out = np.empty(rows * n_doors, SIM_DOOR_DTYPE)
    out["ts_us"] = start_us + np.repeat(np.arange(rows), n_doors) * int(interval_s * 1e6)
    out["door"] = np.tile(np.arange(n_doors), rows)
    out["entries"] = rng.poisson(4, rows * n_doors)
    out["exits"] = rng.poisson(4, rows * n_doors)
    yield out
