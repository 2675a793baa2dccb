"""Floor geometry for the simulator: point-in-zone lookup and the walking graph.

Shoppers walk on an aisle graph derived from the layout: every 0.5 m cell of a floor whose centre
keeps a clearance from counters and staff-only rooms (and the outer walls) is a node, linked to its
8 neighbours; escalators link floors. Shortest paths are then straightened by line of sight, so
people walk along counter edges and round corners instead of zig-zagging. Nothing here walks
through a counter: counters are entered only on purpose, through an edge that faces an aisle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from storeflow.contract import BadInput
from storeflow.layout import Layout, Zone

__all__ = ["ZoneIndex", "NavGraph", "points_in_zones", "BLOCKING_KINDS"]

#: Zone kinds a shopper never walks through (counters are entered only on purpose).
BLOCKING_KINDS = ("counter", "staff_only")


@numba.njit(cache=True)
def _pip(x: float, y: float, poly: np.ndarray) -> bool:
    inside = False
    n = poly.shape[0]
    j = n - 1
    for i in range(n):
        xi, yi = poly[i, 0], poly[i, 1]
        xj, yj = poly[j, 0], poly[j, 1]
        if (yi > y) != (yj > y):
            xc = (xj - xi) * (y - yi) / (yj - yi) + xi
            if x < xc:
                inside = not inside
        j = i
    return inside


@numba.njit(cache=True)
def _points_in_zones(floor: np.ndarray, x: np.ndarray, y: np.ndarray, z_floor: np.ndarray,
                     z_bbox: np.ndarray, z_start: np.ndarray, z_xy: np.ndarray) -> np.ndarray:
    out = np.full(x.shape[0], -1, np.int32)
    nz = z_floor.shape[0]
    for i in range(x.shape[0]):
        px, py, pf = x[i], y[i], floor[i]
        for z in range(nz):
            if z_floor[z] != pf:
                continue
            if px < z_bbox[z, 0] or px > z_bbox[z, 2] or py < z_bbox[z, 1] or py > z_bbox[z, 3]:
                continue
            if _pip(px, py, z_xy[z_start[z]:z_start[z + 1]]):
                out[i] = z
                break
    return out


@dataclass(frozen=True)
class ZoneIndex:
    """Polygons of a subset of zones, for fast point-in-zone lookups."""

    zones: tuple[Zone, ...]
    floor: np.ndarray
    bbox: np.ndarray
    start: np.ndarray
    xy: np.ndarray

    @staticmethod
    def of(zones: tuple[Zone, ...] | list[Zone]) -> ZoneIndex:
        zs = tuple(zones)
        starts, pts = [0], []
        for z in zs:
            pts.extend(z.polygon)
            starts.append(len(pts))
        xy = np.array(pts, np.float64).reshape(-1, 2)
        bbox = np.array([[min(p[0] for p in z.polygon), min(p[1] for p in z.polygon),
                          max(p[0] for p in z.polygon), max(p[1] for p in z.polygon)] for z in zs],
                        np.float64).reshape(-1, 4)
        return ZoneIndex(zs, np.array([z.floor for z in zs], np.int64), bbox, np.array(starts, np.int64), xy)

    def lookup(self, floor: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index into ``zones`` of the zone containing each point (-1 outside all of them)."""
        if len(self.zones) == 0:
            return np.full(len(x), -1, np.int32)
        return _points_in_zones(np.asarray(floor, np.int64), np.asarray(x, np.float64),
                                np.asarray(y, np.float64), self.floor, self.bbox, self.start, self.xy)


def points_in_zones(zones: list[Zone], floor: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index into ``zones`` of the zone containing each point (-1 when in none)."""
    return ZoneIndex.of(zones).lookup(floor, x, y)


@numba.njit(cache=True)
def _dijkstra(indptr: np.ndarray, nbr: np.ndarray, w: np.ndarray, src: int) -> tuple[np.ndarray, np.ndarray]:
    n = indptr.shape[0] - 1
    dist = np.full(n, np.inf)
    pred = np.full(n, -1, np.int32)
    heap_d = np.empty(nbr.shape[0] + 1, np.float64)
    heap_v = np.empty(nbr.shape[0] + 1, np.int32)
    size = 0
    dist[src] = 0.0
    heap_d[0] = 0.0
    heap_v[0] = src
    size = 1
    while size > 0:
        d, v = heap_d[0], heap_v[0]
        size -= 1
        heap_d[0], heap_v[0] = heap_d[size], heap_v[size]
        i = 0
        while True:  # sift down
            left, right, m = 2 * i + 1, 2 * i + 2, i
            if left < size and heap_d[left] < heap_d[m]:
                m = left
            if right < size and heap_d[right] < heap_d[m]:
                m = right
            if m == i:
                break
            heap_d[i], heap_d[m] = heap_d[m], heap_d[i]
            heap_v[i], heap_v[m] = heap_v[m], heap_v[i]
            i = m
        if d > dist[v]:
            continue
        for k in range(indptr[v], indptr[v + 1]):
            u = nbr[k]
            nd = d + w[k]
            if nd < dist[u]:
                dist[u] = nd
                pred[u] = v
                j = size
                heap_d[j], heap_v[j] = nd, u
                size += 1
                while j > 0:  # sift up
                    p = (j - 1) // 2
                    if heap_d[p] <= heap_d[j]:
                        break
                    heap_d[p], heap_d[j] = heap_d[j], heap_d[p]
                    heap_v[p], heap_v[j] = heap_v[j], heap_v[p]
                    j = p
    return dist, pred


@numba.njit(cache=True)
def _line_free(free: np.ndarray, cell: float, x0: float, y0: float, x1: float, y1: float) -> bool:
    n = int(math.hypot(x1 - x0, y1 - y0) / (cell * 0.25)) + 2
    for k in range(n + 1):
        t = k / n
        ix = int((x0 + (x1 - x0) * t) / cell)
        iy = int((y0 + (y1 - y0) * t) / cell)
        if ix < 0 or iy < 0 or ix >= free.shape[0] or iy >= free.shape[1] or not free[ix, iy]:
            return False
    return True


@numba.njit(cache=True)
def _follow(pred: np.ndarray, a: int, b: int) -> np.ndarray:
    """Nodes from a to b following next hops (pred of a tree rooted at b)."""
    out = np.empty(256, np.int64)
    n = 0
    v = a
    while True:
        if n == out.shape[0]:
            bigger = np.empty(out.shape[0] * 2, np.int64)
            bigger[:n] = out[:n]
            out = bigger
        out[n] = v
        n += 1
        if v == b:
            break
        v = pred[v]
    return out[:n]


@numba.njit(cache=True)
def _pull(xs: np.ndarray, ys: np.ndarray, free: np.ndarray, cell: float) -> np.ndarray:
    """Indices of the points kept when a grid path is straightened by line of sight."""
    n = xs.shape[0]
    keep = np.empty(n, np.int64)
    m = 0
    keep[m] = 0
    m += 1
    i = 0
    while i < n - 1:
        j = n - 1
        while j > i + 1 and not _line_free(free, cell, xs[i], ys[i], xs[j], ys[j]):
            j -= 1
        keep[m] = j
        m += 1
        i = j
    return keep[:m]


class NavGraph:
    """Walkable cells of every floor as one graph (0.5 m cells, 8-neighbour links, escalators)."""

    def __init__(self, layout: Layout, cell_m: float = 0.5, clearance_m: float = 0.45,
                 escalator_ride_s: float = 25.0, walk_speed_ref_mps: float = 1.2) -> None:
        self.layout = layout
        self.cell = cell_m
        self.floors = [f.floor for f in layout.floors]
        self.free: dict[int, np.ndarray] = {}
        self.offset: dict[int, int] = {}
        self.shape: dict[int, tuple[int, int]] = {}
        blocking = [z for z in layout.zones if z.kind in BLOCKING_KINDS]
        total = 0
        for f in layout.floors:
            nx, ny = max(1, int(f.width_m / cell_m)), max(1, int(f.depth_m / cell_m))
            cx = (np.arange(nx) + 0.5) * cell_m
            cy = (np.arange(ny) + 0.5) * cell_m
            gx, gy = np.meshgrid(cx, cy, indexing="ij")
            free = (gx > 0.3) & (gx < f.width_m - 0.3) & (gy > 0.3) & (gy < f.depth_m - 0.3)
            zs = [z for z in blocking if z.floor == f.floor]
            if zs:
                # a cell is blocked when its centre, or any point within the clearance, is in a blocking zone
                idx = ZoneIndex.of(zs)
                for ox, oy in ((0, 0), (clearance_m, 0), (-clearance_m, 0), (0, clearance_m), (0, -clearance_m),
                               (0.7 * clearance_m, 0.7 * clearance_m), (-0.7 * clearance_m, 0.7 * clearance_m),
                               (0.7 * clearance_m, -0.7 * clearance_m), (-0.7 * clearance_m, -0.7 * clearance_m)):
                    hit = idx.lookup(np.full(gx.size, f.floor), (gx + ox).ravel(), (gy + oy).ravel())
                    free &= (hit < 0).reshape(gx.shape)
            self.free[f.floor] = free
            self.offset[f.floor] = total
            self.shape[f.floor] = (nx, ny)
            total += nx * ny
        self.n_nodes = total
        # per node: floor and cell-centre coordinates (metres)
        self.node_f = np.empty(total, np.int64)
        self.node_x = np.empty(total, np.float64)
        self.node_y = np.empty(total, np.float64)
        for fl, (nx, ny) in self.shape.items():
            k = np.arange(nx * ny)
            sl = slice(self.offset[fl], self.offset[fl] + nx * ny)
            self.node_f[sl] = fl
            self.node_x[sl] = (k // ny + 0.5) * cell_m
            self.node_y[sl] = (k % ny + 0.5) * cell_m
        src, dst, w = [], [], []
        for fl, free in self.free.items():
            nx, ny = free.shape
            ids = (self.offset[fl] + np.arange(nx * ny)).reshape(nx, ny)
            fx, fy = np.nonzero(free)
            for dx, dy in ((1, 0), (0, 1), (1, 1), (1, -1)):
                gx2, gy2 = fx + dx, fy + dy
                ok = (gx2 >= 0) & (gx2 < nx) & (gy2 >= 0) & (gy2 < ny)
                ok[ok] = free[gx2[ok], gy2[ok]]
                if dx and dy:  # no corner cutting past a blocked cell
                    ok[ok] = free[gx2[ok], fy[ok]] & free[fx[ok], gy2[ok]]
                ia = ids[fx[ok], fy[ok]]
                ib = ids[gx2[ok], gy2[ok]]
                length = cell_m * math.hypot(dx, dy)
                src += [ia, ib]
                dst += [ib, ia]
                w += [np.full(ia.size, length), np.full(ia.size, length)]
        #: (from node, to node, ride seconds); an escalator runs one way unless ``both_ways: true``
        self.escalators: list[tuple[int, int, float]] = []
        esc = layout.simulation.get("escalators") if isinstance(layout.simulation, dict) else None
        links = []
        if esc:
            for e in esc:
                a, b = e["from"], e["to"]
                links.append(((int(a["floor"]), float(a["x"]), float(a["y"])),
                              (int(b["floor"]), float(b["x"]), float(b["y"])), float(e.get("ride_s", escalator_ride_s)),
                              bool(e.get("both_ways", False))))
        elif len(self.floors) > 1:
            fs = sorted(self.floors)
            for f0, f1 in zip(fs, fs[1:]):
                fl0 = layout.floor(f0)
                p = (fl0.width_m / 2, fl0.depth_m / 2)
                links.append(((f0, *p), (f1, *p), escalator_ride_s, True))
        for (fa, xa, ya), (fb, xb, yb), ride_s, both_ways in links:
            na, nb = self.node_at(fa, xa, ya), self.node_at(fb, xb, yb)
            length = ride_s * walk_speed_ref_mps
            pairs = ((na, nb), (nb, na)) if both_ways else ((na, nb),)
            for u, v in pairs:
                src.append(np.array([u]))
                dst.append(np.array([v]))
                w.append(np.array([length]))
                self.escalators.append((u, v, ride_s))
        # stored transposed (an edge u -> v is listed in v's row): Dijkstra from a target on the transposed
        # graph gives, for every node, the next hop towards the target along one-way escalators
        src_a = np.concatenate(dst).astype(np.int64) if dst else np.zeros(0, np.int64)
        dst_a = np.concatenate(src).astype(np.int32) if src else np.zeros(0, np.int32)
        w_a = np.concatenate(w).astype(np.float64) if w else np.zeros(0)
        order = np.argsort(src_a, kind="stable")
        self.nbr = dst_a[order]
        self.w = w_a[order]
        self.indptr = np.zeros(self.n_nodes + 1, np.int64)
        np.cumsum(np.bincount(src_a, minlength=self.n_nodes), out=self.indptr[1:])
        self._trees: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._paths: dict[tuple[int, int], list[tuple[int, float, float]]] = {}

    # --- nodes -------------------------------------------------------------------------------
    def node_floor_xy(self, node: int) -> tuple[int, float, float]:
        """(floor, x, y) of a node's cell centre."""
        return int(self.node_f[node]), float(self.node_x[node]), float(self.node_y[node])

    def is_free(self, floor: int, x: float, y: float) -> bool:
        free = self.free[floor]
        ix, iy = int(x / self.cell), int(y / self.cell)
        return 0 <= ix < free.shape[0] and 0 <= iy < free.shape[1] and bool(free[ix, iy])

    def node_at(self, floor: int, x: float, y: float) -> int:
        """The walkable node nearest to a point (searching outwards when the point is blocked)."""
        free = self.free[floor]
        nx, ny = free.shape
        ix = min(max(int(x / self.cell), 0), nx - 1)
        iy = min(max(int(y / self.cell), 0), ny - 1)
        if free[ix, iy]:
            return self.offset[floor] + ix * ny + iy
        if not free.any():
            raise ValueError(f"floor {floor} has no walkable cell")
        fx, fy = np.nonzero(free)
        k = int(np.argmin((fx - ix) ** 2 + (fy - iy) ** 2))
        return self.offset[floor] + int(fx[k]) * ny + int(fy[k])

    # --- paths -------------------------------------------------------------------------------
    def distance(self, a: int, b: int) -> float:
        """Walking distance (metres; escalator rides as equivalent metres) between two nodes."""
        return float(self._tree(b)[0][a])

    def _tree(self, target: int) -> tuple[np.ndarray, np.ndarray]:
        t = self._trees.get(target)
        if t is None:
            t = _dijkstra(self.indptr, self.nbr, self.w, target)
            self._trees[target] = t
        return t

    def path(self, a: int, b: int) -> list[tuple[int, float, float]]:
        """Straightened walking path from node a to node b as (floor, x, y) points, ends included.

        A floor change appears as two consecutive points on different floors (the escalator ride)."""
        key = (a, b)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        dist, pred = self._tree(b)
        if not np.isfinite(dist[a]):
            fa, xa, ya = self.node_floor_xy(a)
            fb, xb, yb = self.node_floor_xy(b)
            raise BadInput(f"layout {self.layout.store!r}: no walking path from floor {fa} ({xa:.1f}, {ya:.1f}) to "
                           f"floor {fb} ({xb:.1f}, {yb:.1f}); counters or walls enclose an area, or floors "
                           "have no escalator between them")
        idx = _follow(pred, a, b)
        fl = self.node_f[idx]
        cuts = np.concatenate(([0], np.flatnonzero(np.diff(fl)) + 1, [idx.size]))
        out: list[tuple[int, float, float]] = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):  # straighten each floor's run by line of sight
            run = idx[lo:hi]
            f = int(fl[lo])
            keep = run[_pull(self.node_x[run], self.node_y[run], self.free[f], self.cell)]
            out += list(zip([f] * keep.size, self.node_x[keep].tolist(), self.node_y[keep].tolist()))
        self._paths[key] = out
        return out
