"""Chafon UHFReader288M serial protocol: pure codec, stream parser and host command builders.

Frames (no head byte; ``Len`` counts the bytes after itself, CRC included)::

    command:  Len | Adr | Cmd | Data[] | CRC-16 LSB | CRC-16 MSB
    response: Len | Adr | reCmd | Status | Data[] | CRC-16 LSB | CRC-16 MSB

CRC-16/MCRF4XX: polynomial 0x8408 (reflected 0x1021), preset 0xFFFF, over Len .. last data byte,
sent least-significant byte first. Default line: 57600 baud, 8N1; address 0xFF = broadcast.

Tag inventory (Cmd 0x01). Command data::

    QValue | Session | MaskMem | MaskAdr(2) | MaskLen | [MaskData] | Target | Ant | ScanTime

``Ant`` = 0x80 + (port - 1) selects one antenna; ``ScanTime`` in 100 ms units. Response data::

    Ant (bit mask: 0x01 = antenna 1, 0x04 = antenna 3) | Num | Num x [ EPCLen | EPC | RSSI ]

``EPCLen`` bit 7 marks an EPC+TID block (FastID), bits 6..0 the byte length. ``Status`` 0x03 means more
frames of this round follow; 0x01 (done), 0x02 (timeout), 0x04 (memory full) and 0xF8 (antenna error)
end the round.

Sources: UHFReader288M / "UHF RFID Reader UR-series User Manual v1.14" (section 8.2.1 inventory:
frame layout, status codes, Ant bit mask, EPC ID block structure); the ``wabson/chafon-rfid`` library
(``chafon_rfid/checksum.py``: CRC preset 0xFFFF, polynomial 0x8408; ``uhfreader288m.py``: inventory
command field order and antenna codes 0x80..0x83; ``tests/test_uhfreader288.py``: the exact response
vectors used in our tests, e.g. ``1500010301010c000000000000000000000313 6b b1a5``).
RSSI: the 288M is built on an R2000-class radio and reports the same RSSI byte (dBm = value - 129;
the library's desk vectors 0x6B/0x64 are -22/-29 dBm). Model differences are :data:`VARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.readers._common import MAX_BUFFER, crc16_mcrf4xx, epc_from_bytes
from edge.readers.base import ParserStats, Record, TagRead

__all__ = [
    "BAUDRATE", "CMD", "STATUS", "Variant", "VARIANTS", "Frame", "ChafonFramer", "ChafonParser",
    "build_command", "build_response", "cmd_inventory", "cmd_get_reader_info", "encode_inventory",
    "ChafonPoller",
]

BAUDRATE: Final = 57600

CMD: Final[dict[str, int]] = {
    "inventory": 0x01, "read_data": 0x02, "write_data": 0x03, "write_epc": 0x04, "kill_tag": 0x05,
    "lock": 0x06, "get_reader_info": 0x21, "set_region": 0x22, "set_address": 0x24, "set_scan_time": 0x25,
    "set_baud_rate": 0x28, "set_power": 0x2F, "set_work_mode": 0x35, "get_work_mode": 0x36,
    "set_antenna_mux": 0x3F, "single_tag_inventory": 0x0F, "real_time_report": 0xEE,
}
_KNOWN_CMDS: Final = frozenset(CMD.values())

#: Response status codes that matter for inventory.
STATUS: Final[dict[int, str]] = {
    0x00: "ok", 0x01: "inventory_done", 0x02: "inventory_timeout", 0x03: "more_frames",
    0x04: "memory_full", 0xF8: "antenna_error", 0xFB: "no_tag", 0xFE: "illegal_command", 0xFF: "parameter_error",
}
_MORE: Final = 0x03
_MIN_LEN: Final = 4      # Adr, Cmd, CRC(2) — a command without data


@dataclass(frozen=True)
class Variant:
    """What differs between Chafon reader models/firmware."""

    ports: int              # antenna ports (the response Ant mask has one bit per port)
    rssi_offset_db: int     # dBm = RSSI byte + offset


VARIANTS: Final[dict[str, Variant]] = {
    "288m": Variant(ports=4, rssi_offset_db=-129),
    "288m-8port": Variant(ports=8, rssi_offset_db=-129),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame; ``body`` is everything between Cmd and the CRC (Status + Data for responses)."""

    addr: int
    cmd: int
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return build_command(self.cmd, self.body, self.addr)


def build_command(cmd: int, data: bytes | bytearray = b"", addr: int = 0xFF) -> bytes:
    """Encode a frame (Len, Adr, Cmd, Data, CRC LSB first). Responses pass Status as data[0]."""
    if len(data) > 251:
        raise ValueError(f"Chafon frame data is at most 251 bytes, got {len(data)}")
    head = bytes((len(data) + 4, addr & 0xFF, cmd & 0xFF)) + bytes(data)
    return head + crc16_mcrf4xx(head).to_bytes(2, "little")


def build_response(cmd: int, status: int, data: bytes | bytearray = b"", addr: int = 0x00) -> bytes:
    """Device side: a response frame."""
    return build_command(cmd, bytes((status,)) + bytes(data), addr)


def cmd_get_reader_info(addr: int = 0xFF) -> bytes:
    return build_command(CMD["get_reader_info"], b"", addr)


def cmd_inventory(port: int = 1, *, q_value: int = 4, session: int = 0, target: int = 0,
                  scan_time_100ms: int = 10, addr: int = 0xFF) -> bytes:
    """Inventory on one antenna ``port`` (>= 1) without a mask."""
    if not 1 <= port <= 16:
        raise ValueError(f"antenna port must be 1..16, got {port}")
    if not 0 <= q_value <= 15:
        raise ValueError(f"q_value must be 0..15, got {q_value}")
    data = bytes((q_value, session & 0xFF, 0x01, 0x00, 0x00, 0x00, target & 1, 0x80 + port - 1,
                  scan_time_100ms & 0xFF))
    return build_command(CMD["inventory"], data, addr)


def encode_inventory(port: int, tags: list[tuple[str, float]], *, addr: int = 0x00, variant: str = "288m",
                     max_frame_len: int = 255) -> list[bytes]:
    """Device side: the response frames of one inventory round on ``port``.

    ``tags`` are (EPC hex, RSSI dBm). Frames carry as many tags as fit; all but the last have status
    0x03 (more frames follow); the last has 0x01 (done), possibly with no tags.
    """
    v = VARIANTS[variant]
    if not 1 <= port <= v.ports:
        raise ValueError(f"antenna port {port} out of range 1..{v.ports} for variant {variant}")
    mask = 1 << (port - 1)
    blocks = []
    for epc_hex, rssi_dbm in tags:
        epc = bytes.fromhex(epc_hex)
        raw = max(0, min(255, round(rssi_dbm) - v.rssi_offset_db))
        blocks.append(bytes((len(epc),)) + epc + bytes((raw,)))
    frames: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    room = max_frame_len - 7          # Len byte excluded; Adr Cmd Status Ant Num CRC(2)
    for b in blocks:
        if cur and size + len(b) > room:
            frames.append(build_response(0x01, _MORE, bytes((mask, len(cur))) + b"".join(cur), addr))
            cur, size = [], 0
        cur.append(b)
        size += len(b)
    frames.append(build_response(0x01, 0x01, bytes((mask, len(cur))) + b"".join(cur), addr))
    return frames


class ChafonFramer:
    """Stream framer for Chafon frames (either direction); resynchronises byte by byte on bad CRC."""

    def __init__(self, stats: ParserStats | None = None, max_buffer: int = MAX_BUFFER):
        self.stats = stats if stats is not None else ParserStats()
        self._buf = bytearray()
        self._max = max_buffer

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        st = self.stats
        pos, n = 0, len(buf)
        while pos < n:
            ln = buf[pos]
            # Plausibility before waiting for a whole frame: a sane Len and a known command byte.
            if ln < _MIN_LEN or (n - pos > 2 and buf[pos + 2] not in _KNOWN_CMDS):
                st.dropped_bytes += 1
                pos += 1
                continue
            end = pos + ln + 1
            if end > n:
                # Wait for the rest -- unless a complete CRC-valid frame already starts later in the
                # buffer, which means this Len byte was noise (no head byte to resync on otherwise).
                if self._valid_frame_after(buf, pos + 1, n):
                    st.dropped_bytes += 1
                    pos += 1
                    continue
                break
            if crc16_mcrf4xx(buf[pos:end - 2]) != (buf[end - 2] | buf[end - 1] << 8):
                st.checksum_errors += 1
                st.dropped_bytes += 1
                pos += 1
                continue
            out.append(Frame(buf[pos + 1], buf[pos + 2], bytes(buf[pos + 3:end - 2])))
            pos = end
        del buf[:pos]
        if len(buf) > self._max:
            st.dropped_bytes += len(buf) - self._max
            del buf[: len(buf) - self._max]
        st.frames += len(out)
        return out

    @staticmethod
    def _valid_frame_after(buf: bytearray, start: int, n: int) -> bool:
        for j in range(start, n - _MIN_LEN):
            ln = buf[j]
            end = j + ln + 1
            if ln >= _MIN_LEN and end <= n and buf[j + 2] in _KNOWN_CMDS and \
                    crc16_mcrf4xx(buf[j:end - 2]) == (buf[end - 2] | buf[end - 1] << 8):
                return True
        return False


class ChafonParser:
    """Host-side parser: reader bytes in, :class:`TagRead` records out (``ts_us`` None: no reader clock).

    ``rounds`` counts finished inventory rounds (any inventory status other than 0x03). Never raises.
    """

    def __init__(self, reader: str, variant: str = "288m", address: int | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown chafon-288m variant {variant!r}; known: {sorted(VARIANTS)}")
        self.reader = reader
        self.variant = VARIANTS[variant]
        self.address = address
        self.stats = ParserStats()
        self.rounds = 0
        self._framer = ChafonFramer(self.stats)

    def _count(self, key: str) -> None:
        self.stats.extra[key] = self.stats.extra.get(key, 0) + 1

    def feed(self, data: bytes, now_us: int) -> list[Record]:
        try:
            frames = self._framer.feed(data)
        except Exception as e:  # pragma: no cover - defensive
            self.stats.last_error = f"framer: {e!r}"
            return []
        out: list[Record] = []
        for f in frames:
            try:
                out.extend(self._decode(f))
            except Exception as e:  # pragma: no cover - defensive
                self.stats.malformed += 1
                self.stats.last_error = f"decode: {e!r}"
        self.stats.records += len(out)
        return out

    def _decode(self, f: Frame) -> list[TagRead]:
        if self.address is not None and f.addr != self.address:
            self._count("other_address")
            return []
        if f.cmd != CMD["inventory"]:
            self._count(f"reply_0x{f.cmd:02x}")
            return []
        body = f.body
        if not body:
            self.stats.malformed += 1
            self.stats.last_error = "inventory reply without status"
            return []
        status, d = body[0], body[1:]
        if status != _MORE:
            self.rounds += 1
            self._count("rounds")
        if status not in (0x01, 0x02, 0x03, 0x04):
            self._count(f"status_{STATUS.get(status, hex(status))}")
            if status == 0xF8:
                self.stats.last_error = "antenna error"
            return []
        if len(d) < 2:
            self.stats.malformed += 1
            self.stats.last_error = "inventory reply shorter than Ant+Num"
            return []
        mask, num = d[0], d[1]
        if mask == 0 or mask & (mask - 1) or mask.bit_length() > self.variant.ports:
            self.stats.malformed += 1
            self.stats.last_error = f"antenna mask 0x{mask:02x} is not one of {self.variant.ports} ports"
            return []
        port = mask.bit_length()
        reads: list[TagRead] = []
        i = 2
        off = self.variant.rssi_offset_db
        for _ in range(num):
            if i >= len(d):
                break
            ln = d[i] & 0x7F
            if ln < 2 or i + 1 + ln + 1 > len(d):
                break
            reads.append(TagRead(self.reader, port, epc_from_bytes(d[i + 1:i + 1 + ln]),
                                 float(d[i + 1 + ln] + off), None))
            i += ln + 2
        if len(reads) != num or i != len(d):
            self.stats.malformed += 1
            self.stats.last_error = f"inventory reply announces {num} tags, structure holds {len(reads)}"
            return []
        return reads


class ChafonPoller:
    """The host's inventory cycle: one inventory command per antenna (each ends with a final status)."""

    def __init__(self, antennas: list[int] | tuple[int, ...] = (1,), scan_time_100ms: int = 10,
                 q_value: int = 4, address: int = 0xFF):
        self.steps = [cmd_inventory(a, q_value=q_value, scan_time_100ms=scan_time_100ms, addr=address)
                      for a in antennas]
