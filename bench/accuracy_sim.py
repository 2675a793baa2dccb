"""Visit accuracy of the analytics core against simulator ground truth (both stores, both scenarios).

    .venv/bin/python bench/accuracy_sim.py [--shoppers N] [--hours H] [--seed S]

Runs the analyze job's pipeline (fit presence model, then :func:`analytics.pipeline.analyze_block`:
decode -> visits -> boundaries refined with the position estimates; `--no-refine` skips that) on a
simulation and prints, per store and scenario: visit precision/recall/F1 (same tag, same zone,
overlap/union >= 0.5, pass-bys excluded on both sides), the median relative dwell error of matched
visits and the per-counter visitors error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from analytics.accuracy import VisitAccuracy, simulation_visits, visit_accuracy

if TYPE_CHECKING:
    from simulators.scenario import Scenario
    from storeflow.layout import Layout


def evaluate(store: str | Layout, scenario: str | Scenario, shoppers: int, hours: float, seed: int,
             refine: bool = True) -> tuple[VisitAccuracy, dict]:
    """Simulate, run the analyze job's pipeline (:func:`analytics.pipeline.analyze_block`: presence +
    visits, + the refinement with positions unless ``refine`` is False), compare with the truth.

    ``store``: a sample store's name or a :class:`~storeflow.layout.Layout`; ``scenario``: a scenario
    name or a :class:`~simulators.scenario.Scenario`."""
    from simulators import sample_layout_path, simulate
    from storeflow.layout import Layout, load_layout

    layout = store if isinstance(store, Layout) else load_layout(sample_layout_path(store))
    sim = simulate(layout, shoppers=shoppers, hours=hours, seed=seed, scenario=scenario)
    truth, estimate, info = simulation_visits(sim, layout, refine=refine)
    return visit_accuracy(*truth, *estimate), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=400)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stores", default="boutique,department")
    ap.add_argument("--scenarios", default="easy,hard")
    ap.add_argument("--no-refine", action="store_true", help="visits as decoded, not refined with positions")
    a = ap.parse_args()
    for store in a.stores.split(","):
        for sc in a.scenarios.split(","):
            acc, info = evaluate(store, sc, a.shoppers, a.hours, a.seed, refine=not a.no_refine)
            within = acc.visitors_share_within(0.10)
            print(f"{store:10s} {sc:4s} reads={info['reads']:>9d} states={info['states']} "
                  f"fit={info['fit_s']:.1f}s decode+visits={info['decode_visits_s']:.1f}s "
                  f"positions+refine={info['positions_refine_s']:.1f}s | {acc.summary()} "
                  f"counters within 10%={within:.2f}", flush=True)


if __name__ == "__main__":
    main()
