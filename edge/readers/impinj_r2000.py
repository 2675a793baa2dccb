"""Impinj Indy R2000 module "CMD" serial protocol: pure codec, stream parser and host command builders.

Frame (both directions)::

    Head 0xA0 | Len | Address | Cmd | Data[Len-3] | Check

``Len`` counts the bytes after itself (Address .. Check); ``Check`` is the two's complement of the sum
of all preceding bytes, so a valid frame sums to 0 mod 256. Default line: 115200 baud, 8N1.

Real-time inventory (``cmd_real_time_inventory`` 0x89; 0x8B session/target inventory has the same
replies) answers, per tag read::

    A0 | Len | Addr | 89 | FreqAnt | PC(2) | EPC(N) | RSSI | Check

``FreqAnt``: bits 7..2 frequency-point index, bits 1..0 antenna id (0 = antenna 1). EPC length comes
from the PC word (bits 15..11 = EPC length in 16-bit words). ``RSSI``: dBm = value - 129 (the manual's
RSSI table maps 98 to -31 dBm ... 31 to -98 dBm). The round ends with::

    A0 0A Addr 89 | AntID | ReadRate(2, BE) | TotalRead(4, BE) | Check

and a failure answers ``A0 04 Addr 89 ErrorCode Check``.

Sources: "UHF RFID Reader Serial Interface Protocol V3.7" (command table, frame layout, error codes,
real-time inventory reply), the ``hex-in/pyImpinj`` driver (``pyImpinj/__init__.py``: FreqAnt split,
``rssi - 129``, PC-word EPC length, the 0x0A end-of-round and 0x04 error layouts; ``enums.py``: command
and error codes). Byte vectors from the manual: reset ``A0 03 01 70 EC``, real-time inventory of
address 1 with repeat 1 ``A0 04 01 89 01 D1``.

Model differences are the :data:`VARIANTS` table: 8-port firmware reports antennas 5..8 by setting
bit 7 of the RSSI byte (antenna group), 4-port firmware never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.readers._common import MAX_BUFFER, epc_from_bytes, sum_check
from edge.readers.base import ParserStats, Record, TagRead

__all__ = [
    "HEAD", "BAUDRATE", "CMD", "ERRORS", "Variant", "VARIANTS", "Frame", "R2000Framer", "R2000Parser",
    "build_frame", "cmd_reset", "cmd_get_firmware_version", "cmd_set_work_antenna", "cmd_get_work_antenna",
    "cmd_real_time_inventory", "encode_tag", "encode_round_end", "encode_status", "rssi_dbm_to_raw",
    "R2000Poller",
]

HEAD: Final = 0xA0
BAUDRATE: Final = 115200

#: Command codes (name -> code), from the protocol manual's comprehensive command table.
CMD: Final[dict[str, int]] = {
    "reset": 0x70, "set_uart_baudrate": 0x71, "get_firmware_version": 0x72, "set_reader_address": 0x73,
    "set_work_antenna": 0x74, "get_work_antenna": 0x75, "set_output_power": 0x76, "get_output_power": 0x77,
    "set_frequency_region": 0x78, "get_frequency_region": 0x79, "set_beeper_mode": 0x7A,
    "get_reader_temperature": 0x7B, "inventory": 0x80, "read": 0x81, "write": 0x82, "lock": 0x83,
    "kill": 0x84, "real_time_inventory": 0x89, "fast_switch_ant_inventory": 0x8A,
    "customized_session_target_inventory": 0x8B,
}
_INVENTORY_CMDS: Final = frozenset({0x89, 0x8B})

#: Error / status codes carried in one-byte replies.
ERRORS: Final[dict[int, str]] = {
    0x10: "success", 0x11: "fail", 0x20: "mcu_reset_error", 0x21: "cw_on_error", 0x22: "antenna_missing_error",
    0x23: "write_flash_error", 0x24: "read_flash_error", 0x25: "set_output_power_error",
    0x31: "tag_inventory_error", 0x32: "tag_read_error", 0x33: "tag_write_error", 0x34: "tag_lock_error",
    0x35: "tag_kill_error", 0x36: "no_tag_error", 0x37: "inventory_ok_but_access_fail",
    0x38: "buffer_is_empty_error", 0x41: "parameter_invalid", 0x47: "parameter_invalid_antenna_id_out_of_range",
}

RSSI_OFFSET_DB: Final = 129
#: Largest Len byte the framer accepts: a 62-byte EPC tag reply is Len 0x45; larger is taken as noise so
#: that a stray 0xA0 does not make the parser wait for hundreds of bytes.
MAX_LEN: Final = 0x60
_KNOWN_CMDS: Final = frozenset(CMD.values())


@dataclass(frozen=True)
class Variant:
    """What differs between R2000 reader models/firmware."""

    ports: int                        # antenna ports the model has
    antenna_group_in_rssi_bit7: bool  # 8-port firmware: RSSI bit 7 set = antennas 5..8


VARIANTS: Final[dict[str, Variant]] = {
    "4port": Variant(ports=4, antenna_group_in_rssi_bit7=False),
    "8port": Variant(ports=8, antenna_group_in_rssi_bit7=True),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One R2000 frame (either direction)."""

    addr: int
    cmd: int
    data: bytes = b""

    def to_bytes(self) -> bytes:
        return build_frame(self.cmd, self.data, self.addr)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Frame:
        """Decode exactly one frame; ValueError naming the problem otherwise."""
        if len(raw) < 5 or raw[0] != HEAD:
            raise ValueError("not an R2000 frame (needs head 0xA0 and at least 5 bytes)")
        if raw[1] + 2 != len(raw):
            raise ValueError(f"Len byte says {raw[1] + 2} bytes, got {len(raw)}")
        if sum(raw) & 0xFF:
            raise ValueError("checksum mismatch")
        return cls(raw[2], raw[3], bytes(raw[4:-1]))


def build_frame(cmd: int, data: bytes | bytearray = b"", addr: int = 0xFF) -> bytes:
    """Encode a frame: head, Len, address, command, data and the two's-complement check byte."""
    if len(data) > 252:
        raise ValueError(f"R2000 frame data is at most 252 bytes, got {len(data)}")
    body = bytes((HEAD, len(data) + 3, addr & 0xFF, cmd & 0xFF)) + bytes(data)
    return body + bytes((sum_check(body),))


def cmd_reset(addr: int = 0xFF) -> bytes:
    return build_frame(CMD["reset"], b"", addr)


def cmd_get_firmware_version(addr: int = 0xFF) -> bytes:
    return build_frame(CMD["get_firmware_version"], b"", addr)


def cmd_set_work_antenna(port: int, addr: int = 0xFF) -> bytes:
    """Select the antenna for the next inventory (``port`` >= 1; the wire carries port - 1)."""
    if not 1 <= port <= 8:
        raise ValueError(f"antenna port must be 1..8, got {port}")
    return build_frame(CMD["set_work_antenna"], bytes((port - 1,)), addr)


def cmd_get_work_antenna(addr: int = 0xFF) -> bytes:
    return build_frame(CMD["get_work_antenna"], b"", addr)


def cmd_real_time_inventory(repeat: int = 1, addr: int = 0xFF) -> bytes:
    """Real-time inventory on the work antenna, ``repeat`` rounds (1..255)."""
    if not 1 <= repeat <= 255:
        raise ValueError(f"repeat must be 1..255, got {repeat}")
    return build_frame(CMD["real_time_inventory"], bytes((repeat,)), addr)


def rssi_dbm_to_raw(rssi_dbm: float) -> int:
    """dBm -> the RSSI byte (7 bits, so that bit 7 stays free for the 8-port antenna group)."""
    return max(0, min(0x7F, round(rssi_dbm) + RSSI_OFFSET_DB))


def encode_tag(port: int, epc_hex: str, rssi_dbm: float, *, addr: int = 0xFF, freq_index: int = 0,
               variant: str = "4port") -> bytes:
    """Device side: one real-time inventory tag frame (antenna ``port`` >= 1)."""
    v = VARIANTS[variant]
    if not 1 <= port <= v.ports:
        raise ValueError(f"antenna port {port} out of range 1..{v.ports} for variant {variant}")
    epc = bytes.fromhex(epc_hex)
    if len(epc) % 2 or not 2 <= len(epc) <= 62:
        raise ValueError("EPC must be a whole number of 16-bit words (2..62 bytes)")
    pc = (len(epc) // 2) << 11 | 0x0000
    rssi = rssi_dbm_to_raw(rssi_dbm)
    group, ant = divmod(port - 1, 4)
    if group:
        rssi |= 0x80
    data = bytes(((freq_index & 0x3F) << 2 | ant, pc >> 8, pc & 0xFF)) + epc + bytes((rssi,))
    return build_frame(CMD["real_time_inventory"], data, addr)


def encode_round_end(port: int, read_rate: int, total_read: int, *, addr: int = 0xFF,
                     cmd: int = 0x89) -> bytes:
    """Device side: end-of-round frame (antenna id, reads/s, total reads)."""
    data = bytes(((port - 1) & 0xFF,)) + (read_rate & 0xFFFF).to_bytes(2, "big") + \
        (total_read & 0xFFFFFFFF).to_bytes(4, "big")
    return build_frame(cmd, data, addr)


def encode_status(cmd: int, code: int = 0x10, *, addr: int = 0xFF) -> bytes:
    """Device side: a one-byte status/error reply to ``cmd`` (0x10 = success)."""
    return build_frame(cmd, bytes((code,)), addr)


class R2000Framer:
    """Stream framer: bytes in, :class:`Frame` out; resynchronises on the 0xA0 head after bad data."""

    def __init__(self, stats: ParserStats | None = None, max_buffer: int = MAX_BUFFER):
        self.stats = stats if stats is not None else ParserStats()
        self._buf = bytearray()
        self._max = max_buffer

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos, n = 0, len(buf)
        st = self.stats
        while pos < n:
            i = buf.find(HEAD, pos)
            if i < 0:
                st.dropped_bytes += n - pos
                pos = n
                break
            st.dropped_bytes += i - pos
            pos = i
            if n - i < 2:
                break
            ln = buf[i + 1]
            if ln < 3 or ln > MAX_LEN or (n - i > 3 and buf[i + 3] not in _KNOWN_CMDS):
                st.dropped_bytes += 1
                pos = i + 1
                continue
            end = i + ln + 2
            if end > n:
                break
            if sum(buf[i:end]) & 0xFF:
                st.checksum_errors += 1
                st.dropped_bytes += 1
                pos = i + 1
                continue
            out.append(Frame(buf[i + 2], buf[i + 3], bytes(buf[i + 4:end - 1])))
            pos = end
        del buf[:pos]
        if len(buf) > self._max:
            st.dropped_bytes += len(buf) - self._max
            del buf[: len(buf) - self._max]
        st.frames += len(out)
        return out


class R2000Parser:
    """Host-side parser: reader bytes in, :class:`TagRead` records out (``ts_us`` None: no reader clock).

    ``rounds`` counts finished inventory rounds (end-of-round or error replies), which the polling
    driver waits for before sending the next command. Never raises on bad input.
    """

    def __init__(self, reader: str, variant: str = "4port", address: int | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown impinj-r2000 variant {variant!r}; known: {sorted(VARIANTS)}")
        self.reader = reader
        self.variant = VARIANTS[variant]
        self.address = address
        self.stats = ParserStats()
        self.rounds = 0
        self.last_round: tuple[int, int, int] | None = None   # (antenna port, reads/s, total reads)
        self._framer = R2000Framer(self.stats)

    def feed(self, data: bytes, now_us: int) -> list[Record]:
        try:
            frames = self._framer.feed(data)
        except Exception as e:  # pragma: no cover - defensive: the framer is not supposed to raise
            self.stats.last_error = f"framer: {e!r}"
            return []
        out: list[Record] = []
        for f in frames:
            try:
                rec = self._decode(f)
            except Exception as e:  # pragma: no cover - defensive
                self.stats.malformed += 1
                self.stats.last_error = f"decode: {e!r}"
                continue
            if rec is not None:
                out.append(rec)
        self.stats.records += len(out)
        return out

    def _count(self, key: str) -> None:
        self.stats.extra[key] = self.stats.extra.get(key, 0) + 1

    def _decode(self, f: Frame) -> TagRead | None:
        if self.address is not None and f.addr != self.address:
            self._count("other_address")
            return None
        d = f.data
        if f.cmd not in _INVENTORY_CMDS:
            self._count(f"reply_0x{f.cmd:02x}")
            return None
        if len(d) == 1:
            self.rounds += 1
            self._count("inventory_errors")
            self.stats.last_error = f"reader error 0x{d[0]:02x} {ERRORS.get(d[0], 'unknown')}"
            return None
        if len(d) == 7:
            self.rounds += 1
            self._count("rounds")
            self.last_round = (d[0] + 1, int.from_bytes(d[1:3], "big"), int.from_bytes(d[3:7], "big"))
            return None
        if len(d) < 6:
            self.stats.malformed += 1
            self.stats.last_error = f"inventory reply of {len(d)} data bytes"
            return None
        pc = d[1] << 8 | d[2]
        epc_len = (pc >> 11) * 2
        if epc_len < 2 or len(d) != 4 + epc_len:
            self.stats.malformed += 1
            self.stats.last_error = f"PC word says {epc_len} EPC bytes, frame carries {len(d) - 4}"
            return None
        rssi = d[-1]
        port = (d[0] & 0x03) + 1
        if self.variant.antenna_group_in_rssi_bit7:
            if rssi & 0x80:
                port += 4
            rssi &= 0x7F
        return TagRead(self.reader, port, epc_from_bytes(d[3:3 + epc_len]), float(rssi - RSSI_OFFSET_DB), None)


class R2000Poller:
    """The host's inventory cycle: per antenna, select it and run a real-time inventory round."""

    def __init__(self, antennas: list[int] | tuple[int, ...] = (1, 2, 3, 4), repeat: int = 1,
                 address: int = 0xFF):
        self.steps = [cmd_set_work_antenna(a, address) + cmd_real_time_inventory(repeat, address)
                      for a in antennas]
