"""Milesight VS121-P / VS125 people counters, MQTT JSON line-crossing reports: pure JSON codec.

The sensor posts reports to its MQTT recipient; the line-crossing ones carry interval counts::

    {"event": "Line Crossing Counting", "report_type": "interval",
     "device_info": {"device_sn": "6723D38552440017", ...},
     "time_info": {"timezone": "UTC+8:00", "start_time": "2026/11/20 10:00:00",
                   "end_time": "2026/11/20 10:15:00"},
     "in_counted": 12, "out_counted": 9, "capacity_counted": 3,
     "total_data": {"in_cumulative_counted": 1002, "out_cumulative_counted": 950, ...}}

and trigger reports (one per crossing) ``"line_trigger_data": {"in": 1, "out": 0}`` stamped with
``time_info.time``; VS125 firmware sends ``line_trigger_data`` as a list of lines
``[{"line": 1, "total": {"in": 1, "out": 0}}]``. Times are local ``YYYY/MM/DD hh:mm:ss`` in the
device's ``timezone`` (``UTC+8:00``); ISO strings with an offset are accepted too.

The report layouts are the declarative :data:`LAYOUTS` table (first match wins); the interval counts
are used directly (no cumulative arithmetic), so a device restart cannot double anything.

Sources: Milesight VS121-P user guide, "Communication Protocol" (report JSON: event, report_type,
device_info, time_info.timezone/start_time/end_time/time, in_counted/out_counted/capacity_counted,
total_data.*_cumulative_counted, line_trigger_data.in/out) and the VS125 "Communication Protocol"
(line_trigger_data[].line/total.in/total.out); field lists cross-checked against Milesight's
published payload decoder tables (vs121-p / vs125-p keys).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from edge.readers._common import JsonEventParser, parse_iso_us
from edge.readers.base import DoorCount, ParserStats

__all__ = ["Layout", "LAYOUTS", "MilesightParser", "encode_interval", "encode_trigger", "parse_device_time"]


@dataclass(frozen=True)
class Layout:
    """Where one report layout keeps its counts and time (paths of keys; ``[line]`` selects a list item)."""

    name: str
    entries: tuple[str, ...]
    exits: tuple[str, ...]
    ts: tuple[str, ...]


LAYOUTS: Final[tuple[Layout, ...]] = (
    Layout("vs121p-interval", ("in_counted",), ("out_counted",), ("time_info", "start_time")),
    Layout("vs121p-trigger", ("line_trigger_data", "in"), ("line_trigger_data", "out"), ("time_info", "time")),
    Layout("vs125-trigger", ("line_trigger_data", "[line]", "total", "in"),
           ("line_trigger_data", "[line]", "total", "out"), ("time_info", "time")),
)

_TZ_RE = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$")


def _tz_offset_s(tz: object) -> int | None:
    if not isinstance(tz, str):
        return None
    if tz.strip() in ("UTC", "GMT", "Z"):
        return 0
    m = _TZ_RE.match(tz.strip())
    if not m:
        return None
    sign = -1 if m.group(1) == "-" else 1
    return sign * (int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60)


def parse_device_time(text: object, timezone: object) -> int | None:
    """``2026/11/20 10:00:00`` in ``UTC+8:00`` (or ISO with offset) -> epoch µs; None when unusable."""
    if not isinstance(text, str):
        return None
    return parse_iso_us(text.replace("/", "-"), default_offset_s=_tz_offset_s(timezone))


def _local(ts_us: int, tz_h: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts_us // 1_000_000 + tz_h * 3600, dt.timezone.utc).strftime("%Y/%m/%d %H:%M:%S")


def encode_interval(entries: int, exits: int, start_us: int, end_us: int, *, tz_h: int = 8,
                    sn: str = "6723D38552440017") -> bytes:
    """Device side: a VS121-P line-crossing interval report."""
    doc = {"event": "Line Crossing Counting", "report_type": "interval",
           "device_info": {"device": "People Counter", "device_sn": sn},
           "time_info": {"timezone": f"UTC{tz_h:+d}:00", "dst_status": False,
                         "start_time": _local(start_us, tz_h), "end_time": _local(end_us, tz_h)},
           "in_counted": int(entries), "out_counted": int(exits), "capacity_counted": int(entries) - int(exits)}
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_trigger(entries: int, exits: int, ts_us: int, *, tz_h: int = 8, sn: str = "6723D38552440017") -> bytes:
    """Device side: a VS121-P line-crossing trigger report."""
    doc = {"event": "Line Crossing Counting", "report_type": "trigger",
           "device_info": {"device": "People Counter", "device_sn": sn},
           "time_info": {"timezone": f"UTC{tz_h:+d}:00", "time": _local(ts_us, tz_h)},
           "line_trigger_data": {"in": int(entries), "out": int(exits)}}
    return json.dumps(doc, separators=(",", ":")).encode()


class MilesightParser(JsonEventParser):
    """One MQTT payload in, :class:`DoorCount` records out. ``line`` picks the line of list layouts."""
    event_name = "report"

    def __init__(self, door: str, line: int = 1):
        self.door = door
        self.line = line
        self.stats = ParserStats()

    def _get(self, doc: Any, path: tuple[str, ...]) -> Any:
        for key in path:
            if key == "[line]":
                if not isinstance(doc, list):
                    return None
                doc = next((x for x in doc if isinstance(x, dict) and x.get("line") == self.line), None)
            elif isinstance(doc, dict):
                doc = doc.get(key)
            else:
                return None
        return doc

    def _decode(self, ev: dict[str, Any], now_us: int = 0) -> DoorCount | None:
        for lay in LAYOUTS:
            e, x = self._get(ev, lay.entries), self._get(ev, lay.exits)
            if e is None and x is None:
                continue
            ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31 for v in (e, x))
            if not ok:
                self.stats.malformed += 1
                self.stats.last_error = f"{lay.name}: counts {e!r}/{x!r} are not non-negative integers"
                return None
            ts_us = parse_device_time(self._get(ev, lay.ts), self._get(ev, ("time_info", "timezone")))
            if ts_us is None:
                self._count("bad_timestamp")
            self._count(lay.name)
            if e == 0 and x == 0:
                return None
            return DoorCount(self.door, ts_us, e, x)
        self._count(f"event_{str(ev.get('event', 'unknown'))[:32]}")
        return None
