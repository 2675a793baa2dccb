"""Heatmap accuracy against simulator ground truth, with the ceilings that bound it.

    .venv/bin/python bench/heatmap_accuracy.py [--shoppers 1000] [--hours 3] [--seed 7]
                                               [--stores boutique,department] [--scenarios easy,hard]

Per store, scenario and floor, Pearson r on 1 m cells between the true customer occupancy
(tag-seconds per cell from the simulator's true positions) and

* ``r``: :func:`analytics.heatmap.compute_heatmap` as the analyze job runs it
  (:func:`analytics.pipeline.analyze_block`'s positions spread by their posterior, its presence
  spans, counter spans cut to the refined visits, keeping zone time in the zone, floor-change transit);
* ``r no presence``: the same without the presence spans.

and two ceilings computed from the truth itself:

* ``zone-uniform``: r between the truth and the truth with every counter/checkout zone's seconds
  spread evenly over its cells. It is what an estimator reaches that gets every zone's total exactly
  right but cannot tell where in a zone a shopper stood (RSSI from the zone's antennas cannot);
* ``1 m blur``: r between the truth and the truth blurred by a Gaussian of 1 m (what positions
  accurate to ~1 m would reach at best).

Also the share of true and estimated time inside zones and the correlation of per-zone totals (all
zones, and counters only with their estimated/true time). Last, what the correlation hangs on: the
share of the truth's variance in its five hottest cells and the zones holding them (a till's queue
point or an escalator line can hold most of it), and r over the cells outside the checkout zones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.data import zone_map  # noqa: E402
from analytics.heatmap import compute_heatmap, zone_cells  # noqa: E402
from analytics.pipeline import analyze_block  # noqa: E402
from analytics.presence import fit_presence_model  # noqa: E402
from storeflow.settings import store_params  # noqa: E402


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _blur(a: np.ndarray, sigma_cells: float) -> np.ndarray:
    """Separable Gaussian blur (zero outside the floor)."""
    k = np.exp(-0.5 * (np.arange(-4, 5) / sigma_cells) ** 2)
    k /= k.sum()
    a = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 0, a)
    return np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 1, a)


def _grid(heat: np.ndarray, floor: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    h = heat[heat["floor"] == floor]
    np.add.at(out, (h["ix"], h["iy"]), h["seconds"])
    return out


def evaluate(store: str, scenario: str, shoppers: int, hours: float, seed: int) -> None:
    from simulators import sample_layout_path, simulate
    from storeflow.layout import load_layout

    layout = load_layout(sample_layout_path(store))
    sim = simulate(layout, shoppers=shoppers, hours=hours, seed=seed, scenario=scenario)
    reads, am = sim.reads()
    customer = sim.truth.customer[reads.tag]
    zm = zone_map(layout)
    params = store_params(layout.settings)
    t0 = time.process_time()
    model = fit_presence_model(reads, am, zm, segment_gap_s=params["trip_gap_s"])
    blk = analyze_block(reads, am, layout, zm, params, model, customer)  # as the analyze job runs it
    heat = compute_heatmap(reads, am, layout, customer, 1.0, sim.start_us, sim.end_us, presence=blk.heat_presence,
                           positions=blk.positions, trip_gap_s=params["trip_gap_s"])
    cpu = time.process_time() - t0
    plain = compute_heatmap(reads, am, layout, customer, 1.0, sim.start_us, sim.end_us, positions=blk.positions,
                            trip_gap_s=params["trip_gap_s"])
    cells = zone_cells(layout, 1.0)
    spread_kinds = ("counter", "checkout")
    off = 0
    for f in sorted(layout.floors, key=lambda f: f.floor):
        true = sim.truth.heatmap(f.floor, 1.0)
        n = true.size
        zc = cells[:, off:off + n]
        off += n
        est = _grid(heat, f.floor, true.shape)
        est_plain = _grid(plain, f.floor, true.shape)
        uniform = true.ravel().copy()
        for zi, z in enumerate(layout.zones):
            if z.kind in spread_kinds and zc[zi].any():
                uniform[zc[zi]] = uniform[zc[zi]].mean()
        in_zone = zc.any(0)
        zones = [zi for zi in range(len(layout.zones)) if zc[zi].any()]
        t_tot = np.array([true.ravel()[zc[zi]].sum() for zi in zones])
        e_tot = np.array([est.ravel()[zc[zi]].sum() for zi in zones])
        is_ctr = np.array([layout.zones[zi].kind == "counter" for zi in zones], bool)
        print(f"{store:10s} {scenario:4s} floor {f.floor}: r {_r(true, est):.3f} (no presence {_r(true, est_plain):.3f}) | "
              f"ceilings: zone-uniform {_r(true, uniform):.3f}, 1 m blur {_r(true, _blur(true, 1.0)):.3f} | "
              f"time in zones true {true.ravel()[in_zone].sum() / true.sum():.0%} est {est.ravel()[in_zone].sum() / est.sum():.0%}, "
              f"zone totals r {_r(t_tot, e_tot):.3f} (counters {_r(t_tot[is_ctr], e_tot[is_ctr]):.3f}, "
              f"est/true {e_tot[is_ctr].sum() / t_tot[is_ctr].sum():.2f}), floor total est/true {est.sum() / true.sum():.2f}",
              flush=True)
        dev = true.ravel() - true.mean()
        hot = np.argsort(dev)[::-1][:5]
        names = sorted({layout.zones[zi].zone for c in hot for zi in np.flatnonzero(zc[:, c])}) or ["none"]
        outside = ~zc[[zi for zi, z in enumerate(layout.zones) if z.kind == "checkout"]].any(0)
        print(f"{'':15s} floor {f.floor}: the truth's 5 hottest cells hold {(dev[hot] ** 2).sum() / (dev ** 2).sum():.0%} "
              f"of its variance (zones: {', '.join(names)}); r outside checkout zones "
              f"{_r(true.ravel()[outside], est.ravel()[outside]):.3f}", flush=True)
    print(f"{store:10s} {scenario:4s} ({len(reads):,} reads): presence, visits, positions, refine + heatmap "
          f"{cpu:.1f} s CPU", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stores", default="boutique,department")
    ap.add_argument("--scenarios", default="easy,hard")
    a = ap.parse_args()
    for store in a.stores.split(","):
        for sc in a.scenarios.split(","):
            evaluate(store, sc, a.shoppers, a.hours, a.seed)


if __name__ == "__main__":
    main()
