"""Floor heatmaps: customer tag-seconds per cell per floor per time bucket (SPEC section 3).

Each :class:`~analytics.positions.Positions` row stands for ``step_s`` seconds of one tag at one
point; that time (clipped to ``[from_us, to_us)`` and split at bucket boundaries) is added to the
cell holding the point, ``ix = floor(x_m / cell_m)``, ``iy = floor(y_m / cell_m)``. Only customer
tags count (staff and asset tags are excluded before positions are even estimated).

:func:`compute_heatmap` spreads by default: a row's seconds are shared over the cells by the mass
of its position posterior (a Gaussian of the estimator's own variance per axis) in each cell, over
walkable cells only (not centred in a ``staff_only`` zone). That is the expected tag-seconds per cell
given the reads, and it avoids the spurious hot spots a point estimate makes at its few favourite
spots. With ``presence`` (zone presence spans, :func:`analytics.presence.zone_presence`), the spread
of a step the tag spends in a zone stays in that zone's cells, and a step placed in no zone stays
out of the antenna zones (falling back to the plain spread when the two disagree). With ``transit``
(default), the unread time of floor changes is added first (:func:`analytics.transit.transit_positions`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

from analytics.data import AntennaMap, Reads
from analytics.positions import PathLossModel, Positions, RangeModel, estimate_positions, floor_geometry
from analytics.positions import points_in_polygon as _inside
from analytics.transit import transit_positions
from storeflow.layout import Layout
from storeflow.settings import store_params

__all__ = ["HEAT_DTYPE", "compute_heatmap", "bin_positions", "walkable_cells"]

from analytics.config import NJIT as _NJIT
from analytics.config import NJIT_PARALLEL as _NJIT_PARALLEL

HEAT_DTYPE = np.dtype([("floor", "i4"), ("bucket_us", "i8"), ("ix", "i2"), ("iy", "i2"), ("seconds", "f4")])

#: The spread's Gaussian is cut at this many sigmas per axis (and renormalised over the box): 2.5
#: keeps 98.8 % of the mass per axis and costs (2.5 / 3)^2 = 0.7 of the cells a 3-sigma box does.
_CUT_SIGMAS = 2.5

#: Dense accumulation up to this many (bucket x cell) slots; beyond it, a sort-based reduction.
_DENSE_MAX = 1 << 23


@njit(**_NJIT)
def _bin_kernel(ts_us, fl_idx, x_m, y_m, use, step_us, from_us, to_us, bucket_us, b0, cell_m,
                nx, ny, cell_off, n_cells, dense, grid, out_key, out_sec):  # pragma: no cover - jit
    """Per row and bucket piece: slot = bucket_index * n_cells + cell_off[floor] + ix * ny + iy.

    ``dense``: add the seconds into ``grid[slot]``; else list (slot, seconds) pieces in out_key/out_sec.
    """
    n_out = 0
    for r in range(ts_us.shape[0]):
        if not use[r]:
            continue
        t0 = max(ts_us[r], from_us)
        t1 = min(ts_us[r] + step_us, to_us)
        if t0 >= t1:
            continue
        f = fl_idx[r]
        ix = int(math.floor(x_m[r] / cell_m))
        iy = int(math.floor(y_m[r] / cell_m))
        ix = min(max(ix, 0), nx[f] - 1)
        iy = min(max(iy, 0), ny[f] - 1)
        cell = cell_off[f] + ix * ny[f] + iy
        while t0 < t1:
            bk = t0 // bucket_us
            e = min(t1, (bk + 1) * bucket_us)
            slot = (bk - b0) * n_cells + cell
            if dense:
                grid[slot] += (e - t0) * 1e-6
            else:
                out_key[n_out] = slot
                out_sec[n_out] = (e - t0) * 1e-6
                n_out += 1
            t0 = e
    return n_out


#: erf tabulated every 1/512 on [-4.5, 4.5] (beyond: +-1; linear interpolation error < 1e-6): the
#: spread's Gaussian cell masses; a library erf per cell boundary was ~40 % of the spreading time.
_ERF_Z = 4.5
_ERF_PER_UNIT = 512.0
_ERF_TAB = np.array([math.erf(-_ERF_Z + i / _ERF_PER_UNIT)
                     for i in range(int(2 * _ERF_Z * _ERF_PER_UNIT) + 1)])


@njit(**_NJIT)
def _erf(z):  # pragma: no cover - jit
    u = (z + _ERF_Z) * _ERF_PER_UNIT
    if u <= 0.0:
        return -1.0
    if u >= _ERF_TAB.shape[0] - 1:
        return 1.0
    i = int(u)
    return _ERF_TAB[i] + (u - i) * (_ERF_TAB[i + 1] - _ERF_TAB[i])


@njit(**_NJIT)
def _allowed(c, zr, walk, in_zone, any_zone):  # pragma: no cover - jit
    if not walk[c]:
        return False
    if zr == -2:
        return True
    if zr == -1:
        return not any_zone[c]
    return in_zone[zr, c]


@njit(**_NJIT)
def _spread_kernel(ts_us, fl_idx, x_m, y_m, var_m2, use, step_us, from_us, to_us, bucket_us, b0, cell_m,
                   nx, ny, cell_off, n_cells, walk, blocked_cum, cum_off, row_zone, in_zone, any_zone, zone_box,
                   grid):  # pragma: no cover - jit
    """Like :func:`_bin_kernel` (dense), but each row's seconds are shared over the cells by the mass of a
    Gaussian (sigma = sqrt(var_m2), per axis, cut at ``_CUT_SIGMAS`` sigma) in each cell, over walkable cells only.

    ``row_zone``: per row, the zone the tag is in (index into ``in_zone``, a cell mask per zone), -1
    for "in none of the zones of ``any_zone``" or -2 for unknown; the Gaussian is restricted to those
    cells, and falls back to all walkable cells when it has no mass there. Rows with sigma below a
    tenth of a cell, or whose Gaussian lies on unwalkable cells only, go to the cell holding the
    point. Bucket slots outside ``grid`` are skipped (the caller chunks buckets). ``blocked_cum``: per
    floor (from ``cum_off``) the 2-D prefix sums of unwalkable cells, so that a box without any (and no
    zone constraint) skips the per-cell checks. ``zone_box``: per zone (floor index, ix0, ix1, iy0, iy1)
    of its cells' bounding box, so that a row in a zone only visits the part of its box that can hold
    zone cells.
    """
    n_slots = grid.shape[0]
    wx = np.empty(64)
    wy = np.empty(64)
    eb = np.empty(65)
    wb = np.zeros(64 * 64)  # the row's cell weights (0 where not allowed), [(i - i0) * 64 + (j - j0)]
    for r in range(ts_us.shape[0]):
        if not use[r]:
            continue
        t0 = max(ts_us[r], from_us)
        t1 = min(ts_us[r] + step_us, to_us)
        if t0 >= t1:
            continue
        f = fl_idx[r]
        x = x_m[r]
        y = y_m[r]
        px = min(max(int(math.floor(x / cell_m)), 0), nx[f] - 1)
        py = min(max(int(math.floor(y / cell_m)), 0), ny[f] - 1)
        sig = math.sqrt(max(var_m2[r], 0.0))
        zr = row_zone[r]
        i0 = px
        i1 = px
        j0 = py
        j1 = py
        # the cells visited ([a0, a1] x [c0, c1], inside the box) and weighted into wb
        a0 = 0
        a1 = -1
        c0 = 0
        c1 = -1
        tot = 0.0
        open_box = False
        if sig >= 0.1 * cell_m:
            rad = min(_CUT_SIGMAS * sig, 31.0 * cell_m)
            i0 = max(int(math.floor((x - rad) / cell_m)), 0)
            i1 = min(int(math.floor((x + rad) / cell_m)), nx[f] - 1)
            j0 = max(int(math.floor((y - rad) / cell_m)), 0)
            j1 = min(int(math.floor((y + rad) / cell_m)), ny[f] - 1)
            k = 1.0 / (sig * math.sqrt(2.0))
            for i in range(i0, i1 + 2):  # each cell boundary's erf once
                eb[i - i0] = _erf((i * cell_m - x) * k)
            for i in range(i0, i1 + 1):
                wx[i - i0] = 0.5 * (eb[i + 1 - i0] - eb[i - i0])
            for j in range(j0, j1 + 2):
                eb[j - j0] = _erf((j * cell_m - y) * k)
            for j in range(j0, j1 + 1):
                wy[j - j0] = 0.5 * (eb[j + 1 - j0] - eb[j - j0])
            s1 = ny[f] + 1
            q0 = cum_off[f]
            n_blocked = (blocked_cum[q0 + (i1 + 1) * s1 + j1 + 1] - blocked_cum[q0 + i0 * s1 + j1 + 1]
                         - blocked_cum[q0 + (i1 + 1) * s1 + j0] + blocked_cum[q0 + i0 * s1 + j0])
            if zr == -2 and n_blocked == 0:
                open_box = True
                sx = 0.0
                for i in range(i1 - i0 + 1):
                    sx += wx[i]
                sy = 0.0
                for j in range(j1 - j0 + 1):
                    sy += wy[j]
                tot = sx * sy
            for attempt in range(2):
                if open_box:
                    break
                if attempt == 1:
                    if tot > 0.0 or zr == -2:
                        break
                    zr = -2  # the zone and the position disagree: trust the position
                a0 = i0
                a1 = i1
                c0 = j0
                c1 = j1
                if zr >= 0:
                    if zone_box[zr, 0] == f:
                        a0 = max(i0, zone_box[zr, 1])
                        a1 = min(i1, zone_box[zr, 2])
                        c0 = max(j0, zone_box[zr, 3])
                        c1 = min(j1, zone_box[zr, 4])
                    else:
                        a1 = a0 - 1
                for i in range(a0, a1 + 1):
                    cr = cell_off[f] + i * ny[f]
                    wr = (i - i0) * 64 - j0
                    for j in range(c0, c1 + 1):
                        w = 0.0
                        if _allowed(cr + j, zr, walk, in_zone, any_zone):
                            w = wx[i - i0] * wy[j - j0]
                            tot += w
                        wb[wr + j] = w
        if tot <= 0.0:  # a point (or nothing walkable around it): the cell holding it
            open_box = False
            i0 = px
            j0 = py
            a0 = px
            a1 = px
            c0 = py
            c1 = py
            wb[0] = 1.0
            tot = 1.0
        while t0 < t1:
            bk = t0 // bucket_us
            e = min(t1, (bk + 1) * bucket_us)
            base = (bk - b0) * n_cells
            if 0 <= base < n_slots:
                sec = (e - t0) * 1e-6 / tot
                if open_box:
                    nj = j1 - j0 + 1
                    for i in range(i0, i1 + 1):
                        g0 = base + cell_off[f] + i * ny[f] + j0
                        si = sec * wx[i - i0]
                        # a view from index 0: numba drops its negative-index wraparound, LLVM vectorizes
                        col = grid[g0:g0 + nj]
                        for jj in range(nj):
                            col[jj] += si * wy[jj]
                else:
                    nj = c1 - c0 + 1
                    for i in range(a0, a1 + 1):
                        g0 = base + cell_off[f] + i * ny[f] + c0
                        w0 = (i - i0) * 64 + (c0 - j0)
                        col = grid[g0:g0 + nj]
                        wrow = wb[w0:w0 + nj]
                        for jj in range(nj):
                            col[jj] += sec * wrow[jj]
            t0 = e


@njit(**_NJIT_PARALLEL)
def _spread_parallel(bounds, ts_us, fl_idx, x_m, y_m, var_m2, use, step_us, from_us, to_us, bucket_us, b0, cell_m,
                     nx, ny, cell_off, n_cells, walk, blocked_cum, cum_off, row_zone, in_zone, any_zone,
                     zone_box, grids):  # pragma: no cover - jit
    """:func:`_spread_kernel` over row chunks ``[bounds[k], bounds[k + 1])`` in parallel, chunk k into
    ``grids[k]`` (the caller sums them)."""
    for k in numba.prange(bounds.shape[0] - 1):
        a = bounds[k]
        b = bounds[k + 1]
        _spread_kernel(ts_us[a:b], fl_idx[a:b], x_m[a:b], y_m[a:b], var_m2[a:b], use[a:b], step_us, from_us,
                       to_us, bucket_us, b0, cell_m, nx, ny, cell_off, n_cells, walk, blocked_cum, cum_off,
                       row_zone[a:b], in_zone, any_zone, zone_box, grids[k])


#: Rows below which the spread runs on one thread (a grid per thread is not worth it).
_PARALLEL_MIN_ROWS = 200_000


def _cell_centres(layout: Layout, cell_m: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
    fl_num, fl_w, fl_d = floor_geometry(layout)
    out = []
    for f, w, d in zip(fl_num, fl_w, fl_d):
        nx = int(np.ceil(w / cell_m - 1e-9))
        ny = int(np.ceil(d / cell_m - 1e-9))
        cx = ((np.arange(nx) + 0.5) * cell_m)[:, None].repeat(ny, 1)
        cy = ((np.arange(ny) + 0.5) * cell_m)[None, :].repeat(nx, 0)
        out.append((int(f), cx.ravel(), cy.ravel()))
    return out


def zone_cells(layout: Layout, cell_m: float) -> np.ndarray:
    """Bool [zone (layout order), cell]: the cell centre lies inside the zone's polygon (same floor)."""
    parts = _cell_centres(layout, cell_m)
    n = sum(len(cx) for _, cx, _ in parts)
    out = np.zeros((len(layout.zones), n), np.bool_)
    off = 0
    for f, cx, cy in parts:
        for zi, z in enumerate(layout.zones):
            if z.floor == f:
                out[zi, off:off + len(cx)] = _inside(cx, cy, z.polygon)
        off += len(cx)
    return out


def walkable_cells(layout: Layout, cell_m: float) -> np.ndarray:
    """Bool per cell (floors in order, ``ix * ny + iy`` within a floor): False where the cell centre lies
    inside a ``staff_only`` zone (customers never stand there)."""
    parts = _cell_centres(layout, cell_m)
    out = []
    for f, cx, cy in parts:
        walk = np.ones(cx.shape, np.bool_)
        for z in layout.zones:
            if z.kind == "staff_only" and z.floor == f:
                walk &= ~_inside(cx, cy, z.polygon)
        out.append(walk)
    return np.concatenate(out) if out else np.zeros(0, np.bool_)


def _blocked_prefix(walk: np.ndarray, nx: np.ndarray, ny: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per floor the (nx + 1) x (ny + 1) prefix sums of unwalkable cells, flattened; each floor's offset."""
    parts, offs, off, c = [], [], 0, 0
    for fx, fy in zip(nx, ny):
        b = (~walk[c:c + fx * fy]).reshape(fx, fy).astype(np.int64)
        cum = np.zeros((fx + 1, fy + 1), np.int64)
        cum[1:, 1:] = b.cumsum(0).cumsum(1)
        parts.append(cum.ravel())
        offs.append(off)
        off += cum.size
        c += fx * fy
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), np.array(offs, np.int64)


def _zone_boxes(in_zone: np.ndarray, cell_off: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """Per zone row of ``in_zone``: (floor index, ix0, ix1, iy0, iy1) of its cells; floor -1 when it has none."""
    out = np.full((in_zone.shape[0], 5), -1, np.int64)
    for z in range(in_zone.shape[0]):
        c = np.flatnonzero(in_zone[z])
        if len(c) == 0:
            continue
        f = int(np.searchsorted(cell_off, c[0], side="right") - 1)
        c = c[c < cell_off[f + 1]] - cell_off[f]  # a zone lies on one floor; keep its first floor's cells
        ix, iy = c // ny[f], c % ny[f]
        out[z] = (f, ix.min(), ix.max(), iy.min(), iy.max())
    return out


def bin_positions(pos: Positions, layout: Layout, cell_m: float, from_us: int, to_us: int,
                  bucket_s: int = 3600, customer_tags: np.ndarray | None = None,
                  spread: bool = False, row_zone: np.ndarray | None = None,
                  presence_zones: np.ndarray | None = None) -> np.ndarray:
    """Tag-seconds per (floor, bucket, ix, iy) of ``pos`` within ``[from_us, to_us)``; HEAT_DTYPE rows.

    ``customer_tags``: tag ids to count (all when None). ``spread``: share each row's seconds over
    the walkable cells (:func:`walkable_cells`) by its position uncertainty (``pos.var_m2``, a
    Gaussian per axis; the expected tag-seconds per cell) instead of the one cell holding the point.
    ``row_zone`` (with ``spread``): per row the zone index (layout order) the tag is in, -1 for none
    of ``presence_zones`` (zone indices a tag can be placed in), -2 unknown: the row's seconds then
    stay in that zone's cells (or outside all of ``presence_zones``) where its Gaussian allows.
    Rows come sorted by (floor, bucket_us, ix, iy) and only cells with seconds > 0.
    """
    if not (isinstance(cell_m, (int, float)) and math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m: must be a positive number of metres, got {cell_m!r}")
    if not (isinstance(bucket_s, (int, np.integer)) and bucket_s > 0):
        raise ValueError(f"bucket_s: must be a positive whole number of seconds, got {bucket_s!r}")
    from_us, to_us = int(from_us), int(to_us)
    if to_us < from_us:
        raise ValueError(f"to_us ({to_us}) is before from_us ({from_us})")
    fl_num, fl_w, fl_d = floor_geometry(layout)
    nx = np.ceil(fl_w / cell_m - 1e-9).astype(np.int64)
    ny = np.ceil(fl_d / cell_m - 1e-9).astype(np.int64)
    if len(nx) and max(nx.max(), ny.max()) > np.iinfo(np.int16).max:
        raise ValueError(f"cell_m: {cell_m} m gives more than 32767 cells along a floor edge")
    cell_off = np.zeros(len(nx) + 1, np.int64)
    np.cumsum(nx * ny, out=cell_off[1:])
    n_cells = int(cell_off[-1])
    bucket_us = int(bucket_s) * 1_000_000
    step_us = int(round(pos.step_s * 1e6))
    if len(pos) == 0 or to_us == from_us:
        return np.zeros(0, HEAT_DTYPE)
    fl_idx = np.searchsorted(fl_num, pos.floor).astype(np.int64)
    if (fl_idx >= len(fl_num)).any() or (fl_num[np.minimum(fl_idx, len(fl_num) - 1)] != pos.floor).any():
        raise ValueError("positions.floor: a floor is not in the layout")
    use = np.ones(len(pos), np.bool_) if customer_tags is None else np.isin(pos.tag, customer_tags)
    b0 = from_us // bucket_us
    n_buckets = (to_us - 1) // bucket_us - b0 + 1
    size = n_buckets * n_cells
    args = (pos.ts_us, fl_idx, pos.x_m, pos.y_m, use, step_us, from_us, to_us, bucket_us, b0, float(cell_m),
            nx, ny, cell_off, n_cells)
    if spread and pos.var_m2 is not None:
        walk = walkable_cells(layout, float(cell_m))
        if row_zone is None:
            rz = np.full(len(pos), -2, np.int32)
            in_zone = np.zeros((1, n_cells), np.bool_)
        else:
            rz = np.asarray(row_zone, np.int32)
            if rz.shape != (len(pos),) or (rz < -2).any() or (rz >= len(layout.zones)).any():
                raise ValueError(f"row_zone: needs one zone index (or -1, -2) per position row ({len(pos)})")
            in_zone = zone_cells(layout, float(cell_m))
        pz = np.zeros(0, np.int64) if presence_zones is None else np.asarray(presence_zones, np.int64)
        any_zone = in_zone[pz].any(0) if len(pz) and row_zone is not None else np.zeros(n_cells, np.bool_)
        blocked_cum, cum_off = _blocked_prefix(walk, nx, ny)
        zone_box = _zone_boxes(in_zone, cell_off, ny)
        per = max(1, _DENSE_MAX // max(n_cells, 1))  # buckets per dense chunk
        flats, valss = [], []
        for c0 in range(0, n_buckets, per):
            nb = min(per, n_buckets - c0)
            lo = max(from_us, (b0 + c0) * bucket_us)
            hi = min(to_us, (b0 + c0 + nb) * bucket_us)
            n_par = numba.get_num_threads() if len(pos) >= _PARALLEL_MIN_ROWS else 1
            grids = np.zeros((n_par, nb * n_cells))
            bounds = np.linspace(0, len(pos), n_par + 1).astype(np.int64)
            _spread_parallel(bounds, pos.ts_us, fl_idx, pos.x_m, pos.y_m, pos.var_m2, use, step_us, lo, hi,
                             bucket_us, b0 + c0, float(cell_m), nx, ny, cell_off, n_cells, walk, blocked_cum,
                             cum_off, rz, in_zone, any_zone, zone_box, grids)
            grid = grids[0] if n_par == 1 else grids.sum(0)
            nzf = np.flatnonzero(grid > 0)
            flats.append(nzf + c0 * n_cells)
            valss.append(grid[nzf])
        flat = np.concatenate(flats)
        vals = np.concatenate(valss)
    elif size <= _DENSE_MAX:
        grid = np.zeros(size)
        _bin_kernel(*args, True, grid, np.zeros(0, np.int64), np.zeros(0))
        flat = np.flatnonzero(grid > 0)
        vals = grid[flat]
    else:
        # each row yields at most ceil(step / bucket) + 1 pieces
        max_pieces = len(pos) * (step_us // bucket_us + 2)
        keys = np.empty(max_pieces, np.int64)
        secs = np.empty(max_pieces, np.float64)
        n = _bin_kernel(*args, False, np.zeros(0), keys, secs)
        k = keys[:n]
        order = np.argsort(k, kind="stable")
        ks = k[order]
        starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1]))) if n else np.zeros(0, np.int64)
        flat = ks[starts]
        vals = np.add.reduceat(secs[:n][order], starts) if n else np.zeros(0)
        keep = vals > 0
        flat, vals = flat[keep], vals[keep]
    bucket_idx = flat // n_cells
    cell = flat % n_cells
    f = np.searchsorted(cell_off, cell, side="right") - 1
    local = cell - cell_off[f]
    out = np.empty(len(flat), HEAT_DTYPE)
    out["floor"] = fl_num[f]
    out["bucket_us"] = (b0 + bucket_idx) * bucket_us
    out["ix"] = local // ny[f]
    out["iy"] = local % ny[f]
    out["seconds"] = vals
    order = np.lexsort((out["iy"], out["ix"], out["bucket_us"], out["floor"]))
    return out[order]


def compute_heatmap(reads: Reads, antennas: AntennaMap, layout: Layout, customer: np.ndarray, cell_m: float,
                    from_us: int, to_us: int, bucket_s: int = 3600, step_s: float = 1.0,
                    model: PathLossModel | None = None, range_model: RangeModel | None = None,
                    method: str = "grid", spread: bool = True, presence=None,
                    presence_zones: np.ndarray | None = None, positions: Positions | None = None,
                    transit: bool = True, trip_gap_s: float | None = None) -> np.ndarray:
    """Customer tag-seconds per ``cell_m`` cell per floor per ``bucket_s`` bucket in ``[from_us, to_us)``.

    ``customer``: bool per read row, True for customer tags (all reads of a tag must agree). The
    path-loss and range models are learnt from all reads (staff help calibrate) unless given;
    positions (``method``, see :func:`~analytics.positions.estimate_positions`) are estimated for
    customer tags only, unless ``positions`` (of exactly those tags, e.g. the ones the analyze job
    refined visits with) are given. ``transit``: fill floor changes' unread time (gaps up to
    ``trip_gap_s`` seconds, default the store's setting) along learnt transfer points. Returns
    :data:`HEAT_DTYPE` rows with seconds > 0.
    """
    customer = np.asarray(customer)
    if customer.dtype != np.bool_ or customer.shape != (len(reads),):
        raise ValueError(f"customer: must be a bool array with one value per read ({len(reads)}), "
                         f"got {customer.dtype} {customer.shape}")
    tags, starts = reads.tag_bounds()
    if len(reads) == 0:
        return np.zeros(0, HEAT_DTYPE)
    first = customer[starts[:-1]]
    per_row = np.repeat(first, np.diff(starts))
    if (per_row != customer).any():
        bad = int(np.flatnonzero(per_row != customer)[0])
        raise ValueError(f"customer: tag {int(reads.tag[bad])} is customer on some reads and not on others "
                         f"(row {bad})")
    cust_tags = tags[first]
    if len(cust_tags) == 0:
        return np.zeros(0, HEAT_DTYPE)
    pos = positions if positions is not None else estimate_positions(
        reads, antennas, layout, step_s=step_s, model=model, tags=cust_tags, method=method, range_model=range_model)
    if transit:
        gap_s = store_params(layout.settings)["trip_gap_s"] if trip_gap_s is None else trip_gap_s
        pos = transit_positions(pos, layout, float(gap_s))
    row_zone = None
    if presence is not None and spread:
        row_zone = presence_row_zones(pos, presence)
        if presence_zones is None:
            presence_zones = np.unique(antennas.zone[antennas.zone >= 0])
    return bin_positions(pos, layout, cell_m, from_us, to_us, bucket_s, spread=spread, row_zone=row_zone,
                         presence_zones=presence_zones)


def presence_row_zones(pos: Positions, presence) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per position row, the zone of the presence span holding the middle of its step.

    -1: a span placed in no zone; -2: no span covers it.
    """
    out = np.full(len(pos), -2, np.int32)
    if len(pos) == 0 or len(presence) == 0:
        return out
    t_mid = pos.ts_us + int(round(pos.step_s * 5e5))
    # presence spans sorted by (tag, start): last span of the same tag starting at or before t_mid
    order = np.lexsort((presence.start_us, presence.tag))
    ptag = presence.tag[order].astype(np.int64)
    pst = presence.start_us[order]
    pen = presence.end_us[order]
    pz = presence.zone[order]
    t_lo = min(int(pst.min()), int(t_mid.min()))
    span = max(int(pen.max()), int(t_mid.max())) - t_lo + 1
    key_p = ptag * span + (pst - t_lo)
    key_r = pos.tag.astype(np.int64) * span + (t_mid - t_lo)
    i = np.searchsorted(key_p, key_r, side="right") - 1
    ok = i >= 0
    ic = np.maximum(i, 0)
    ok &= (ptag[ic] == pos.tag) & (pen[ic] > t_mid)
    out[ok] = pz[ic[ok]]
    return out
