"""Store layout (SPEC section 1): parse a YAML/JSON file into a validated :class:`Layout`.

Every rejection names the offending entry and field, e.g.
``zones[3] (zone 'C04').polygon: self-intersecting (edges 0 and 2 cross)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from storeflow.contract import STORE_ID_RE, BadInput
from storeflow.settings import STORE_PARAMS

__all__ = ["Floor", "Zone", "Antenna", "Reader", "Door", "Layout", "load_layout", "parse_layout", "ZONE_KINDS"]

ZONE_KINDS = ("counter", "entrance", "checkout", "aisle", "staff_only")
#: Top-level blocks besides SPEC's that a layout may carry (kept, not interpreted here).
_EXTRA_TOP = ("settings", "simulation")


@dataclass(frozen=True)
class Floor:
    floor: int
    width_m: float
    depth_m: float
    plan: str | None = None


@dataclass(frozen=True)
class Zone:
    zone: str
    kind: str
    floor: int
    name: str
    polygon: tuple[tuple[float, float], ...]
    category: str | None = None


@dataclass(frozen=True)
class Antenna:
    port: int
    floor: int
    x: float
    y: float
    zone: str | None = None


@dataclass(frozen=True)
class Reader:
    reader: str
    antennas: tuple[Antenna, ...]


@dataclass(frozen=True)
class Door:
    door: str
    floor: int
    x: float
    y: float


@dataclass(frozen=True)
class Layout:
    store: str
    name: str
    timezone: str
    floors: tuple[Floor, ...]
    zones: tuple[Zone, ...]
    readers: tuple[Reader, ...]
    doors: tuple[Door, ...]
    settings: dict[str, float] = field(default_factory=dict)
    simulation: dict[str, Any] = field(default_factory=dict)
    source_dir: Path | None = None

    def floor(self, number: int) -> Floor:
        """The floor with this number (KeyError when absent)."""
        for f in self.floors:
            if f.floor == number:
                return f
        raise KeyError(number)

    def zone(self, zone_id: str) -> Zone:
        for z in self.zones:
            if z.zone == zone_id:
                return z
        raise KeyError(zone_id)

    @property
    def counters(self) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if z.kind == "counter")

    def antennas(self) -> list[tuple[str, Antenna]]:
        """All (reader id, antenna) pairs in file order."""
        return [(r.reader, a) for r in self.readers for a in r.antennas]

    def to_dict(self) -> dict[str, Any]:
        """The layout as SPEC-shaped plain data (round-trips through :func:`parse_layout`)."""
        out: dict[str, Any] = {
            "store": self.store,
            "name": self.name,
            "timezone": self.timezone,
            "floors": [
                {k: v for k, v in vars(f).items() if v is not None} for f in self.floors
            ],
            "zones": [
                {**{k: v for k, v in vars(z).items() if v is not None and k != "polygon"},
                 "polygon": [list(p) for p in z.polygon]}
                for z in self.zones
            ],
            "readers": [
                {"reader": r.reader, "antennas": [{k: v for k, v in vars(a).items() if v is not None}
                                                  for a in r.antennas]}
                for r in self.readers
            ],
            "doors": [vars(d).copy() for d in self.doors],
        }
        if self.settings:
            out["settings"] = dict(self.settings)
        if self.simulation:
            out["simulation"] = self.simulation
        return out


def load_layout(path: str | Path) -> Layout:
    """Read and validate a layout file (``.yaml``/``.yml``/``.json``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"{p}: cannot read layout: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{p}: layout is not UTF-8") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise BadInput(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                       f"{str(e).splitlines()[0]}") from None
    try:
        return parse_layout(data, source_dir=p.parent)
    except BadInput as e:
        raise BadInput(f"{p}: {e}") from None


class _Ctx:
    """Builds error messages that name the entry and field."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, fld: str, msg: str) -> None:
        raise BadInput(f"{self.where}.{fld}: {msg}" if fld else f"{self.where}: {msg}")

    def get(self, d: dict[str, Any], fld: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        if fld not in d or d[fld] is None:
            if required:
                self.fail(fld, "missing")
            return None
        v = d[fld]
        if kind is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(fld, f"must be a number, got {v!r}")
            return float(v)
        if kind is int:
            if isinstance(v, bool) or not isinstance(v, int):
                self.fail(fld, f"must be an integer, got {v!r}")
            return v
        if kind is str:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                self.fail(fld, f"must be text, got {v!r}")
            return str(v)
        if not isinstance(v, kind):
            self.fail(fld, f"has the wrong type ({type(v).__name__})")
        return v

    def keys(self, d: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for k in d:
            if k not in allowed:
                self.fail(str(k), f"unknown field (allowed: {', '.join(allowed)})")


def _entries(data: dict[str, Any], key: str, required: bool) -> list[Any]:
    v = data.get(key)
    if v is None:
        if required:
            raise BadInput(f"{key}: missing")
        return []
    if not isinstance(v, list):
        raise BadInput(f"{key}: must be a list")
    for i, e in enumerate(v):
        if not isinstance(e, dict):
            raise BadInput(f"{key}[{i}]: must be a mapping")
    return v


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_intersect(p1, p2, p3, p4) -> bool:  # type: ignore[no-untyped-def]
    d1, d2 = _cross(p3, p4, p1), _cross(p3, p4, p2)
    d3, d4 = _cross(p1, p2, p3), _cross(p1, p2, p4)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0 and d4 != 0:
        return True

    def on_seg(p, q, r) -> bool:  # type: ignore[no-untyped-def]
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    return (
        (d1 == 0 and on_seg(p3, p4, p1)) or (d2 == 0 and on_seg(p3, p4, p2))
        or (d3 == 0 and on_seg(p1, p2, p3)) or (d4 == 0 and on_seg(p1, p2, p4))
    )


def polygon_problem(poly: tuple[tuple[float, float], ...]) -> str | None:
    """Why a polygon is unusable (None when it is a simple polygon with positive area)."""
    n = len(poly)
    if n < 3:
        return f"needs at least 3 points, got {n}"
    for i in range(n):
        if poly[i] == poly[(i + 1) % n]:
            return f"points {i} and {(i + 1) % n} are equal"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_intersect(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]):
                return f"self-intersecting (edges {i} and {j} cross)"
    area2 = sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))
    if abs(area2) < 1e-9:
        return "has zero area"
    return None


def _within(floor: Floor, x: float, y: float) -> bool:
    return 0.0 <= x <= floor.width_m and 0.0 <= y <= floor.depth_m


def parse_layout(data: Any, source_dir: Path | None = None) -> Layout:
    """Validate SPEC layout data (as loaded from YAML/JSON) into a :class:`Layout`."""
    if not isinstance(data, dict):
        raise BadInput("layout must be a mapping with store, floors, zones, readers, doors")
    top = _Ctx("layout")
    top.keys(data, ("store", "name", "timezone", "floors", "zones", "readers", "doors", *_EXTRA_TOP))
    store = top.get(data, "store", str)
    if not STORE_ID_RE.fullmatch(store):
        top.fail("store", f"{store!r} is not a store id ([a-z0-9][a-z0-9-]{{0,39}})")
    name = top.get(data, "name", str, required=False) or store
    tz = top.get(data, "timezone", str)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        top.fail("timezone", f"{tz!r} is not an IANA time zone name")

    floors: dict[int, Floor] = {}
    for i, e in enumerate(_entries(data, "floors", True)):
        c = _Ctx(f"floors[{i}]")
        c.keys(e, ("floor", "width_m", "depth_m", "plan", "name"))
        num = c.get(e, "floor", int)
        c.where = f"floors[{i}] (floor {num})"
        if num in floors:
            c.fail("floor", f"duplicate floor {num}")
        w, d = c.get(e, "width_m", float), c.get(e, "depth_m", float)
        if w <= 0:
            c.fail("width_m", "must be positive")
        if d <= 0:
            c.fail("depth_m", "must be positive")
        floors[num] = Floor(num, w, d, c.get(e, "plan", str, required=False))
    if not floors:
        raise BadInput("floors: at least one floor is needed")

    zones: dict[str, Zone] = {}
    for i, e in enumerate(_entries(data, "zones", False)):
        c = _Ctx(f"zones[{i}]")
        c.keys(e, ("zone", "kind", "floor", "name", "category", "polygon"))
        zid = c.get(e, "zone", str)
        c.where = f"zones[{i}] (zone {zid!r})"
        if zid in zones:
            c.fail("zone", f"duplicate zone id {zid!r}")
        kind = c.get(e, "kind", str)
        if kind not in ZONE_KINDS:
            c.fail("kind", f"{kind!r} is not one of {', '.join(ZONE_KINDS)}")
        fl = c.get(e, "floor", int)
        if fl not in floors:
            c.fail("floor", f"unknown floor {fl}")
        raw = c.get(e, "polygon", list)
        pts: list[tuple[float, float]] = []
        for k, p in enumerate(raw):
            if (not isinstance(p, (list, tuple)) or len(p) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in p)):
                c.fail("polygon", f"point {k} must be [x, y] numbers, got {p!r}")
            pts.append((float(p[0]), float(p[1])))
        if len(pts) > 3 and pts[0] == pts[-1]:
            pts.pop()  # a closed ring repeats its first point
        poly = tuple(pts)
        problem = polygon_problem(poly)
        if problem:
            c.fail("polygon", problem)
        for k, (x, y) in enumerate(poly):
            if not _within(floors[fl], x, y):
                c.fail("polygon", f"point {k} ({x}, {y}) is outside floor {fl}")
        zones[zid] = Zone(zid, kind, fl, c.get(e, "name", str, required=False) or zid, poly,
                          c.get(e, "category", str, required=False))

    readers: dict[str, Reader] = {}
    for i, e in enumerate(_entries(data, "readers", False)):
        c = _Ctx(f"readers[{i}]")
        c.keys(e, ("reader", "antennas", "model", "name"))
        rid = c.get(e, "reader", str)
        c.where = f"readers[{i}] (reader {rid!r})"
        if rid in readers:
            c.fail("reader", f"duplicate reader id {rid!r}")
        ants: dict[int, Antenna] = {}
        raw_ants = c.get(e, "antennas", list)
        if not raw_ants:
            c.fail("antennas", "at least one antenna is needed")
        for k, a in enumerate(raw_ants):
            ac = _Ctx(f"readers[{i}] (reader {rid!r}).antennas[{k}]")
            if not isinstance(a, dict):
                ac.fail("", "must be a mapping")
            ac.keys(a, ("port", "floor", "x", "y", "zone"))
            port = ac.get(a, "port", int)
            if port < 1:
                ac.fail("port", f"must be >= 1, got {port}")
            if port in ants:
                ac.fail("port", f"duplicate port {port} on reader {rid!r}")
            fl = ac.get(a, "floor", int)
            if fl not in floors:
                ac.fail("floor", f"unknown floor {fl}")
            x, y = ac.get(a, "x", float), ac.get(a, "y", float)
            if not _within(floors[fl], x, y):
                ac.fail("x" if not 0 <= x <= floors[fl].width_m else "y",
                        f"antenna at ({x}, {y}) is outside floor {fl} "
                        f"({floors[fl].width_m} x {floors[fl].depth_m} m)")
            z = ac.get(a, "zone", str, required=False)
            if z is not None and z not in zones:
                ac.fail("zone", f"unknown zone {z!r}")
            ants[port] = Antenna(port, fl, x, y, z)
        readers[rid] = Reader(rid, tuple(ants.values()))

    doors: dict[str, Door] = {}
    for i, e in enumerate(_entries(data, "doors", False)):
        c = _Ctx(f"doors[{i}]")
        c.keys(e, ("door", "floor", "x", "y", "name"))
        did = c.get(e, "door", str)
        c.where = f"doors[{i}] (door {did!r})"
        if did in doors:
            c.fail("door", f"duplicate door id {did!r}")
        fl = c.get(e, "floor", int)
        if fl not in floors:
            c.fail("floor", f"unknown floor {fl}")
        x, y = c.get(e, "x", float), c.get(e, "y", float)
        if not _within(floors[fl], x, y):
            c.fail("x", f"door at ({x}, {y}) is outside floor {fl}")
        doors[did] = Door(did, fl, x, y)

    settings: dict[str, float] = {}
    raw_settings = data.get("settings") or {}
    if not isinstance(raw_settings, dict):
        raise BadInput("settings: must be a mapping")
    sc = _Ctx("settings")
    for key in raw_settings:
        if key not in STORE_PARAMS:
            sc.fail(str(key), f"unknown store setting (allowed: {', '.join(STORE_PARAMS)})")
        v = sc.get(raw_settings, key, float)
        if v <= 0:
            sc.fail(key, "must be positive")
        settings[key] = v
    simulation = data.get("simulation") or {}
    if not isinstance(simulation, dict):
        raise BadInput("simulation: must be a mapping")

    return Layout(store, name, tz, tuple(floors.values()), tuple(zones.values()), tuple(readers.values()),
                  tuple(doors.values()), settings, simulation, source_dir)
