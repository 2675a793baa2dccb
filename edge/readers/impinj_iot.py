"""Impinj IoT device interface (R700 / R720 reader, MQTT data stream): pure JSON codec.

The reader publishes events to its configured MQTT topic, one JSON object per event or, with
batching, a JSON array of events::

    {"timestamp": "2026-11-20T02:00:00.123456789Z", "hostname": "impinj-13-e2-45",
     "eventType": "tagInventory",
     "tagInventoryEvent": {"epc": "MAAAAAAAAAAAAAAA", "epcHex": "300000000000000000000000",
                           "antennaPort": 1, "antennaName": "Antenna 1", "peakRssiCdbm": -5400,
                           "frequency": 920250, "transmitPowerCdbm": 3000,
                           "lastSeenTime": "2026-11-20T02:00:00.123Z"}}

``epcHex`` (hex) or ``epc`` (base64url, as the reader sends when ``epcHex`` is not enabled);
``peakRssiCdbm`` in centi-dBm; ``timestamp`` ISO 8601 with up to nanosecond fraction (truncated to
microseconds here). Events without ``tagInventoryEvent`` (inventoryStatus, antennaConnected, ...)
are counted per ``eventType`` and produce no record.

Source: Impinj "IoT device interface" reference (event objects ``TagInventoryEvent``: epc, epcHex,
antennaPort, antennaName, peakRssiCdbm, frequency, transmitPowerCdbm, lastSeenTime; event envelope
timestamp/hostname/eventType) and the ``impinj-iot`` PyPI driver (``peak_rssi_cdbm / 100`` dBm).
"""

from __future__ import annotations

import json
from typing import Any

from edge.readers._common import epc_from_b64url, is_epc_hex, JsonEventParser, parse_iso_us
from edge.readers.base import ParserStats, TagRead

__all__ = ["ImpinjIotParser", "encode_event", "format_ts_ns"]


def format_ts_ns(ts_us: int) -> str:
    """Epoch µs -> the reader's nanosecond ISO form (``...T02:00:00.123456000Z``)."""
    import datetime as dt

    s, us = divmod(ts_us, 1_000_000)
    base = dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{us:06d}000Z"


def encode_event(epc_hex: str, port: int, rssi_cdbm: int, ts_us: int, *, hostname: str = "impinj-sim",
                 epc_b64: bool = False) -> dict[str, Any]:
    """Device side: one ``tagInventory`` event object (serialise with ``json.dumps``)."""
    import base64

    tag: dict[str, Any] = {"antennaPort": int(port), "antennaName": f"Antenna {int(port)}",
                           "peakRssiCdbm": int(rssi_cdbm), "frequency": 920250, "transmitPowerCdbm": 3000}
    if epc_b64:
        tag["epc"] = base64.urlsafe_b64encode(bytes.fromhex(epc_hex)).decode().rstrip("=")
    else:
        tag["epcHex"] = epc_hex.upper()
    return {"timestamp": format_ts_ns(ts_us), "hostname": hostname, "eventType": "tagInventory",
            "tagInventoryEvent": tag}


class ImpinjIotParser(JsonEventParser):
    """One MQTT payload in, :class:`TagRead` records out. Never raises."""

    def __init__(self, reader: str):
        self.reader = reader
        self.stats = ParserStats()

    def _bad(self, why: str) -> None:
        self.stats.malformed += 1
        self.stats.last_error = why

    def _decode(self, ev: dict[str, Any], now_us: int = 0) -> TagRead | None:
        tag = ev.get("tagInventoryEvent")
        if tag is None:
            self._count(f"event_{str(ev.get('eventType', 'unknown'))[:32]}")
            return None
        if not isinstance(tag, dict):
            self._bad("tagInventoryEvent is not an object")
            return None
        epc = tag.get("epcHex")
        if epc is not None:
            if not is_epc_hex(epc):
                self._bad(f"epcHex {str(epc)[:40]!r} is not 8..64 hex digits")
                return None
            epc = epc.upper()
        else:
            raw = tag.get("epc")
            epc = epc_from_b64url(raw) if isinstance(raw, str) else None
            if epc is None:
                self._bad("tag event without a valid epcHex or base64url epc")
                return None
        port = tag.get("antennaPort")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            self._bad(f"antennaPort {port!r} is not a port number >= 1")
            return None
        rssi = tag.get("peakRssiCdbm")
        if not isinstance(rssi, (int, float)) or isinstance(rssi, bool) or not -15000 <= rssi <= 3000:
            self._bad(f"peakRssiCdbm {rssi!r} is not centi-dBm")
            return None
        ts = ev.get("timestamp")
        ts_us = parse_iso_us(ts) if isinstance(ts, str) else None
        if ts is not None and ts_us is None:
            self._count("bad_timestamp")
        return TagRead(self.reader, port, epc, rssi / 100.0, ts_us)


def dumps(events: list[dict[str, Any]]) -> bytes:
    """Device side: a payload of one event (object) or several (array)."""
    return json.dumps(events[0] if len(events) == 1 else events, separators=(",", ":")).encode()
