"""Antenna coverage of counters, from the layout alone: where a counter's visits will be hard to find.

Presence is decoded from which antennas read a tag and how strongly, so a shopper standing nearer to
another counter's antenna than to any of the counter's own looks, to the reads, like a shopper at
that other counter. :func:`counter_coverage` measures, per counter, the share of its floor area
where that is so (horizontal distances, sampled on a fine grid). On the simulated department store,
the counters with over 40 % of their area there (long strips with one antenna in the middle, back to
back with a counter whose antennas sit near the shared edge) had a visit recall of 0.64-0.79,
against 0.88-0.91 for the others (both RF scenarios, two seeds each; `bench/accuracy_sim.py`). On
eight random stores (`bench/unseen_stores.py`' stores and RF), counters over 25 % had a recall of 0.77
against 0.85 (728 and 7,136 true visits), lower in 6 of the 8 store-scenarios that had any.
:func:`coverage_warnings` turns that into advice when a layout is imported.
"""

from __future__ import annotations

import numpy as np

from analytics.positions import points_in_polygon
from storeflow.layout import Layout

__all__ = ["counter_coverage", "coverage_warnings", "WARN_SHARE"]

#: A counter is reported when more than this share of its area is nearer another counter's antenna.
WARN_SHARE = 0.25


def counter_coverage(layout: Layout, step_m: float = 0.25) -> dict[str, tuple[float, str | None]]:
    """Per counter: (share of its area nearer another counter's antenna than to its own, 0-1; the
    counter owning most of those nearest antennas, or None).

    Distances are horizontal (metres) on the counter's floor, sampled at the centres of a ``step_m``
    grid. A counter without an antenna of its own has share 1.0 when any other counter's antenna is
    on its floor (0.0 and None when none is: nothing can be told apart there anyway).
    """
    if step_m <= 0:
        raise ValueError(f"step_m must be > 0, got {step_m}")
    ants = [a for _, a in layout.antennas()]
    out: dict[str, tuple[float, str | None]] = {}
    for z in layout.counters:
        own = [a for a in ants if a.zone == z.zone]
        other = [a for a in ants if a.floor == z.floor and a.zone is not None and a.zone != z.zone]
        if not other:
            out[z.zone] = (0.0, None)
            continue
        poly = np.asarray(z.polygon, np.float64)
        xs = np.arange(poly[:, 0].min() + step_m / 2, poly[:, 0].max(), step_m)
        ys = np.arange(poly[:, 1].min() + step_m / 2, poly[:, 1].max(), step_m)
        gx, gy = np.meshgrid(xs, ys)
        inside = points_in_polygon(gx.ravel(), gy.ravel(), z.polygon)
        px, py = gx.ravel()[inside], gy.ravel()[inside]
        if px.size == 0:  # thinner than the grid: its centroid stands for it
            px, py = poly[:, 0].mean(keepdims=True), poly[:, 1].mean(keepdims=True)
        d_other = np.stack([np.hypot(px - a.x, py - a.y) for a in other])
        nearest_other = d_other.argmin(0)
        if own:
            d_own = np.min([np.hypot(px - a.x, py - a.y) for a in own], axis=0)
            lost = d_other.min(0) < d_own
        else:
            lost = np.ones(px.size, bool)
        if not lost.any():
            out[z.zone] = (0.0, None)
            continue
        owners = [other[i].zone for i in nearest_other[lost]]
        out[z.zone] = (float(lost.mean()), max(set(owners), key=owners.count))
    return out


def coverage_warnings(layout: Layout, max_share: float = WARN_SHARE) -> list[str]:
    """One line of advice per counter with more than ``max_share`` of its area nearer another
    counter's antenna (see :func:`counter_coverage`), worst first."""
    cov = counter_coverage(layout)
    bad = sorted(((share, zone, by) for zone, (share, by) in cov.items() if share > max_share), reverse=True)
    lines = []
    for share, zone, by in bad:
        has_own = any(a.zone == zone for _, a in layout.antennas())
        if not has_own:
            lines.append(f"counter {zone} has no antenna: its visits cannot be found (readers[].antennas[].zone)")
            continue
        lines.append(f"counter {zone}: {share:.0%} of its area is nearer to {by}'s antennas than to its own; "
                     f"its short visits will often be missed or counted at {by} (add an antenna in that part "
                     f"of {zone}, or move {by}'s away from the shared edge)")
    return lines
