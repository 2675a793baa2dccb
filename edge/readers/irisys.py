"""Irisys Vector people counter, MQTT count registers: pure JSON codec (cumulative -> interval deltas).

A Vector publishes its count registers as JSON; the registers are cumulative ("most register count
values keep incrementing and never reset to zero unless the counter is powered off or 'Reset System
Counts' is selected"), so the interval figure is the difference between successive values::

    {"timestamp": "2026-11-20T10:15:00+08:00",
     "counts": [{"name": "In", "count": 1234}, {"name": "Out", "count": 1199}]}

Which registers mean entries and exits is per installation (the register names are configured on
the device): :data:`DEFAULT_REGISTERS` lists common names and the ``in_registers``/``out_registers``
options replace them. Several registers of one direction are summed (a wide door with two lines).
The first message after start is the baseline; a register that goes down is a 32-bit rollover or a
reset (see :class:`CumulativeRegister`), counted in ``stats.extra``. The record's ``ts_us`` is the
start of the interval: the previous message's timestamp (None until the device sends timestamps).

Sources: Irisys (Fluke) knowledge base "MQTT programming guide" (topics Counts / Live counts, JSON
messages with register names and values; firmware 2.0.165+), "Count logging settings" (cumulative
registers, subtract successive logs); ``uva-linklab/irisys-mqtt-influxdb`` (consumer reading
``counts[].name`` / ``counts[].count`` from the ``live_counts`` topic).
"""

from __future__ import annotations

import json
from typing import Any, Final

from edge.readers._common import CumulativeRegister, JsonEventParser, parse_iso_us
from edge.readers.base import DoorCount, ParserStats

__all__ = ["DEFAULT_REGISTERS", "IrisysParser", "encode_counts"]

DEFAULT_REGISTERS: Final[dict[str, tuple[str, ...]]] = {
    "entries": ("In", "Count In", "Line 1 In", "Forward", "Enter"),
    "exits": ("Out", "Count Out", "Line 1 Out", "Backward", "Exit"),
}


def encode_counts(registers: dict[str, int], ts_us: int | None = None) -> bytes:
    """Device side: a live-counts payload with the cumulative register values."""
    import datetime as dt

    doc: dict[str, Any] = {"counts": [{"name": k, "count": int(v) & 0xFFFFFFFF} for k, v in registers.items()]}
    if ts_us is not None:
        s, us = divmod(ts_us, 1_000_000)
        doc["timestamp"] = dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + \
            f".{us // 1000:03d}Z"
    return json.dumps(doc, separators=(",", ":")).encode()


class IrisysParser(JsonEventParser):
    """One MQTT payload in, :class:`DoorCount` interval deltas out. Never raises."""
    event_name = "message"

    def __init__(self, door: str, in_registers: list[str] | tuple[str, ...] | None = None,
                 out_registers: list[str] | tuple[str, ...] | None = None):
        self.door = door
        self.in_registers = frozenset(in_registers or DEFAULT_REGISTERS["entries"])
        self.out_registers = frozenset(out_registers or DEFAULT_REGISTERS["exits"])
        if self.in_registers & self.out_registers:
            raise ValueError(f"registers both in and out: {sorted(self.in_registers & self.out_registers)}")
        self.stats = ParserStats()
        self._regs: dict[str, CumulativeRegister] = {}
        self._last_ts: int | None = None

    def _decode(self, ev: dict[str, Any], now_us: int = 0) -> DoorCount | None:
        counts = ev.get("counts")
        if not isinstance(counts, list):
            self._count("other_messages")
            return None
        ts = ev.get("timestamp", ev.get("time"))
        ts_us = parse_iso_us(ts) if isinstance(ts, str) else None
        entries = exits = 0
        seen = False
        for item in counts:
            name = item.get("name") if isinstance(item, dict) else None
            value = item.get("count") if isinstance(item, dict) else None
            if not isinstance(name, str) or not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.stats.malformed += 1
                self.stats.last_error = f"count item {str(item)[:60]} needs a name and a count >= 0"
                continue
            if name in self.in_registers:
                sign = 0
            elif name in self.out_registers:
                sign = 1
            else:
                self._count("other_registers")
                continue
            reg = self._regs.get(name)
            if reg is None:
                reg = self._regs[name] = CumulativeRegister(1 << 32)
            before = reg.resets
            delta = reg.update(value)
            if reg.resets != before:
                self._count("counter_resets")
            if delta is None:
                continue
            seen = True
            if sign == 0:
                entries += delta
            else:
                exits += delta
        start, self._last_ts = self._last_ts, ts_us if ts_us is not None else self._last_ts
        if not seen or (entries == 0 and exits == 0):
            return None
        return DoorCount(self.door, start, entries, exits)
