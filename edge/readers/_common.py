"""Helpers shared by the protocol codecs: checksums, timestamps, EPC text, the capped stream buffer.

Pure functions, no I/O. Checksum tables are computed once at import.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Iterable

__all__ = [
    "MAX_BUFFER", "sum_check", "crc16_mcrf4xx", "crc8_atm", "parse_iso_us", "epc_from_bytes",
    "epc_from_b64url", "is_epc_hex", "now_us",
]

#: Bytes a stream parser keeps while waiting for the rest of a frame; beyond it the oldest are dropped.
MAX_BUFFER = 64 * 1024


def sum_check(data: bytes | bytearray | memoryview) -> int:
    """Impinj R2000 "Check": two's complement of the byte sum (so that sum(frame) % 256 == 0)."""
    return (-sum(data)) & 0xFF


def _crc16_table(poly: int) -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC16_MCRF4XX = _crc16_table(0x8408)      # reflected 0x1021, init 0xFFFF, no final xor


def crc16_mcrf4xx(data: Iterable[int], crc: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX (poly 0x8408 reflected, preset 0xFFFF): the Chafon/UHFReader checksum."""
    t = _CRC16_MCRF4XX
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def _crc8_table(poly: int) -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ poly) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return tuple(table)


_CRC8_ATM = _crc8_table(0x07)


def crc8_atm(data: Iterable[int], crc: int = 0) -> int:
    """CRC-8 (poly 0x07, init 0, no reflection): the Terabee TeraRanger Evo frame check."""
    t = _CRC8_ATM
    for b in data:
        crc = t[crc ^ b]
    return crc


_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,12}))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_iso_us(text: str, *, default_offset_s: int | None = None) -> int | None:
    """ISO 8601 timestamp (any fraction precision, e.g. nanoseconds) -> epoch microseconds.

    Returns None when the text is not a timestamp or has no UTC offset and no ``default_offset_s``.
    Fractions beyond microseconds are truncated (never rounded into the next second).
    """
    m = _ISO_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(h) < 24 and int(mi) < 60 and int(s) < 61):
        return None
    if off is None:
        if default_offset_s is None:
            return None
        off_s = default_offset_s
    elif off == "Z":
        off_s = 0
    else:
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        off_s = sign * (int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0))
    us = int((frac or "0")[:6].ljust(6, "0"))
    return (secs - off_s) * 1_000_000 + us


def epc_from_bytes(b: bytes | bytearray | memoryview) -> str:
    """EPC bytes -> upper-case hex (the SPEC's stored form)."""
    return bytes(b).hex().upper()


_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2}){4,32}")


def is_epc_hex(s: object) -> bool:
    """True for SPEC-valid EPC text: even-length hex, 8 to 64 digits."""
    return isinstance(s, str) and _HEX_RE.fullmatch(s) is not None


def epc_from_b64url(s: str) -> str | None:
    """Impinj IoT ``epc`` field (base64url, padding optional) -> upper-case hex, None when invalid."""
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError, TypeError):
        return None
    return raw.hex().upper() if 4 <= len(raw) <= 32 else None


def now_us() -> int:
    """Wall clock, epoch microseconds."""
    import time
    return time.time_ns() // 1000


class CumulativeRegister:
    """Turns a device's cumulative counter register into interval deltas.

    The first value only sets the baseline (an agent restart must not count the day's total again).
    A value below the previous one is a rollover when the previous value was in the top quarter of the
    register's range and the new one in the bottom quarter (delta wraps at ``modulus``); otherwise it is
    a counter reset (power cycle, "reset counts"), after which the new value itself is the delta.
    """

    __slots__ = ("modulus", "last", "resets", "rollovers")

    def __init__(self, modulus: int = 1 << 32):
        self.modulus = modulus
        self.last: int | None = None
        self.resets = 0
        self.rollovers = 0

    def update(self, value: int) -> int | None:
        """Feed the register's current value; returns the increase since the last value (None at first)."""
        prev, self.last = self.last, value
        if prev is None:
            return None
        if value >= prev:
            return value - prev
        q = self.modulus // 4
        if prev >= self.modulus - q and value < q:
            self.rollovers += 1
            return value + self.modulus - prev
        self.resets += 1
        return value


def json_events(data: bytes | str, stats: "ParserStats") -> list[dict] | None:  # noqa: F821
    """One MQTT payload -> its JSON objects (a single object or an array of them).

    Returns None (and counts ``malformed``) when the payload is not UTF-8 JSON of that shape; array
    items that are not objects are counted malformed and skipped.
    """
    import json

    try:
        doc = json.loads(data)
    except (ValueError, TypeError, RecursionError) as e:
        stats.malformed += 1
        stats.last_error = f"not JSON: {str(e)[:80]}"
        return None
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        objs = [x for x in doc if isinstance(x, dict)]
        if len(objs) != len(doc):
            stats.malformed += len(doc) - len(objs)
            stats.last_error = "array item that is not a JSON object"
        return objs
    stats.malformed += 1
    stats.last_error = f"JSON {type(doc).__name__} where an object or array was expected"
    return None


class JsonEventParser:
    """Base of the MQTT JSON parsers: a payload holds one event object or an array of them, and each
    event becomes at most one record. Subclasses set ``stats`` and implement ``_decode``; nothing
    raises into the caller (an event that breaks the decoder is counted malformed)."""

    stats: "ParserStats"  # noqa: F821
    event_name = "event"

    def _count(self, key: str, n: int = 1) -> None:
        self.stats.extra[key] = self.stats.extra.get(key, 0) + n

    def _decode(self, ev: dict, now_us: int):  # type: ignore[no-untyped-def]
        """One event -> a record, or None (counted by the subclass) when it carries none."""
        raise NotImplementedError

    def feed(self, data: bytes, now_us: int) -> list:
        """One MQTT message -> its records."""
        events = json_events(data, self.stats)
        if events is None:
            return []
        out = []
        for ev in events:
            self.stats.frames += 1
            try:
                rec = self._decode(ev, now_us)
            except Exception as e:  # noqa: BLE001 - defensive: a decoder bug must not stop the agent
                self.stats.malformed += 1
                self.stats.last_error = f"{self.event_name}: {e!r}"[:120]
                continue
            if rec is not None:
                out.append(rec)
        self.stats.records += len(out)
        return out
