"""Flat-file parsing (SPEC section 2), pure: bytes in, validated rows and rejects out. No database.

A file is read as a header line and then *blocks* of whole lines (about ``block_bytes`` each, cut
after a newline), so memory stays bounded whatever the file size. Every physical line is one row
(quoted fields may not span lines). Each block yields parsed rows plus :class:`Reject`s carrying the
line number, a reason *group* (for the summary, e.g. ``ts: timestamp has no UTC offset``), the
detailed reason (with the offending value, kept in the rejects table) and the raw line.

Reads are parsed column-wise with pyarrow compute (:func:`parse_reads_block`); rows the vectorised
fast path cannot vouch for fall back to the per-row validator (:func:`validate_read_row`), which is
the authority: the fast path only accepts a subset of what the per-row path accepts, with the same
result.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storeflow.contract import TAG_KINDS, TS_US_MAX, TS_US_MIN, BadInput, parse_amount, parse_epc, parse_rssi_dbm, parse_ts_us

__all__ = [
    "KINDS",
    "COLUMNS",
    "Reject",
    "RowReject",
    "Header",
    "Block",
    "read_header",
    "iter_blocks",
    "block_lines",
    "split_line",
    "validate_read_row",
    "validate_door_row",
    "validate_tag_row",
    "validate_member_row",
    "validate_purchase_row",
    "ReadsBlock",
    "parse_reads_block",
    "reason_group",
]

#: kind -> (required columns, optional columns)
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "reads": (("ts", "reader", "antenna", "epc", "rssi"), ("count",)),
    "doors": (("ts", "door", "entries", "exits"), ()),
    "tags": (("epc", "member", "kind"), ()),
    "members": (("member", "tier", "joined"), ()),
    "purchases": (("ts", "member", "zone", "amount", "receipt"), ()),
}
KINDS = tuple(COLUMNS)
#: A line longer than this is rejected without being held in memory whole (bytes).
MAX_LINE_BYTES = 1 << 20
#: Raw text kept per rejected line (characters).
MAX_RAW_CHARS = 4096
_SNIFF_BYTES = 1 << 16
_INT16_MAX = 32767
#: What bytes.strip() strips; the fast path trims exactly these so both paths agree on blank lines.
_ASCII_WS = " \t\n\r\x0b\x0c"
_BLANK = "^[ \\t\\n\\r\\x0b\\x0c]*$"


@dataclass(frozen=True)
class Reject:
    """One rejected line: where, why (summary group and detail) and what it said."""

    line: int
    group: str
    detail: str
    raw: str


class RowReject(Exception):
    """Raised by the row validators: ``group`` for the summary, ``detail`` names the value."""

    def __init__(self, group: str, detail: str | None = None) -> None:
        super().__init__(detail or group)
        self.group = group
        self.detail = detail or group


_QUOTED_RE = re.compile(r"""\s*(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def reason_group(column: str, err: BadInput) -> RowReject:
    """A contract parser's error as a row reject: the group drops the quoted value, the detail keeps it."""
    msg = str(err)
    return RowReject(f"{column}: {_QUOTED_RE.sub('', msg)}", f"{column}: {msg}")


# --- header and blocks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    """The header of a flat file: column name -> position, and how many fields a row has."""

    names: tuple[str, ...]
    index: dict[str, int]

    @property
    def width(self) -> int:
        return len(self.names)


def read_header(f: IO[bytes], kind: str, name: str) -> Header:
    """Read and check the header line of an open binary file; :class:`BadInput` when unusable.

    Column order is free, names are matched case-insensitively, extra columns are ignored. The file
    must be UTF-8 (an optional UTF-8 BOM is skipped): the first 64 KiB are checked up front so a file in
    another encoding fails as a whole instead of as a million rejected rows.
    """
    start = f.tell()
    sniff = f.read(_SNIFF_BYTES)
    f.seek(start)
    if sniff.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadInput(f"{name}: not UTF-8 (it starts with a UTF-16 byte order mark)")
    try:
        # a multi-byte character may be cut at the end of the sniffed bytes
        sniff.decode("utf-8") if len(sniff) < _SNIFF_BYTES else sniff[: sniff.rfind(b"\n") + 1 or None].decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{name}: not UTF-8 (invalid byte 0x{sniff[e.start]:02x} at offset {e.start})") from None
    raw = f.readline(MAX_LINE_BYTES)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8").rstrip("\r\n")
    if not text.strip():
        raise BadInput(f"{name}: empty header line (expected columns {', '.join(COLUMNS[kind][0])})")
    try:
        names = tuple(c.strip().lower() for c in next(csv.reader([text])))
    except csv.Error as e:
        raise BadInput(f"{name}: header line is not parseable as CSV ({e})") from None
    if any(not n for n in names):
        raise BadInput(f"{name}: header has an empty column name (column {names.index('') + 1})")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInput(f"{name}: header repeats column(s) {', '.join(dupes)}")
    required, _ = COLUMNS[kind]
    missing = [c for c in required if c not in names]
    if missing:
        raise BadInput(f"{name}: missing column(s) {', '.join(missing)} for a {kind} file "
                       f"(header has {', '.join(names)})")
    return Header(names, {n: i for i, n in enumerate(names)})


@dataclass(frozen=True)
class Block:
    """Whole lines of a file: ``data`` (bytes ending with a newline, except maybe the file's last line)
    whose first line is line number ``first_line`` (1-based, the header is line 1). ``oversized`` holds
    lines dropped for being longer than MAX_LINE_BYTES: (line number, first bytes)."""

    index: int
    first_line: int
    data: bytes
    n_bytes: int
    oversized: tuple[tuple[int, bytes], ...] = ()


def iter_blocks(f: IO[bytes], first_line: int, block_bytes: int) -> Iterator[Block]:
    """Cut the rest of an open binary file into blocks of whole lines of about ``block_bytes``.

    The cut points depend only on the file content and ``block_bytes``, so block numbers are stable
    across runs (the import ledger relies on it).
    """
    carry = b""
    line = first_line
    index = 0
    oversized: list[tuple[int, bytes]] = []
    skipping = False  # inside an oversized line, dropping bytes until its newline
    consumed = 0
    while True:
        data = f.read(block_bytes)
        consumed += len(data)
        if not data:
            if carry or oversized:
                yield Block(index, line, carry, consumed, tuple(oversized))
            return
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            data = data[nl + 1:]
            skipping = False
            line += 1
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > MAX_LINE_BYTES:
                oversized.append((line + 0, buf[:MAX_RAW_CHARS]))
                carry, skipping = b"", True
            else:
                carry = buf
            continue
        body, carry = buf[: cut + 1], buf[cut + 1:]
        if len(carry) > MAX_LINE_BYTES:
            # the tail after the last newline is already too long: drop it like an oversized line
            n = body.count(b"\n")
            oversized.append((line + n, carry[:MAX_RAW_CHARS]))
            carry, skipping = b"", True
            yield Block(index, line, body, consumed, tuple(oversized))
            line += n + 1
        else:
            yield Block(index, line, body, consumed, tuple(oversized))
            line += body.count(b"\n")
        consumed = 0
        oversized = []
        index += 1


def _raw(text: str) -> str:
    """Text fit for the rejects table: no NUL (PostgreSQL text cannot hold it), capped length."""
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "…"


def block_lines(block: Block) -> Iterator[tuple[int, str | None, str]]:
    """The non-blank lines of a block as (line number, text or None when not UTF-8, raw text)."""
    for line_no, raw in block.oversized:
        yield line_no, None, _raw(raw.decode("utf-8", "replace")) + " [line longer than 1 MiB]"
    for i, b in enumerate(block.data.split(b"\n")):
        if not b.strip():
            continue
        b = b.rstrip(b"\r")
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError:
            yield block.first_line + i, None, _raw(b.decode("utf-8", "replace"))
            continue
        yield block.first_line + i, text, text


def split_line(text: str, header: Header) -> dict[str, str]:
    """One CSV line as {column: stripped value}; :class:`RowReject` when the field count is wrong."""
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as e:
        raise RowReject("not parseable as CSV", f"not parseable as CSV ({e})") from None
    if len(fields) != header.width:
        raise RowReject(f"expected {header.width} fields, found {len(fields)}")
    return {name: fields[i].strip() for name, i in header.index.items()}


# --- per-row validators: dict of column -> text in, typed tuple out (or RowReject) ----------------------

def _ts(value: str) -> int:
    try:
        return parse_ts_us(value)
    except BadInput as e:
        raise reason_group("ts", e) from None


def _epc(value: str) -> str:
    try:
        return parse_epc(value)
    except BadInput as e:
        raise reason_group("epc", e) from None


def _count(column: str, value: str, lo: int, hi: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,12}", value):
        raise RowReject(f"{column}: not an integer", f"{column}: {value[:40]!r} is not an integer")
    n = int(value)
    if not lo <= n <= hi:
        raise RowReject(f"{column}: outside {lo}..{hi}", f"{column}: {n} is outside {lo}..{hi}")
    return n


def validate_read_row(row: Mapping[str, str], antennas: Mapping[tuple[str, int], int]
                      ) -> tuple[int, int, str, int, int]:
    """A tag read row -> (ts_us, antenna_id, EPC upper-case, rssi centi-dBm, count)."""
    ts_us = _ts(row["ts"])
    reader = row["reader"]
    if not reader:
        raise RowReject("reader: empty")
    port = row["antenna"]
    if not re.fullmatch(r"\d{1,5}", port) or int(port) < 1:
        raise RowReject("antenna: not a port number >= 1", f"antenna: {port[:40]!r} is not a port number >= 1")
    antenna_id = antennas.get((reader, int(port)))
    if antenna_id is None:
        if not any(r == reader for r, _ in antennas):
            raise RowReject(f"unknown reader {reader[:40]!r}", f"reader {reader[:80]!r} is not in the store's layout")
        raise RowReject(f"unknown antenna {reader[:40]}:{int(port)}",
                        f"antenna port {int(port)} of reader {reader[:80]!r} is not in the store's layout")
    epc = _epc(row["epc"])
    try:
        rssi = parse_rssi_dbm(row["rssi"])
    except BadInput as e:
        raise reason_group("rssi", e) from None
    count_text = row.get("count", "")
    count = 1 if not count_text else _count("count", count_text, 1, _INT16_MAX)
    return ts_us, antenna_id, epc, int(round(rssi * 100)), count


def validate_door_row(row: Mapping[str, str], doors: Mapping[str, int]) -> tuple[int, int, int, int]:
    """A door count row -> (ts_us, door_id, entries, exits)."""
    ts_us = _ts(row["ts"])
    door_id = doors.get(row["door"])
    if door_id is None:
        raise RowReject(f"unknown door {row['door'][:40]!r}",
                        f"door {row['door'][:80]!r} is not in the store's layout")
    entries = _count("entries", row["entries"], 0, 2**31 - 1)
    exits = _count("exits", row["exits"], 0, 2**31 - 1)
    return ts_us, door_id, entries, exits


def validate_tag_row(row: Mapping[str, str]) -> tuple[str, str | None, str]:
    """A tags row -> (EPC, member or None, kind)."""
    epc = _epc(row["epc"])
    kind = row["kind"].lower()
    if kind not in TAG_KINDS:
        raise RowReject("kind: not member, staff or asset", f"kind: {row['kind'][:40]!r} is not member, staff or asset")
    member = row["member"] or None
    if kind == "member" and member is None:
        raise RowReject("member: empty for a member tag")
    if kind != "member" and member is not None:
        raise RowReject(f"member: must be empty for a {kind} tag", f"member: {member[:40]!r} given for a {kind} tag")
    return epc, member, kind


def validate_member_row(row: Mapping[str, str]) -> tuple[str, str, date | None]:
    """A members row -> (member, tier, joined date or None)."""
    member = row["member"]
    if not member:
        raise RowReject("member: empty")
    tier = row["tier"]
    if not tier:
        raise RowReject("tier: empty")
    joined_text = row["joined"]
    joined = None
    if joined_text:
        try:
            joined = date.fromisoformat(joined_text)
        except ValueError:
            raise RowReject("joined: not a date (YYYY-MM-DD)", f"joined: {joined_text[:40]!r} is not a date (YYYY-MM-DD)") from None
    return member, tier, joined


def validate_purchase_row(row: Mapping[str, str], counters: Mapping[str, int]
                          ) -> tuple[int, str | None, int, Decimal, str]:
    """A purchase row -> (ts_us, member or None, zone_id, amount, receipt); zone must be a counter."""
    ts_us = _ts(row["ts"])
    zone_id = counters.get(row["zone"])
    if zone_id is None:
        raise RowReject(f"unknown counter {row['zone'][:40]!r}",
                        f"zone {row['zone'][:80]!r} is not a counter zone of the store")
    try:
        amount = parse_amount(row["amount"])
    except BadInput as e:
        raise reason_group("amount", e) from None
    if amount != amount.quantize(Decimal("0.01")):
        raise RowReject("amount: more than 2 decimals", f"amount: {row['amount'][:40]!r} has more than 2 decimals")
    receipt = row["receipt"]
    if not receipt:
        raise RowReject("receipt: empty")
    return ts_us, row["member"] or None, zone_id, amount, receipt


# --- vectorised reads -----------------------------------------------------------------------------------

@dataclass
class ReadsBlock:
    """The valid reads of a block as columns, plus its rejects. ``epc_index`` points into ``epcs``."""

    ts_us: np.ndarray          # int64, epoch µs
    antenna_id: np.ndarray     # int32
    epc_index: np.ndarray      # int32 into epcs
    epcs: list[str]            # distinct upper-case EPCs of this block
    rssi_cdbm: np.ndarray      # int16, centi-dBm
    count: np.ndarray          # int16
    rows: int                  # non-blank lines in the block
    rejects: list[Reject] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.ts_us.shape[0])


_INT_TS = r"^-?\d{1,18}$"  # pyarrow rejects a leading "+": such values take the row path
# A subset of what datetime.fromisoformat accepts and pyarrow parses identically.
_ISO_TS = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
           r"(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)$")
_EPC_VEC = r"^([0-9A-Fa-f]{2}){4,32}$"
_PORT_VEC = r"^\d{1,5}$"
_RSSI_VEC = r"^[+-]?(\d{1,6}(\.\d{0,6})?|\.\d{1,6})$"
_COUNT_VEC = r"^\d{1,5}$"


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ts_column(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(epoch µs, ok mask) for the rows the vectorised path can parse; others are left to the row path."""
    n = len(col)
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    is_int = _np_bool(pc.match_substring_regex(col, _INT_TS))
    if is_int.any():
        idx = np.flatnonzero(is_int)
        out[idx] = pc.cast(pc.take(col, pa.array(idx)), pa.int64()).to_numpy()
        ok[idx] = True
    is_iso = _np_bool(pc.match_substring_regex(col, _ISO_TS))
    if is_iso.any():
        idx = np.flatnonzero(is_iso)
        try:
            ts = pc.cast(pc.take(col, pa.array(idx)), pa.timestamp("us", "UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # e.g. 31 February somewhere in the block: all of these go to the row path
        else:
            out[idx] = ts.cast(pa.int64()).to_numpy()
            ok[idx] = True
    ok &= (out >= TS_US_MIN) & (out < TS_US_MAX)
    return out, ok


def parse_reads_block(block: Block, header: Header, antennas: Mapping[tuple[str, int], int],
                      *, vectorised: bool = True) -> ReadsBlock:
    """Parse one block of a reads file. ``vectorised=False`` validates every row with the row path."""
    fast = _parse_reads_fast(block, header, antennas) if vectorised else None
    if fast is not None:
        return fast
    return _parse_reads_rows(list(block_lines(block)), header, antennas)


def _parse_reads_rows(lines: Sequence[tuple[int, str | None, str]], header: Header,
                      antennas: Mapping[tuple[str, int], int], rows: int | None = None) -> ReadsBlock:
    ts: list[int] = []
    ant: list[int] = []
    epc_idx: list[int] = []
    rssi: list[int] = []
    cnt: list[int] = []
    epcs: dict[str, int] = {}
    rejects: list[Reject] = []
    for line_no, text, raw in lines:
        if text is None:
            rejects.append(_not_utf8(line_no, raw))
            continue
        try:
            t, a, e, r, c = validate_read_row(split_line(text, header), antennas)
        except RowReject as rr:
            rejects.append(Reject(line_no, rr.group, rr.detail, _raw(raw)))
            continue
        ts.append(t)
        ant.append(a)
        epc_idx.append(epcs.setdefault(e, len(epcs)))
        rssi.append(r)
        cnt.append(c)
    return ReadsBlock(np.array(ts, dtype=np.int64), np.array(ant, dtype=np.int32),
                      np.array(epc_idx, dtype=np.int32), list(epcs), np.array(rssi, dtype=np.int16),
                      np.array(cnt, dtype=np.int16), len(lines) if rows is None else rows, rejects)


def _not_utf8(line_no: int, raw: str) -> Reject:
    if raw.endswith("[line longer than 1 MiB]"):
        return Reject(line_no, "line longer than 1 MiB", "line longer than 1 MiB", raw)
    return Reject(line_no, "not UTF-8", "line is not valid UTF-8", raw)


def _parse_reads_fast(block: Block, header: Header, antennas: Mapping[tuple[str, int], int]) -> ReadsBlock | None:
    try:  # the cast validates UTF-8 without a Python str copy of the block
        text = pa.array([block.data], pa.large_binary()).cast(pa.large_string())
    except pa.ArrowInvalid:
        return None  # rare: let the row path sort out which lines are broken
    lines = pc.split_pattern(text, "\n").flatten()
    del text
    if b"\r" in block.data:
        lines = pc.utf8_rtrim(lines, characters="\r")
    line_no = np.arange(block.first_line, block.first_line + len(lines), dtype=np.int64)
    keep = ~_np_bool(pc.match_substring_regex(lines, _BLANK))
    if not keep[:-1].all():
        idx = np.flatnonzero(keep)
        lines, line_no = pc.take(lines, pa.array(idx)), line_no[idx]
    elif len(keep) and not keep[-1]:  # the usual case: only the "line" after the final newline is blank
        lines, line_no = lines.slice(0, len(lines) - 1), line_no[:-1]
    n_rows = len(lines) + len(block.oversized)
    fields = pc.split_pattern(lines, ",")
    # lines csv.reader could split differently (quotes, a stray CR) take the row path
    simple = (_np_bool(pc.equal(pc.list_value_length(fields), header.width))
              & ~_np_bool(pc.match_substring_regex(lines, '["\r]')))
    sidx = np.flatnonzero(simple)
    fields_s = fields if len(sidx) == len(lines) else pc.take(fields, pa.array(sidx))
    cols = {name: pc.utf8_trim(pc.list_element(fields_s, header.index[name]), characters=_ASCII_WS)
            for name in ("ts", "reader", "antenna", "epc", "rssi", "count") if name in header.index}
    del fields, fields_s

    ts_us, ok = _ts_column(cols["ts"])
    # antenna: (reader, port) -> antenna_id through a small lookup table
    port_ok = _np_bool(pc.match_substring_regex(cols["antenna"], _PORT_VEC))
    port = np.zeros(len(sidx), dtype=np.int64)
    if port_ok.any():
        port = np.where(port_ok, pc.cast(pc.if_else(pa.array(port_ok), cols["antenna"], "0"), pa.int64()).to_numpy(), 0)
    reader_codes = pc.dictionary_encode(cols["reader"]).combine_chunks() if isinstance(cols["reader"], pa.ChunkedArray) \
        else pc.dictionary_encode(cols["reader"])
    readers = reader_codes.dictionary.to_pylist()
    max_port = max((p for _, p in antennas), default=0)
    table = np.zeros((len(readers), max_port + 2), dtype=np.int32)
    reader_pos = {r: i for i, r in enumerate(readers)}
    for (r, p), aid in antennas.items():
        if r in reader_pos:
            table[reader_pos[r], p] = aid
    ridx = reader_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    antenna_id = table[ridx, np.clip(port, 0, max_port + 1)]
    ok &= port_ok & (antenna_id > 0)
    # EPC
    epc_ok = _np_bool(pc.match_substring_regex(cols["epc"], _EPC_VEC))
    ok &= epc_ok
    # RSSI
    rssi_ok = _np_bool(pc.match_substring_regex(cols["rssi"], _RSSI_VEC))
    rssi = np.zeros(len(sidx), dtype=np.float64)
    if rssi_ok.any():
        rssi = np.where(rssi_ok, pc.cast(pc.if_else(pa.array(rssi_ok), cols["rssi"], "0"), pa.float64()).to_numpy(), 0.0)
    rssi_ok &= (rssi >= -150.0) & (rssi <= 20.0)
    ok &= rssi_ok
    # count (optional column; empty -> 1)
    if "count" in cols:
        c = cols["count"]
        empty = _np_bool(pc.equal(c, ""))
        c_ok = _np_bool(pc.match_substring_regex(c, _COUNT_VEC))
        count = np.ones(len(sidx), dtype=np.int64)
        if c_ok.any():
            count = np.where(c_ok, pc.cast(pc.if_else(pa.array(c_ok), c, "1"), pa.int64()).to_numpy(), 1)
        ok &= (empty | (c_ok & (count >= 1) & (count <= _INT16_MAX)))
    else:
        count = np.ones(len(sidx), dtype=np.int64)

    good = np.flatnonzero(ok)
    epc_up = pc.utf8_upper(pc.take(cols["epc"], pa.array(good)))
    epc_codes = pc.dictionary_encode(epc_up)
    if isinstance(epc_codes, pa.ChunkedArray):
        epc_codes = epc_codes.combine_chunks()
    fast = ReadsBlock(ts_us[good], antenna_id[good].astype(np.int32),
                      epc_codes.indices.to_numpy(zero_copy_only=False).astype(np.int32),
                      epc_codes.dictionary.to_pylist(), np.rint(rssi[good] * 100).astype(np.int16),
                      count[good].astype(np.int16), n_rows)
    # everything else goes through the row path (the authority on what is valid and why not)
    slow_pos = np.ones(len(lines), dtype=bool)
    slow_pos[sidx[good]] = False
    slow_idx = np.flatnonzero(slow_pos)
    if len(slow_idx) == 0 and not block.oversized:
        return fast
    slow_text = pc.take(lines, pa.array(slow_idx)).to_pylist()
    slow_lines: list[tuple[int, str | None, str]] = [
        (ln, None, _raw(raw.decode("utf-8", "replace")) + " [line longer than 1 MiB]") for ln, raw in block.oversized]
    slow_lines += [(int(line_no[i]), t, t) for i, t in zip(slow_idx, slow_text)]
    slow = _parse_reads_rows(slow_lines, header, antennas, rows=0)
    return _merge(fast, slow)


def _merge(a: ReadsBlock, b: ReadsBlock) -> ReadsBlock:
    """Concatenate two parsed parts of one block (their EPC tables merged)."""
    epcs = dict(zip(a.epcs, range(len(a.epcs))))
    remap = np.array([epcs.setdefault(e, len(epcs)) for e in b.epcs], dtype=np.int32)
    b_idx = remap[b.epc_index] if len(b.epc_index) else b.epc_index
    return ReadsBlock(np.concatenate([a.ts_us, b.ts_us]), np.concatenate([a.antenna_id, b.antenna_id]),
                      np.concatenate([a.epc_index, b_idx]).astype(np.int32), list(epcs),
                      np.concatenate([a.rssi_cdbm, b.rssi_cdbm]), np.concatenate([a.count, b.count]),
                      a.rows + b.rows, sorted(a.rejects + b.rejects, key=lambda r: r.line))


def parse_rows(block: Block, header: Header, validate: Any) -> tuple[list[tuple[int, tuple]], list[Reject], int]:
    """Row path for the small kinds: ([(line, values)], rejects, non-blank rows) of one block."""
    good: list[tuple[int, tuple]] = []
    rejects: list[Reject] = []
    rows = 0
    for line_no, text, raw in block_lines(block):
        rows += 1
        if text is None:
            rejects.append(_not_utf8(line_no, raw))
            continue
        try:
            good.append((line_no, validate(split_line(text, header))))
        except RowReject as rr:
            rejects.append(Reject(line_no, rr.group, rr.detail, _raw(raw)))
    return good, rejects, rows
