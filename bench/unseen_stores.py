"""Visit accuracy on stores and RF conditions the analytics was never developed on.

    .venv/bin/python bench/unseen_stores.py [--stores 6] [--first-seed 100] [--shoppers 300] [--hours 2]

Each store is :func:`simulators.storegen.random_store` (random floor, counters, islands, entrance,
checkout and antenna placement), each run a random RF and crowd perturbation of ``easy`` or ``hard``
(path-loss exponents, sensitivity, read probability, shadowing, antenna height and beam, per-antenna
gain spread, dwell times, glances), drawn from the same seed. The pipeline is the analyze job's
(:func:`accuracy_sim.evaluate`); nothing is fitted to these stores beforehand. Prints per run the
store, what was drawn, visit precision / recall / F1, median dwell error and per-counter visitors,
then the mean and the worst over all runs.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_sim import evaluate  # noqa: E402
from simulators.scenario import Scenario, get_scenario  # noqa: E402
from simulators.storegen import random_store  # noqa: E402
from storeflow.layout import parse_layout  # noqa: E402


def perturbed_scenario(base: str, seed: int) -> Scenario:
    """``base`` (easy / hard) with its RF and crowd parameters drawn around their values from ``seed``."""
    rng = random.Random(seed)
    sc = get_scenario(base)
    rf = sc.rf

    def u(a: float, b: float) -> float:
        return rng.uniform(a, b)

    rf = replace(rf, path_loss_exp=rf.path_loss_exp * u(0.85, 1.15),
                 path_loss_exp_far=rf.path_loss_exp_far * u(0.85, 1.15),
                 breakpoint_m=rf.breakpoint_m * u(0.7, 1.3), sensitivity_dbm=rf.sensitivity_dbm + u(-4, 4),
                 rssi_1m_dbm=rf.rssi_1m_dbm + u(-4, 4), p_max=min(0.6, rf.p_max * u(0.75, 1.1)),
                 shadow_slow_db=rf.shadow_slow_db * u(0.75, 1.3),
                 shadow_fast_db=rf.shadow_fast_db * u(0.75, 1.3),
                 beamwidth_deg=u(65, 120), antenna_height_m=u(2.0, 3.2),
                 gain_spread_db=rf.gain_spread_db * u(0.7, 1.4))
    crowd = replace(sc.crowd, dwell_median_s=sc.crowd.dwell_median_s * u(0.6, 1.5), glance_p=u(0.2, 0.4))
    return Scenario(f"{base}~{seed}", rf=rf, crowd=crowd, doors=sc.doors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=int, default=6)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--shoppers", type=int, default=300)
    ap.add_argument("--hours", type=float, default=2.0)
    a = ap.parse_args()
    rows = []
    for seed in range(a.first_seed, a.first_seed + a.stores):
        data = random_store(seed)
        layout = parse_layout(data)
        n_counters = sum(q.kind == "counter" for q in layout.zones)
        n_antennas = sum(len(r["antennas"]) for r in data["readers"])
        for base in ("easy", "hard"):
            sc = perturbed_scenario(base, seed)
            acc, info = evaluate(layout, sc, a.shoppers, a.hours, seed)
            within = acc.visitors_share_within(0.10)
            rf = sc.rf
            f = layout.floors[0]
            print(f"{layout.name} ({f.width_m:.0f} x {f.depth_m:.0f} m, {n_counters} counters, "
                  f"{n_antennas} antennas) {base}: n {rf.path_loss_exp:.2f}/{rf.path_loss_exp_far:.2f}, "
                  f"sens {rf.sensitivity_dbm:.0f} dBm, p_max {rf.p_max:.2f}, "
                  f"shadow {rf.shadow_slow_db:.1f} dB, "
                  f"beam {rf.beamwidth_deg:.0f} deg, height {rf.antenna_height_m:.1f} m, "
                  f"dwell median {sc.crowd.dwell_median_s:.0f} s | reads {info['reads']:,} | "
                  f"{acc.summary()} counters within 10 % {within:.2f}", flush=True)
            rows.append((base, acc.precision, acc.recall, acc.f1, acc.dwell_rel_err_median, within,
                         acc.visitors_total_rel_err))
    for base in ("easy", "hard"):
        r = np.array([x[1:] for x in rows if x[0] == base], float)
        if len(r):
            print(f"{base}: {len(r)} stores | mean P {r[:, 0].mean():.3f} R {r[:, 1].mean():.3f} "
                  f"F1 {r[:, 2].mean():.3f} (worst {r[:, 2].min():.3f}) | median dwell error mean "
                  f"{r[:, 3].mean():.1%} (worst {r[:, 3].max():.1%}) | counters within 10 % mean "
                  f"{r[:, 4].mean():.2f} | visitors total error mean {r[:, 5].mean():+.1%}", flush=True)


if __name__ == "__main__":
    main()
