"""Edge -> ingest wire format (MQTT payloads). Pure codec: bytes in, :class:`Batch` out.

Topics (``P`` = the ``topic_prefix`` setting, default ``storeflow``)::

    P/<store>/<agent>/reads     tag read batches           (QoS 1)
    P/<store>/<agent>/doors     door count batches          (QoS 1)
    P/<store>/<agent>/status    "online"/"offline" JSON     (retained; the offline one is the last will)
    P/<store>/<agent>/health    per-reader health JSON      (QoS 0)

A batch payload is::

    b"SFB1" | u32 LE header length | header (UTF-8 JSON) | body (packed little-endian records)

Header keys: ``kind`` ("reads" or "doors"), ``store``, ``agent``, ``stream`` (id of the agent's spool:
a new spool starts a new stream), ``seq`` (batch number, increasing within a stream), ``sent_us``
(agent clock, epoch µs), ``n`` (records), and the lookup tables the records index into:
``antennas`` (list of ``[reader, port]``) and ``epcs`` (upper-case hex) for reads, ``doors`` (ids)
for door counts. ``(agent, stream, seq)`` identifies a batch: ingest stores each one once.

Record layouts (see :data:`READ_DTYPE`, :data:`DOOR_DTYPE`)::

    reads: ts_us i8 | antenna u2 | epc u4 | rssi_cdbm i2 | count u2 | flags u1     (19 bytes)
    doors: ts_us i8 | door u2 | entries u4 | exits u4 | flags u1                   (19 bytes)

``flags`` bit 0 (:data:`FLAG_AGENT_CLOCK`): ``ts_us`` is the agent's receive time because the reader's
clock was unset or skewed.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from storeflow.contract import STORE_ID_RE, TS_US_MAX, TS_US_MIN

__all__ = [
    "MAGIC", "READ_DTYPE", "DOOR_DTYPE", "FLAG_AGENT_CLOCK", "Batch", "WireError",
    "encode_batch", "decode_batch", "topic", "parse_topic",
]

MAGIC = b"SFB1"
FLAG_AGENT_CLOCK = 1
READ_DTYPE = np.dtype([("ts_us", "<i8"), ("antenna", "<u2"), ("epc", "<u4"), ("rssi_cdbm", "<i2"),
                       ("count", "<u2"), ("flags", "u1")])
DOOR_DTYPE = np.dtype([("ts_us", "<i8"), ("door", "<u2"), ("entries", "<u4"), ("exits", "<u4"),
                       ("flags", "u1")])
_DTYPES = {"reads": READ_DTYPE, "doors": DOOR_DTYPE}
_AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_EPC_RE = re.compile(r"(?:[0-9A-F]{2}){4,32}")
_MAX_HEADER = 16 * 1024 * 1024


class WireError(ValueError):
    """A payload that is not a valid batch; the message says what is wrong."""


@dataclass
class Batch:
    """One batch of reads or door counts from one agent."""

    kind: Literal["reads", "doors"]
    store: str
    agent: str
    stream: str
    seq: int
    sent_us: int
    records: np.ndarray                                   # READ_DTYPE or DOOR_DTYPE
    antennas: list[tuple[str, int]] = field(default_factory=list)
    epcs: list[str] = field(default_factory=list)
    doors: list[str] = field(default_factory=list)


def topic(prefix: str, store: str, agent: str, leaf: str) -> str:
    """The MQTT topic of one agent's stream (leaf: reads, doors, status, health)."""
    return f"{prefix}/{store}/{agent}/{leaf}"


def parse_topic(prefix: str, name: str) -> tuple[str, str, str]:
    """(store, agent, leaf) of a StoreFlow topic; :class:`WireError` when it is not one."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != prefix:
        raise WireError(f"topic {name!r} is not {prefix}/<store>/<agent>/<leaf>")
    return parts[1], parts[2], parts[3]


def encode_batch(b: Batch) -> bytes:
    """Serialise a batch (validating it first, so a bad batch never leaves the agent)."""
    _check(b)
    header: dict[str, Any] = {"kind": b.kind, "store": b.store, "agent": b.agent, "stream": b.stream,
                              "seq": b.seq, "sent_us": b.sent_us, "n": int(len(b.records))}
    if b.kind == "reads":
        header["antennas"] = [[r, int(p)] for r, p in b.antennas]
        header["epcs"] = b.epcs
    else:
        header["doors"] = b.doors
    hdr = json.dumps(header, separators=(",", ":")).encode()
    body = np.ascontiguousarray(b.records, dtype=_DTYPES[b.kind]).tobytes()
    return MAGIC + struct.pack("<I", len(hdr)) + hdr + body


def decode_batch(payload: bytes) -> Batch:
    """Parse and validate a batch payload; :class:`WireError` names the first problem found."""
    if len(payload) < 8 or payload[:4] != MAGIC:
        raise WireError("not a StoreFlow batch (bad magic)")
    (hlen,) = struct.unpack_from("<I", payload, 4)
    if hlen > _MAX_HEADER or 8 + hlen > len(payload):
        raise WireError(f"header length {hlen} exceeds the payload ({len(payload)} bytes)")
    try:
        header = json.loads(payload[8:8 + hlen])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    kind = header.get("kind")
    if kind not in _DTYPES:
        raise WireError(f"kind {kind!r} is not reads or doors")
    dtype = _DTYPES[kind]
    body = memoryview(payload)[8 + hlen:]
    n = header.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n * dtype.itemsize != len(body):
        raise WireError(f"body of {len(body)} bytes does not hold n={n!r} records of {dtype.itemsize} bytes")
    try:
        b = Batch(
            kind=kind, store=header["store"], agent=header["agent"], stream=header["stream"],
            seq=header["seq"], sent_us=header["sent_us"],
            records=np.frombuffer(body, dtype=dtype).copy(),
            antennas=[(a[0], a[1]) for a in header.get("antennas", [])] if kind == "reads" else [],
            epcs=list(header.get("epcs", [])) if kind == "reads" else [],
            doors=list(header.get("doors", [])) if kind == "doors" else [],
        )
    except (KeyError, TypeError, IndexError) as e:
        raise WireError(f"header field missing or malformed: {e}") from None
    _check(b)
    return b


def _check(b: Batch) -> None:
    if not isinstance(b.store, str) or not STORE_ID_RE.fullmatch(b.store):
        raise WireError(f"store {b.store!r} is not a store id")
    if not isinstance(b.agent, str) or not _AGENT_RE.fullmatch(b.agent):
        raise WireError(f"agent {b.agent!r} is not an agent id")
    if not isinstance(b.stream, str) or not _AGENT_RE.fullmatch(b.stream):
        raise WireError(f"stream {b.stream!r} is not a stream id")
    for name in ("seq", "sent_us"):
        v = getattr(b, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 2**63:
            raise WireError(f"{name} {v!r} is not a non-negative integer")
    r = b.records
    if len(r):
        ts = r["ts_us"]
        bad = np.flatnonzero((ts < TS_US_MIN) | (ts >= TS_US_MAX))
        if len(bad):
            raise WireError(f"record {int(bad[0])}: ts_us {int(ts[bad[0]])} is outside 2000..2100")
    if b.kind == "reads":
        for i, a in enumerate(b.antennas):
            if (not isinstance(a[0], str) or not a[0] or not isinstance(a[1], int) or isinstance(a[1], bool)
                    or not 1 <= a[1] <= 65535):
                raise WireError(f"antennas[{i}] {list(a)!r} is not [reader, port >= 1]")
        for i, e in enumerate(b.epcs):
            if not isinstance(e, str) or not _EPC_RE.fullmatch(e):
                raise WireError(f"epcs[{i}] {e!r} is not upper-case hex of 8..64 digits")
        if len(r):
            if int(r["antenna"].max()) >= len(b.antennas):
                raise WireError(f"a record's antenna index {int(r['antenna'].max())} is past the antenna table")
            if int(r["epc"].max()) >= len(b.epcs):
                raise WireError(f"a record's epc index {int(r['epc'].max())} is past the EPC table")
            if int(r["count"].min()) < 1:
                raise WireError("a record has count 0")
    else:
        for i, d in enumerate(b.doors):
            if not isinstance(d, str) or not d:
                raise WireError(f"doors[{i}] {d!r} is not a door id")
        if len(r) and int(r["door"].max()) >= len(b.doors):
            raise WireError(f"a record's door index {int(r['door'].max())} is past the door table")
