"""``storeflow devices serial|mqtt|doors``: run simulated devices that speak the real wire protocols.

The reads come from ``simulators.simulate`` when a layout is given (and the simulator is installed),
otherwise from a seeded synthetic stream (random tags on random antennas) so the devices can be tried
without a store.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["register"]


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", default=None, help="store layout (YAML/JSON); default: a synthetic stream")
    p.add_argument("--shoppers", type=int, default=200, help="shoppers to simulate (with --layout)")
    p.add_argument("--hours", type=float, default=1.0, help="hours to simulate (with --layout)")
    p.add_argument("--scenario", default="easy", help="simulation scenario (with --layout): easy | hard")
    p.add_argument("--seed", type=int, default=1, help="random seed (stream and line noise)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed: 1 = real time, 10 = ten times faster; 0 = as fast as possible")
    p.add_argument("--rate", type=float, default=50.0, help="synthetic stream: reads per second (all readers)")


def _speed(args: argparse.Namespace) -> float:
    return math.inf if args.speed <= 0 else args.speed


class _Source:
    """Reads, tags and door counts: from the simulator when available, else synthetic."""

    def __init__(self, args: argparse.Namespace):
        from simulators.devices import synthetic_door_counts, synthetic_reads

        self.layout: Any = None
        self.sim: Any = None
        if args.layout:
            from storeflow.layout import load_layout

            self.layout = load_layout(args.layout)
            try:
                from simulators import simulate  # type: ignore[attr-defined]
            except ImportError:
                print("simulators.simulate is not available; using a synthetic stream", file=sys.stderr)
            else:
                self.sim = simulate(self.layout, shoppers=args.shoppers, hours=args.hours, seed=args.seed,
                                    scenario=args.scenario)
        if self.sim is not None:
            self.epcs = [str(e) for e in self.sim.tags["epc"]]
            self._reads = self.sim.read_chunks
            self._doors = lambda: iter([self.sim.door_counts])
        else:
            n_readers = len(self.layout.readers) if self.layout else 4
            n_doors = len(self.layout.doors) if self.layout else 2
            self.epcs = [f"E2801160600002{i:010X}" for i in range(200)]
            seconds = args.hours * 3600
            self._reads = lambda: synthetic_reads(n_readers, 4, self.epcs, seconds=seconds,
                                                  reads_per_s=args.rate, seed=args.seed)
            self._doors = lambda: synthetic_door_counts(n_doors, rows=int(seconds // 60) or 1, seed=args.seed)

    def reads(self) -> Iterable[Any]:
        return self._reads()

    def doors(self) -> Iterator[Any]:
        return self._doors()

    def index(self, kind: str, ident: str | None) -> int:
        if ident is None:
            return 0
        if self.layout is None:
            try:
                return int(ident)
            except ValueError:
                raise SystemExit(f"--{kind} {ident!r}: give an index, or --layout to use ids") from None
        items = [r.reader for r in self.layout.readers] if kind == "reader" else [d.door for d in self.layout.doors]
        if ident not in items:
            raise SystemExit(f"--{kind} {ident!r} is not in the layout ({', '.join(items)})")
        return items.index(ident)


def _cmd_serial(args: argparse.Namespace) -> int:
    from simulators.devices import Noise, SerialReaderDevice

    src = _Source(args)
    noise = Noise(seed=args.seed, flip_p=args.flip, drop_p=args.drop, split_p=args.split) \
        if (args.flip or args.drop or args.split) else None
    dev = SerialReaderDevice(args.protocol, src.reads(), src.epcs, reader_index=src.index("reader", args.reader),
                             speed=_speed(args), noise=noise, variant=args.variant)
    dev.start()
    print(f"{args.protocol} reader listening on {dev.port} (open it with baud "
          f"{115200 if args.protocol == 'impinj-r2000' else 57600}); Ctrl-C stops", flush=True)
    try:
        while not dev.done():
            time.sleep(0.5)
        print(f"stream done: {len(dev.sent)} reads sent intact, {dev.destroyed} destroyed by noise", flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        dev.stop()
    return 0


def _publish(dev: Any, banner: str, unit: str) -> int:
    """Run an MQTT device (blocking) until its stream ends or Ctrl-C; say how much it published."""
    print(banner, flush=True)
    try:
        n = dev.run()
    except KeyboardInterrupt:
        dev.stop()
        return 0
    print(f"published {n} {unit}", flush=True)
    return 0


def _cmd_mqtt(args: argparse.Namespace) -> int:
    from simulators.devices import MqttReaderDevice

    src = _Source(args)
    dev = MqttReaderDevice(args.protocol, src.reads(), src.epcs, host=args.host, port=args.port, topic=args.topic,
                           reader_index=src.index("reader", args.reader), speed=_speed(args), batch=args.batch)
    return _publish(dev, f"{args.protocol} reader publishing to mqtt://{args.host}:{args.port}/{args.topic}", "reads")


def _cmd_doors(args: argparse.Namespace) -> int:
    from simulators.devices import MqttDoorDevice, SerialDoorDevice

    src = _Source(args)
    idx = src.index("door", args.door)
    if args.protocol == "terabee-evo":
        dev = SerialDoorDevice(src.doors(), door_index=idx, speed=_speed(args))
        dev.start()
        print(f"terabee-evo door counter on {dev.port} (baud 115200); Ctrl-C stops", flush=True)
        try:
            dev.finished.wait()
            print(f"stream done: {len(dev.sent)} intervals", flush=True)
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            dev.stop()
        return 0
    mdev = MqttDoorDevice(args.protocol, src.doors(), host=args.host, port=args.port, topic=args.topic,
                          door_index=idx, speed=_speed(args))
    return _publish(mdev, f"{args.protocol} door counter publishing to mqtt://{args.host}:{args.port}/{args.topic}",
                    "intervals")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``storeflow devices serial|mqtt|doors``."""
    dev = sub.add_parser("devices", help="run simulated readers and door counters (real wire protocols)")
    ds = dev.add_subparsers(dest="devices_command", required=True, metavar="{serial,mqtt,doors}")

    s = ds.add_parser("serial", help="a serial RFID reader on a pseudo-terminal")
    s.add_argument("--protocol", choices=("impinj-r2000", "chafon-288m"), default="impinj-r2000")
    s.add_argument("--variant", default=None, help="model variant (impinj-r2000: 4port|8port; chafon-288m: 288m|288m-8port)")
    s.add_argument("--reader", default=None, help="reader id (with --layout) or index")
    s.add_argument("--flip", type=float, default=0.0, help="line noise: probability a byte is corrupted")
    s.add_argument("--drop", type=float, default=0.0, help="line noise: probability a byte is lost")
    s.add_argument("--split", type=float, default=0.0, help="probability a frame is written in two pieces")
    _add_source_args(s)
    s.set_defaults(func=_cmd_serial)

    m = ds.add_parser("mqtt", help="a network RFID reader publishing JSON to MQTT")
    m.add_argument("--protocol", choices=("impinj-iot", "zebra-iot"), default="impinj-iot")
    m.add_argument("--reader", default=None, help="reader id (with --layout) or index")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=1883)
    m.add_argument("--topic", default="sim/reader")
    m.add_argument("--batch", type=int, default=1, help="events per MQTT message (more = JSON array)")
    _add_source_args(m)
    m.set_defaults(func=_cmd_mqtt)

    d = ds.add_parser("doors", help="a door counter (Irisys/Milesight over MQTT, Terabee Evo on a pty)")
    d.add_argument("--protocol", choices=("irisys", "milesight", "terabee-evo"), default="irisys")
    d.add_argument("--door", default=None, help="door id (with --layout) or index")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=1883)
    d.add_argument("--topic", default="sim/door")
    _add_source_args(d)
    d.set_defaults(func=_cmd_doors)
