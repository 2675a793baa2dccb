"""Stores, layouts, live occupancy and footfall, reader and ingest health."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from api.app import principal, store_guard
from api.auth import Principal

router = APIRouter(tags=["stores"])


class FloorInfo(BaseModel):
    floor: int
    width_m: float
    depth_m: float
    plan: str | None = Field(description="the layout's `plan:` (a path relative to the layout file)")
    has_plan_image: bool = Field(description="the image was stored at layout import")
    plan_url: str | None = Field(description="where to get the image; null without one")


class CounterCoverage(BaseModel):
    zone: str
    floor: int
    share_nearer_other: float = Field(description="share of the counter's area nearer to another counter's "
                                                   "antenna than to its own (0-1); such parts lose visits to it")
    nearer_to: str | None = Field(description="the counter owning most of those nearer antennas")
    flagged: bool = Field(description="share over the advice threshold (see `threshold`)")
    threshold: float
    suggested_antennas: list[list[float]] = Field(description="[x_m, y_m] on the counter's floor where an "
                                                              "antenna of its own would cover it")


class Occupancy(BaseModel):
    store: str
    since: str = Field(description="local midnight today (ISO 8601)")
    footfall: int = Field(description="door entries since midnight")
    exits: int
    occupancy: int = Field(description="people in the store now: entries - exits, not below 0")
    last_count: str | None = Field(description="time of the latest door count (ISO 8601)")


@router.get("/stores", summary="Stores the caller may see")
def list_stores(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    rows = request.app.state.db.fetch(
        "SELECT s.store, s.name, s.timezone, "
        " (SELECT count(*) FROM zones z WHERE z.store_id = s.store_id AND z.kind = 'counter' AND z.active) AS counters,"
        " (SELECT min(from_ts) FROM analysis_runs a WHERE a.store_id = s.store_id) AS analysed_from,"
        " (SELECT max(to_ts) FROM analysis_runs a WHERE a.store_id = s.store_id) AS analysed_to "
        "FROM stores s ORDER BY s.store")
    out = []
    for r in rows:
        if not who.can_see(r["store"]):
            continue
        tz = ZoneInfo(r["timezone"])
        # dates (store time zone) of the analysed data, for the dashboard's default period
        r["data_from"] = r["analysed_from"].astimezone(tz).date().isoformat() if r["analysed_from"] else None
        r["data_to"] = ((r["analysed_to"] - timedelta(microseconds=1)).astimezone(tz).date().isoformat()
                        if r["analysed_to"] else None)
        out.append(r)
    return out


@router.get("/stores/{store}/layout", summary="The store's layout (SPEC section 1)")
def layout(request: Request, store: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    store_guard(request, store, who)
    row = request.app.state.db.fetch("SELECT layout FROM stores WHERE store = %s", (store,))[0]
    return row["layout"]


@router.get("/stores/{store}/layout/coverage", response_model=list[CounterCoverage],
            summary="Antenna coverage of every counter, worst first, with where to add antennas")
def layout_coverage(request: Request, store: str, who: Principal = Depends(principal)) -> Any:
    from analytics.coverage import WARN_SHARE, coverage
    from storeflow.layout import parse_layout

    out = [{"zone": c.zone, "floor": c.floor, "share_nearer_other": round(c.share, 4), "nearer_to": c.nearer_to,
            "flagged": c.share > WARN_SHARE, "threshold": WARN_SHARE, "suggested_antennas": [list(p) for p in c.suggested]}
           for c in coverage(parse_layout(layout(request, store, who)))]
    return sorted(out, key=lambda r: (-r["share_nearer_other"], r["zone"]))


_PLAN_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml")


@router.get("/stores/{store}/floors", summary="Floors with their size and whether a plan image is stored",
            response_model=list[FloorInfo])
def floors(request: Request, store: str, who: Principal = Depends(principal)) -> Any:
    store_guard(request, store, who)
    rows = request.app.state.db.fetch(
        "SELECT f.floor, f.width_m, f.depth_m, f.plan, f.plan_image IS NOT NULL AS has_plan_image "
        "FROM floors f JOIN stores s USING (store_id) WHERE s.store = %s ORDER BY f.floor", (store,))
    for r in rows:
        r["plan_url"] = f"/api/v1/stores/{store}/floors/{r['floor']}/plan" if r["has_plan_image"] else None
    return rows


@router.get("/stores/{store}/floors/{floor}/plan", summary="The floor's plan image (layout `plan:`)",
            response_class=Response,
            responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _PLAN_TYPES},
                             "description": "the image as imported"},
                       404: {"description": "unknown store or floor, or the floor has no plan image"}})
def floor_plan(request: Request, store: str, floor: int, who: Principal = Depends(principal)) -> Response:
    store_guard(request, store, who)
    rows = request.app.state.db.fetch(
        "SELECT f.plan_image, f.plan_media_type FROM floors f JOIN stores s USING (store_id) "
        "WHERE s.store = %s AND f.floor = %s", (store, floor))
    if not rows:
        raise HTTPException(404, f"store {store!r} has no floor {floor}")
    if rows[0]["plan_image"] is None:
        raise HTTPException(404, f"floor {floor} of {store!r} has no plan image (layout `plan:`)")
    # an SVG plan must never run script in our origin
    return Response(bytes(rows[0]["plan_image"]), media_type=rows[0]["plan_media_type"],
                    headers={"Cache-Control": "private, max-age=300",
                             "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                             "X-Content-Type-Options": "nosniff"})


def _local_midnight(tz: str) -> datetime:
    now = datetime.now(ZoneInfo(tz))
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@router.get("/stores/{store}/occupancy", summary="Live occupancy and today's footfall from the door counters",
            response_model=Occupancy)
def occupancy(request: Request, store: str, who: Principal = Depends(principal)) -> Any:
    store_guard(request, store, who)
    db = request.app.state.db
    tz = db.fetch("SELECT timezone FROM stores WHERE store = %s", (store,))[0]["timezone"]
    since = _local_midnight(tz)
    row = db.fetch(
        "SELECT coalesce(sum(entries), 0) AS entries, coalesce(sum(exits), 0) AS exits, max(c.ts) AS last_count "
        "FROM door_counts c JOIN stores s USING (store_id) WHERE s.store = %s AND c.ts >= %s",
        (store, since))[0]
    return {"store": store, "since": since.isoformat(), "footfall": int(row["entries"]),
            "exits": int(row["exits"]), "occupancy": max(0, int(row["entries"]) - int(row["exits"])),
            "last_count": row["last_count"].isoformat() if row["last_count"] else None}


@router.get("/stores/{store}/health", summary="Reader activity, ingest lag and recent rejects")
def health(request: Request, store: str, minutes: int = Query(15, ge=1, le=1440),
           who: Principal = Depends(principal)) -> dict[str, Any]:
    store_guard(request, store, who)
    db = request.app.state.db
    antennas = db.fetch(
        "SELECT r.reader, a.port, a.zone_id IS NOT NULL AS has_zone, "
        "(SELECT max(t.ts) FROM tag_reads t WHERE t.store_id = a.store_id AND t.antenna_id = a.antenna_id "
        "  AND t.ts > now() - make_interval(mins => %s)) AS last_read, "
        "(SELECT count(*) FROM tag_reads t WHERE t.store_id = a.store_id AND t.antenna_id = a.antenna_id "
        "  AND t.ts > now() - make_interval(mins => %s)) AS reads "
        "FROM antennas a JOIN readers r USING (reader_id) JOIN stores s ON s.store_id = a.store_id "
        "WHERE s.store = %s AND a.active ORDER BY r.reader, a.port", (minutes, minutes, store))
    agents = db.fetch(
        "SELECT agent, max(committed_at) AS last_commit, count(*) AS batches, sum(n_rows) AS rows "
        "FROM ingest_ledger l JOIN stores s USING (store_id) WHERE s.store = %s "
        "AND committed_at > now() - make_interval(mins => %s) GROUP BY agent ORDER BY agent", (store, minutes))
    rejects = db.fetch(
        "SELECT reason, count(*) AS n, max(created_at) AS last FROM rejects r JOIN stores s USING (store_id) "
        "WHERE s.store = %s AND created_at > now() - interval '24 hours' GROUP BY reason ORDER BY n DESC LIMIT 20",
        (store,))
    return {
        "store": store, "window_minutes": minutes,
        "antennas": [{**a, "last_read": a["last_read"].isoformat() if a["last_read"] else None,
                      "silent": a["reads"] == 0} for a in antennas],
        "agents": [{**a, "last_commit": a["last_commit"].isoformat(), "rows": int(a["rows"] or 0)} for a in agents],
        "rejects_24h": [{**r, "last": r["last"].isoformat()} for r in rejects],
    }
