"""Transports and drivers: pyserial (device path, pty or pyserial URL) and MQTT (paho-mqtt 2).

A driver owns one transport and one protocol parser (``edge/readers/<protocol>.py``), runs in its
own thread and pushes the parser's records into the agent's sink. It never lets a bad line, a dead
port or a sink error end the thread: it counts, backs off (capped, jittered) and reconnects.

- :class:`SerialDriver` opens the port, polls with the protocol's inventory commands where the
  protocol needs it (one *step* = the command bytes of one antenna; the next step is sent when the
  parser reports the round finished or after ``round_timeout_s``; a whole cycle starts at most every
  ``cycle_s``), and reconnects with backoff.
- :class:`MqttDriver` subscribes to the device's topic on the in-store broker; paho reconnects with
  capped backoff and the subscription is renewed on every connect.

``SerialReaderDriver``/``SerialDoorDriver`` and ``MqttReaderDriver``/``MqttDoorDriver`` are the same
classes under the names the agent's config speaks of.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from edge.readers._common import now_us
from edge.readers.base import Parser, Record, Sink

__all__ = [
    "SerialTransport", "SerialDriver", "MqttDriver", "Poller", "SerialReaderDriver", "SerialDoorDriver",
    "MqttReaderDriver", "MqttDoorDriver",
]

log = logging.getLogger(__name__)


class Poller(Protocol):
    """The host side of a polled protocol: the command bytes of each step of one inventory cycle."""

    steps: list[bytes]


class SerialTransport:
    """A pyserial port (``/dev/ttyUSB0``, a pty path, or a pyserial URL such as ``socket://h:p``)."""

    def __init__(self, port: str, baudrate: int, timeout_s: float = 0.05):
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._ser: Any = None

    def open(self) -> None:
        import serial

        self._ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self.timeout_s,
                                          write_timeout=2.0)

    def read(self) -> bytes:
        """Whatever is waiting (blocks up to ``timeout_s`` for the first byte)."""
        ser = self._ser
        n = ser.in_waiting
        return bytes(ser.read(n if n else 1))

    def write(self, data: bytes) -> None:
        self._ser.write(data)
        self._ser.flush()

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # pragma: no cover - closing a dead port
                pass


class _Health:
    """Frame-rate bookkeeping shared by the drivers."""

    def __init__(self) -> None:
        self.reconnects = 0
        self.connect_failures = 0
        self.sink_errors = 0
        self.last_frame_us: int | None = None
        self.connected = False
        self.last_error: str | None = None
        self._rate_t = time.monotonic()
        self._rate_frames = 0
        self.frames_per_s = 0.0

    def rate(self, frames: int) -> float:
        t = time.monotonic()
        if t - self._rate_t >= 1.0:
            self.frames_per_s = (frames - self._rate_frames) / (t - self._rate_t)
            self._rate_t, self._rate_frames = t, frames
        return self.frames_per_s


def _deliver(sink: Sink, records: list[Record], h: _Health, name: str) -> None:
    try:
        sink(records)
    except Exception as e:  # the agent's problem, but it must not stop the reader thread
        h.sink_errors += 1
        h.last_error = f"sink: {e!r}"[:200]
        log.exception("driver %s: sink failed on %d records", name, len(records))


class SerialDriver:
    """A serial reader or door counter: port + parser (+ poller), in a background thread."""

    def __init__(self, name: str, port: str, parser: Parser, baudrate: int, *, poller: Poller | None = None,
                 cycle_s: float = 0.0, round_timeout_s: float = 1.0, backoff_min_s: float = 0.2,
                 backoff_max_s: float = 30.0,
                 transport_factory: Callable[[str, int], SerialTransport] = SerialTransport):
        self.name = name
        self.port = port
        self.parser = parser
        self.baudrate = baudrate
        self.poller = poller
        self.cycle_s = cycle_s
        self.round_timeout_s = round_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._transport_factory = transport_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._h = _Health()
        self.commands_sent = 0
        self.round_timeouts = 0

    def start(self, sink: Sink) -> None:
        if self._thread is not None:
            raise RuntimeError(f"driver {self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout=5)

    def health(self) -> dict[str, object]:
        st = self.parser.stats
        h = self._h
        return {"driver": self.name, "transport": "serial", "port": self.port, "connected": h.connected,
                "last_frame_us": h.last_frame_us, "frames": st.frames, "frames_per_s": round(h.rate(st.frames), 2),
                "records": st.records, "checksum_errors": st.checksum_errors, "dropped_bytes": st.dropped_bytes,
                "malformed": st.malformed, "reconnects": h.reconnects, "connect_failures": h.connect_failures,
                "commands_sent": self.commands_sent, "round_timeouts": self.round_timeouts,
                "rounds": getattr(self.parser, "rounds", None), "sink_errors": h.sink_errors,
                "last_error": h.last_error or st.last_error, **{f"x_{k}": v for k, v in st.extra.items()}}

    def _run(self, sink: Sink) -> None:
        backoff = self.backoff_min_s
        ever_connected = False
        while not self._stop.is_set():
            tr = self._transport_factory(self.port, self.baudrate)
            try:
                tr.open()
            except Exception as e:
                self._h.connect_failures += 1
                self._h.last_error = f"open {self.port}: {e}"[:200]
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            if ever_connected:
                self._h.reconnects += 1
            ever_connected = True
            self._h.connected = True
            backoff = self.backoff_min_s
            try:
                self._session(tr, sink)
            except Exception as e:
                self._h.last_error = f"{self.port}: {e}"[:200]
                log.warning("driver %s: %s; reconnecting", self.name, e)
            finally:
                self._h.connected = False
                tr.close()
            self._stop.wait(backoff * random.uniform(0.8, 1.2))

    def _session(self, tr: SerialTransport, sink: Sink) -> None:
        parser = self.parser
        steps: Sequence[bytes] = self.poller.steps if self.poller is not None else ()
        step = 0
        waiting = False
        sent_at = 0.0
        rounds_at = 0
        cycle_at = 0.0
        while not self._stop.is_set():
            if steps:
                t = time.monotonic()
                if waiting:
                    if getattr(parser, "rounds", 0) > rounds_at:
                        waiting = False
                    elif t - sent_at > self.round_timeout_s:
                        waiting = False
                        self.round_timeouts += 1
                if not waiting and (step != 0 or t >= cycle_at):
                    if step == 0:
                        cycle_at = t + self.cycle_s
                    rounds_at = getattr(parser, "rounds", 0)
                    tr.write(steps[step])
                    self.commands_sent += 1
                    sent_at, waiting = t, True
                    step = (step + 1) % len(steps)
            data = tr.read()
            if not data:
                continue
            frames_before = parser.stats.frames
            records = parser.feed(data, now_us())
            if parser.stats.frames != frames_before:
                self._h.last_frame_us = now_us()
            if records:
                _deliver(sink, records, self._h, self.name)


class MqttDriver:
    """A network reader or door counter publishing to an in-store broker: subscription + parser."""

    def __init__(self, name: str, topic: str, parser: Parser, *, host: str = "127.0.0.1", port: int = 1883,
                 tls: bool = False, ca_file: str | None = None, insecure: bool = False,
                 username: str | None = None, password: str | None = None, client_id: str | None = None,
                 keepalive_s: int = 30, qos: int = 1, backoff_max_s: int = 30):
        self.name = name
        self.topic = topic
        self.parser = parser
        self.host, self.port = host, port
        self.tls, self.ca_file, self.insecure = tls, ca_file, insecure
        self.username, self.password = username, password
        self.client_id = client_id or f"storeflow-{name}-{uuid.uuid4().hex[:8]}"
        self.keepalive_s = keepalive_s
        self.qos = qos
        self.backoff_max_s = backoff_max_s
        self._client: Any = None
        self._h = _Health()
        self._connects = 0
        self.messages = 0
        self.subscribed = threading.Event()

    def start(self, sink: Sink) -> None:
        import paho.mqtt.client as mqtt

        if self._client is not None:
            raise RuntimeError(f"driver {self.name} already started")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if self.username is not None:
            c.username_pw_set(self.username, self.password)
        if self.tls:
            c.tls_set(ca_certs=self.ca_file)
            if self.insecure:
                c.tls_insecure_set(True)
        c.reconnect_delay_set(1, self.backoff_max_s)
        h = self._h

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if getattr(reason, "is_failure", False):
                h.connect_failures += 1
                h.last_error = f"connect: {reason}"
                return
            self._connects += 1
            if self._connects > 1:
                h.reconnects += 1
            h.connected = True
            client.subscribe(self.topic, qos=self.qos)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            self.subscribed.set()

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            h.connected = False
            self.subscribed.clear()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            self.messages += 1
            t = now_us()
            try:
                records = self.parser.feed(msg.payload, t)
            except Exception as e:  # pragma: no cover - parsers do not raise; belt and braces
                h.last_error = f"parser: {e!r}"[:200]
                return
            h.last_frame_us = t
            if records:
                _deliver(sink, records, h, self.name)

        c.on_connect, c.on_subscribe, c.on_disconnect, c.on_message = on_connect, on_subscribe, on_disconnect, on_message
        self._client = c
        c.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        c.loop_start()

    def stop(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                c.disconnect()
            finally:
                c.loop_stop()

    def health(self) -> dict[str, object]:
        st = self.parser.stats
        h = self._h
        out: dict[str, object] = {
            "driver": self.name, "transport": "mqtt", "topic": self.topic, "connected": h.connected,
            "last_frame_us": h.last_frame_us, "messages": self.messages, "frames": st.frames,
            "frames_per_s": round(h.rate(st.frames), 2), "records": st.records, "malformed": st.malformed,
            "checksum_errors": st.checksum_errors, "reconnects": h.reconnects,
            "connect_failures": h.connect_failures, "sink_errors": h.sink_errors,
            "last_error": h.last_error or st.last_error, **{f"x_{k}": v for k, v in st.extra.items()}}
        hb = getattr(self.parser, "last_heartbeat_us", None)
        if hb is not None or hasattr(self.parser, "last_heartbeat_us"):
            out["last_heartbeat_us"] = hb
        return out


SerialReaderDriver = SerialDriver
SerialDoorDriver = SerialDriver
MqttReaderDriver = MqttDriver
MqttDoorDriver = MqttDriver
