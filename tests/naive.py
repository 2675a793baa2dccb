"""Slow, obviously-correct reference implementations of the analytics kernels (pure Python).

Each function here is the SPEC definition written as plainly as possible; the numba kernels are
tested against them on random inputs.
"""

from __future__ import annotations

import math

import numpy as np


def visits_naive(tag, zone, start_us, end_us, gap_s: float, min_dwell_s: float) -> list[tuple]:
    """Visits from presence spans sorted by (tag, start): list of (tag, zone, start, end, dwell_s, passby)."""
    gap_us = int(round(gap_s * 1e6))
    out: list[list] = []
    for t, z, s, e in zip(map(int, tag), map(int, zone), map(int, start_us), map(int, end_us)):
        if z < 0:
            continue  # placed nowhere: neither extends nor splits a visit
        last = out[-1] if out else None
        # same tag, same zone as the previous zone span (nothing elsewhere in between), short absence
        if last is not None and last[0] == t and last[1] == z and s - last[3] <= gap_us:
            last[3] = max(last[3], e)
        else:
            out.append([t, z, s, e])
    return [(t, z, s, e, (e - s) / 1e6, (e - s) / 1e6 < min_dwell_s) for t, z, s, e in out]


def trips_naive(tag, ts_us, trip_gap_s: float) -> list[tuple]:
    """Trips from reads sorted by (tag, ts): list of (tag, start, end, n_reads)."""
    gap_us = int(round(trip_gap_s * 1e6))
    out: list[list] = []
    for t, ts in zip(map(int, tag), map(int, ts_us)):
        if out and out[-1][0] == t and ts - out[-1][2] <= gap_us:
            out[-1][2] = ts
            out[-1][3] += 1
        else:
            out.append([t, ts, ts, 1])
    return [tuple(x) for x in out]


def paths_naive(trips: list[tuple], visits: list[tuple], is_counter) -> list[list[int]]:
    """Per trip, the zones of its non-pass-by counter visits (visit start within the trip), in order."""
    paths: list[list[int]] = []
    for t, s, e, _ in trips:
        vs = sorted((v for v in visits if v[0] == t and s <= v[2] <= e and not v[5] and is_counter(v[1])),
                    key=lambda v: v[2])
        paths.append([v[1] for v in vs])
    return paths


def viterbi_naive(log_em: np.ndarray, log_trans: np.ndarray) -> list[int]:
    """Most likely state sequence (uniform start) by dynamic programming over plain Python lists.

    ``log_em``: (T, S) emission log-likelihoods; ``log_trans``: (S, S), -inf where not allowed.
    Ties go to the lowest-numbered predecessor and the lowest final state.
    """
    T, S = log_em.shape
    score = [float(log_em[0, s]) for s in range(S)]
    back: list[list[int]] = []
    for k in range(1, T):
        new, bk = [], []
        for j in range(S):
            best, arg = -math.inf, j
            for i in range(S):
                v = score[i] + float(log_trans[i, j])
                if v > best:
                    best, arg = v, i
            new.append(best + float(log_em[k, j]))
            bk.append(arg)
        score = new
        back.append(bk)
    state = max(range(S), key=lambda s: (score[s], -s))
    path = [state]
    for bk in reversed(back):
        state = bk[state]
        path.append(state)
    return path[::-1]


def step_emissions_naive(ts_us, antenna, rssi, step_us: int, p, mu, sd, outlier_w: float, span_db: float):
    """(T, S) emission log-likelihoods of one segment, from the model's definition.

    Per step and antenna: detected (strongest RSSI r) -> log p + log((1-w) N(r; mu, sd) + w / span);
    not detected -> log(1 - p).
    """
    t0 = int(ts_us[0])
    T = (int(ts_us[-1]) - t0) // step_us + 1
    S, A = p.shape
    best: dict[tuple[int, int], float] = {}
    for t, a, r in zip(map(int, ts_us), map(int, antenna), map(float, rssi)):
        k = (t - t0) // step_us
        best[(k, a)] = max(best.get((k, a), -math.inf), r)
    em = np.zeros((T, S))
    for k in range(T):
        for s in range(S):
            tot = 0.0
            for a in range(A):
                if (k, a) in best:
                    r = best[(k, a)]
                    dens = math.exp(-0.5 * ((r - mu[s, a]) / sd[s, a]) ** 2) / (sd[s, a] * math.sqrt(2 * math.pi))
                    tot += math.log(p[s, a]) + math.log((1 - outlier_w) * dens + outlier_w / span_db)
                else:
                    tot += math.log(1 - p[s, a])
            em[k, s] = tot
    return em


def fill_beside_naive(states: list[int], inside_of: list[int], with_far: bool = False) -> list[int]:
    """Relabel every step that lies between two steps in the same "in z" state with only "beside z"
    states (``inside_of[s]`` = z), and with ``with_far`` also state 0, between them, as z."""
    out = list(states)
    for k in range(len(states)):
        s = states[k]
        if not (inside_of[s] >= 0 or (with_far and s == 0)):
            continue
        for z in set(inside_of) - {-1}:
            ok = lambda x: inside_of[x] == z or (with_far and x == 0)  # noqa: E731
            i = k
            while i >= 0 and ok(states[i]):
                i -= 1
            j = k
            while j < len(states) and ok(states[j]):
                j += 1
            if i >= 0 and j < len(states) and states[i] == z and states[j] == z:
                out[k] = z
    return out


def min_stay_viterbi_naive(log_em: np.ndarray, log_trans: np.ndarray, chained: list[int],
                           min_steps: int) -> float:
    """Best path score (uniform start) when every stay in a ``chained`` state lasts >= ``min_steps``
    steps, unless the stay is cut by the segment's start or end; the first ``min_steps - 1`` steps
    of a chained stay pay no self-transition (the stay's length is fixed until then). Brute force
    over all state sequences: tiny inputs only."""
    import itertools

    T, S = log_em.shape
    best = -math.inf
    for path in itertools.product(range(S), repeat=T):
        v = float(log_em[0, path[0]]) + sum(float(log_trans[path[k - 1], path[k]] + log_em[k, path[k]])
                                            for k in range(1, T))
        k = 0
        while k < T:
            j = k
            while j < T and path[j] == path[k]:
                j += 1
            if path[k] in chained:
                if k > 0 and j < T and j - k < min_steps:
                    v = -math.inf
                    break
                v -= (min(j - k, min_steps) - 1) * float(log_trans[path[k], path[k]])
            k = j
        best = max(best, v)
    return best


def _inside_naive(px: float, py: float, poly) -> bool:
    """Even-odd ray casting for one point."""
    inside = False
    n = len(poly)
    for k in range(n):
        (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % n]
        if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def zone_mass_naive(x: float, y: float, sd: float, poly, cell_m: float) -> float:
    """Mass of a Gaussian N((x, y), sd^2 I) over the cells (of the polygon's bounding box, ``cell_m``
    metres, origin at its lower-left corner) whose centre lies inside the polygon."""
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    x0, y0 = min(xs), min(ys)
    nx = max(1, math.ceil((max(xs) - x0) / cell_m - 1e-9))
    ny = max(1, math.ceil((max(ys) - y0) / cell_m - 1e-9))
    s = sd * math.sqrt(2.0)
    total = 0.0
    for i in range(nx):
        for j in range(ny):
            if not _inside_naive(x0 + (i + 0.5) * cell_m, y0 + (j + 0.5) * cell_m, poly):
                continue
            ax, ay = x0 + i * cell_m, y0 + j * cell_m
            total += (0.5 * (math.erf((ax + cell_m - x) / s) - math.erf((ax - x) / s))
                      * 0.5 * (math.erf((ay + cell_m - y) / s) - math.erf((ay - y) / s)))
    return total


def refine_naive(visits: list[tuple], rows: list[tuple], zones: list[tuple], step_us: int, cell_m: float,
                 min_mass: float, min_dwell_s: float) -> tuple[list[tuple], list[float], list[float]]:
    """Visits (tag, zone, start, end) cut to the position steps (tag, ts, floor, x, y, sd) whose middle
    lies in the visit and whose Gaussian puts >= min_mass in the zone ((floor, polygon) per zone).

    A cut visit whose expected time in the zone (sum of the masses of its steps from the first to the
    last kept one, times the step) is under ``min_dwell_s`` is a pass-by lasting that long, centred on
    the mass-weighted mean of the steps' middles and moved inside the cut visit if it sticks out.
    Returns the refined (tag, zone, start, end, dwell_s, passby) list, every mass computed and every
    expected time in the zone.
    """
    out, masses, expected = [], [], []
    for t, z, s, e in visits:
        zfl, poly = zones[z]
        steps = [r for r in rows if r[0] == t and s <= r[1] + step_us // 2 < e]
        if not steps:
            out.append((t, z, s, e, (e - s) / 1e6, (e - s) / 1e6 < min_dwell_s))
            continue
        scored = []  # (ts, mass) of the steps on the zone's floor
        for _, ts, fl, x, y, sd in steps:
            if fl == zfl:
                scored.append((ts, zone_mass_naive(x, y, sd, poly, cell_m)))
        masses.extend(m for _, m in scored)
        good = [ts for ts, m in scored if m >= min_mass]
        if not good:
            continue
        ns, ne = max(s, min(good)), min(e, max(good) + step_us)
        inside = [(ts, m) for ts, m in scored if min(good) <= ts <= max(good)]
        in_s = sum(m for _, m in inside) * step_us / 1e6
        expected.append(in_s)
        if in_s < min_dwell_s:
            mid = s + round(sum(m * (ts + step_us // 2 - s) for ts, m in inside) / sum(m for _, m in inside))
            span = min(round(in_s * 1e6), ne - ns)
            start = min(max(mid - span // 2, ns), ne - span)
            out.append((t, z, start, start + span, span / 1e6, True))
        else:
            out.append((t, z, ns, ne, (ne - ns) / 1e6, (ne - ns) / 1e6 < min_dwell_s))
    return out, masses, expected


def presence_in_visits_naive(spans: list[tuple], visits: list[tuple], clip: list[bool]) -> list[tuple]:
    """Spans (tag, zone, start, end): a span whose zone has ``clip`` set becomes its overlaps with the
    visits (tag, zone, start, end) of the same tag and zone, in time order; the others stay."""
    out = []
    for t, z, s, e in spans:
        if z < 0 or not clip[z]:
            out.append((t, z, s, e))
            continue
        for vt, vz, vs, ve in sorted(visits, key=lambda v: v[2]):
            if vt == t and vz == z and max(s, vs) < min(e, ve):
                out.append((t, z, max(s, vs), min(e, ve)))
    return out
