"""Does the layout coverage advice pay? Visit accuracy before and after adding the suggested antennas.

    .venv/bin/python bench/coverage_advice.py [--store department] [--shoppers 400] [--hours 2]
                                              [--seeds 11,12] [--scenarios easy,hard]

:func:`analytics.coverage.suggest_antennas` says where counters with over a quarter of their area
nearer another counter's antennas need antennas of their own. This bench simulates the store as it
is and with those antennas added (on a new reader), runs the analyze job's pipeline
(:func:`analytics.pipeline.analyze_block`) on each and prints visit recall at the flagged counters
and at the others, precision, F1, the total visitors error and the share of counters within 10 % on
visitors against the simulator's truth.
Adding antennas changes the simulation's random draws, so the two runs are not shopper-for-shopper
identical; the comparison is between groups of counters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.accuracy import match_visits, simulation_visits, visit_accuracy  # noqa: E402
from analytics.coverage import WARN_SHARE, counter_coverage, with_suggested_antennas  # noqa: E402
from analytics.data import zone_map  # noqa: E402
from storeflow.layout import Layout  # noqa: E402


def run(layout: Layout, flagged: set[str], scenario: str, shoppers: int, hours: float, seed: int) -> str:
    from simulators import simulate

    sim = simulate(layout, shoppers=shoppers, hours=hours, seed=seed, scenario=scenario)
    truth, est, _ = simulation_visits(sim, layout)
    acc = visit_accuracy(*truth, *est)
    matched_t, _ = match_visits(*truth, *est)
    zm = zone_map(layout)
    hit = np.isin(np.arange(len(truth[0])), matched_t)
    fl = np.isin(truth[1], [i for i, z in enumerate(zm.zone) if z in flagged])
    return (f"recall flagged {hit[fl].mean():.3f} (n {fl.sum()}), others {hit[~fl].mean():.3f} (n {(~fl).sum()}) | "
            f"P {acc.precision:.3f} R {acc.recall:.3f} F1 {acc.f1:.3f} | visitors total {acc.visitors_total_rel_err:+.1%}, "
            f"counters within 10 % {acc.visitors_share_within(0.10):.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="department")
    ap.add_argument("--shoppers", type=int, default=400)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seeds", default="11,12")
    ap.add_argument("--scenarios", default="easy,hard")
    a = ap.parse_args()
    from simulators import sample_layout_path
    from storeflow.layout import load_layout

    layout = load_layout(sample_layout_path(a.store))
    flagged = {z for z, (share, _) in counter_coverage(layout).items() if share > WARN_SHARE}
    better = with_suggested_antennas(layout)
    n_new = len(better.antennas()) - len(layout.antennas())
    after = counter_coverage(better)
    print(f"{a.store}: {len(flagged)} of {len(layout.counters)} counters over {WARN_SHARE:.0%} "
          f"({', '.join(sorted(flagged))}); {n_new} antennas suggested; their largest share after: "
          f"{max((after[z][0] for z in flagged), default=0.0):.0%}", flush=True)
    for sc in a.scenarios.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            for name, lay in (("as is ", layout), ("advised", better)):
                print(f"{sc:4s} seed {seed} {name}: {run(lay, flagged, sc, a.shoppers, a.hours, seed)}", flush=True)


if __name__ == "__main__":
    main()
