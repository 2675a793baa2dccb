"""Read smoothing: per (reader, antenna, tag) aggregation over a short window.

A reader sees a tag in front of an antenna tens of times per second. Reads of one tag on one antenna
whose timestamps fall in ``[first, first + window)`` become one record: ``ts_us`` = first read,
``count`` = reads, ``rssi_dbm`` = the maximum, ``flags`` = the union. The last time is at most one
window after the first, so presence (and any visit boundary derived from it) moves by less than the
window, while the volume drops to at most one record per tag, antenna and window.

An aggregate is closed when a read of the same key falls outside its window, or when the window has
passed on the agent's clock (so a tag that leaves is published without waiting for its next read).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.records import AgentRead

__all__ = ["Smoother"]

_Key = tuple[str, int, str]


@dataclass(slots=True)
class _Agg:
    first_us: int
    last_us: int
    count: int
    rssi_dbm: float
    flags: int
    close_at_us: int        # agent clock (µs) after which the aggregate is published

    def record(self, key: _Key) -> AgentRead:
        return AgentRead(self.first_us, key[0], key[1], key[2], self.rssi_dbm, self.count, self.flags)


class Smoother:
    """Aggregates reads per (reader, antenna, epc); ``window_us == 0`` passes reads through."""

    def __init__(self, window_us: int) -> None:
        if window_us < 0:
            raise ValueError("window_us must be >= 0")
        self.window_us = window_us
        self._open: dict[_Key, _Agg] = {}
        self.reads_in = 0
        self.records_out = 0

    def __len__(self) -> int:
        return len(self._open)

    def push(self, reads: list[AgentRead], now_us: int) -> list[AgentRead]:
        """Add reads (received at agent time ``now_us``); return the aggregates they closed."""
        self.reads_in += sum(r.count for r in reads)
        if not self.window_us:
            self.records_out += len(reads)
            return list(reads)
        out: list[AgentRead] = []
        w = self.window_us
        for r in reads:
            key = (r.reader, r.antenna, r.epc)
            agg = self._open.get(key)
            if agg is not None and agg.first_us <= r.ts_us < agg.first_us + w:
                agg.count += r.count
                if r.rssi_dbm > agg.rssi_dbm:
                    agg.rssi_dbm = r.rssi_dbm
                if r.ts_us > agg.last_us:
                    agg.last_us = r.ts_us
                agg.flags |= r.flags
                continue
            if agg is not None:
                out.append(agg.record(key))
                del self._open[key]  # re-insert at the end: the dict stays ordered by close_at_us
            self._open[key] = _Agg(r.ts_us, r.ts_us, r.count, r.rssi_dbm, r.flags, now_us + w)
        self.records_out += len(out)
        return out

    def due(self, now_us: int) -> list[AgentRead]:
        """Close and return the aggregates whose window has passed on the agent clock ``now_us``."""
        if not self._open:
            return []
        keys = []
        for k, a in self._open.items():  # ordered by close_at_us (agent clock is monotonic here)
            if a.close_at_us > now_us:
                break
            keys.append(k)
        out = [self._open.pop(k).record(k) for k in keys]
        self.records_out += len(out)
        return out

    def flush(self) -> list[AgentRead]:
        """Close every open aggregate (shutdown)."""
        out = [a.record(k) for k, a in self._open.items()]
        self._open.clear()
        self.records_out += len(out)
        return out
