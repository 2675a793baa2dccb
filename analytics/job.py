"""The analyze job: one store, one time range -> visits, trips (with paths) and heatmap cells.

Reads of ``[from - margin, to + margin)`` are loaded with binary COPY straight into numpy arrays
(the PGCOPY stream is parsed with a structured dtype, no per-row Python objects). Big ranges are
processed in tag blocks (``tag_id % n_blocks``), so memory is bounded by ``block_reads`` reads
whatever the range; a tag's reads are always in one block, so blocks are independent. Results
whose start falls in ``[from, to)`` replace the range's previous results in one transaction, so
re-running a range gives the same rows and a visit or trip crossing the boundary is stored once
(by the range its start falls in; the margin lets its true start and end be seen).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from analytics.data import AntennaMap, Reads, antenna_map, zone_map
from analytics.pipeline import analyze_block
from analytics.positions import PathLossModel, RangeModel, fit_path_loss, fit_range_model
from analytics.presence import PresenceModel, fit_presence_model
from analytics.refine import zone_masks
from analytics.rollups import from_unix_us as _dt
from analytics.rollups import rebuild_visit_rollups
from analytics.trips import paths_from_visits, trips_from_reads
from storeflow.contract import PG_EPOCH_US, UNIX_EPOCH, BadInput
from storeflow.settings import Settings, get_settings, store_params
from storeflow.store import load_store_dims

__all__ = ["analyze", "AnalyzeResult", "load_reads", "parse_pgcopy_reads", "PG_EPOCH_US"]

log = logging.getLogger(__name__)

_PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: One row of ``SELECT tag_id, ts, antenna_id, rssi_cdbm, read_count`` in PGCOPY binary: field
#: count, then (length, value) per column, all big-endian.
_ROW_DTYPE = np.dtype([
    ("nf", ">i2"),
    ("l_tag", ">i4"), ("tag", ">i4"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_ant", ">i4"), ("ant", ">i4"),
    ("l_rssi", ">i4"), ("rssi", ">i2"),
    ("l_cnt", ">i4"), ("cnt", ">i2"),
])
_EXPECTED_LEN = {"l_tag": 4, "l_ts": 8, "l_ant": 4, "l_rssi": 2, "l_cnt": 2}
#: Default bound on the reads held in memory at once (one tag block).
BLOCK_READS = 20_000_000


@dataclass
class AnalyzeResult:
    """What one analyze run wrote."""

    run_id: int
    store: str
    from_us: int
    to_us: int
    reads: int
    blocks: int
    visits: int
    passbys: int
    trips: int
    heatmap_cells: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


def parse_pgcopy_reads(buf: bytes | bytearray | memoryview) -> tuple[np.ndarray, ...]:
    """Parse a PGCOPY binary stream of (tag_id int4, ts timestamptz, antenna_id int4, rssi_cdbm int2,
    read_count int2) rows into (tag int32, ts_us int64 Unix µs, antenna_id int32, rssi_cdbm int16,
    count int16). Raises ValueError naming what is wrong (header, row layout, NULLs, trailer)."""
    mv = memoryview(buf)
    if len(mv) < 19 or bytes(mv[:11]) != _PGCOPY_SIGNATURE:
        raise ValueError("not a PGCOPY binary stream (bad signature)")
    ext = int.from_bytes(mv[15:19], "big")
    pos = 19 + ext
    if len(mv) < pos + 2 or bytes(mv[-2:]) != b"\xff\xff":
        raise ValueError("PGCOPY stream has no trailer (truncated?)")
    body = mv[pos:len(mv) - 2]
    if len(body) % _ROW_DTYPE.itemsize:
        raise ValueError(f"PGCOPY body of {len(body)} bytes is not a whole number of "
                         f"{_ROW_DTYPE.itemsize}-byte rows (unexpected column types or NULLs)")
    rows = np.frombuffer(body, _ROW_DTYPE)
    if rows.size:
        bad = np.flatnonzero(rows["nf"] != 5)
        if bad.size:
            raise ValueError(f"PGCOPY row {bad[0]} has {rows['nf'][bad[0]]} fields, expected 5")
        for name, n in _EXPECTED_LEN.items():
            bad = np.flatnonzero(rows[name] != n)
            if bad.size:
                raise ValueError(f"PGCOPY row {bad[0]} column {name[2:]} has length {rows[name][bad[0]]}, "
                                 f"expected {n} (NULL or wrong type)")
    return (rows["tag"].astype(np.int32), rows["ts"].astype(np.int64) + PG_EPOCH_US,
            rows["ant"].astype(np.int32), rows["rssi"].astype(np.int16), rows["cnt"].astype(np.int16))


def load_reads(conn: psycopg.Connection, store_id: int, from_us: int, to_us: int, antennas: AntennaMap,
               block: int = 0, n_blocks: int = 1) -> tuple[Reads, int]:
    """A store's reads in ``[from_us, to_us)`` (tag block ``block`` of ``n_blocks``) as sorted
    :class:`Reads`; also returns how many rows referenced an antenna not in ``antennas`` (dropped)."""
    sql = ("COPY (SELECT tag_id, ts, antenna_id, rssi_cdbm, read_count FROM tag_reads "
           "WHERE store_id = %s AND ts >= %s AND ts < %s"
           + (" AND tag_id %% %s = %s" if n_blocks > 1 else "") + ") TO STDOUT (FORMAT BINARY)")
    params: tuple[Any, ...] = (store_id, _dt(from_us), _dt(to_us)) + ((n_blocks, block) if n_blocks > 1 else ())
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(sql, params) as copy:  # type: ignore[arg-type]
        for chunk in copy:
            buf += chunk
    tag, ts_us, ant_id, rssi_cdbm, cnt = parse_pgcopy_reads(buf)
    del buf
    lut = np.full(max(int(antennas.antenna_id.max(initial=0)), int(ant_id.max(initial=0))) + 1, -1, np.int32)
    known = antennas.antenna_id >= 0
    lut[antennas.antenna_id[known]] = np.flatnonzero(known).astype(np.int32)
    ant = lut[ant_id]
    ok = ant >= 0
    dropped = int((~ok).sum())
    if dropped:
        tag, ts_us, ant, rssi_cdbm, cnt = tag[ok], ts_us[ok], ant[ok], rssi_cdbm[ok], cnt[ok]
    order = np.argsort(ts_us, kind="stable")
    order = order[np.argsort(tag[order], kind="stable")]
    reads = Reads(tag[order], ts_us[order], ant[order], rssi_cdbm[order].astype(np.float32) / 100.0,
                  np.maximum(cnt[order], 1).astype(np.int32))
    return reads, dropped


def _non_customer_tags(conn: psycopg.Connection) -> np.ndarray:
    rows = conn.execute("SELECT tag_id FROM tags WHERE kind IN ('staff', 'asset')").fetchall()
    return np.array(sorted(r[0] for r in rows), np.int32)


def _block_count(conn: psycopg.Connection, store_id: int, lo_us: int, hi_us: int, block_reads: int) -> tuple[int, int]:
    n = conn.execute(
        "SELECT count(*) FROM tag_reads WHERE store_id = %s AND ts >= %s AND ts < %s",
        (store_id, _dt(lo_us), _dt(hi_us))).fetchone()[0]  # type: ignore[index]
    return int(n), max(1, math.ceil(int(n) / max(block_reads, 1)))


def _layout_sha256(layout) -> str:
    """Hash of what a presence model's indices depend on: zones (order, kind, polygon) and antennas."""
    d = layout.to_dict()
    return hashlib.sha256(json.dumps({"zones": d.get("zones"), "readers": d.get("readers")},
                                     sort_keys=True).encode()).hexdigest()


def _stored_model(conn: psycopg.Connection, store_id: int,
                  sha: str) -> tuple[int, PresenceModel, tuple[PathLossModel, RangeModel] | None] | None:
    """The store's latest (model id, presence model, position models or None) for this layout."""
    row = conn.execute("SELECT model_id, model, position_model FROM presence_models WHERE store_id = %s "
                       "AND layout_sha256 = %s ORDER BY model_id DESC LIMIT 1", (store_id, sha)).fetchone()
    if row is None:
        return None
    return int(row[0]), PresenceModel.from_json(row[1]), (_position_models_from_json(row[2]) if row[2] else None)


def _position_models_from_json(d: dict[str, Any]) -> tuple[PathLossModel, RangeModel]:
    """The position estimator's models stored in ``presence_models.position_model``."""
    return PathLossModel.from_json(d["path_loss"]), RangeModel.from_json(d["range"])


def _hour_floor(us: int) -> int:
    return us - us % 3_600_000_000


def analyze(conn: psycopg.Connection, store: str, from_us: int, to_us: int, settings: Settings | None = None,
            *, block_reads: int = BLOCK_READS, with_heatmap: bool = True, refit: bool = False) -> AnalyzeResult:
    """Analyse ``store`` over ``[from_us, to_us)`` (Unix µs) and replace the range's results.

    The store's presence model is fitted on the first run (on this range's reads; the first tag
    block when the range is big) and stored in ``presence_models``; later runs reuse it until the
    layout changes or ``refit`` is asked for, so every range of a period is decoded alike.

    Writes ``visits`` (counter zones only; pass-bys flagged; customers' visit boundaries refined with
    their position estimates, :mod:`analytics.refine`, the same positions that make the heatmap) and
    ``trips`` whose start falls in the range, the visit rollups of the local days it touches (:mod:`analytics.rollups`), the heatmap
    cells of the hours overlapping it, and one ``analysis_runs`` row.
    """
    t_start = time.perf_counter()
    s = settings or get_settings()
    if to_us <= from_us:
        raise BadInput(f"empty range: to ({to_us}) must be after from ({from_us})")
    dims = load_store_dims(conn, store)
    layout = dims.layout
    params = store_params(layout.settings, s)
    margin_us = int(s.analyze_margin_s * 1e6)
    lo_us, hi_us = from_us - margin_us, to_us + margin_us
    am = antenna_map(layout, dims.antenna_ids)
    zm = zone_map(layout)
    counter = np.array([k == "counter" for k in zm.kind])
    masks = zone_masks(layout.zones)
    zone_db_id = np.array([dims.zone_ids.get(z, -1) for z in zm.zone], np.int64)
    non_customer = _non_customer_tags(conn)
    n_total, n_blocks = _block_count(conn, dims.store_id, lo_us, hi_us, block_reads)
    heat_from, heat_to = _hour_floor(from_us), _hour_floor(to_us - 1) + 3_600_000_000

    sha = _layout_sha256(layout)
    stored = None if refit else _stored_model(conn, dims.store_id, sha)
    model: PresenceModel | None = stored[1] if stored else None
    pos_models = stored[2] if stored else None
    model_id = stored[0] if stored else None
    fitted = False
    vis_parts: list[tuple[np.ndarray, ...]] = []
    trip_parts: list[tuple[Any, ...]] = []
    heat_parts: list[np.ndarray] = []
    dropped = 0
    n_reads = 0
    for block in range(n_blocks):
        reads, d = load_reads(conn, dims.store_id, lo_us, hi_us, am, block, n_blocks)
        dropped += d
        n_reads += len(reads)
        if len(reads) == 0:
            continue
        if model is None:
            # learnt once per run from the first block (a deterministic set of whole tags)
            model = fit_presence_model(reads, am, zm, segment_gap_s=params["trip_gap_s"])
            fitted = True
            with conn.transaction():
                model_id = conn.execute(
                    "INSERT INTO presence_models (store_id, layout_sha256, from_ts, to_ts, n_reads, model) "
                    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING model_id",
                    (dims.store_id, sha, _dt(lo_us), _dt(hi_us), len(reads), json.dumps(model.to_json()))).fetchone()[0]
        customer_read = ~np.isin(reads.tag, non_customer)
        if pos_models is None and customer_read.any():
            # like the presence model: learnt once (all reads of the block: staff help calibrate), stored
            pl = fit_path_loss(reads, am, layout)
            pos_models = (pl, fit_range_model(reads, am, layout, pl))
            with conn.transaction():
                conn.execute("UPDATE presence_models SET position_model = %s WHERE model_id = %s",
                             (json.dumps({"path_loss": pos_models[0].to_json(), "range": pos_models[1].to_json()}),
                              model_id))
        # customer positions refine the counter visits' boundaries and make the heatmap
        blk = analyze_block(reads, am, layout, zm, params, model, customer_read, position_models=pos_models,
                            masks=masks)
        visits, pos = blk.visits, blk.positions
        trips = trips_from_reads(reads.tag, reads.ts_us, trip_gap_s=params["trip_gap_s"])
        paths = paths_from_visits(trips, visits, counter)
        v_trip = paths.visit_trip
        keep = counter[visits.zone] & (visits.start_us >= from_us) & (visits.start_us < to_us) & (v_trip >= 0)
        vt = v_trip[keep]
        vis_parts.append((visits.tag[keep], zone_db_id[visits.zone[keep]], visits.start_us[keep],
                          visits.end_us[keep], visits.dwell_s[keep], visits.passby[keep],
                          trips.start_us[vt], trips.end_us[vt]))
        t_keep = np.flatnonzero((trips.start_us >= from_us) & (trips.start_us < to_us))
        zone_codes = np.array(zm.zone, dtype=object)
        trip_parts.append((trips.tag[t_keep], trips.start_us[t_keep], trips.end_us[t_keep], trips.n_reads[t_keep],
                           [zone_codes[paths.path(int(i))].tolist() for i in t_keep]))
        if with_heatmap and pos is not None:
            from analytics.heatmap import compute_heatmap

            heat_parts.append(compute_heatmap(reads, am, layout, customer_read, params["cell_m"],
                                              heat_from, heat_to, presence=blk.heat_presence, positions=pos,
                                              trip_gap_s=params["trip_gap_s"]))
        del reads, blk, visits, pos
    stats = _write(conn, dims.store_id, from_us, to_us, heat_from, heat_to, params, vis_parts, trip_parts,
                   heat_parts if with_heatmap else None, non_customer,
                   {"reads": n_reads, "reads_in_range_with_margin": n_total, "blocks": n_blocks,
                    "dropped_unknown_antenna": dropped, "heatmap": with_heatmap,
                    "presence_model": "fitted" if fitted else "stored"})
    elapsed = time.perf_counter() - t_start
    log.info("analyze %s: %d reads, %d visits, %d trips in %.1f s", store, n_reads, stats["visits"],
             stats["trips"], elapsed)
    return AnalyzeResult(stats["run_id"], store, from_us, to_us, n_reads, n_blocks, stats["visits"],
                         stats["passbys"], stats["trips"], stats["heatmap_cells"], elapsed, stats)


def _tstz(us: np.ndarray) -> list[datetime]:
    return [UNIX_EPOCH + timedelta(microseconds=u) for u in np.asarray(us, np.int64).tolist()]


def _write(conn: psycopg.Connection, store_id: int, from_us: int, to_us: int, heat_from: int, heat_to: int,
           params: dict[str, float], vis_parts, trip_parts, heat_parts, non_customer: np.ndarray,
           stats: dict[str, Any]) -> dict[str, Any]:
    cat = (lambda i, parts: np.concatenate([p[i] for p in parts]) if parts else np.zeros(0))
    v_tag, v_zone, v_start, v_end = (cat(i, vis_parts) for i in range(4))
    v_dwell, v_passby, v_tstart, v_tend = (cat(i, vis_parts) for i in range(4, 8))
    v_cust = ~np.isin(v_tag, non_customer)
    rng = ("%s", "%s")
    from_dt, to_dt = _dt(from_us), _dt(to_us)
    with conn.transaction():
        # one analyze per store at a time; a second waits rather than interleaving deletes/inserts
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (0x5F0F_A11A, store_id))
        run_id = conn.execute(
            "INSERT INTO analysis_runs (store_id, from_ts, to_ts, params) VALUES "
            f"(%s, {rng[0]}, {rng[1]}, %s) RETURNING run_id",
            (store_id, from_dt, to_dt, json.dumps(params))).fetchone()[0]  # type: ignore[index]
        conn.execute(f"DELETE FROM visits WHERE store_id = %s AND start_ts >= {rng[0]} AND start_ts < {rng[1]}",
                     (store_id, from_dt, to_dt))
        conn.execute(f"DELETE FROM trips WHERE store_id = %s AND start_ts >= {rng[0]} AND start_ts < {rng[1]}",
                     (store_id, from_dt, to_dt))
        with conn.cursor() as cur:
            with cur.copy("COPY visits (store_id, tag_id, zone_id, start_ts, end_ts, dwell_s, passby, customer, "
                          "trip_start, trip_end) FROM STDIN") as cp:
                for row in zip(v_tag.tolist(), v_zone.tolist(), _tstz(v_start), _tstz(v_end), v_dwell.tolist(),
                               v_passby.astype(bool).tolist(), v_cust.tolist(), _tstz(v_tstart), _tstz(v_tend)):
                    cp.write_row((store_id, *row))
            n_trips = 0
            with cur.copy("COPY trips (store_id, tag_id, start_ts, end_ts, n_reads, path, customer) FROM STDIN") as cp:
                for t_tag, t_start, t_end, t_n, t_paths in trip_parts:
                    cust = ~np.isin(t_tag, non_customer)
                    for row in zip(t_tag.tolist(), _tstz(t_start), _tstz(t_end), t_n.tolist(), t_paths,
                                   cust.tolist()):
                        cp.write_row((store_id, *row))
                    n_trips += len(t_tag)
            # the reports' per-day visit rollups of every local day the range touches, from the visits
            # just written (same transaction: a report never sees one without the other)
            n_rollup_days = rebuild_visit_rollups(conn, store_id, from_dt, to_dt)
            n_cells = 0
            if heat_parts is not None:
                conn.execute(f"DELETE FROM heatmap_cells WHERE store_id = %s AND bucket >= {rng[0]} "
                             f"AND bucket < {rng[1]}", (store_id, _dt(heat_from), _dt(heat_to)))
                cells = _merge_heat(heat_parts)
                with cur.copy("COPY heatmap_cells (store_id, floor, bucket, cell_m, ix, iy, seconds) FROM STDIN") as cp:
                    for f, b, ix, iy, sec in zip(cells["floor"].tolist(), _tstz(cells["bucket_us"]),
                                                 cells["ix"].tolist(), cells["iy"].tolist(),
                                                 cells["seconds"].tolist()):
                        cp.write_row((store_id, f, b, params["cell_m"], ix, iy, sec))
                n_cells = len(cells)
        out = {**stats, "run_id": int(run_id), "visits": int((~v_passby.astype(bool)).sum()),
               "passbys": int(v_passby.astype(bool).sum()), "trips": n_trips, "heatmap_cells": n_cells,
               "rollup_days": n_rollup_days}
        conn.execute("UPDATE analysis_runs SET finished_at = now(), stats = %s WHERE run_id = %s",
                     (json.dumps(out), run_id))
    return out


def _merge_heat(parts: list[np.ndarray]) -> np.ndarray:
    """Sum cells of several tag blocks (the same cell can appear in more than one)."""
    from analytics.heatmap import HEAT_DTYPE

    if not parts:
        return np.zeros(0, HEAT_DTYPE)
    allc = np.concatenate(parts)
    if len(parts) == 1 or allc.size == 0:
        return allc
    keys = np.stack([allc["floor"].astype(np.int64), allc["bucket_us"], allc["ix"].astype(np.int64),
                     allc["iy"].astype(np.int64)])
    uniq, inv = np.unique(keys, axis=1, return_inverse=True)
    out = np.zeros(uniq.shape[1], HEAT_DTYPE)
    out["floor"], out["bucket_us"], out["ix"], out["iy"] = uniq[0], uniq[1], uniq[2], uniq[3]
    out["seconds"] = np.bincount(inv.ravel(), weights=allc["seconds"], minlength=uniq.shape[1])
    return out
