"""What every reader/door-counter driver produces and how the agent talks to it.

A protocol module (``edge/readers/<protocol>.py``) is a pure codec: a parser that is fed bytes (or one
MQTT message) and returns records, never raising into the caller; it counts what it dropped.
Transports (pyserial, pty, MQTT) are separate and hand bytes/messages to the parser. A driver
combines a transport and a parser and pushes records into the agent's sink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["TagRead", "DoorCount", "Record", "ParserStats", "Parser", "Driver", "Sink"]


@dataclass(frozen=True, slots=True)
class TagRead:
    """One tag read (or an aggregate of ``count`` reads) as reported by a reader."""

    reader: str
    antenna: int                 # antenna port, >= 1
    epc: str                     # upper-case hex
    rssi_dbm: float              # dBm
    ts_us: int | None            # reader's timestamp (epoch µs); None when the protocol has none
    count: int = 1


@dataclass(frozen=True, slots=True)
class DoorCount:
    """People counted at a door over an interval starting at ``ts_us``."""

    door: str
    ts_us: int | None            # counter's timestamp (epoch µs) of the interval start; None if absent
    entries: int
    exits: int


Record = TagRead | DoorCount


@dataclass
class ParserStats:
    """Counters every parser keeps (reported in the agent's health messages)."""

    frames: int = 0              # frames/messages decoded
    records: int = 0             # records produced
    dropped_bytes: int = 0       # bytes skipped while resynchronising
    checksum_errors: int = 0
    malformed: int = 0           # frames/messages with a valid envelope but unusable content
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


class Parser(Protocol):
    """A pure protocol parser: bytes/messages in, records out; never raises on bad input."""

    stats: ParserStats

    def feed(self, data: bytes, now_us: int) -> list[Record]:
        """Consume bytes (serial) or one whole message (MQTT); return the records completed."""
        ...


Sink = Callable[[list[Record]], None]


class Driver(Protocol):
    """A running reader or door counter: transport + parser, pushing records into a sink."""

    name: str

    def start(self, sink: Sink) -> None:
        """Start reading in the background; records go to ``sink`` (called from the driver's thread)."""
        ...

    def stop(self) -> None:
        """Stop and release the transport (idempotent)."""
        ...

    def health(self) -> dict[str, object]:
        """Health counters: last_frame_us, frames_per_s, checksum_errors, reconnects, connected, ..."""
        ...
