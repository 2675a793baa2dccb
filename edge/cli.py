"""Sub-commands of the edge area (registered into `storeflow` by storeflow.cli): ``storeflow edge run CONFIG``.

Also runnable without the rest of the CLI: ``python -m edge.cli run CONFIG``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

__all__ = ["register", "main"]

log = logging.getLogger("storeflow.edge")


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.agent import Agent
    from edge.config import load_config

    cfg = load_config(args.config)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: flushing to the spool and stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = cfg.clock.simulated
    (Agent(cfg, clock_us=sim.now_us) if sim else Agent(cfg)).run(stop)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from edge.config import load_config

    cfg = load_config(args.config)
    print(f"{args.config}: ok (agent {cfg.agent}, store {cfg.store}, {len(cfg.readers)} reader(s), "
          f"{len(cfg.doors)} door counter(s), uplink {cfg.uplink.host}:{cfg.uplink.effective_port})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `storeflow` parser."""
    edge = sub.add_parser("edge", help="the in-store edge agent")
    es = edge.add_subparsers(dest="edge_command", required=True, metavar="{run,check}")
    run = es.add_parser("run", help="run the agent: readers -> spool -> uplink (SIGTERM flushes and stops)")
    run.add_argument("config", help="agent config (YAML), see docs/edge-config.example.yaml")
    run.set_defaults(func=_cmd_run)
    chk = es.add_parser("check", help="validate an agent config and exit")
    chk.add_argument("config")
    chk.set_defaults(func=_cmd_check)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge.cli run CONFIG``: the edge commands alone, same exit codes as ``storeflow``."""
    from storeflow.contract import BadInput

    parser = argparse.ArgumentParser(prog="python -m edge.cli")
    register(parser.add_subparsers(dest="command", required=True))
    argv = list(argv if argv is not None else sys.argv[1:])
    verbose = "-v" in argv
    args = parser.parse_args(["edge", *(a for a in argv if a != "-v")])
    logging.basicConfig(level="DEBUG" if verbose else "INFO",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        print(f"storeflow: {e}".splitlines()[0], file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
