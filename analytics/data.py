"""In-memory arrays the analytics kernels work on (struct of arrays, no per-row Python objects).

:class:`Reads` holds one store's reads sorted by (tag, ts_us); :class:`AntennaMap` and
:class:`ZoneMap` describe the store's geometry with dense 0-based indices that the reads refer to.
The database loader (``analytics.job``) and the simulator adapters produce these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storeflow.layout import Layout

__all__ = ["Reads", "AntennaMap", "ZoneMap", "antenna_map", "zone_map"]


@dataclass(frozen=True)
class Reads:
    """Tag reads sorted by (tag, ts_us). All arrays have the same length."""

    tag: np.ndarray        # int32: tag id (database tag_id, or any dense/sparse integer id)
    ts_us: np.ndarray      # int64: epoch microseconds
    antenna: np.ndarray    # int32: index into the store's AntennaMap
    rssi_dbm: np.ndarray   # float32: dBm
    count: np.ndarray      # int32: reads aggregated into this row (>= 1)

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    @staticmethod
    def sorted_from(tag: np.ndarray, ts_us: np.ndarray, antenna: np.ndarray, rssi_dbm: np.ndarray,
                    count: np.ndarray | None = None) -> Reads:
        """Build from unsorted columns (converted to the canonical dtypes, sorted by tag then time)."""
        tag = np.asarray(tag, np.int32)
        ts_us = np.asarray(ts_us, np.int64)
        order = np.lexsort((ts_us, tag))
        cnt = np.ones(len(tag), np.int32) if count is None else np.asarray(count, np.int32)[order]
        return Reads(tag[order], ts_us[order], np.asarray(antenna, np.int32)[order],
                     np.asarray(rssi_dbm, np.float32)[order], cnt)

    def tag_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique tags, start offsets with a final end offset): reads of tags[i] are [off[i], off[i+1])."""
        if len(self) == 0:
            return np.zeros(0, np.int32), np.zeros(1, np.int64)
        change = np.flatnonzero(np.diff(self.tag)) + 1
        starts = np.concatenate(([0], change)).astype(np.int64)
        return self.tag[starts], np.concatenate((starts, [len(self)])).astype(np.int64)


@dataclass(frozen=True)
class AntennaMap:
    """The store's antennas; index i is what Reads.antenna refers to."""

    antenna_id: np.ndarray  # int32: database antenna_id (or -1 when not from a database)
    reader: list[str]       # reader id per antenna
    port: np.ndarray        # int32
    floor: np.ndarray       # int32
    x_m: np.ndarray         # float64
    y_m: np.ndarray         # float64
    zone: np.ndarray        # int32: index into ZoneMap of the zone the antenna is installed for, -1 none

    def __len__(self) -> int:
        return int(self.port.shape[0])

    def index(self) -> dict[tuple[str, int], int]:
        """(reader, port) -> antenna index."""
        return {(r, int(p)): i for i, (r, p) in enumerate(zip(self.reader, self.port))}


@dataclass(frozen=True)
class ZoneMap:
    """The store's zones; index i is a zone index used by the kernels."""

    zone: list[str]          # zone code
    kind: list[str]          # counter | entrance | checkout | aisle | staff_only
    floor: np.ndarray        # int32
    poly_start: np.ndarray   # int64: polygon vertices of zone i are [poly_start[i], poly_start[i+1])
    poly_xy: np.ndarray      # float64 (n_vertices, 2), metres

    def __len__(self) -> int:
        return len(self.zone)

    def polygon(self, i: int) -> np.ndarray:
        return self.poly_xy[self.poly_start[i]:self.poly_start[i + 1]]


def zone_map(layout: Layout) -> ZoneMap:
    """Zones of a layout in file order."""
    starts = [0]
    pts: list[tuple[float, float]] = []
    for z in layout.zones:
        pts.extend(z.polygon)
        starts.append(len(pts))
    return ZoneMap([z.zone for z in layout.zones], [z.kind for z in layout.zones],
                   np.array([z.floor for z in layout.zones], np.int32), np.array(starts, np.int64),
                   np.array(pts, np.float64).reshape(-1, 2))


def antenna_map(layout: Layout, antenna_ids: dict[tuple[str, int], int] | None = None) -> AntennaMap:
    """Antennas of a layout in file order; database ids from ``antenna_ids`` when given."""
    zidx = {z.zone: i for i, z in enumerate(layout.zones)}
    pairs = layout.antennas()
    ids = antenna_ids or {}
    return AntennaMap(
        np.array([ids.get((r, a.port), -1) for r, a in pairs], np.int32),
        [r for r, _ in pairs],
        np.array([a.port for _, a in pairs], np.int32),
        np.array([a.floor for _, a in pairs], np.int32),
        np.array([a.x for _, a in pairs], np.float64),
        np.array([a.y for _, a in pairs], np.float64),
        np.array([zidx[a.zone] if a.zone else -1 for _, a in pairs], np.int32),
    )
