"""Slow, obviously-correct references for the positions, heatmap and footfall kernels (pure Python).

They follow the documented method step by step with dicts and lists; tests compare the numba
kernels with them on random inputs. Also a small synthetic store generator (our own simple RF
model, unrelated to the simulator's) for tests that need plausible reads.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from analytics.data import AntennaMap, Reads, antenna_map
from analytics.positions import PathLossModel, RangeModel
from storeflow.layout import Layout, parse_layout

LN10 = math.log(10.0)


def naive_solve(ants: list[tuple[float, float, float, float]], prior: tuple[float, float, float] | None,
                iters: int = 10, huber_c: float = 2.0) -> tuple[float, float]:
    """Levenberg-Marquardt on the Huber cost of range residuals + qw*|p-q|^2; ants = (x, y, d, w).

    Without a prior, the weighted antenna centroid with weight 1/16 (sigma 4 m) is the prior.
    """
    sw = sum(w for _, _, _, w in ants)
    if prior is None:
        prior = (sum(w * ax for ax, _, _, w in ants) / sw, sum(w * ay for _, ay, _, w in ants) / sw, 1 / 16)
    qx, qy, qw = prior

    def cost(x: float, y: float) -> float:
        c = qw * ((x - qx) ** 2 + (y - qy) ** 2)
        for ax, ay, d, w in ants:
            z = abs(math.sqrt((x - ax) ** 2 + (y - ay) ** 2) - d) * math.sqrt(w)
            c += z * z if z <= huber_c else 2 * huber_c * z - huber_c ** 2
        return c

    x = (sum(w * ax for ax, _, _, w in ants) + qw * qx) / (sw + qw)
    y = (sum(w * ay for _, ay, _, w in ants) + qw * qy) / (sw + qw)
    best = cost(x, y)
    lam = 1e-3
    for _ in range(iters):
        h = [[qw, 0.0], [0.0, qw]]
        g = [qw * (x - qx), qw * (y - qy)]
        for ax, ay, d, w in ants:
            r = math.hypot(x - ax, y - ay)
            if r < 1e-6:
                continue
            res = r - d
            z = abs(res) * math.sqrt(w)
            if z > huber_c:
                w = w * huber_c / z
            j = ((x - ax) / r, (y - ay) / r)
            for p in range(2):
                g[p] += w * j[p] * res
                for q in range(2):
                    h[p][q] += w * j[p] * j[q]
        moved = False
        for _try in range(6):
            mu = lam * (h[0][0] + h[1][1])
            a = [[h[0][0] + mu, h[0][1]], [h[1][0], h[1][1] + mu]]
            det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
            sx = -(a[1][1] * g[0] - a[0][1] * g[1]) / det
            sy = -(a[0][0] * g[1] - a[1][0] * g[0]) / det
            c1 = cost(x + sx, y + sy)
            if c1 < best:
                x, y, best, lam, moved = x + sx, y + sy, c1, max(lam * 0.1, 1e-6), True
                break
            lam *= 10
        if not moved or sx * sx + sy * sy < 1e-8:
            break
    return x, y


def naive_grid_step(heard: list[tuple[float, float, float, int]], floor_ants: list[tuple[float, float, int]],
                    rm: RangeModel, step_s: float, centre: tuple[float, float], half_m: float, spacing_m: float,
                    floor_wd: tuple[float, float], staff: list, prior: tuple[float, float, float] | None
                    ) -> tuple[float, float, float]:
    """Posterior mean/variance over the floor's lattice cells (centres at (i + 0.5) * spacing) within
    half_m of the centre, cells centred in a staff_only polygon left out. Likelihood: every antenna of
    the floor (floor_ants = (x, y, index)) with its Poisson read count (0 unless it is in heard =
    (read count, mean rssi, ... ) by index), the Gaussian RSSI term for the ones that read."""
    fine = 0.25
    n_fine = int(round(len(rm.rate_per_s) * rm.bin_m / fine)) + 1
    centres = [(i + 0.5) * rm.bin_m for i in range(len(rm.rate_per_s))]

    def tables(a: int, d: float) -> tuple[float, float]:
        b = min(int(d / fine), n_fine - 1)
        db = b * fine + fine / 2
        rate = float(np.interp(db, centres, rm.rate_per_s))
        rssi = float(np.interp(db, centres, rm.rssi_dbm)) + rm.offset_db[a]
        return (rm.gain[a] * rate + rm.background_per_s) * step_s, rssi

    read = {a: (c, rs) for c, rs, a in ((h[0], h[1], h[2]) for h in heard)}
    nx = math.ceil(floor_wd[0] / spacing_m - 1e-9)
    ny = math.ceil(floor_wd[1] / spacing_m - 1e-9)
    pts = []
    for i in range(max(math.floor((centre[0] - half_m) / spacing_m), 0),
                   min(math.floor((centre[0] + half_m) / spacing_m), nx - 1) + 1):
        for j in range(max(math.floor((centre[1] - half_m) / spacing_m), 0),
                       min(math.floor((centre[1] + half_m) / spacing_m), ny - 1) + 1):
            x, y = (i + 0.5) * spacing_m, (j + 0.5) * spacing_m
            if any(_in_polygon(x, y, p) for p in staff):
                continue
            ll = -((x - prior[0]) ** 2 + (y - prior[1]) ** 2) / (2 * prior[2]) if prior else 0.0
            for ax, ay, a in floor_ants:
                mu, rssi = tables(a, math.hypot(x - ax, y - ay))
                c, rs = read.get(a, (0.0, 0.0))
                ll += c * math.log(mu) - mu
                if c > 0:
                    ll -= c * (rs - rssi) ** 2 / (2 * rm.sigma_db ** 2)
            pts.append((ll, x, y))
    if not pts:
        return centre[0], centre[1], half_m ** 2
    top = max(p[0] for p in pts)
    w = [(math.exp(ll - top), x, y) for ll, x, y in pts if ll >= top - 20]
    sw = sum(p[0] for p in w)
    mx = sum(p[0] * p[1] for p in w) / sw
    my = sum(p[0] * p[2] for p in w) / sw
    var = max(sum(p[0] * (p[1] ** 2 + p[2] ** 2) for p in w) / sw - mx * mx - my * my, 0) / 2 + spacing_m ** 2 / 12
    return mx, my, var


def naive_positions(reads: Reads, antennas: AntennaMap, layout: Layout, model: PathLossModel, step_s: float,
                    max_gap_s: float, smooth_s: float, speed_mps: float,
                    rm: RangeModel | None = None) -> list[tuple[int, int, int, float, float]]:
    """(tag, ts_us, floor, x_m, y_m) rows by the documented method, one tag and one step at a time.

    With ``rm`` the grid estimator (the floor's 1 m lattice of walkable cells, up to 6 m around the prior or
    the reading antennas' centroid, every antenna of the floor in the likelihood) replaces the range least
    squares.
    """
    step_us = int(round(step_s * 1e6))
    gap_us = int(round(max_gap_s * 1e6))
    half = int(round(smooth_s / step_s))
    floors = sorted(layout.floors, key=lambda f: f.floor)
    d_max = max(math.hypot(f.width_m, f.depth_m) for f in floors)
    k_sig = LN10 * model.sigma_db / (10.0 * model.exponent)
    floor_ids = [[f.floor for f in floors].index(int(f)) for f in antennas.floor]
    by_tag: dict[int, list[int]] = defaultdict(list)
    for r in range(len(reads)):
        by_tag[int(reads.tag[r])].append(r)
    out: list[tuple[int, int, int, float, float]] = []
    for tag in sorted(by_tag):
        rows = by_tag[tag]
        segments: list[list[int]] = [[rows[0]]]
        for r in rows[1:]:
            if reads.ts_us[r] - reads.ts_us[segments[-1][-1]] > gap_us:
                segments.append([])
            segments[-1].append(r)
        for seg in segments:
            steps: dict[int, list[int]] = defaultdict(list)
            for r in seg:
                steps[int(reads.ts_us[r]) // step_us].append(r)
            k0, k1 = min(steps), max(steps)
            est: dict[int, tuple[int, float, float]] = {}
            prior = None
            qvar = 1.0
            for k in sorted(steps):
                pooled: dict[int, list[float]] = {}
                for r in steps[k]:
                    a = int(reads.antenna[r])
                    c = float(reads.count[r])
                    s = pooled.setdefault(a, [0.0, 0.0])
                    s[0] += c
                    s[1] += c * float(reads.rssi_dbm[r])
                score = [0.0] * len(floors)
                cand = []
                for a, (c, sr) in pooled.items():
                    d = 10.0 ** ((model.p0_dbm[a] - sr / c) / (10.0 * model.exponent))
                    d = min(max(d, 0.5), d_max)
                    sig = d * k_sig / math.sqrt(c) + 0.25
                    fi = [f.floor for f in floors].index(int(antennas.floor[a]))
                    score[fi] += math.sqrt(c) / (d * d)
                    cand.append((fi, float(antennas.x_m[a]), float(antennas.y_m[a]), d, 1.0 / sig ** 2))
                best = max(range(len(floors)), key=lambda f: (score[f], -f))
                pr = None
                if prior is not None and prior[0] == best:
                    sq = speed_mps * (k - prior[3]) * step_s + 0.5
                    pr = (prior[1], prior[2], 1.0 / sq ** 2)
                if rm is None:
                    x, y = naive_solve([(ax, ay, d, w) for fi, ax, ay, d, w in cand if fi == best], pr)
                else:
                    heard = [a for a in pooled if floor_ids[a] == best]
                    sw = sum(pooled[a][0] for a in heard)
                    centroid = (sum(pooled[a][0] * antennas.x_m[a] for a in heard) / sw,
                                sum(pooled[a][0] * antennas.y_m[a] for a in heard) / sw)
                    if pr is not None and all(math.hypot(prior[1] - antennas.x_m[a], prior[2] - antennas.y_m[a])
                                              > rm.neighbour_m for a in heard):
                        pr = None  # lost track: none of the reading antennas could hear the tag at the prior
                    if pr is not None:
                        pv = qvar + (speed_mps * (k - prior[3]) * step_s) ** 2
                        centre, gp = (prior[1], prior[2]), (prior[1], prior[2], pv)
                        g_half = min(6.0, 2 * math.sqrt(pv) + 1.0)
                    else:
                        centre, g_half, gp = centroid, 6.0, None
                    fl = floors[best]
                    x, y, qvar = naive_grid_step(
                        [(pooled[a][0], pooled[a][1] / pooled[a][0], a) for a in heard],
                        [(float(antennas.x_m[a]), float(antennas.y_m[a]), a) for a in range(len(antennas))
                         if floor_ids[a] == best], rm, step_s, centre, g_half, 1.0, (fl.width_m, fl.depth_m),
                        [z.polygon for z in layout.zones if z.kind == "staff_only" and z.floor == fl.floor], gp)
                x = min(max(x, 0.0), floors[best].width_m * 0.999999)
                y = min(max(y, 0.0), floors[best].depth_m * 0.999999)
                est[k] = (best, x, y)
                prior = (best, x, y, k)
            track: list[tuple[int, float, float]] = []
            known = sorted(est)
            for k in range(k0, k1 + 1):
                if k in est:
                    track.append(est[k])
                    continue
                lo = max(q for q in known if q < k)
                hi = min(q for q in known if q > k)
                if est[lo][0] == est[hi][0]:
                    f = (k - lo) / (hi - lo)
                    track.append((est[lo][0], est[lo][1] + f * (est[hi][1] - est[lo][1]),
                                  est[lo][2] + f * (est[hi][2] - est[lo][2])))
                else:
                    track.append(est[lo])
            for j, (fl, _, _) in enumerate(track):
                near = [track[q] for q in range(max(0, j - half), min(len(track), j + half + 1))
                        if track[q][0] == fl] if half > 0 else [track[j]]
                out.append((tag, (k0 + j) * step_us, floors[fl].floor,
                            sum(p[1] for p in near) / len(near), sum(p[2] for p in near) / len(near)))
    return out


def naive_heatmap(rows: list[tuple[int, int, int, float, float]], step_s: float, layout: Layout, cell_m: float,
                  from_us: int, to_us: int, bucket_s: int) -> dict[tuple[int, int, int, int], float]:
    """{(floor, bucket_us, ix, iy): seconds} from (tag, ts_us, floor, x_m, y_m) position rows."""
    step_us = int(round(step_s * 1e6))
    bucket_us = bucket_s * 1_000_000
    out: dict[tuple[int, int, int, int], float] = defaultdict(float)
    for _, ts, fl, x, y in rows:
        f = layout.floor(fl)
        ix = min(max(math.floor(x / cell_m), 0), math.ceil(f.width_m / cell_m - 1e-9) - 1)
        iy = min(max(math.floor(y / cell_m), 0), math.ceil(f.depth_m / cell_m - 1e-9) - 1)
        t, end = max(ts, from_us), min(ts + step_us, to_us)
        while t < end:  # split at bucket boundaries
            b = (t // bucket_us) * bucket_us
            e = min(end, b + bucket_us)
            out[(fl, b, ix, iy)] += (e - t) / 1e6
            t = e
    return {k: v for k, v in out.items() if v > 0}


def _in_polygon(x: float, y: float, poly) -> bool:  # type: ignore[no-untyped-def]
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, list(poly[1:]) + [poly[0]]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def naive_spread_heatmap(rows: list[tuple[int, int, int, float, float, float]], step_s: float, layout: Layout,
                         cell_m: float, from_us: int, to_us: int, bucket_s: int,
                         row_zones: list[int] | None = None,
                         presence_zones: list[int] = ()) -> dict[tuple[int, int, int, int], float]:
    """Like :func:`naive_heatmap` for (tag, ts_us, floor, x_m, y_m, var_m2) rows, each row's seconds
    shared over the cells not centred in a staff_only zone by the cell's mass of a Gaussian (sigma per
    axis sqrt(var), cut at 2.5 sigma); a point (sigma < cell / 10) or nothing walkable: the point's cell.
    ``row_zones``: per row a zone index (only cells centred in that zone), -1 (only cells outside all
    ``presence_zones``) or -2 (any walkable cell); no mass there: any walkable cell."""
    step_us = int(round(step_s * 1e6))
    bucket_us = bucket_s * 1_000_000
    out: dict[tuple[int, int, int, int], float] = defaultdict(float)
    for n_row, (_, ts, fl, x, y, var) in enumerate(rows):
        zr = -2 if row_zones is None else row_zones[n_row]
        f = layout.floor(fl)
        nx, ny = math.ceil(f.width_m / cell_m - 1e-9), math.ceil(f.depth_m / cell_m - 1e-9)
        px = min(max(math.floor(x / cell_m), 0), nx - 1)
        py = min(max(math.floor(y / cell_m), 0), ny - 1)
        staff = [z.polygon for z in layout.zones if z.kind == "staff_only" and z.floor == fl]
        sig = math.sqrt(max(var, 0.0))
        weights: dict[tuple[int, int], float] = {}
        def allowed(cx: float, cy: float, zr: int) -> bool:
            if any(_in_polygon(cx, cy, p) for p in staff):
                return False
            if zr == -1:
                return not any(layout.zones[z].floor == fl and _in_polygon(cx, cy, layout.zones[z].polygon)
                               for z in presence_zones)
            if zr >= 0:
                return layout.zones[zr].floor == fl and _in_polygon(cx, cy, layout.zones[zr].polygon)
            return True
        for attempt_zone in ([zr, -2] if zr != -2 else [-2]):
            if weights or sig < 0.1 * cell_m:
                break
            rad = min(2.5 * sig, 31 * cell_m)  # as analytics.heatmap._CUT_SIGMAS

            def mass(lo: float, hi: float, mu: float) -> float:
                return 0.5 * (math.erf((hi - mu) / (sig * math.sqrt(2))) - math.erf((lo - mu) / (sig * math.sqrt(2))))
            for i in range(max(math.floor((x - rad) / cell_m), 0), min(math.floor((x + rad) / cell_m), nx - 1) + 1):
                for j in range(max(math.floor((y - rad) / cell_m), 0), min(math.floor((y + rad) / cell_m), ny - 1) + 1):
                    c = ((i + 0.5) * cell_m, (j + 0.5) * cell_m)
                    if allowed(c[0], c[1], attempt_zone):
                        w = mass(i * cell_m, (i + 1) * cell_m, x) * mass(j * cell_m, (j + 1) * cell_m, y)
                        if w > 0:
                            weights[(i, j)] = w
        tot = sum(weights.values())
        if tot <= 0:
            weights, tot = {(px, py): 1.0}, 1.0
        t, end = max(ts, from_us), min(ts + step_us, to_us)
        while t < end:
            b = (t // bucket_us) * bucket_us
            e = min(end, b + bucket_us)
            for (i, j), w in weights.items():
                out[(fl, b, i, j)] += (e - t) / 1e6 * w / tot
            t = e
    return {k: v for k, v in out.items() if v > 0}


def naive_footfall(ts: list[int], entries: list[int], exits: list[int], interval_s: int, from_us: int,
                   to_us: int) -> list[tuple[int, int, int]]:
    iv = interval_s * 1_000_000
    out = []
    start = from_us
    while start < to_us:
        e = sum(n for t, n in zip(ts, entries) if start <= t < min(start + iv, to_us))
        x = sum(n for t, n in zip(ts, exits) if start <= t < min(start + iv, to_us))
        out.append((start, e, x))
        start += iv
    return out


# ------------------------------------------------------------------------------------------------
# synthetic data (own simple RF model; only for kernels and smoke accuracy, not the simulator's)


def synthetic_layout(floors: int = 1, width_m: float = 30.0, depth_m: float = 20.0, nx: int = 6,
                     ny: int = 4, staff_room: bool = False, counters: bool = False) -> Layout:
    """Floors of width_m x depth_m with an nx x ny antenna grid; ``staff_room``: a staff_only zone in
    the bottom-left corner of floor 1 (a non-rectangular polygon inside [0, 4] x [0, 3] m); ``counters``:
    counter C1 at [5, 10] x [0, 3] m on floor 1 and a triangular counter C2 on the last floor."""
    ants = []
    for f in range(1, floors + 1):
        for i in range(nx):
            for j in range(ny):
                ants.append({"port": len(ants) % 8 + 1, "floor": f,
                             "x": (i + 0.5) * width_m / nx, "y": (j + 0.5) * depth_m / ny})
    readers = [{"reader": f"R{k}", "antennas": ants[k * 8:(k + 1) * 8]} for k in range((len(ants) + 7) // 8)]
    return parse_layout({"store": "synthetic", "timezone": "UTC",
                         "floors": [{"floor": f, "width_m": width_m, "depth_m": depth_m} for f in range(1, floors + 1)],
                         "zones": ([{"zone": "S1", "kind": "staff_only", "floor": 1,
                                     "polygon": [[0, 0], [4, 0], [4, 3], [2, 3], [0, 1]]}] if staff_room else [])
                         + ([{"zone": "C1", "kind": "counter", "floor": 1,
                              "polygon": [[5, 0], [min(10, width_m), 0], [min(10, width_m), 3], [5, 3]]},
                             {"zone": "C2", "kind": "counter", "floor": floors,
                              "polygon": [[0, 4], [6, depth_m], [0, depth_m]]}] if counters else []),
                         "readers": readers, "doors": []})


def synthetic_reads(layout: Layout, n_tags: int, seconds: int, seed: int, hz: int = 4, p0_dbm: float = -38.0,
                    exponent: float = 2.3, sigma_db: float = 4.0, range_m: float = 9.0,
                    t0_us: int = 1_700_000_000_000_000):
    """Tags walking between random waypoints at 1 m/s; returns (Reads, AntennaMap, truth dict)."""
    rng = np.random.default_rng(seed)
    am = antenna_map(layout)
    cols: dict[str, list] = defaultdict(list)
    truth: dict[str, list] = defaultdict(list)
    for tag in range(n_tags):
        f = layout.floors[int(rng.integers(len(layout.floors)))]
        x, y = rng.uniform(0, f.width_m), rng.uniform(0, f.depth_m)
        tx, ty = rng.uniform(0, f.width_m), rng.uniform(0, f.depth_m)
        start = t0_us + int(rng.uniform(0, 60e6))
        on = am.floor == f.floor
        for s in range(seconds * hz):
            ts = start + int(s * 1e6 / hz)
            dist = math.hypot(tx - x, ty - y)
            if dist < 0.5:
                tx, ty = rng.uniform(0, f.width_m), rng.uniform(0, f.depth_m)
            else:
                move = min(dist, 1.0 / hz)
                x, y = x + (tx - x) / dist * move, y + (ty - y) / dist * move
            for k, v in (("tag", tag), ("ts_us", ts), ("floor", f.floor), ("x_m", x), ("y_m", y)):
                truth[k].append(v)
            d = np.hypot(am.x_m - x, am.y_m - y)
            hit = rng.random(len(d)) < np.where(on, 0.7 * np.clip(1 - d / range_m, 0, 1), 0.0)
            ghost = rng.random(len(d)) < 0.002
            for a in np.flatnonzero(hit | ghost):
                rssi = (p0_dbm - 10 * exponent * math.log10(max(d[a], 0.3)) + rng.normal(0, sigma_db) if hit[a]
                        else -80 + rng.normal(0, 2))
                cols["tag"].append(tag)
                cols["ts"].append(ts + int(rng.integers(0, 1000)))
                cols["ant"].append(a)
                cols["rssi"].append(rssi)
    reads = Reads.sorted_from(np.array(cols["tag"], np.int32), np.array(cols["ts"], np.int64),
                              np.array(cols["ant"], np.int32), np.array(cols["rssi"], np.float32))
    return reads, am, {k: np.array(v) for k, v in truth.items()}
