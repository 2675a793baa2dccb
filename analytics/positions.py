"""Per-tag position estimates over time from RFID reads at antennas of known position.

Everything the estimators need about RF is learnt from the store's own reads (EM-like: estimate
positions with the current model, refit the model from those positions); nothing is assumed about
a particular store or RF simulator.

Models
------
* :class:`PathLossModel` (:func:`fit_path_loss`): ``rssi_dbm = p0_dbm[a] - 10 * exponent *
  log10(d_m)``, one reference level per antenna and one exponent, started from each antenna's
  strong-read level (95th RSSI percentile, taken as ~1 m) and a textbook indoor exponent.
* :class:`RangeModel` (:func:`fit_range_model`): tabulated read rate (reads/s) and mean RSSI of a
  read against distance, with a per-antenna rate gain and RSSI offset, from the exposure (steps a
  tag spent at each distance from each antenna) and the reads it produced. Non-parametric, so it
  also captures read-rate truncation (far tags are only read when the RSSI happens to be high).

Estimators (one estimate per tag per ``step_s`` step with reads, on an epoch-aligned grid)
------------------------------------------------------------------------------------------
* ``grid`` (default): reads are pooled per antenna; the floor is the one whose antennas say "close"
  most strongly; over the floor's 1 m lattice of walkable cells (cell centres; cells centred in a
  ``staff_only`` zone are left out), within 6 m of the reading antennas' centroid, or of the prior
  (up to two prior sigmas + one cell), the log-likelihood of the pooled read counts (Poisson: every
  antenna of the floor that did NOT read the tag counts as evidence too) and of their mean RSSI is
  added to a Gaussian motion prior from the previous step (random walk at ``speed_mps``). The
  per-antenna terms are tabulated per lattice cell once per run (all antennas' non-detections summed
  into one floor raster), so a step costs the window's cells times the antennas that read the tag.
  The posterior mean and variance feed the next step (a grid-based assumed-density filter); the
  variance is returned too (:attr:`Positions.var_m2`, for heatmap spreading). When none of the
  antennas reading the tag could hear it at the prior (farther than the learnt ``neighbour_m``),
  the track is lost and restarts from the reading antennas: a local grid around a wrong prior would
  otherwise never reach the tag again.
* ``wls``: robust (Huber) weighted least squares on path-loss ranges, range sigma growing with
  range, Levenberg-Marquardt, with the same kind of motion prior. Faster, less accurate.

Positions stay inside the floor rectangle. **Presence**: from a tag's first to its last read, gaps
up to ``max_gap_s`` bridged; steps without reads inside a presence segment are interpolated, then a
centred moving average over ``smooth_s`` either side smooths the track (same floor only).

The numba kernels are private; :func:`estimate_positions` validates input and returns
:class:`Positions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numba import njit, prange

from analytics.data import AntennaMap, Reads
from storeflow.layout import Layout

__all__ = ["PathLossModel", "RangeModel", "Positions", "POSITION_DTYPE", "estimate_positions",
           "fit_path_loss", "fit_range_model", "floor_geometry", "lattice_walkable", "points_in_polygon"]

from analytics.config import NJIT as _NJIT
from analytics.config import NJIT_PARALLEL as _NJIT_PAR

POSITION_DTYPE = np.dtype([("tag", "i4"), ("ts_us", "i8"), ("floor", "i4"), ("x_m", "f4"), ("y_m", "f4")])

#: At most this many distinct antennas are pooled per tag per step (more is a ghost storm; extras ignored).
_MAX_ANT = 32
_LN10 = math.log(10.0)
#: exp tabulated on [-20, 0] every 1/64 (linear interpolation, relative error < 4e-5) for the grid
#: posterior weights: a library exp per cell was ~40 % of a grid step.
_EXP_CUT = 20.0  # cells below exp(-20) ~ 2e-9 of the best weigh nothing (30: ~8 % more positions CPU)
_EXP_PER_UNIT = 64.0
_EXP_TAB = np.exp(-np.arange(int(_EXP_CUT * _EXP_PER_UNIT) + 2) / _EXP_PER_UNIT)


@dataclass(frozen=True)
class PathLossModel:
    """``rssi_dbm = p0_dbm[antenna] - 10 * exponent * log10(distance_m)`` (+ shadowing of ``sigma_db``)."""

    p0_dbm: np.ndarray   # float64 per antenna: RSSI at 1 m
    exponent: float      # path-loss exponent (2 = free space)
    sigma_db: float      # residual standard deviation of one read (dB)

    def distance_m(self, antenna: np.ndarray, rssi_dbm: np.ndarray) -> np.ndarray:
        """Distance (metres) the model assigns to reads of ``rssi_dbm`` at ``antenna``."""
        return 10.0 ** ((self.p0_dbm[antenna] - rssi_dbm) / (10.0 * self.exponent))

    def to_json(self) -> dict:
        """Plain JSON-able dict (lists of floats), e.g. for ``presence_models.position_model``."""
        return _model_json(self)

    @staticmethod
    def from_json(d: dict) -> PathLossModel:
        return _model_from_json(PathLossModel, d)


@dataclass(frozen=True)
class RangeModel:
    """Learnt read rate and RSSI as functions of distance, tabulated every ``bin_m`` metres.

    ``rate_per_s[b]``: reads per second of an antenna (gain 1) at distance ``b * bin_m``;
    ``rssi_dbm[b]``: mean RSSI of those reads; per antenna a rate ``gain`` and an RSSI ``offset_db``.
    Non-detections are evidence too: this is what the grid estimator uses.
    """

    bin_m: float
    rate_per_s: np.ndarray
    rssi_dbm: np.ndarray
    gain: np.ndarray
    offset_db: np.ndarray
    sigma_db: float
    background_per_s: float
    neighbour_m: float

    def to_json(self) -> dict:
        """Plain JSON-able dict (lists of floats), e.g. for ``presence_models.position_model``."""
        return _model_json(self)

    @staticmethod
    def from_json(d: dict) -> RangeModel:
        return _model_from_json(RangeModel, d)


def _model_json(model: PathLossModel | RangeModel) -> dict:
    return {f.name: (v.tolist() if isinstance(v := getattr(model, f.name), np.ndarray) else float(v))
            for f in fields(model)}


def _model_from_json(cls: type, d: dict):  # type: ignore[no-untyped-def]
    return cls(**{f.name: (np.asarray(d[f.name], np.float64) if isinstance(d[f.name], list) else float(d[f.name]))
                  for f in fields(cls)})


@dataclass(frozen=True)
class Positions:
    """Estimated positions, one row per tag per step while the tag is present, sorted by (tag, ts_us).

    A row at ``ts_us`` stands for the interval ``[ts_us, ts_us + step_s)``.
    """

    tag: np.ndarray     # int32
    ts_us: np.ndarray   # int64: start of the step (epoch microseconds, multiple of step_s)
    floor: np.ndarray   # int32: floor number (as in the layout)
    x_m: np.ndarray     # float32: metres from the floor's left edge
    y_m: np.ndarray     # float32: metres from the floor's bottom edge
    step_s: float
    model: PathLossModel
    range_model: RangeModel | None = None
    var_m2: np.ndarray | None = None  # float32 per row: posterior variance per axis (m^2); None = points

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    def to_records(self) -> np.ndarray:
        """The rows as one structured array of :data:`POSITION_DTYPE`."""
        out = np.empty(len(self), POSITION_DTYPE)
        for name in POSITION_DTYPE.names:
            out[name] = getattr(self, name)
        return out


def floor_geometry(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floor numbers sorted, width_m, depth_m) of the layout's floors; kernels use the dense index."""
    fl = sorted(layout.floors, key=lambda f: f.floor)
    return (np.array([f.floor for f in fl], np.int32), np.array([f.width_m for f in fl], np.float64),
            np.array([f.depth_m for f in fl], np.float64))


# --------------------------------------------------------------------------------------------------
# kernels


@njit(**_NJIT)
def _huber_cost(ax, ay, dist, wt, m, x, y, qx, qy, qw, huber_c):  # pragma: no cover - jit
    c = qw * ((x - qx) ** 2 + (y - qy) ** 2)
    for j in range(m):
        z = abs(math.sqrt((x - ax[j]) ** 2 + (y - ay[j]) ** 2) - dist[j]) * math.sqrt(wt[j])
        c += z * z if z <= huber_c else 2.0 * huber_c * z - huber_c * huber_c
    return c


@njit(**_NJIT)
def _solve_step(ax, ay, dist, wt, m, has_prior, qx, qy, qw, iters, huber_c):  # pragma: no cover - jit
    """Robust (Huber) weighted least squares on ranges plus an isotropic prior; returns (x, y).

    Without a motion prior the weighted centroid of the antennas is the prior (sigma 4 m), which
    resolves the mirror ambiguity of one or two antennas. Levenberg-Marquardt steps on IRLS weights,
    accepted only when the Huber cost falls.
    """
    sw = 0.0
    sx = 0.0
    sy = 0.0
    for j in range(m):
        sw += wt[j]
        sx += wt[j] * ax[j]
        sy += wt[j] * ay[j]
    if not has_prior:
        qx = sx / sw
        qy = sy / sw
        qw = 1.0 / 16.0
    x = (sx + qw * qx) / (sw + qw)
    y = (sy + qw * qy) / (sw + qw)
    cost = _huber_cost(ax, ay, dist, wt, m, x, y, qx, qy, qw, huber_c)
    lam = 1e-3
    for _ in range(iters):
        h11 = qw
        h12 = 0.0
        h22 = qw
        g1 = qw * (x - qx)
        g2 = qw * (y - qy)
        for j in range(m):
            dx = x - ax[j]
            dy = y - ay[j]
            r = math.sqrt(dx * dx + dy * dy)
            if r < 1e-6:
                continue  # at the antenna: the range gradient has no direction
            res = r - dist[j]
            w = wt[j]
            z = abs(res) * math.sqrt(w)
            if z > huber_c:
                w *= huber_c / z
            jx = dx / r
            jy = dy / r
            h11 += w * jx * jx
            h12 += w * jx * jy
            h22 += w * jy * jy
            g1 += w * jx * res
            g2 += w * jy * res
        moved = False
        for _try in range(6):
            mu = lam * (h11 + h22)
            a11 = h11 + mu
            a22 = h22 + mu
            det = a11 * a22 - h12 * h12
            sx = -(a22 * g1 - h12 * g2) / det
            sy = -(a11 * g2 - h12 * g1) / det
            c1 = _huber_cost(ax, ay, dist, wt, m, x + sx, y + sy, qx, qy, qw, huber_c)
            if c1 < cost:
                x += sx
                y += sy
                cost = c1
                lam = max(lam * 0.1, 1e-6)
                moved = True
                break
            lam *= 10.0
        if not moved or sx * sx + sy * sy < 1e-8:
            break
    return x, y


@njit(**_NJIT)
def _table(tab, bin_m, d):  # pragma: no cover - jit
    """Linear interpolation in a table sampled every bin_m metres (last value beyond its end)."""
    u = d / bin_m
    i = int(u)
    if i >= tab.shape[0] - 1:
        return tab[tab.shape[0] - 1]
    f = u - i
    return tab[i] + f * (tab[i + 1] - tab[i])


@njit(**_NJIT, inline="always")
def _exp_weight(d):  # pragma: no cover - jit
    """exp(-d) for d >= 0 from the table; 0 beyond the cut."""
    u_cut = _EXP_CUT * _EXP_PER_UNIT
    u = min(d * _EXP_PER_UNIT, u_cut)
    k = int(u)
    w = _EXP_TAB[k] + (u - k) * (_EXP_TAB[k + 1] - _EXP_TAB[k])
    return w if u < u_cut else 0.0


@njit(**_NJIT)
def _add_antenna(ll, a, c, rsh, i0, i1, j0, j1, woff, wi0, wj0, wnx, wny, w_a, w_b, a_far,
                 b_far):  # pragma: no cover - jit
    """Add one reading antenna's terms ``c * A + c * rsh * B`` to the window's log-likelihood rows,
    whatever the overlap of its table window with the lattice window (far values outside it)."""
    nj = j1 - j0 + 1
    crs = c * rsh
    far = c * a_far[a] + crs * b_far[a]
    ja = max(j0, wj0[a])
    jb = min(j1, wj0[a] + wny[a] - 1)
    for i in range(i0, i1 + 1):
        r0 = (i - i0) * nj
        li = i - wi0[a]
        if li < 0 or li >= wnx[a] or ja > jb:
            for jj in range(nj):
                ll[r0 + jj] += far
            continue
        for jj in range(ja - j0):
            ll[r0 + jj] += far
        q = woff[a] + li * wny[a] + ja - wj0[a]
        p = r0 + ja - j0
        for jj in range(jb - ja + 1):
            ll[p + jj] += c * w_a[q + jj] + crs * w_b[q + jj]
        for jj in range(jb + 1 - j0, nj):
            ll[r0 + jj] += far


@njit(**_NJIT, inline="always")
def _lattice_step(heard, cnt, rs, n_heard, coff, ny, g, base, woff, wi0, wj0, wnx, wny, w_a, w_b,
                  a_far, b_far, cx, cy, half_m, nx, has_prior, qx, qy, qvar,
                  ll, pyv, cw, cwx, cwxx):  # pragma: no cover - jit
    """Posterior mean and per-axis variance (m^2) of the position over the floor's lattice cells within
    ``half_m`` of (cx, cy) (cell centres ``((i + 0.5) g, (j + 0.5) g)``, walkable cells only).

    Log-likelihood of a cell, up to a constant = ``base`` (minus the expected read count of every
    antenna of the floor, a Poisson non-detection; -1e300 on unwalkable cells) + per antenna that read
    the tag ``count * (A + mean_rssi * B)`` (its count times log expected count and the Gaussian RSSI
    term, expanded in the mean RSSI) + the Gaussian motion prior if any. The per-antenna A, B are
    tabulated on each antenna's window of cells (``w_*``; outside it, the far values). Cells more than
    20 log units below the best carry no weight; the weights use the tabulated exp. Inlined into the
    kernel (a call passed ~15 arrays, each a reference-count increment and decrement). ``ll``: scratch
    of rows x columns; ``pyv``, ``cw``, ``cwx``, ``cwxx``: scratch of columns.
    """
    i0 = max(int(math.floor((cx - half_m) / g)), 0)
    i1 = min(int(math.floor((cx + half_m) / g)), nx - 1)
    j0 = max(int(math.floor((cy - half_m) / g)), 0)
    j1 = min(int(math.floor((cy + half_m) / g)), ny - 1)
    if i1 < i0 or j1 < j0:
        return cx, cy, half_m * half_m
    nj = j1 - j0 + 1
    ni = i1 - i0 + 1
    # Hot loops index with unsigned offsets (no negative-index wraparound, no array views: a view costs
    # two reference-count calls, more than a short row's arithmetic) and write one array each, so LLVM
    # vectorizes them. Columns keep their own moment sums (independent lanes, no sum reassociated).
    nju = np.uint64(nj)
    k_prior = 0.5 / qvar if has_prior else 0.0
    for jj in range(nj):
        dy = (j0 + jj + 0.5) * g - qy
        pyv[jj] = k_prior * (dy * dy)
    # Fused pass: base, prior and up to three reading antennas whose table windows hold the whole
    # window (else those go through _add_antenna).
    nf = min(n_heard, 3)
    for h in range(nf):
        a = heard[h]
        if i0 < wi0[a] or i1 >= wi0[a] + wnx[a] or j0 < wj0[a] or j1 >= wj0[a] + wny[a]:
            nf = h
            break
    a1 = heard[0] if nf > 0 else 0
    a2 = heard[1] if nf > 1 else 0
    a3 = heard[2] if nf > 2 else 0
    c1 = cnt[0] if nf > 0 else 0.0
    c2 = cnt[1] if nf > 1 else 0.0
    c3 = cnt[2] if nf > 2 else 0.0
    d1 = c1 * rs[0] if nf > 0 else 0.0
    d2 = c2 * rs[1] if nf > 1 else 0.0
    d3 = c3 * rs[2] if nf > 2 else 0.0
    for i in range(i0, i1 + 1):
        dx = (i + 0.5) * g - qx
        pxi = k_prior * (dx * dx)
        r0 = np.uint64((i - i0) * nj)
        q0 = np.uint64(coff + i * ny + j0)
        if nf == 0:
            for jj in range(nju):
                ll[r0 + jj] = base[q0 + jj] - (pxi + pyv[jj])
            continue
        q1 = np.uint64(woff[a1] + (i - wi0[a1]) * wny[a1] + j0 - wj0[a1])
        if nf == 1:
            for jj in range(nju):
                ll[r0 + jj] = base[q0 + jj] - (pxi + pyv[jj]) + (c1 * w_a[q1 + jj] + d1 * w_b[q1 + jj])
            continue
        q2 = np.uint64(woff[a2] + (i - wi0[a2]) * wny[a2] + j0 - wj0[a2])
        if nf == 2:
            for jj in range(nju):
                ll[r0 + jj] = (base[q0 + jj] - (pxi + pyv[jj]) + (c1 * w_a[q1 + jj] + d1 * w_b[q1 + jj])
                               + (c2 * w_a[q2 + jj] + d2 * w_b[q2 + jj]))
            continue
        q3 = np.uint64(woff[a3] + (i - wi0[a3]) * wny[a3] + j0 - wj0[a3])
        for jj in range(nju):
            ll[r0 + jj] = (base[q0 + jj] - (pxi + pyv[jj]) + (c1 * w_a[q1 + jj] + d1 * w_b[q1 + jj])
                           + (c2 * w_a[q2 + jj] + d2 * w_b[q2 + jj]) + (c3 * w_a[q3 + jj] + d3 * w_b[q3 + jj]))
    # the other reading antennas (more than three, or a table window not holding the whole window)
    for h in range(nf, n_heard):
        _add_antenna(ll, heard[h], cnt[h], rs[h], i0, i1, j0, j1, woff, wi0, wj0, wnx, wny, w_a, w_b,
                     a_far, b_far)
    best = -1e300
    for q in range(np.uint64(ni * nj)):
        if ll[q] > best:
            best = ll[q]
    if best < -1e299:  # nothing walkable in the window
        return cx, cy, half_m * half_m
    for jj in range(nj):
        cw[jj] = 0.0
        cwx[jj] = 0.0
        cwxx[jj] = 0.0
    for i in range(i0, i1 + 1):
        x = (i + 0.5) * g
        xx = x * x
        r0 = np.uint64((i - i0) * nj)
        for jj in range(nju):
            w = _exp_weight(best - ll[r0 + jj])
            cw[jj] += w
            cwx[jj] += w * x
            cwxx[jj] += w * xx
    sw = 0.0
    sx = 0.0
    sy = 0.0
    sxx = 0.0
    for jj in range(nj):
        y = (j0 + jj + 0.5) * g
        sw += cw[jj]
        sx += cwx[jj]
        sy += cw[jj] * y
        sxx += cwxx[jj] + cw[jj] * y * y
    mx = sx / sw
    my = sy / sw
    var = max(sxx / sw - mx * mx - my * my, 0.0) / 2.0 + g * g / 12.0
    return mx, my, var


@njit(**_NJIT_PAR)
def _count_steps(ts_us, starts, active, step_us, gap_us):  # pragma: no cover - jit
    """Rows each tag will get: steps covered by its presence segments."""
    nt = starts.shape[0] - 1
    out = np.zeros(nt, np.int64)
    for i in prange(nt):
        a = starts[i]
        b = starts[i + 1]
        if not active[i] or a == b:
            continue
        k0 = ts_us[a] // step_us
        kprev = k0
        tprev = ts_us[a]
        total = 0
        for r in range(a + 1, b):
            t = ts_us[r]
            k = t // step_us
            if t - tprev > gap_us:
                total += kprev - k0 + 1
                k0 = k
            kprev = k
            tprev = t
        out[i] = total + kprev - k0 + 1
    return out


@njit(**_NJIT)
def _finish_segment(ox, oy, ov, of, valid, r0, n, half):  # pragma: no cover - jit
    """Interpolate steps without reads, then centred moving average (same floor) over +-half steps."""
    last = -1
    for j in range(r0, r0 + n):
        if valid[j]:
            if last >= 0 and j - last > 1:
                same = of[last] == of[j]
                for q in range(last + 1, j):
                    if same:
                        f = (q - last) / (j - last)
                        ox[q] = ox[last] + f * (ox[j] - ox[last])
                        oy[q] = oy[last] + f * (oy[j] - oy[last])
                        ov[q] = ov[last] + f * (ov[j] - ov[last])
                    else:
                        ox[q] = ox[last]
                        oy[q] = oy[last]
                        ov[q] = ov[last]
                    of[q] = of[last]
            last = j
    if half <= 0 or n < 2:
        return
    sxv = np.empty(n)
    syv = np.empty(n)
    svv = np.empty(n)
    for j in range(n):
        f = of[r0 + j]
        cx = 0.0
        cy = 0.0
        cv = 0.0
        c = 0
        lo = max(0, j - half)
        hi = min(n - 1, j + half)
        for q in range(lo, hi + 1):
            if of[r0 + q] == f:
                cx += ox[r0 + q]
                cy += oy[r0 + q]
                cv += ov[r0 + q]
                c += 1
        sxv[j] = cx / c
        syv[j] = cy / c
        svv[j] = cv / c
    for j in range(n):
        ox[r0 + j] = sxv[j]
        oy[r0 + j] = syv[j]
        ov[r0 + j] = svv[j]


@njit(**_NJIT_PAR)
def _positions_kernel(ts_us, antenna, rssi, count, starts, active, row_off,
                      ant_x, ant_y, ant_fl, p0, exponent, sigma_db, fl_w, fl_d,
                      step_us, gap_us, half, speed_mps, d_min, d_max, iters, huber_c,
                      use_grid, fl_off, fl_ny, fl_nx, lat_base, woff, wi0, wj0, wnx, wny, w_a, w_b,
                      a_far, b_far, grid_half_m, grid_spacing_m, reset_m,
                      out_ts, out_fl, out_x, out_y, out_v, read_row, want_rows):  # pragma: no cover - jit
    nt = starts.shape[0] - 1
    n_fl = fl_w.shape[0]
    step_s = step_us * 1e-6
    k_sig = _LN10 * sigma_db / (10.0 * exponent)
    for i in prange(nt):
        a = starts[i]
        b = starts[i + 1]
        if not active[i] or a == b:
            continue
        valid = np.zeros(row_off[i + 1] - row_off[i], np.bool_)
        base = row_off[i]
        ids = np.empty(_MAX_ANT, np.int64)
        sc = np.empty(_MAX_ANT)
        src = np.empty(_MAX_ANT)
        ax = np.empty(_MAX_ANT)
        ay = np.empty(_MAX_ANT)
        dd = np.empty(_MAX_ANT)
        ww = np.empty(_MAX_ANT)
        fscore = np.zeros(n_fl)
        cand = np.empty(_MAX_ANT, np.int64)
        ccnt = np.empty(_MAX_ANT)
        crs = np.empty(_MAX_ANT)
        side = int(2.0 * grid_half_m / grid_spacing_m) + 2
        llbuf = np.empty(side * side)
        pyv = np.empty(side)
        cw = np.empty(side)
        cwx = np.empty(side)
        cwxx = np.empty(side)
        qvar = 1.0
        row = base          # next free row of this tag
        seg_row0 = base
        k_first = ts_us[a] // step_us
        tprev = ts_us[a]
        has_prior = False
        qx = 0.0
        qy = 0.0
        qf = -1
        qk = 0
        r = a
        while r < b:
            t = ts_us[r]
            k = t // step_us
            if r > a and t - tprev > gap_us:  # close the segment, open a new one
                n_seg = row - seg_row0
                _finish_segment(out_x[base:], out_y[base:], out_v[base:], out_fl[base:], valid,
                                seg_row0 - base, n_seg, half)
                seg_row0 = row
                k_first = k
                has_prior = False
            # pool the reads of step k per antenna
            m = 0
            r2 = r
            t_end = (k + 1) * step_us  # a comparison, not a division per read
            while r2 < b and ts_us[r2] < t_end:
                an = antenna[r2]
                c = count[r2]
                j = 0
                while j < m and ids[j] != an:
                    j += 1
                if j == m:
                    if m < _MAX_ANT:
                        ids[m] = an
                        sc[m] = 0.0
                        src[m] = 0.0
                        m += 1
                    else:
                        j = -1
                if j >= 0:
                    sc[j] += c
                    src[j] += c * rssi[r2]
                r2 += 1
            cur = seg_row0 + (k - k_first)
            if want_rows:
                for q in range(r, r2):
                    read_row[q] = cur
            tprev = ts_us[r2 - 1]
            r = r2
            # ranges and weights; floor = the one whose antennas say "close" most strongly (the grid
            # estimator needs neither when all the reading antennas are on one floor)
            best = ant_fl[ids[0]]
            one_floor = True
            for j in range(1, m):
                if ant_fl[ids[j]] != best:
                    one_floor = False
            if not (use_grid and one_floor):
                for f in range(n_fl):
                    fscore[f] = 0.0
                for j in range(m):
                    an = ids[j]
                    d = 10.0 ** ((p0[an] - src[j] / sc[j]) / (10.0 * exponent))
                    d = min(max(d, d_min), d_max)
                    dd[j] = d
                    sig = d * k_sig / math.sqrt(sc[j]) + 0.25
                    ww[j] = 1.0 / (sig * sig)
                    fscore[ant_fl[an]] += math.sqrt(sc[j]) / (d * d)
                best = 0
                for f in range(1, n_fl):
                    if fscore[f] > fscore[best]:
                        best = f
            mm = 0
            if not use_grid:
                for j in range(m):
                    an = ids[j]
                    if ant_fl[an] == best:
                        ax[mm] = ant_x[an]
                        ay[mm] = ant_y[an]
                        dd[mm] = dd[j]
                        ww[mm] = ww[j]
                        mm += 1
            use_prior = has_prior and qf == best
            qw = 0.0
            if use_prior:
                sq = speed_mps * (k - qk) * step_s + 0.5
                qw = 1.0 / (sq * sq)
            if use_grid:
                # the antennas that read the tag on this floor (all of the floor's count as non-detections)
                nc = 0
                sx0 = 0.0
                sy0 = 0.0
                sw0 = 0.0
                for j in range(m):
                    an = ids[j]
                    if ant_fl[an] == best:
                        cand[nc] = an
                        ccnt[nc] = sc[j]
                        crs[nc] = src[j] / sc[j]
                        nc += 1
                        sw0 += sc[j]
                        sx0 += sc[j] * ant_x[an]
                        sy0 += sc[j] * ant_y[an]
                if use_prior:
                    # none of the antennas reading the tag could hear it at the prior: the track is lost
                    # (a local grid around the prior would never reach the tag again), so start afresh
                    lost = True
                    for j in range(nc):
                        if (qx - ant_x[cand[j]]) ** 2 + (qy - ant_y[cand[j]]) ** 2 <= reset_m * reset_m:
                            lost = False
                            break
                    if lost:
                        use_prior = False
                if use_prior:
                    pv = qvar + (speed_mps * (k - qk) * step_s) ** 2
                    cx = qx
                    cy = qy
                    hm = min(grid_half_m, 2.0 * math.sqrt(pv) + grid_spacing_m)
                else:
                    pv = 1.0
                    cx = sx0 / sw0
                    cy = sy0 / sw0
                    hm = grid_half_m
                x, y, qvar = _lattice_step(cand, ccnt, crs, nc, fl_off[best], fl_ny[best], grid_spacing_m,
                                           lat_base, woff, wi0, wj0, wnx, wny, w_a, w_b, a_far,
                                           b_far, cx, cy, hm, fl_nx[best], use_prior, qx, qy, pv,
                                           llbuf, pyv, cw, cwx, cwxx)
            else:
                x, y = _solve_step(ax, ay, dd, ww, mm, use_prior, qx, qy, qw, iters, huber_c)
                qvar = 0.0  # no posterior: a point estimate
            x = min(max(x, 0.0), fl_w[best] * 0.999999)
            y = min(max(y, 0.0), fl_d[best] * 0.999999)
            for q in range(row, cur):  # steps without reads since the last estimate
                out_ts[q] = (k_first + (q - seg_row0)) * step_us
            out_ts[cur] = k * step_us
            out_fl[cur] = best
            out_x[cur] = x
            out_y[cur] = y
            out_v[cur] = qvar
            valid[cur - base] = True
            row = cur + 1
            has_prior = True
            qx = x
            qy = y
            qf = best
            qk = k
        _finish_segment(out_x[base:], out_y[base:], out_v[base:], out_fl[base:], valid, seg_row0 - base,
                        row - seg_row0,
                        half)


# --------------------------------------------------------------------------------------------------
# public API


@dataclass(frozen=True)
class _Params:
    step_us: int
    gap_us: int
    half: int
    speed_mps: float
    d_min: float
    d_max: float
    iters: int
    huber_c: float
    grid_half_m: float = 6.0
    grid_spacing_m: float = 1.0


@njit(**_NJIT)
def _first_bad_rows(tag, ts_us, antenna, rssi, count, n_ant):  # pragma: no cover - jit
    """First row (or -1) with: non-finite RSSI, antenna outside [0, n_ant), count < 1, (tag, ts_us) below
    the previous row's. One pass over the columns (numpy needed a temporary per check)."""
    bad_rssi = -1
    bad_ant = -1
    bad_cnt = -1
    bad_order = -1
    for r in range(tag.shape[0]):
        if bad_rssi < 0 and not math.isfinite(rssi[r]):
            bad_rssi = r
        if bad_ant < 0 and (antenna[r] < 0 or antenna[r] >= n_ant):
            bad_ant = r
        if bad_cnt < 0 and count[r] < 1:
            bad_cnt = r
        if bad_order < 0 and r > 0 and (tag[r] < tag[r - 1] or (tag[r] == tag[r - 1] and ts_us[r] < ts_us[r - 1])):
            bad_order = r
    return bad_rssi, bad_ant, bad_cnt, bad_order


def _validate(reads: Reads, antennas: AntennaMap,
              layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(reads)
    for name, dt in (("tag", np.int32), ("ts_us", np.int64), ("antenna", np.int32), ("rssi_dbm", np.float32),
                     ("count", np.int32)):
        arr = getattr(reads, name)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"reads.{name}: must be a 1-D array of length {n}")
        if arr.dtype != dt:
            raise ValueError(f"reads.{name}: dtype must be {np.dtype(dt).name}, got {arr.dtype}")
    if n:
        na = len(antennas)
        bad_rssi, bad_ant, bad_cnt, bad_order = _first_bad_rows(reads.tag, reads.ts_us, reads.antenna,
                                                                reads.rssi_dbm, reads.count, na)
        if bad_rssi >= 0:
            raise ValueError(f"reads.rssi_dbm: not finite at row {bad_rssi}")
        if bad_ant >= 0:
            raise ValueError(f"reads.antenna: row {bad_ant} refers to antenna {int(reads.antenna[bad_ant])}, "
                             f"the antenna map has {na}")
        if bad_cnt >= 0:
            raise ValueError(f"reads.count: must be >= 1, row {bad_cnt} has {int(reads.count[bad_cnt])}")
        if bad_order >= 0:
            raise ValueError(f"reads: not sorted by (tag, ts_us) at row {bad_order} (use Reads.sorted_from)")
    fl_num, fl_w, fl_d = floor_geometry(layout)
    idx = {int(f): i for i, f in enumerate(fl_num)}
    try:
        ant_fl = np.array([idx[int(f)] for f in antennas.floor], np.int64)
    except KeyError as e:
        raise ValueError(f"antennas.floor: floor {e.args[0]} is not in layout {layout.store!r}") from None
    return fl_num, fl_w, fl_d, ant_fl


def _antenna_tables(rm: RangeModel, step_s: float, fine_m: float = 0.25) -> tuple:
    """Per-antenna tables on a fine distance grid: expected reads per step, its log, RSSI (dBm); 1/bin."""
    d = np.arange(int(round(len(rm.rate_per_s) * rm.bin_m / fine_m)) + 1) * fine_m + fine_m / 2
    grid_m = np.arange(len(rm.rate_per_s)) * rm.bin_m + rm.bin_m / 2
    rate = np.interp(d, grid_m, rm.rate_per_s)
    rssi = np.interp(d, grid_m, rm.rssi_dbm)
    mu = (rm.gain[:, None] * rate[None, :] + rm.background_per_s) * step_s
    return mu, np.log(mu), rssi[None, :] + rm.offset_db[:, None], 1.0 / fine_m


def points_in_polygon(px: np.ndarray, py: np.ndarray, poly) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Even-odd ray casting: which points (metres) lie inside the polygon ``[(x, y), ...]``."""
    inside = np.zeros(px.shape, np.bool_)
    for (x1, y1), (x2, y2) in zip(poly, list(poly[1:]) + [poly[0]]):
        cross = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= cross & (px < xi)
    return inside


def lattice_walkable(layout: Layout, cell_m: float) -> np.ndarray:
    """Bool per lattice cell (floors in order, ``ix * ny + iy`` within a floor, cell centres at
    ``(i + 0.5) * cell_m``): False where the centre lies inside a ``staff_only`` zone (no customer there)."""
    out = []
    for f in sorted(layout.floors, key=lambda f: f.floor):
        nx = int(np.ceil(f.width_m / cell_m - 1e-9))
        ny = int(np.ceil(f.depth_m / cell_m - 1e-9))
        cx = np.repeat((np.arange(nx) + 0.5) * cell_m, ny)
        cy = np.tile((np.arange(ny) + 0.5) * cell_m, nx)
        walk = np.ones(nx * ny, np.bool_)
        for z in layout.zones:
            if z.kind == "staff_only" and z.floor == f.floor:
                walk &= ~points_in_polygon(cx, cy, z.polygon)
        out.append(walk)
    return np.concatenate(out) if out else np.zeros(0, np.bool_)


def _lattice_tables(rm: RangeModel, step_s: float, antennas: AntennaMap, ant_fl: np.ndarray, fl_w: np.ndarray,
                    fl_d: np.ndarray, walk: np.ndarray, g: float) -> tuple:
    """Everything :func:`_lattice_step` reads: per floor the lattice (offset, ny, nx) and ``base`` (minus the
    expected reads per step of all the floor's antennas, per cell); per antenna a window of cells
    holding all cells nearer than the end of its tables, with A = log expected reads - k rssi^2 and
    B = 2 k rssi there (k = 1 / (2 sigma_db^2): the reading's log-likelihood is count * (A + mean_rssi * B)
    up to a constant), and the far values beyond it."""
    mu_tab, lmu_tab, rssi_tab, inv_bin = _antenna_tables(rm, step_s)
    nb = mu_tab.shape[1]
    reach = (nb - 1) / inv_bin
    nx = np.ceil(fl_w / g - 1e-9).astype(np.int64)
    ny = np.ceil(fl_d / g - 1e-9).astype(np.int64)
    off = np.zeros(len(nx) + 1, np.int64)
    np.cumsum(nx * ny, out=off[1:])
    base = np.zeros(int(off[-1]))
    na = len(antennas)
    wi0 = np.zeros(na, np.int64)
    wj0 = np.zeros(na, np.int64)
    wnx = np.zeros(na, np.int64)
    wny = np.zeros(na, np.int64)
    woff = np.zeros(na + 1, np.int64)
    k = 1.0 / (2.0 * rm.sigma_db ** 2)
    # the RSSI term -k (rssi - r)^2 expanded in the reading's mean RSSI r: A + r B + (-k r^2, the same for
    # every cell, dropped)
    a_tab = lmu_tab - k * rssi_tab * rssi_tab
    b_tab = 2.0 * k * rssi_tab
    a_parts, b_parts = [], []
    for a in range(na):
        f = ant_fl[a]
        ax, ay = float(antennas.x_m[a]), float(antennas.y_m[a])
        cx = (np.arange(nx[f]) + 0.5) * g
        cy = (np.arange(ny[f]) + 0.5) * g
        b = np.minimum((np.hypot(cx[:, None] - ax, cy[None, :] - ay) * inv_bin).astype(np.int64), nb - 1)
        base[off[f]:off[f + 1]] -= mu_tab[a][b].ravel()
        i0 = max(int(np.floor((ax - reach) / g)), 0)
        i1 = min(int(np.floor((ax + reach) / g)), int(nx[f]) - 1)
        j0 = max(int(np.floor((ay - reach) / g)), 0)
        j1 = min(int(np.floor((ay + reach) / g)), int(ny[f]) - 1)
        wi0[a], wj0[a] = i0, j0
        wnx[a], wny[a] = max(i1 - i0 + 1, 0), max(j1 - j0 + 1, 0)
        win = b[i0:i0 + wnx[a], j0:j0 + wny[a]].ravel()
        a_parts.append(a_tab[a][win])
        b_parts.append(b_tab[a][win])
        woff[a + 1] = woff[a] + len(win)
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    base[~walk] = -1e300  # never there
    return (off[:-1].copy(), ny, nx, base, woff[:-1].copy(), wi0, wj0, wnx, wny, cat(a_parts),
            cat(b_parts), a_tab[:, nb - 1].copy(), b_tab[:, nb - 1].copy())


def _run(reads: Reads, antennas: AntennaMap, fl_w: np.ndarray, fl_d: np.ndarray, ant_fl: np.ndarray,
         model: PathLossModel, p: _Params, active_tags: np.ndarray | None, want_rows: bool,
         rmodel: RangeModel | None = None, walk: np.ndarray | None = None, bounds: tuple | None = None):
    tags, starts = reads.tag_bounds() if bounds is None else bounds
    active = np.ones(len(tags), np.bool_) if active_tags is None else active_tags
    counts = _count_steps(reads.ts_us, starts, active, p.step_us, p.gap_us)
    row_off = np.zeros(len(tags) + 1, np.int64)
    np.cumsum(counts, out=row_off[1:])
    n = int(row_off[-1])
    out_ts = np.empty(n, np.int64)
    out_fl = np.empty(n, np.int32)
    out_x = np.empty(n, np.float32)
    out_y = np.empty(n, np.float32)
    out_v = np.empty(n, np.float32)
    read_row = np.full(len(reads) if want_rows else 0, -1, np.int64)
    if rmodel is None:
        i0, f0 = np.zeros(len(fl_w), np.int64), np.zeros(0)
        ia = np.zeros(len(antennas), np.int64)
        fa = np.zeros(len(antennas))
        grid = (False, i0, i0, i0, f0, ia, ia, ia, ia, ia, f0, f0, fa, fa)
        reset_m = math.inf
    else:
        g = p.grid_spacing_m
        if walk is None:
            walk = np.ones(int(np.sum(np.ceil(fl_w / g - 1e-9) * np.ceil(fl_d / g - 1e-9))), np.bool_)
        grid = (True, *_lattice_tables(rmodel, p.step_us * 1e-6, antennas, ant_fl, fl_w, fl_d, walk, g))
        reset_m = rmodel.neighbour_m  # learnt range where reads fall to 10 % of peak
    if n:
        _positions_kernel(reads.ts_us, reads.antenna, reads.rssi_dbm, reads.count, starts, active, row_off,
                          antennas.x_m.astype(np.float64), antennas.y_m.astype(np.float64), ant_fl,
                          model.p0_dbm.astype(np.float64), float(model.exponent), float(model.sigma_db),
                          fl_w, fl_d, p.step_us, p.gap_us, p.half, p.speed_mps, p.d_min, p.d_max, p.iters,
                          p.huber_c, *grid, p.grid_half_m, p.grid_spacing_m, reset_m,
                          out_ts, out_fl, out_x, out_y, out_v, read_row, want_rows)
    out_tag = np.repeat(tags, counts).astype(np.int32)
    return out_tag, out_ts, out_fl, out_x, out_y, read_row, out_v


@njit(**_NJIT)
def _exposure(row_fl, row_x, row_y, ant_fl, ant_x, ant_y, bin_m, nb):  # pragma: no cover - jit
    """Steps spent at each (antenna, distance bin): the denominator of read rates."""
    e = np.zeros((ant_fl.shape[0], nb))
    for r in range(row_fl.shape[0]):
        for a in range(ant_fl.shape[0]):
            if ant_fl[a] != row_fl[r]:
                continue
            d = math.sqrt((row_x[r] - ant_x[a]) ** 2 + (row_y[r] - ant_y[a]) ** 2)
            e[a, min(int(d / bin_m), nb - 1)] += 1.0
    return e


def _fit_range_model(reads: Reads, antennas: AntennaMap, ant_fl: np.ndarray, rows: tuple, step_s: float,
                     bin_m: float = 0.5, max_m: float = 30.0) -> RangeModel:
    """Tabulate read rate and RSSI against distance from estimated positions (one EM M-step)."""
    _, _, ofl, ox, oy, rrow, _ = rows
    nb = int(round(max_m / bin_m))
    na = len(antennas)
    e = _exposure(ofl, ox.astype(np.float64), oy.astype(np.float64), ant_fl, antennas.x_m.astype(np.float64),
                  antennas.y_m.astype(np.float64), bin_m, nb)
    sel = rrow >= 0
    rr = rrow[sel]
    an = reads.antenna[sel]
    same = ofl[rr] == ant_fl[an]
    rr, an = rr[same], an[same]
    c = reads.count[sel][same].astype(np.float64)
    rssi = reads.rssi_dbm[sel][same].astype(np.float64)
    d = np.hypot(ox[rr] - antennas.x_m[an], oy[rr] - antennas.y_m[an])
    b = np.minimum((d / bin_m).astype(np.int64), nb - 1)
    cnt = np.bincount(an * nb + b, c, na * nb).reshape(na, nb)
    tot_e = e.sum(0)
    rate = np.divide(cnt.sum(0), tot_e * step_s, out=np.zeros(nb), where=tot_e > 0)
    for i in range(1, nb):  # bins never visited: carry the previous value
        if tot_e[i] == 0:
            rate[i] = rate[i - 1]
    expect = (e * rate[None, :]).sum(1) * step_s
    gain = np.clip(np.divide(cnt.sum(1), expect, out=np.ones(na), where=expect > 0), 0.2, 5.0)
    rate = np.minimum.accumulate(np.maximum(rate, 0.0))  # reads get rarer with distance
    peak = rate[0] if rate[0] > 0 else 1.0
    background = max(1e-4, 0.5 * float(rate[-1]))
    far = np.flatnonzero(rate < 0.1 * peak)
    neighbour_m = float(np.clip((far[0] if len(far) else nb) * bin_m, 4.0, 20.0))
    # RSSI at distance (global table + per-antenna offset), two alternations
    offset = np.zeros(na)
    tab = np.zeros(nb)
    for _ in range(2):
        y = rssi - offset[an]
        sc = np.bincount(b, c, nb)
        tab = np.divide(np.bincount(b, c * y, nb), sc, out=np.full(nb, np.nan), where=sc > 0)
        first = np.flatnonzero(np.isfinite(tab))
        if len(first) == 0:
            tab[:] = -60.0
        else:
            tab[:first[0]] = tab[first[0]]
            for i in range(1, nb):
                if not np.isfinite(tab[i]):
                    tab[i] = tab[i - 1]
        res = rssi - tab[b]
        sa = np.bincount(an, c, na)
        offset = np.divide(np.bincount(an, c * res, na), sa, out=np.zeros(na), where=sa > 0)
    tab = np.minimum.accumulate(tab)
    res = rssi - tab[b] - offset[an]
    sigma = float(np.sqrt(np.sum(c * res * res) / max(np.sum(c), 1.0))) if len(res) else 6.0
    return RangeModel(bin_m, rate, tab, gain, offset, float(np.clip(sigma, 1.0, 20.0)), background,
                      neighbour_m)


def _params(step_s: float, max_gap_s: float, smooth_s: float, speed_mps: float, fl_w: np.ndarray,
            fl_d: np.ndarray) -> _Params:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s: must be a positive number of seconds, got {step_s!r}")
    if not (math.isfinite(max_gap_s) and max_gap_s >= 0):
        raise ValueError(f"max_gap_s: must be >= 0 seconds, got {max_gap_s!r}")
    if not (math.isfinite(smooth_s) and smooth_s >= 0):
        raise ValueError(f"smooth_s: must be >= 0 seconds, got {smooth_s!r}")
    step_us = int(round(step_s * 1e6))
    if step_us < 1:
        raise ValueError(f"step_s: must be at least 1 microsecond, got {step_s!r}")
    if max_gap_s < step_s:
        raise ValueError(f"max_gap_s: must be at least step_s ({step_s} s), got {max_gap_s!r}")
    diag = float(np.max(np.hypot(fl_w, fl_d))) if len(fl_w) else 1.0
    return _Params(step_us, int(round(max_gap_s * 1e6)), int(round(smooth_s / step_s)), float(speed_mps),
                   0.5, diag, 10, 2.0)


def _initial_model(reads: Reads, n_ant: int) -> PathLossModel:
    """Each antenna's 95th-percentile RSSI taken as its 1 m level; indoor exponent 2.5."""
    p0 = np.full(n_ant, np.nan)
    if len(reads):
        order = np.argsort(reads.antenna, kind="stable")
        a_sorted = reads.antenna[order]
        bounds = np.searchsorted(a_sorted, np.arange(n_ant + 1))
        r_sorted = reads.rssi_dbm[order]
        for a in range(n_ant):
            seg = r_sorted[bounds[a]:bounds[a + 1]]
            if len(seg):
                p0[a] = float(np.quantile(seg, 0.95))
    fallback = float(np.nanmedian(p0)) if np.isfinite(p0).any() else -40.0
    p0[~np.isfinite(p0)] = fallback
    return PathLossModel(p0, 2.5, 6.0)


def _subsample_tags(reads: Reads, max_reads: int) -> np.ndarray:
    """Active mask over tags: an evenly spread subset with at most ~max_reads reads."""
    tags, starts = reads.tag_bounds()
    per_tag = np.diff(starts)
    if per_tag.sum() <= max_reads:
        return np.ones(len(tags), np.bool_)
    stride = max(1, int(math.ceil(per_tag.sum() / max_reads)))
    active = np.zeros(len(tags), np.bool_)
    active[::stride] = True
    return active


def fit_path_loss(reads: Reads, antennas: AntennaMap, layout: Layout, iterations: int = 4,
                  max_reads: int = 300_000, step_s: float = 1.0) -> PathLossModel:
    """Learn the store's path-loss model from its own reads (self-consistent, EM-like).

    Alternates position estimation with a least-squares fit of RSSI (dBm) on log10 distance
    (metres): one reference level per antenna, one exponent, on a spread subset of at most
    ``max_reads`` reads. Antennas without reads get the median reference level.
    """
    fl_num, fl_w, fl_d, ant_fl = _validate(reads, antennas, layout)
    model = _initial_model(reads, len(antennas))
    if len(reads) == 0:
        return model
    active = _subsample_tags(reads, max_reads)
    p = _params(step_s, 30.0, 2.0, 1.2, fl_w, fl_d)
    ax = antennas.x_m.astype(np.float64)
    ay = antennas.y_m.astype(np.float64)
    for _ in range(iterations):
        _, _, ofl, ox, oy, rrow, _ = _run(reads, antennas, fl_w, fl_d, ant_fl, model, p, active, True)
        sel = rrow >= 0
        rows = rrow[sel]
        an = reads.antenna[sel]
        same_floor = ofl[rows] == ant_fl[an]
        rows, an = rows[same_floor], an[same_floor]
        rssi = reads.rssi_dbm[sel][same_floor].astype(np.float64)
        w = reads.count[sel][same_floor].astype(np.float64)
        if len(rows) < 10:
            break
        d = np.hypot(ox[rows] - ax[an], oy[rows] - ay[an])
        lg = np.log10(np.maximum(d, p.d_min))
        na = len(antennas)
        sw = np.bincount(an, w, na)
        ok = sw > 0
        mean_l = np.where(ok, np.bincount(an, w * lg, na) / np.where(ok, sw, 1), 0)
        mean_r = np.where(ok, np.bincount(an, w * rssi, na) / np.where(ok, sw, 1), 0)
        cl = lg - mean_l[an]
        cr = rssi - mean_r[an]
        den = float(np.sum(w * cl * cl))
        if den <= 0:
            break
        exponent = float(np.clip(-np.sum(w * cl * cr) / (10.0 * den), 1.5, 5.0))
        p0 = np.where(ok, mean_r + 10.0 * exponent * mean_l, np.nan)
        p0[~ok] = np.nanmedian(p0) if ok.any() else model.p0_dbm[~ok]
        resid = cr + 10.0 * exponent * cl
        sigma = float(np.sqrt(np.sum(w * resid * resid) / np.sum(w)))
        model = PathLossModel(p0, exponent, float(np.clip(sigma, 1.0, 20.0)))
    return model


def fit_range_model(reads: Reads, antennas: AntennaMap, layout: Layout, model: PathLossModel,
                    iterations: int = 1, max_reads: int = 300_000, step_s: float = 1.0) -> RangeModel:
    """Learn read rate and RSSI against distance from the store's own reads (EM-like).

    Starts from path-loss (WLS) positions, then alternates grid-estimator positions and refits,
    on a spread subset of at most ``max_reads`` reads.
    """
    fl_num, fl_w, fl_d, ant_fl = _validate(reads, antennas, layout)
    p = _params(step_s, 30.0, 2.0, 1.2, fl_w, fl_d)
    active = _subsample_tags(reads, max_reads)
    rows = _run(reads, antennas, fl_w, fl_d, ant_fl, model, p, active, True)
    rmodel = _fit_range_model(reads, antennas, ant_fl, rows, p.step_us * 1e-6)
    for _ in range(iterations):
        rows = _run(reads, antennas, fl_w, fl_d, ant_fl, model, p, active, True, rmodel,
                    lattice_walkable(layout, p.grid_spacing_m))
        rmodel = _fit_range_model(reads, antennas, ant_fl, rows, p.step_us * 1e-6)
    return rmodel


def estimate_positions(reads: Reads, antennas: AntennaMap, layout: Layout, step_s: float = 1.0,
                       model: PathLossModel | None = None, max_gap_s: float = 30.0, smooth_s: float = 2.0,
                       speed_mps: float = 1.2, tags: np.ndarray | None = None, method: str = "grid",
                       range_model: RangeModel | None = None) -> Positions:
    """Position of every tag (or only ``tags``) on each ``step_s`` step while it is present.

    ``method``: ``"grid"`` (default; likelihood of read counts, non-detections included, and RSSI on
    a local grid, filtered over time) or ``"wls"`` (robust least squares on path-loss ranges).
    Models default to ones learnt from these reads (:func:`fit_path_loss`, :func:`fit_range_model`).
    Presence: first to last read, gaps up to ``max_gap_s`` bridged (interpolated). ``smooth_s``:
    half-width of the moving average (seconds). ``speed_mps``: walking speed of the motion prior (m/s).
    """
    fl_num, fl_w, fl_d, ant_fl = _validate(reads, antennas, layout)
    p = _params(step_s, max_gap_s, smooth_s, speed_mps, fl_w, fl_d)
    if method not in ("grid", "wls"):
        raise ValueError(f"method: must be 'grid' or 'wls', got {method!r}")
    if model is None:
        model = fit_path_loss(reads, antennas, layout, step_s=step_s)
    elif model.p0_dbm.shape != (len(antennas),):
        raise ValueError(f"model.p0_dbm: needs one value per antenna ({len(antennas)}), "
                         f"got {model.p0_dbm.shape}")
    if range_model is not None and (range_model.gain.shape != (len(antennas),)
                                    or range_model.offset_db.shape != (len(antennas),)):
        raise ValueError(f"range_model: needs gain and offset_db per antenna ({len(antennas)})")
    if method == "grid" and range_model is None and len(reads):
        range_model = fit_range_model(reads, antennas, layout, model, step_s=step_s)
    if method == "wls":
        range_model = None
    active = None
    bounds = reads.tag_bounds()  # once (a pass over all the reads)
    if tags is not None:
        active = np.isin(bounds[0], np.asarray(tags))
    walk = lattice_walkable(layout, p.grid_spacing_m) if range_model is not None else None
    out_tag, out_ts, ofl, ox, oy, _, ov = _run(reads, antennas, fl_w, fl_d, ant_fl, model, p, active, False,
                                               range_model, walk, bounds)
    return Positions(out_tag, out_ts, fl_num[ofl] if len(ofl) else ofl, ox, oy, step_s, model, range_model,
                     ov if method == "grid" else None)
