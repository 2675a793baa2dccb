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
:func:`suggest_antennas` says where to add antennas, and :func:`coverage_warnings` turns both into advice
when a layout is imported. With the 24 antennas it suggests for the department store, those counters'
recall rose to 0.83-0.88 (`bench/coverage_advice.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.positions import points_in_polygon
from storeflow.layout import Layout, parse_layout

__all__ = ["CounterCoverage", "coverage", "counter_coverage", "coverage_warnings", "suggest_antennas",
           "with_suggested_antennas", "WARN_SHARE"]

#: A counter is reported when more than this share of its area is nearer another counter's antenna.
WARN_SHARE = 0.25


@dataclass(frozen=True)
class CounterCoverage:
    """One counter's coverage by its own antennas (see :func:`coverage`)."""

    zone: str
    floor: int
    share: float                 # of its area nearer another counter's antenna than to its own (0-1)
    nearer_to: str | None        # the counter owning most of those nearest antennas
    has_antenna: bool            # the counter has an antenna of its own
    suggested: tuple[tuple[float, float], ...]  # (x_m, y_m) where to add antennas; empty when covered


def coverage(layout: Layout, max_share: float = WARN_SHARE, step_m: float = 0.25,
             min_part: float = 0.05) -> list[CounterCoverage]:
    """Every counter's coverage, in layout order.

    ``share``: horizontal distances (metres) on the counter's floor, sampled at the centres of a
    ``step_m`` grid. A counter without an antenna of its own has share 1.0 when any other counter's
    antenna is on its floor (0.0 when none is: nothing can be told apart there anyway).
    ``suggested``, for a counter over ``max_share``: one antenna at the centroid of each part nearest to
    one other antenna (parts under ``min_part`` of the counter are left); with no antenna of its own,
    one at its centroid.
    """
    if step_m <= 0:
        raise ValueError(f"step_m must be > 0, got {step_m}")
    ants = [a for _, a in layout.antennas()]
    out = []
    for z in layout.counters:
        own = [a for a in ants if a.zone == z.zone]
        others = [a for a in ants if a.floor == z.floor and a.zone is not None and a.zone != z.zone]
        if not others:
            out.append(CounterCoverage(z.zone, z.floor, 0.0, None, bool(own), ()))
            continue
        poly = np.asarray(z.polygon, np.float64)
        xs = np.arange(poly[:, 0].min() + step_m / 2, poly[:, 0].max(), step_m)
        ys = np.arange(poly[:, 1].min() + step_m / 2, poly[:, 1].max(), step_m)
        gx, gy = np.meshgrid(xs, ys)
        inside = points_in_polygon(gx.ravel(), gy.ravel(), z.polygon)
        px, py = gx.ravel()[inside], gy.ravel()[inside]
        if px.size == 0:  # thinner than the grid: its centroid stands for it
            px, py = poly[:, 0].mean(keepdims=True), poly[:, 1].mean(keepdims=True)
        d_other = np.stack([np.hypot(px - a.x, py - a.y) for a in others])
        nearest = d_other.argmin(0)
        if own:
            lost = d_other.min(0) < np.min([np.hypot(px - a.x, py - a.y) for a in own], axis=0)
        else:
            lost = np.ones(px.size, bool)
        if not lost.any():
            out.append(CounterCoverage(z.zone, z.floor, 0.0, None, bool(own), ()))
            continue
        owners = [others[i].zone for i in nearest[lost]]
        share = float(lost.mean())
        suggested: list[tuple[float, float]] = []
        if share > max_share and not own:
            suggested.append((round(float(px.mean()), 2), round(float(py.mean()), 2)))
        elif share > max_share:
            for j in np.unique(nearest[lost]):
                part = lost & (nearest == j)
                if part.mean() >= min_part:
                    suggested.append((round(float(px[part].mean()), 2), round(float(py[part].mean()), 2)))
        out.append(CounterCoverage(z.zone, z.floor, share, max(set(owners), key=owners.count), bool(own),
                                   tuple(suggested)))
    return out


def counter_coverage(layout: Layout, step_m: float = 0.25) -> dict[str, tuple[float, str | None]]:
    """Per counter: (share of its area nearer another counter's antenna than to its own, 0-1; the
    counter owning most of those nearest antennas, or None). See :func:`coverage`."""
    return {c.zone: (c.share, c.nearer_to) for c in coverage(layout, step_m=step_m)}


def suggest_antennas(layout: Layout, max_share: float = WARN_SHARE, step_m: float = 0.25,
                     min_part: float = 0.05) -> list[tuple[str, int, float, float]]:
    """Where to add antennas so that no counter has over ``max_share`` of its area nearer another
    counter's antennas: (zone, floor, x_m, y_m). See :func:`coverage`."""
    return [(c.zone, c.floor, x, y) for c in coverage(layout, max_share, step_m, min_part) for x, y in c.suggested]


def with_suggested_antennas(layout: Layout, max_share: float = WARN_SHARE) -> Layout:
    """The layout with :func:`suggest_antennas`' antennas added, on new readers ``ADV1``, ``ADV2``, ...
    of eight ports each (a what-if for the installer, or a simulation)."""
    data = layout.to_dict()
    new = [{"port": i % 8 + 1, "floor": f, "x": x, "y": y, "zone": z}
           for i, (z, f, x, y) in enumerate(suggest_antennas(layout, max_share))]
    data["readers"] += [{"reader": f"ADV{i // 8 + 1}", "antennas": new[i:i + 8]} for i in range(0, len(new), 8)]
    return parse_layout(data, layout.source_dir)


def coverage_warnings(layout: Layout, max_share: float = WARN_SHARE) -> list[str]:
    """One line of advice per counter with more than ``max_share`` of its area nearer another
    counter's antenna (see :func:`coverage`), worst first."""
    lines = []
    for c in sorted(coverage(layout, max_share), key=lambda c: (c.share, c.zone), reverse=True):
        if c.share <= max_share:
            break
        if not c.has_antenna:
            lines.append(f"counter {c.zone} has no antenna: its visits cannot be found (readers[].antennas[].zone)")
            continue
        where = ", ".join(f"({x:g}, {y:g})" for x, y in c.suggested) or "its far end"
        lines.append(f"counter {c.zone}: {c.share:.0%} of its area is nearer to {c.nearer_to}'s antennas than to "
                     f"its own; its short visits will often be missed or counted at {c.nearer_to} (add antennas to "
                     f"{c.zone} at {where} m, or move {c.nearer_to}'s away from the shared edge)")
    return lines
