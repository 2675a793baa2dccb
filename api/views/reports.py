"""JSON twins of the reports (SPEC section 4), built on the same query layer as the CLI
(:mod:`analytics.reports`). Periods: ``from``/``to`` as dates (store time zone) or ISO times with an
offset; ``to`` is exclusive; default the last full day."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from analytics import reports as rp
from api.app import principal, require_role, store_guard
from api.auth import Principal
from api.database import TooManyRows

router = APIRouter(tags=["reports"])


class PathCount(BaseModel):
    path: list[str] = Field(description="counter ids in the order visited (SPEC section 3)")
    trips: int = Field(description="customer trips that took exactly this path")


class HeatCell(BaseModel):
    x_m: float = Field(description="cell centre, metres from the floor's left edge")
    y_m: float = Field(description="cell centre, metres from the floor's bottom edge")
    seconds: float = Field(description="customer tag-seconds spent in the cell")


class Heatmap(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    store: str
    floor: int
    cell_m: float = Field(description="cell edge (metres)")
    width_m: float
    depth_m: float
    from_: str = Field(alias="from", description="period start (ISO 8601)")
    to: str = Field(description="period end, exclusive (ISO 8601)")
    cells: list[HeatCell] = Field(description="cells with time only; the others are 0")


class TrafficHour(BaseModel):
    hour: int = Field(ge=0, le=23, description="hour of day, store time")
    entries: int
    exits: int
    previous_entries: int = Field(description="entries in this hour over the previous period")
    occupancy_avg: float = Field(description="average people in the store at the end of the hour")


class TrafficDay(BaseModel):
    day: str = Field(description="YYYY-MM-DD, store time")
    entries: int
    exits: int


class Traffic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    store: str
    from_: str = Field(alias="from", description="period start (ISO 8601)")
    to: str = Field(description="period end, exclusive (ISO 8601)")
    footfall: int = Field(description="door entries in the period")
    previous_footfall: int = Field(description="door entries in the previous period of the same length")
    change: float | None = Field(description="footfall / previous_footfall - 1; null without a previous footfall")
    peak_hour: int | None
    hours: list[TrafficHour]
    days: list[TrafficDay]

FromQ = Query(None, alias="from", description="start: YYYY-MM-DD (store time zone) or ISO 8601 with offset")
ToQ = Query(None, description="end (exclusive): YYYY-MM-DD or ISO 8601 with offset")


def _period(conn: Any, store: str, from_: str | None, to: str | None) -> tuple[rp.StoreInfo, rp.Period]:
    info = rp.store_info(conn, store)
    return info, rp.resolve_period(from_, to, info.tz)


# The store, and what the cached reports are computed from: that changes only through an analysis run
# (visits, trips, heatmap), an import (purchases, tags, members: store 0 = chain-wide) or a new layout.
_CONTEXT_SQL = """
    SELECT s.store_id, s.updated_at::text AS layout,
           (SELECT count(*) || ':' || coalesce(max(finished_at)::text, '') FROM analysis_runs a
            WHERE a.store_id = s.store_id) AS runs,
           (SELECT max(imported_at)::text FROM import_ledger l WHERE l.store_id IN (s.store_id, 0)) AS imports
    FROM stores s WHERE s.store = %s"""


async def _context(request: Request, store: str, who: Principal, from_: str | None,
                         to: str | None) -> tuple[rp.StoreInfo, rp.Period, tuple[Any, ...]]:
    """What a report request needs, in one query on the event loop: 403 when the caller may not see the
    store, 404 when it does not exist, else the store (kept while its layout is unchanged), the period
    and the data version."""
    if not who.can_see(store):
        raise HTTPException(403, f"your token is not granted store {store!r}")
    state = request.app.state
    infos: dict[str, tuple[str, rp.StoreInfo]] | None = getattr(state, "store_infos", None)
    if infos is None:
        infos = state.store_infos = {}
    async with state.db.apool.connection() as conn:
        row = await (await conn.execute(_CONTEXT_SQL, (store,))).fetchone()
    if row is None:
        raise HTTPException(404, f"unknown store {store!r}")
    known = infos.get(store)
    if known is not None and known[0] == row[1]:
        info = known[1]
    else:
        info = await run_in_threadpool(_store_info, state.db, store)
        infos[store] = (row[1], info)
    return info, rp.resolve_period(from_, to, info.tz), tuple(row[1:])


def _store_info(db: Any, store: str) -> rp.StoreInfo:
    with db.connection() as conn:
        return rp.store_info(conn, store)


class ReportCache:
    """Computed report bodies (JSON bytes) by request and data version: LRU, at most ``ttl_s`` old, and
    concurrent identical misses computed once (the others wait for that result)."""

    def __init__(self, ttl_s: float, entries: int = 128):
        self.ttl_s, self.entries = ttl_s, entries
        self._data: OrderedDict[tuple[Any, ...], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple[Any, ...], threading.Lock] = {}

    def peek(self, key: tuple[Any, ...]) -> bytes | None:
        """A fresh body, else None (never waits for a computation)."""
        with self._lock:
            hit = self._data.get(key)
            if hit and hit[0] > time.monotonic():
                self._data.move_to_end(key)
                return hit[1]
        return None

    def get(self, key: tuple[Any, ...], compute: Callable[[], bytes]) -> bytes:
        while True:
            with self._lock:
                hit = self._data.get(key)
                if hit and hit[0] > time.monotonic():
                    self._data.move_to_end(key)
                    return hit[1]
                gate = self._computing.get(key)
                if gate is None:
                    gate = self._computing[key] = threading.Lock()
                    gate.acquire()
                    break
            with gate:  # someone else computes it: wait, then look again
                pass
        try:
            body = compute()
            with self._lock:
                self._data[key] = (time.monotonic() + self.ttl_s, body)
                self._data.move_to_end(key)
                while len(self._data) > self.entries:
                    self._data.popitem(last=False)
            return body
        finally:
            with self._lock:
                del self._computing[key]
            gate.release()


def _encode(body: Any) -> bytes:
    return json.dumps(jsonable_encoder(body), allow_nan=False, separators=(",", ":")).encode()


async def _cached(request: Request, p: rp.Period, version: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """The JSON of ``compute()``, from the report cache when there. A hit is answered on the event loop;
    computing and encoding run in a worker thread. Only closed periods are cached (a period that includes
    now still changes); door counts ingested late for a closed period show after ``api_cache_s``."""
    db = request.app.state.db
    ttl = db.settings.api_cache_s
    if ttl <= 0 or p.end > datetime.now(timezone.utc):
        return Response(await run_in_threadpool(lambda: _encode(compute())), media_type="application/json")
    cache: ReportCache | None = getattr(request.app.state, "report_cache", None)
    if cache is None:
        cache = request.app.state.report_cache = ReportCache(ttl)
    key = (request.url.path, tuple(sorted(request.query_params.multi_items())), version)
    body = cache.peek(key)
    if body is None:
        body = await run_in_threadpool(cache.get, key, lambda: _encode(compute()))
    return Response(body, media_type="application/json")


@router.get("/stores/{store}/counters", summary="Counter KPIs (SPEC section 3), one object per counter")
async def counters(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                   by: Literal["tier", "hour", "day"] | None = Query(None, description="breakdown"),
                   tier: str | None = Query(None, max_length=100, description="only this member tier ('anonymous' for non-members)"),
                   compare: Literal["previous", "year"] | None = Query(None, description="add <key>_prev and <key>_delta"),
                   who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> list[dict[str, Any]]:
        with db.connection() as conn:
            if tier is not None:
                rows = rp.counter_kpis(conn, store, p.start, p.end, "tier")
                return [{k: v for k, v in r.items() if k != "tier"} for r in rows if r["tier"] == tier]
            if compare:
                return rp.counter_kpis_compare(conn, store, p.start, p.end, compare, by)
            return rp.counter_kpis(conn, store, p.start, p.end, by)

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/kpis", summary="Store KPIs (SPEC section 3)")
async def store_kpis(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                     by: Literal["tier", "hour", "day"] | None = Query(None),
                     compare: Literal["previous", "year"] | None = Query(None),
                     who: Principal = Depends(principal)) -> Any:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> Any:
        with db.connection() as conn:
            rows = (rp.store_kpis_compare(conn, store, p.start, p.end, compare, by) if compare
                    else rp.store_kpis(conn, store, p.start, p.end, by))
        return rows[0] if by is None else rows

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/ranking", summary="Counters ranked by revenue per visitor, with quadrant labels")
async def ranking(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                  who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> list[dict[str, Any]]:
        with db.connection() as conn:
            return rp.counter_ranking(conn, store, p.start, p.end)

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/concentration", summary="80/20 view: revenue share of the top members who visited")
async def concentration(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                        top_fraction: float = Query(0.2, gt=0, le=1), who: Principal = Depends(principal)) -> dict[str, Any]:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> dict[str, Any]:
        with db.connection() as conn:
            return rp.revenue_concentration(conn, store, p.start, p.end, top_fraction)

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/paths", summary="Most frequent paths, most frequent first", response_model=list[PathCount])
async def paths(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                top: int = Query(20, ge=1, le=1000), who: Principal = Depends(principal)) -> Any:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> list[dict[str, Any]]:
        with db.connection() as conn:
            return rp.top_paths(conn, store, p.start, p.end, top)

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/heatmap", summary="Customer tag-seconds per cell of one floor (cells with time only)",
            response_model=Heatmap)
async def heatmap(request: Request, store: str, floor: int, from_: str | None = FromQ, to: str | None = ToQ,
                  cell: float | None = Query(None, gt=0, le=50, description="cell edge in metres (a multiple of the stored cell)"),
                  who: Principal = Depends(principal)) -> Any:
    _, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db

    def compute() -> dict[str, Any]:
        with db.connection() as conn:
            grid = rp.heatmap(conn, store, floor, p.start, p.end, cell)
        return {"store": store, "floor": floor, "cell_m": grid.cell_m, "width_m": grid.width_m,
                "depth_m": grid.depth_m, "from": p.start.isoformat(), "to": p.end.isoformat(),
                "cells": [c for c in grid.rows() if c["seconds"] > 0]}

    return await _cached(request, p, version, compute)


@router.get("/stores/{store}/visits", summary="Customer visits with EPC and member (analyst)")
def visits(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
           who: Principal = Depends(require_role("analyst"))) -> list[dict[str, Any]]:
    store_guard(request, store, who)
    cap = request.app.state.db.settings.query_max_rows
    with request.app.state.db.connection() as conn:
        _, p = _period(conn, store, from_, to)
        rows = rp.visit_rows(conn, store, p.start, p.end, limit=cap + 1)
    if len(rows) > cap:
        raise TooManyRows(f"more than {cap} visits; narrow the time range")
    return rows


@router.get("/stores/{store}/members/{member}/journey", summary="One member's trips, paths, dwell and purchases (analyst)")
def journey(request: Request, store: str, member: str, from_: str | None = FromQ, to: str | None = ToQ,
            who: Principal = Depends(require_role("analyst"))) -> dict[str, Any]:
    store_guard(request, store, who)
    with request.app.state.db.connection() as conn:
        _, p = _period(conn, store, from_, to)
        try:
            return rp.member_journey(conn, store, member, p.start, p.end)
        except rp.MemberNotFound as e:
            raise HTTPException(404, str(e)) from None


@router.get("/stores/{store}/tiers", summary="Member tiers present (for filters)")
def tiers(request: Request, store: str, who: Principal = Depends(principal)) -> list[str]:
    store_guard(request, store, who)
    rows = request.app.state.db.fetch("SELECT DISTINCT tier FROM members ORDER BY tier", max_rows=1000)
    return [r["tier"] for r in rows] + ["anonymous"]


@router.get("/stores/{store}/traffic", summary="Door footfall by hour of day and by day, with the previous period",
            response_model=Traffic)
async def traffic(request: Request, store: str, from_: str | None = FromQ, to: str | None = ToQ,
                  who: Principal = Depends(principal)) -> Any:
    info, p, version = await _context(request, store, who, from_, to)
    db = request.app.state.db
    prev = rp.comparison_period(p.start, p.end, "previous", info.tz)  # ends where the period starts

    def compute() -> dict[str, Any]:
        # one scan of both periods, grouped by (this period?, local hour, local day of this period)
        rows = db.fetch(
            "SELECT cur, extract(hour FROM local)::int AS hour, CASE WHEN cur THEN local::date END AS day, "
            "coalesce(sum(entries), 0)::int AS entries, coalesce(sum(exits), 0)::int AS exits "
            "FROM (SELECT ts >= %(start)s AS cur, ts AT TIME ZONE %(tz)s AS local, entries, exits FROM door_counts "
            "      WHERE store_id = %(sid)s AND ts >= %(prev)s AND ts < %(end)s) d GROUP BY 1, 2, 3",
            {"start": p.start, "tz": info.timezone, "sid": info.store_id, "prev": prev.start, "end": p.end})
        entries, exits, previous_h = [0] * 24, [0] * 24, [0] * 24
        days: dict[Any, list[int]] = {}
        for r in rows:
            if r["cur"]:
                entries[r["hour"]] += r["entries"]
                exits[r["hour"]] += r["exits"]
                day = days.setdefault(r["day"], [0, 0])
                day[0] += r["entries"]
                day[1] += r["exits"]
            else:
                previous_h[r["hour"]] += r["entries"]
        n_days = max(1.0, (p.end - p.start) / timedelta(days=1))
        hours, occ = [], 0.0
        for h in range(24):
            occ = max(0.0, occ + (entries[h] - exits[h]) / n_days)
            hours.append({"hour": h, "entries": entries[h], "exits": exits[h], "previous_entries": previous_h[h],
                          "occupancy_avg": round(occ, 1)})
        footfall, previous = sum(entries), sum(previous_h)
        peak = max(hours, key=lambda h: h["entries"]) if footfall else None
        return {"store": store, "from": p.start.isoformat(), "to": p.end.isoformat(), "footfall": footfall,
                "previous_footfall": previous,
                "change": (footfall - previous) / previous if previous else None,
                "peak_hour": peak["hour"] if peak else None, "hours": hours,
                "days": [{"day": d.isoformat(), "entries": v[0], "exits": v[1]} for d, v in sorted(days.items())]}

    return await _cached(request, p, version, compute)
