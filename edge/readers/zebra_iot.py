"""Zebra IoT Connector (FX7500 / FX9600 / ATR7000 readers, MQTT data interface): pure JSON codec.

Tag data events, one JSON object per event or (with batching) an array::

    {"data": {"eventNum": 1, "format": "epc", "idHex": "e2801160600002054cc2096f", "antenna": 1,
              "peakRssi": -52, "reads": 1, "channel": 915.25},
     "timestamp": "2026-11-20T10:00:00.123+0800", "type": "SIMPLE"}

``idHex`` hex EPC; ``antenna`` port; ``peakRssi`` dBm; ``reads`` (optional) how many reads the event
aggregates; ``timestamp`` ISO 8601 with the offset written ``+hhmm``. Management/heartbeat events
(``"type": "heartbeat"``) are recognised, counted and timestamped for health (``last_heartbeat_us``);
other event types without ``data.idHex`` are counted per type.

Source: Zebra "IoT Connector" documentation (zebradevs.github.io/rfid-ziotc-docs: data event format
with data.idHex/antenna/peakRssi/eventNum/format/reads, envelope timestamp/type; heartbeat events on
the management interface) and Zebra's MQTT dock-door sample (ZebraDevs/RFID-IoTConnector-MQTT-dotnet).
"""

from __future__ import annotations

import json
from typing import Any

from edge.readers._common import is_epc_hex, JsonEventParser, parse_iso_us
from edge.readers.base import ParserStats, TagRead

__all__ = ["ZebraIotParser", "encode_event", "encode_heartbeat", "format_ts", "dumps"]

_HEARTBEAT_TYPES = frozenset({"heartbeat", "HEARTBEAT"})


def format_ts(ts_us: int) -> str:
    """Epoch µs -> Zebra's millisecond form with a ``+0000`` offset."""
    import datetime as dt

    s, us = divmod(ts_us, 1_000_000)
    return dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{us // 1000:03d}+0000"


def encode_event(epc_hex: str, port: int, rssi_dbm: float, ts_us: int, *, event_num: int = 0,
                 reads: int = 1) -> dict[str, Any]:
    """Device side: one tag data event object."""
    return {"data": {"eventNum": int(event_num), "format": "epc", "idHex": epc_hex.lower(),
                     "antenna": int(port), "peakRssi": round(float(rssi_dbm)), "reads": int(reads),
                     "channel": 915.25},
            "timestamp": format_ts(ts_us), "type": "SIMPLE"}


def encode_heartbeat(ts_us: int, hostname: str = "FX9600-SIM") -> dict[str, Any]:
    """Device side: one heartbeat event object."""
    return {"data": {"hostname": hostname, "radioConnection": "connected", "radioActivity": "active"},
            "timestamp": format_ts(ts_us), "type": "heartbeat"}


def dumps(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events[0] if len(events) == 1 else events, separators=(",", ":")).encode()


class ZebraIotParser(JsonEventParser):
    """One MQTT payload in, :class:`TagRead` records out; heartbeats feed health. Never raises."""

    def __init__(self, reader: str):
        self.reader = reader
        self.stats = ParserStats()
        self.last_heartbeat_us: int | None = None

    def _bad(self, why: str) -> None:
        self.stats.malformed += 1
        self.stats.last_error = why

    def _decode(self, ev: dict[str, Any], now_us: int) -> TagRead | None:
        typ = ev.get("type")
        if typ in _HEARTBEAT_TYPES:
            self._count("heartbeats")
            self.last_heartbeat_us = now_us
            return None
        d = ev.get("data")
        if not isinstance(d, dict) or "idHex" not in d:
            self._count(f"event_{str(typ)[:32]}")
            return None
        epc = d.get("idHex")
        if not is_epc_hex(epc):
            self._bad(f"idHex {str(epc)[:40]!r} is not 8..64 hex digits")
            return None
        port = d.get("antenna")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            self._bad(f"antenna {port!r} is not a port number >= 1")
            return None
        rssi = d.get("peakRssi")
        if not isinstance(rssi, (int, float)) or isinstance(rssi, bool) or not -150 <= rssi <= 30:
            self._bad(f"peakRssi {rssi!r} is not dBm")
            return None
        reads = d.get("reads", 1)
        if not isinstance(reads, int) or isinstance(reads, bool) or not 1 <= reads <= 65535:
            reads = 1
            self._count("bad_reads_field")
        ts = ev.get("timestamp")
        ts_us = parse_iso_us(ts) if isinstance(ts, str) else None
        if ts is not None and ts_us is None:
            self._count("bad_timestamp")
        return TagRead(self.reader, port, epc.upper(), float(rssi), ts_us, reads)
