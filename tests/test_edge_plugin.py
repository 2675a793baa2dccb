"""A numbered-read driver for the edge agent tests, loaded as ``protocol: test_edge_plugin:make_counter``.

Every read has a unique EPC ``<run:8 hex><i:16 hex>`` so a test can check exactly which reads arrived.
(No tests in this module: it is imported by the agent, also inside a subprocess.)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from edge.readers.base import Record, Sink, TagRead


def epc_of(run: int, i: int) -> str:
    return f"{run:08X}{i:016X}"


def parse_epc(epc: str) -> tuple[int, int]:
    return int(epc[:8], 16), int(epc[8:], 16)


class CounterDriver:
    """Emits ``rate_hz`` numbered reads per second (``limit`` in all; 0 = forever) on antennas 1..n."""

    def __init__(self, name: str, run: int, rate_hz: float, limit: int, antennas: int, chunk: int) -> None:
        self.name = name
        self.run, self.rate_hz, self.limit, self.antennas, self.chunk = run, rate_hz, limit, antennas, chunk
        self.emitted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink,), daemon=True, name=f"counter-{self.name}")
        self._thread.start()

    def _run(self, sink: Sink) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set() and (not self.limit or self.emitted < self.limit):
            due = int((time.monotonic() - t0) * self.rate_hz) + self.chunk
            n = min(due, self.limit or due) - self.emitted
            if n > 0:
                now = time.time_ns() // 1000
                recs: list[Record] = [
                    TagRead(self.name, 1 + (i % self.antennas), epc_of(self.run, i), -50.0 - (i % 30), now)
                    for i in range(self.emitted, self.emitted + n)]
                sink(recs)
                self.emitted += n
            self._stop.wait(self.chunk / self.rate_hz)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def health(self) -> dict[str, object]:
        return {"emitted": self.emitted, "connected": True}


def make_counter(device: Any, config: Any) -> CounterDriver:
    o = device.options
    return CounterDriver(device.reader, int(o.get("run", os.getpid())), float(o.get("rate_hz", 1000)),
                         int(o.get("limit", 0)), int(o.get("antennas", 2)), int(o.get("chunk", 10)))


class ManualDriver:
    """A driver the test pushes records through by hand (``emit``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sink: Sink | None = None
        self.stopped = False

    def start(self, sink: Sink) -> None:
        self.sink = sink

    def emit(self, records: list[Record]) -> None:
        assert self.sink is not None
        self.sink(records)

    def stop(self) -> None:
        self.stopped = True

    def health(self) -> dict[str, object]:
        return {"connected": True, "frames_per_s": 0.0}


def make_manual(device: Any, config: Any) -> ManualDriver:
    return ManualDriver(getattr(device, "reader", None) or device.door)
