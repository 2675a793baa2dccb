"""Sub-commands of the simulators area (registered into `storeflow` by storeflow.cli)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.sim import sample_layout_path, simulate
    from storeflow.layout import load_layout

    src = Path(args.layout)
    layout = load_layout(src if src.suffix.lower() in (".yaml", ".yml", ".json") or src.exists()
                         else sample_layout_path(args.layout))
    t0 = time.perf_counter()
    sim = simulate(layout, shoppers=args.shoppers, hours=args.hours, seed=args.seed, scenario=args.scenario)
    counts = sim.write(Path(args.out))
    dt = time.perf_counter() - t0
    n = counts["reads.csv"]
    gen = max(sim.read_generation_s, 1e-9)
    print(f"{layout.store}: {args.scenario}, {args.shoppers} shoppers, {args.hours:g} h -> {n} reads "
          f"generated at {n / gen:,.0f} reads/s, {counts['truth/visits.csv']} true visits, "
          f"{counts['purchases.csv']} purchases; {dt:.1f} s in all -> {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `storeflow` parser."""
    p = sub.add_parser("simulate", help="simulate a store: SPEC CSV files plus ground truth")
    p.add_argument("--layout", required=True, help="layout file, or a sample name (boutique, department)")
    p.add_argument("--shoppers", type=int, required=True, help="people arriving over the period")
    p.add_argument("--hours", type=float, required=True, help="simulated period (hours)")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same output)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scenario", choices=("easy", "hard"), default="easy", help="RF and crowd conditions")
    p.set_defaults(func=_cmd_simulate)
