"""Store dimensions in the database: write a validated layout, read it back with its numeric ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg

from storeflow.contract import BadInput
from storeflow.layout import Layout, parse_layout

__all__ = ["upsert_layout", "StoreDims", "load_store_dims", "read_plan_image"]

#: magic bytes -> media type of the floor plan images we accept
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
PLAN_MAX_BYTES = 20 * 1024 * 1024


def read_plan_image(source_dir: Path, floor: int, plan: str) -> tuple[bytes, str]:
    """(bytes, media type) of a floor's plan image, a path relative to the layout file.

    :class:`BadInput` naming the floor when the file is missing, too large or not PNG/JPEG/GIF/WebP/SVG.
    """
    path = source_dir / plan
    where = f"floors[floor={floor}].plan"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{where}: cannot read plan image {str(path)!r} ({e.strerror or e})") from None
    if len(data) > PLAN_MAX_BYTES:
        raise BadInput(f"{where}: plan image {str(path)!r} is larger than {PLAN_MAX_BYTES // 2**20} MB")
    for magic, media in _IMAGE_MAGIC:
        if data.startswith(magic):
            return data, media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data, "image/webp"
    if b"<svg" in data[:2048].lower():
        return data, "image/svg+xml"
    raise BadInput(f"{where}: {str(path)!r} is not a PNG, JPEG, GIF, WebP or SVG image")


def upsert_layout(conn: psycopg.Connection, layout: Layout) -> int:
    """Create or update a store from its layout in one transaction; return its store_id.

    Re-importing is idempotent. Zones, antennas and doors that the new layout no longer has are
    marked inactive, not deleted, so historic reads and visits keep their references.
    """
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO stores (store, name, timezone, settings, layout) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (store) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, "
            "settings = EXCLUDED.settings, layout = EXCLUDED.layout, updated_at = now() RETURNING store_id",
            (layout.store, layout.name, layout.timezone, json.dumps(layout.settings),
             json.dumps(layout.to_dict())),
        ).fetchone()
        assert row is not None
        sid = int(row[0])
        for f in layout.floors:
            conn.execute(
                "INSERT INTO floors (store_id, floor, width_m, depth_m, plan) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (store_id, floor) DO UPDATE SET width_m = EXCLUDED.width_m, "
                "depth_m = EXCLUDED.depth_m, plan = EXCLUDED.plan",
                (sid, f.floor, f.width_m, f.depth_m, f.plan),
            )
            if layout.source_dir is not None:  # a layout read from a file: store its plan image
                image = read_plan_image(layout.source_dir, f.floor, f.plan) if f.plan else None
                conn.execute("UPDATE floors SET plan_image = %s, plan_media_type = %s WHERE store_id = %s "
                             "AND floor = %s", (image[0] if image else None, image[1] if image else None,
                                                sid, f.floor))
        conn.execute("UPDATE zones SET active = false WHERE store_id = %s", (sid,))
        zone_ids: dict[str, int] = {}
        for z in layout.zones:
            r = conn.execute(
                "INSERT INTO zones (store_id, zone, kind, floor, name, category, polygon) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store_id, zone) DO UPDATE SET "
                "kind = EXCLUDED.kind, floor = EXCLUDED.floor, name = EXCLUDED.name, "
                "category = EXCLUDED.category, polygon = EXCLUDED.polygon, active = true RETURNING zone_id",
                (sid, z.zone, z.kind, z.floor, z.name, z.category, json.dumps([list(p) for p in z.polygon])),
            ).fetchone()
            assert r is not None
            zone_ids[z.zone] = int(r[0])
        conn.execute("UPDATE antennas SET active = false WHERE store_id = %s", (sid,))
        for rd in layout.readers:
            r = conn.execute(
                "INSERT INTO readers (store_id, reader) VALUES (%s, %s) ON CONFLICT (store_id, reader) "
                "DO UPDATE SET reader = EXCLUDED.reader RETURNING reader_id",
                (sid, rd.reader),
            ).fetchone()
            assert r is not None
            rid = int(r[0])
            for a in rd.antennas:
                conn.execute(
                    "INSERT INTO antennas (store_id, reader_id, port, floor, x_m, y_m, zone_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (reader_id, port) DO UPDATE SET "
                    "floor = EXCLUDED.floor, x_m = EXCLUDED.x_m, y_m = EXCLUDED.y_m, "
                    "zone_id = EXCLUDED.zone_id, active = true",
                    (sid, rid, a.port, a.floor, a.x, a.y, zone_ids.get(a.zone) if a.zone else None),
                )
        conn.execute("UPDATE doors SET active = false WHERE store_id = %s", (sid,))
        for d in layout.doors:
            conn.execute(
                "INSERT INTO doors (store_id, door, floor, x_m, y_m) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (store_id, door) DO UPDATE SET floor = EXCLUDED.floor, x_m = EXCLUDED.x_m, "
                "y_m = EXCLUDED.y_m, active = true",
                (sid, d.door, d.floor, d.x, d.y),
            )
    return sid


@dataclass(frozen=True)
class StoreDims:
    """A store's layout with the database ids of its dimension rows."""

    store_id: int
    layout: Layout
    zone_ids: dict[str, int]                      # zone code -> zone_id (active zones)
    antenna_ids: dict[tuple[str, int], int]       # (reader, port) -> antenna_id (active antennas)
    door_ids: dict[str, int]                      # door code -> door_id (active doors)


def load_store_dims(conn: psycopg.Connection, store: str) -> StoreDims:
    """Read a store's layout and ids; :class:`BadInput` when the store is unknown."""
    row = conn.execute("SELECT store_id, layout FROM stores WHERE store = %s", (store,)).fetchone()
    if row is None:
        raise BadInput(f"unknown store {store!r}; import its layout first (storeflow import layout FILE)")
    sid = int(row[0])
    layout = parse_layout(row[1])
    zone_ids = {z: int(i) for z, i in conn.execute(
        "SELECT zone, zone_id FROM zones WHERE store_id = %s AND active", (sid,))}
    antenna_ids = {(r, int(p)): int(i) for r, p, i in conn.execute(
        "SELECT r.reader, a.port, a.antenna_id FROM antennas a JOIN readers r USING (reader_id) "
        "WHERE a.store_id = %s AND a.active", (sid,))}
    door_ids = {d: int(i) for d, i in conn.execute(
        "SELECT door, door_id FROM doors WHERE store_id = %s AND active", (sid,))}
    return StoreDims(sid, layout, zone_ids, antenna_ids, door_ids)
