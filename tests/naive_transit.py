"""Slow, obviously-correct references for analytics.transit (pure Python, one gap at a time)."""

from __future__ import annotations

import math

Row = tuple[int, int, int, float, float, float]  # tag, ts_us, floor, x_m, y_m, var_m2


def naive_gaps(rows: list[Row], step_us: int, trip_gap_us: int, same_floor: bool) -> list[int]:
    """Indices i with rows i, i + 1 of one tag, 2 steps to trip_gap_us apart, on different floors (or any)."""
    out = []
    for i in range(len(rows) - 1):
        (t0, s0, f0, *_), (t1, s1, f1, *_) = rows[i], rows[i + 1]
        if t0 == t1 and 2 * step_us <= s1 - s0 <= trip_gap_us and (same_floor or f0 != f1):
            out.append(i)
    return out


def naive_cost(base_s: list[float], pts: list[tuple[float, float]], inv_speed: float,
               c: tuple[float, float]) -> float:
    """sum_e |base_s[e] - dist(pts[e], c) * inv_speed|."""
    total = 0.0
    for b, (x, y) in zip(base_s, pts):
        total += abs(b - math.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2) * inv_speed)
    return total


def _walk(a: tuple[float, float], b: tuple[float, float], u: float) -> tuple[float, float]:
    return a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1])


def naive_fill(rows: list[Row], step_s: float,
               points: dict[tuple[int, int], tuple[float, float, float, float, float]], trip_gap_s: float,
               speed_mps: float, ride_share: float, same_floor: bool,
               detour: float) -> list[Row]:
    """The rows with every gap's missing steps filled, following the module docstring literally.

    ``points[(a, b)] = (from_x, from_y, to_x, to_y, var_m2)``; changes between pairs not in ``points`` stay.
    """
    step_us = int(round(step_s * 1e6))
    gaps = set(naive_gaps(rows, step_us, int(round(trip_gap_s * 1e6)), same_floor))
    out: list[Row] = []
    for i, row in enumerate(rows):
        out.append(row)
        if i not in gaps:
            continue
        tag, ts, fa, xa, ya, va = row
        _, ts_b, fb, xb, yb, vb = rows[i + 1]
        n = (ts_b - ts) // step_us - 1
        new_ts = [ts + (j + 1) * step_us for j in range(n)]
        if fa == fb:
            d = math.hypot(xb - xa, yb - ya)
            for j in range(n):
                u = (j + 1) / (n + 1)
                x, y = _walk((xa, ya), (xb, yb), u)
                v = (1 - u) * va + u * vb + 4 * u * (1 - u) * (detour * d) ** 2
                out.append((tag, new_ts[j], fa, x, y, v))
            continue
        if (fa, fb) not in points:
            continue
        px, py, qx, qy, pv = points[(fa, fb)]
        g = n * step_s
        da, db = math.hypot(px - xa, py - ya), math.hypot(qx - xb, qy - yb)
        walk_a, walk_b = da / speed_mps, db / speed_mps
        if walk_a + walk_b >= g:  # no time for a ride: both walks shortened in proportion
            f = g / (walk_a + walk_b)
            walk_a, walk_b = walk_a * f, walk_b * f
        ride = max(g - walk_a - walk_b, 0.0)
        moving = ride > 0 and math.hypot(qx - px, qy - py) <= ride * speed_mps
        for j in range(n):
            s = (j + 0.5) * step_s
            floor = fa if s < walk_a + ride_share * ride else fb
            if floor == fa and s < walk_a:  # walking from the last position on A to the transfer point
                u = s / walk_a
                x, y = _walk((xa, ya), (px, py), u)
                v = (1 - u) * va + u * pv + 4 * u * (1 - u) * (detour * da) ** 2
            elif floor == fb and g - s < walk_b:  # walking from B's transfer point to the first position on B
                u = (g - s) / walk_b
                x, y = _walk((xb, yb), (qx, qy), u)
                v = (1 - u) * vb + u * pv + 4 * u * (1 - u) * (detour * db) ** 2
            else:  # riding
                if moving:
                    x, y = _walk((px, py), (qx, qy), min(max((s - walk_a) / ride, 0.0), 1.0))
                else:
                    x, y = (px, py) if floor == fa else (qx, qy)
                v = pv
            out.append((tag, new_ts[j], floor, x, y, v))
    return out
