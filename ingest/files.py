"""File imports (SPEC sections 2 and 4): layout, reads, doors, tags, members, purchases.

Each file is read in blocks of whole lines (:mod:`ingest.files_parse`); a block commits in one
transaction together with its rejects and its ``import_ledger`` row, keyed by (kind, store, file
sha256, block number). Re-importing a file therefore doubles nothing, and an interrupted import
resumes at the first block that did not commit. Reads go to ``tag_reads`` through a binary COPY
whose rows are encoded with numpy, so a 10 M-row file never passes through per-row Python code.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import psycopg
from psycopg.pq import TransactionStatus

from ingest.files_parse import (
    COLUMNS,
    KINDS,
    Block,
    Header,
    ReadsBlock,
    Reject,
    iter_blocks,
    parse_reads_block,
    parse_rows,
    read_header,
    validate_door_row,
    validate_member_row,
    validate_purchase_row,
    validate_tag_row,
)
from storeflow.contract import PG_EPOCH_US, UNIX_EPOCH, BadInput
from storeflow.layout import Layout, load_layout
from storeflow.store import StoreDims, load_store_dims, upsert_layout

__all__ = ["ImportResult", "ReasonStat", "import_file", "import_layout", "file_sha256", "format_summary",
           "DEFAULT_BLOCK_BYTES", "KINDS", "STORE_KINDS"]

#: Bytes of whole lines per committed block (~250 k reads; parsing one takes ~10x that in memory,
#: two are in flight). The ledger keys on block numbers, so re-importing a file must use the same
#: value (it is not a user setting for that reason).
DEFAULT_BLOCK_BYTES = 16 << 20
#: Kinds whose rows belong to one store (``--store``); tags and members are chain-wide.
STORE_KINDS = ("reads", "doors", "purchases")
#: Line numbers listed per reject reason in the summary.
FIRST_LINES = 5
_TAG_CACHE_MAX = 2_000_000


@dataclass
class ReasonStat:
    count: int = 0
    first_lines: list[int] = field(default_factory=list)


@dataclass
class ImportResult:
    """What one import did. Row counts exclude blank lines; skipped = blocks already in the ledger."""

    kind: str
    file: str
    store: str | None
    rows: int = 0                  # data rows read in this run
    imported: int = 0              # rows written (inserted or upserted)
    rejected: int = 0
    duplicates: int = 0            # valid rows already present (purchases)
    new_tags: int = 0              # unknown EPCs registered as anonymous tags (reads)
    blocks: int = 0
    blocks_skipped: int = 0
    rows_skipped: int = 0
    seconds: float = 0.0
    reasons: dict[str, ReasonStat] = field(default_factory=dict)

    def add_rejects(self, rejects: list[Reject]) -> None:
        self.rejected += len(rejects)
        for r in rejects:
            st = self.reasons.setdefault(r.group, ReasonStat())
            st.count += 1
            if len(st.first_lines) < FIRST_LINES:
                st.first_lines.append(r.line)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content (read in 8 MiB pieces)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(8 << 20):
            h.update(piece)
    return h.hexdigest()


def _open(path: Path) -> IO[bytes]:
    try:
        if path.is_dir():
            raise BadInput(f"{path}: is a directory, not a file")
        return path.open("rb")
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})") from None


def import_layout(conn: psycopg.Connection, path: Path) -> tuple[int, Layout]:
    """Import (create or update) a store layout file; returns (store_id, the parsed layout)."""
    layout = load_layout(path)
    return upsert_layout(conn, layout), layout


def import_file(conn: psycopg.Connection, kind: str, path: str | Path, store: str | None = None, *,
                block_bytes: int = DEFAULT_BLOCK_BYTES, vectorised: bool = True, progress: bool | None = None,
                on_block: Callable[[ImportResult], None] | None = None) -> ImportResult:
    """Import one flat file of ``kind`` (reads, doors, tags, members, purchases).

    Whole-file problems (unreadable, not UTF-8, header without a required column, unknown store)
    raise :class:`BadInput`; bad rows are counted, kept in ``rejects`` and do not stop the import.
    ``progress``: show a tqdm bar (default: when stderr is a terminal). ``on_block`` is called after
    each committed block (tests use it to interrupt an import).
    """
    if kind not in KINDS:
        raise BadInput(f"unknown import kind {kind!r} (one of {', '.join(KINDS)}, layout)")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("import_file needs a connection without an open transaction")
    path = Path(path)
    if kind in STORE_KINDS and not store:
        raise BadInput(f"importing {kind} needs --store")
    started = time.perf_counter()
    with _open(path) as f:
        header = read_header(f, kind, path.name)
        data_start = f.tell()
        size = path.stat().st_size
        with conn.transaction():
            dims = load_store_dims(conn, store) if kind in STORE_KINDS else None
        store_id = dims.store_id if dims else 0
        sha = file_sha256(path)
        with conn.transaction():
            done = {int(c): (int(n), int(r)) for c, n, r in conn.execute(
                "SELECT chunk, rows_in, rows_rejected FROM import_ledger "
                "WHERE kind = %s AND store_id = %s AND file_sha256 = %s", (kind, store_id, sha))}
        result = ImportResult(kind, path.name, store)
        ctx = _Ctx(conn, kind, header, dims, store_id, sha, f"import:{kind}:{path.name}", result, vectorised)
        bar = _progress_bar(size, path.name, progress)
        # Parse block n+1 in a worker thread while block n is written: pyarrow and the COPY both
        # release the GIL, so parsing overlaps with the server's work. At most two blocks in memory.
        pool = ThreadPoolExecutor(1, thread_name_prefix="storeflow-parse")
        pending: tuple[int, int, Future[Any]] | None = None
        try:
            bar.update(data_start)
            for block in iter_blocks(f, 2, block_bytes):
                if block.index in done:
                    n, _ = done[block.index]
                    result.blocks_skipped += 1
                    result.rows_skipped += n
                    bar.update(block.n_bytes)
                    continue
                fut = pool.submit(ctx.parse, block)
                if pending is not None:
                    _commit(ctx, pending, bar, on_block)
                pending = (block.index, block.n_bytes, fut)
                del block
            if pending is not None:
                _commit(ctx, pending, bar, on_block)
                pending = None
        finally:
            if pending is not None:
                pending[2].cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _commit(ctx: _Ctx, pending: tuple[int, int, Future[Any]], bar: Any,
            on_block: Callable[[ImportResult], None] | None) -> None:
    index, n_bytes, fut = pending
    ctx.commit(index, fut.result())
    bar.update(n_bytes)
    if on_block:
        on_block(ctx.result)


def _progress_bar(total: int, name: str, show: bool | None) -> Any:
    from tqdm import tqdm

    if show is None:
        show = sys.stderr.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not show,
                file=sys.stderr, leave=False)


def _ts(ts_us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=ts_us)


@dataclass
class _Ctx:
    conn: psycopg.Connection
    kind: str
    header: Header
    dims: StoreDims | None
    store_id: int
    sha: str
    source: str
    result: ImportResult
    vectorised: bool
    tag_ids: dict[str, int] = field(default_factory=dict)

    def parse(self, block: Block) -> Any:
        """Validate one block (pure: no database; runs in the parser thread)."""
        if self.kind == "reads":
            assert self.dims is not None
            return parse_reads_block(block, self.header, self.dims.antenna_ids, vectorised=self.vectorised)
        return parse_rows(block, self.header, self._validator())

    def commit(self, index: int, parsed: Any) -> None:
        """Write one parsed block with its rejects and ledger row in one transaction."""
        if self.kind == "reads":
            self._commit_reads(index, parsed)
        else:
            self._commit_rows(index, *parsed)

    def _validator(self) -> Callable[[dict[str, str]], tuple]:
        d = self.dims
        if self.kind == "doors":
            assert d is not None
            return lambda row: validate_door_row(row, d.door_ids)
        if self.kind == "purchases":
            assert d is not None
            counters = {z.zone: d.zone_ids[z.zone] for z in d.layout.zones if z.kind == "counter" and z.zone in d.zone_ids}
            return lambda row: validate_purchase_row(row, counters)
        if self.kind == "tags":
            return validate_tag_row
        return validate_member_row

    def _claim(self, index: int, rows: int, rejected: int) -> bool:
        """Insert the block's ledger row (inside the caller's transaction); False if already done."""
        row = self.conn.execute(
            "INSERT INTO import_ledger (kind, store_id, file_sha256, chunk, rows_in, rows_rejected) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (self.kind, self.store_id, self.sha, index, rows, rejected)).fetchone()
        return row is not None

    def _write_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        sid = self.store_id or None
        with self.conn.cursor().copy("COPY rejects (store_id, source, location, reason, raw) FROM STDIN") as cp:
            for r in rejects:
                cp.write_row((sid, self.source, str(r.line), r.detail, r.raw))

    def _tag_ids(self, epcs: list[str]) -> tuple[np.ndarray, dict[str, int]]:
        """tag_id per EPC (registering unknown EPCs as anonymous tags, kind NULL); plus the new ones."""
        missing = [e for e in epcs if e not in self.tag_ids]
        found: dict[str, int] = {}
        new = 0
        if missing:
            new = len(self.conn.execute(
                "INSERT INTO tags (epc) SELECT unnest(%s::text[]) ON CONFLICT (epc) DO NOTHING RETURNING 1",
                (missing,)).fetchall())
            found = {e: int(i) for e, i in self.conn.execute(
                "SELECT epc, tag_id FROM tags WHERE epc = ANY(%s::text[])", (missing,))}
        self.result.new_tags += new
        ids = np.fromiter((self.tag_ids.get(e) or found[e] for e in epcs), dtype=np.int32, count=len(epcs))
        return ids, found

    def _commit_reads(self, index: int, p: ReadsBlock) -> None:
        res = self.result
        with self.conn.transaction():
            if not self._claim(index, p.rows, len(p.rejects)):
                res.blocks_skipped += 1
                res.rows_skipped += p.rows
                return
            ids, found = self._tag_ids(p.epcs)
            if p.n:
                payload = encode_reads_copy(p.ts_us, self.store_id, p.antenna_id, ids[p.epc_index],
                                            p.rssi_cdbm, p.count)
                with self.conn.cursor().copy(
                        "COPY tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, read_count) "
                        "FROM STDIN (FORMAT BINARY)") as cp:
                    view = memoryview(payload)
                    for off in range(0, len(view), 8 << 20):
                        cp.write(view[off:off + (8 << 20)])
            self._write_rejects(p.rejects)
        if len(self.tag_ids) > _TAG_CACHE_MAX:
            self.tag_ids.clear()
        self.tag_ids.update(found)  # only after the commit: ids of a rolled-back insert are not real
        res.blocks += 1
        res.rows += p.rows
        res.imported += p.n
        res.add_rejects(p.rejects)

    def _commit_rows(self, index: int, good: list[tuple[int, tuple]], rejects: list[Reject], rows: int) -> None:
        res = self.result
        sql, params = self._insert(good)
        with self.conn.transaction():
            if not self._claim(index, rows, len(rejects)):
                res.blocks_skipped += 1
                res.rows_skipped += rows
                return
            written = 0
            if params:
                with self.conn.cursor() as cur:
                    cur.executemany(sql, params)
                    written = cur.rowcount
            self._write_rejects(rejects)
        res.blocks += 1
        res.rows += rows
        res.imported += written
        res.duplicates += len(params) - written
        res.add_rejects(rejects)

    def _insert(self, good: list[tuple[int, tuple]]) -> tuple[str, list[tuple]]:
        sid = self.store_id
        if self.kind == "doors":
            return ("INSERT INTO door_counts (ts, store_id, door_id, entries, exits) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (door_id, ts) DO UPDATE SET entries = EXCLUDED.entries, exits = EXCLUDED.exits",
                    [(_ts(t), sid, d, en, ex) for _, (t, d, en, ex) in good])
        if self.kind == "purchases":
            return ("INSERT INTO purchases (store_id, ts, member, zone_id, amount, receipt) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(sid, _ts(t), m, z, a, r) for _, (t, m, z, a, r) in good])
        if self.kind == "tags":
            return ("INSERT INTO tags (epc, member, kind) VALUES (%s, %s, %s) ON CONFLICT (epc) DO UPDATE "
                    "SET member = EXCLUDED.member, kind = EXCLUDED.kind", [v for _, v in good])
        return ("INSERT INTO members (member, tier, joined) VALUES (%s, %s, %s) ON CONFLICT (member) DO UPDATE "
                "SET tier = EXCLUDED.tier, joined = EXCLUDED.joined", [v for _, v in good])


_COPY_READ = np.dtype([
    ("nf", ">i2"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_store", ">i4"), ("store", ">i4"),
    ("l_ant", ">i4"), ("ant", ">i4"),
    ("l_tag", ">i4"), ("tag", ">i4"),
    ("l_rssi", ">i4"), ("rssi", ">i2"),
    ("l_cnt", ">i4"), ("cnt", ">i2"),
])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"


def encode_reads_copy(ts_us: np.ndarray, store_id: int, antenna_id: np.ndarray, tag_id: np.ndarray,
                      rssi_cdbm: np.ndarray, count: np.ndarray) -> bytes:
    """PostgreSQL binary COPY payload for ``tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm,
    read_count)``: one fixed-size big-endian record per row, built column-wise with numpy."""
    rec = np.empty(len(ts_us), dtype=_COPY_READ)
    rec["nf"] = 6
    rec["l_ts"], rec["l_store"], rec["l_ant"], rec["l_tag"], rec["l_rssi"], rec["l_cnt"] = 8, 4, 4, 4, 2, 2
    rec["ts"] = ts_us - PG_EPOCH_US
    rec["store"] = store_id
    rec["ant"] = antenna_id
    rec["tag"] = tag_id
    rec["rssi"] = rssi_cdbm
    rec["cnt"] = count
    return _COPY_HEADER + rec.tobytes() + _COPY_TRAILER


def format_summary(res: ImportResult, max_reasons: int = 12) -> str:
    """The human summary of an import: counts, then rejects grouped by reason with first line numbers."""
    where = f" into store {res.store}" if res.store else ""
    parts = [f"{res.file}: {res.imported:,} {res.kind} rows imported{where}, {res.rejected:,} rejected"]
    if res.duplicates:
        parts.append(f"{res.duplicates:,} already present")
    if res.new_tags:
        parts.append(f"{res.new_tags:,} new anonymous tags")
    if res.blocks_skipped:
        parts.append(f"{res.blocks_skipped} block(s) / {res.rows_skipped:,} rows already imported before, skipped")
    rate = f" ({res.rows / res.seconds:,.0f} rows/s)" if res.seconds > 0 and res.rows else ""
    lines = [", ".join(parts) + f" in {res.seconds:.1f} s{rate}"]
    if res.reasons:
        lines.append("rejected rows by reason (kept in the rejects table, source "
                     f"'import:{res.kind}:{res.file}'):")
        ordered = sorted(res.reasons.items(), key=lambda kv: (-kv[1].count, kv[0]))
        for reason, st in ordered[:max_reasons]:
            more = ", ..." if st.count > len(st.first_lines) else ""
            lines.append(f"  {st.count:>9,}  {reason}  (line {', '.join(map(str, st.first_lines))}{more})")
        if len(ordered) > max_reasons:
            rest = sum(st.count for _, st in ordered[max_reasons:])
            lines.append(f"  {rest:>9,}  ... {len(ordered) - max_reasons} more reasons")
    return "\n".join(lines)


def required_columns(kind: str) -> tuple[str, ...]:
    """The columns a file of this kind must have."""
    return COLUMNS[kind][0]
