"""The data contract of SPEC.md: value parsers (timestamps, EPCs, RSSI) and the input error type.

Parsers raise :class:`BadInput` with a message that names what is wrong; callers add where (file,
line, field). Nothing here touches I/O.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

__all__ = [
    "BadInput",
    "parse_ts_us",
    "format_ts_us",
    "parse_epc",
    "parse_rssi_dbm",
    "parse_amount",
    "STORE_ID_RE",
    "TAG_KINDS",
    "UNIX_EPOCH",
    "PG_EPOCH_US",
]

STORE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
TAG_KINDS = ("member", "staff", "asset")
_EPC_RE = re.compile(r"(?:[0-9A-Fa-f]{2}){4,32}")
_INT_RE = re.compile(r"[+-]?\d+")
#: 1970-01-01T00:00:00Z: the zero of the epoch microseconds used everywhere (``ts_us``).
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: 2000-01-01T00:00:00Z in Unix epoch microseconds: PostgreSQL's timestamp zero (binary COPY values).
PG_EPOCH_US = 946_684_800_000_000
#: Sane bounds for epoch microseconds: 2000-01-01 .. 2100-01-01 UTC.
TS_US_MIN = 946_684_800_000_000
TS_US_MAX = 4_102_444_800_000_000


class BadInput(ValueError):
    """Input that does not follow the data contract. ``str(err)`` is a one-line reason for the user."""


def parse_ts_us(text: str) -> int:
    """Parse a SPEC timestamp (ISO 8601 with a UTC offset, or integer epoch microseconds) to epoch µs."""
    s = text.strip()
    if not s:
        raise BadInput("empty timestamp")
    if _INT_RE.fullmatch(s):
        value = int(s)
    else:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise BadInput(f"timestamp {s!r} is neither ISO 8601 nor epoch microseconds") from None
        if dt.tzinfo is None:
            raise BadInput(f"timestamp {s!r} has no UTC offset")
        delta = dt - UNIX_EPOCH
        value = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not TS_US_MIN <= value < TS_US_MAX:
        raise BadInput(f"timestamp {s!r} is outside 2000..2100")
    return value


def format_ts_us(ts_us: int) -> str:
    """Epoch microseconds as ISO 8601 UTC (``2026-11-20T02:00:00.250000+00:00``)."""
    return datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).isoformat()


def parse_epc(text: str) -> str:
    """Validate an EPC (8..64 hex digits, even length) and return it upper-case."""
    s = text.strip()
    if not _EPC_RE.fullmatch(s):
        raise BadInput(f"EPC {s[:80]!r} is not 8 to 64 hex digits of even length")
    return s.upper()


def parse_rssi_dbm(text: str) -> float:
    """Parse RSSI in dBm (a decimal number between -150 and 20)."""
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        raise BadInput(f"RSSI {s[:40]!r} is not a number") from None
    if not -150.0 <= value <= 20.0:  # also rejects nan and inf
        raise BadInput(f"RSSI {s[:40]!r} dBm is outside -150..20")
    return value


def parse_amount(text: str) -> Decimal:
    """Parse a decimal purchase amount (finite, at most 2 decimals after rounding is not done)."""
    s = text.strip()
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise BadInput(f"amount {s[:40]!r} is not a decimal number") from None
    if not value.is_finite():
        raise BadInput(f"amount {s[:40]!r} is not finite")
    if abs(value) >= Decimal("1e10"):
        raise BadInput(f"amount {s[:40]!r} is too large")
    return value
