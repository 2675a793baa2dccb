"""Turn the agent's records into wire batches (storeflow.wire) and collect them within size/latency bounds."""

from __future__ import annotations

import numpy as np

from edge.records import AgentDoor, AgentRead
from storeflow.wire import DOOR_DTYPE, READ_DTYPE, Batch, encode_batch

__all__ = ["encode_reads", "encode_doors", "Pending"]

_U2_MAX = 65535
_U4_MAX = 2**32 - 1


def encode_reads(reads: list[AgentRead], *, store: str, agent: str, stream: str, seq: int, sent_us: int) -> bytes:
    """One ``reads`` batch payload. Aggregates over 65535 reads are split (the wire count is u2)."""
    antennas: dict[tuple[str, int], int] = {}
    epcs: dict[str, int] = {}
    rows: list[tuple[int, int, int, int, int, int]] = []
    for r in reads:
        a = antennas.setdefault((r.reader, r.antenna), len(antennas))
        e = epcs.setdefault(r.epc, len(epcs))
        cdbm = max(-32768, min(32767, round(r.rssi_dbm * 100)))
        left = r.count
        while left > 0:
            c = min(left, _U2_MAX)
            rows.append((r.ts_us, a, e, cdbm, c, r.flags))
            left -= c
    arr = np.array(rows, dtype=READ_DTYPE) if rows else np.zeros(0, READ_DTYPE)
    return encode_batch(Batch("reads", store, agent, stream, seq, sent_us, arr,
                              antennas=list(antennas), epcs=list(epcs)))


def encode_doors(doors: list[AgentDoor], *, store: str, agent: str, stream: str, seq: int, sent_us: int) -> bytes:
    """One ``doors`` batch payload."""
    ids: dict[str, int] = {}
    rows = [(d.ts_us, ids.setdefault(d.door, len(ids)), min(d.entries, _U4_MAX), min(d.exits, _U4_MAX), d.flags)
            for d in doors]
    arr = np.array(rows, dtype=DOOR_DTYPE) if rows else np.zeros(0, DOOR_DTYPE)
    return encode_batch(Batch("doors", store, agent, stream, seq, sent_us, arr, doors=list(ids)))


class Pending:
    """Records waiting to become a batch: ready when ``max_records`` are there or the oldest has waited
    ``max_delay_us`` (agent monotonic clock)."""

    def __init__(self, max_records: int, max_delay_us: int) -> None:
        self.max_records = max_records
        self.max_delay_us = max_delay_us
        self.items: list = []
        self._since_us = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: list, now_us: int) -> None:
        if items:
            if not self.items:
                self._since_us = now_us
            self.items.extend(items)

    def put_back(self, chunks: list[list]) -> None:
        """Return batches that could not be stored, in front of the rest (order is kept)."""
        self.items = [x for c in chunks for x in c] + self.items

    def take(self, now_us: int, force: bool = False) -> list[list]:
        """The batches that are due (each at most ``max_records``); the rest stays pending."""
        out: list[list] = []
        while len(self.items) >= self.max_records:
            out.append(self.items[:self.max_records])
            del self.items[:self.max_records]
            self._since_us = now_us
        if self.items and (force or now_us - self._since_us >= self.max_delay_us):
            out.append(self.items)
            self.items = []
        return out
