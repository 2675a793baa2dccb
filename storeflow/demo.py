"""`storeflow demo`: a simulated store comes alive on this machine.

Runs the real pipeline, each part as it runs in production::

    simulated readers (serial on ptys, MQTT) and door counters
      -> edge agent (`storeflow edge run`, spool, QoS 1)  -> MQTT broker
      -> ingest (`storeflow ingest run`, binary COPY)      -> PostgreSQL / TimescaleDB
      -> periodic `analyze`                                -> dashboard (`storeflow serve`)

With no STOREFLOW_DATABASE_URL / STOREFLOW_MQTT_URL it starts an embedded PostgreSQL and an embedded
broker. The store runs on an accelerated clock (``--speed``): devices and the edge agent share it, so
dwell times keep their real length in the data while the demo day passes quickly.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from storeflow.cli import add_db_arg

__all__ = ["register", "run_demo", "Pipeline", "SharedClock", "clear_replayed_window"]

log = logging.getLogger("storeflow.demo")


class SharedClock:
    """Simulated time shared by processes: ``start_us`` at wall time ``anchor_s``, ``speed`` x faster."""

    def __init__(self, start_us: int, speed: float, anchor_s: float | None = None):
        self.start_us, self.speed = int(start_us), float(speed)
        self.anchor_s = time.time() if anchor_s is None else anchor_s

    def now(self) -> float:
        """Simulated now (epoch µs)."""
        return self.start_us + (time.time() - self.anchor_s) * 1e6 * self.speed

    def anchor(self, ts_us: int) -> None:  # devices call this; a shared clock is anchored already
        return None

    def wait_until(self, ts_us: int, stop: threading.Event) -> bool:
        delay = (ts_us - self.now()) / 1e6 / self.speed
        return not stop.wait(delay) if delay > 0 else not stop.is_set()

    def as_config(self) -> dict[str, float]:
        return {"start_us": self.start_us, "anchor_s": self.anchor_s, "speed": self.speed}


class _FanOut:
    """Splits the simulation's time-ordered read chunks into one bounded queue per reader."""

    def __init__(self, chunks: Iterator[np.ndarray], key: str, n: int, stop: threading.Event):
        self.queues = [queue.Queue(maxsize=8) for _ in range(n)]
        self._chunks, self._key, self._stop = chunks, key, stop
        self.thread = threading.Thread(target=self._run, name=f"fanout-{key}", daemon=True)

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                idx = chunk[self._key]
                for i, q in enumerate(self.queues):
                    part = chunk[idx == i]
                    while len(part) and not self._stop.is_set():
                        try:
                            q.put(part, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                if self._stop.is_set():
                    return
        finally:
            for q in self.queues:
                try:
                    q.put(None, timeout=5)
                except queue.Full:
                    pass

    def stream(self, i: int) -> Iterator[np.ndarray]:
        q = self.queues[i]
        while True:
            part = q.get()
            if part is None:
                return
            yield part


@dataclass
class Pipeline:
    """Simulated devices -> edge agent -> uplink broker -> ingest -> database, on a shared clock.

    The devices publish to the ``source`` broker (the in-store one); the agent publishes to the
    ``uplink`` broker, which ingest subscribes to. They may be the same broker.
    """

    sim: Any                                   # simulators.Simulation
    db_url: str
    source: tuple[str, int]
    uplink: tuple[str, int]
    workdir: Path
    speed: float = 20.0
    topic_prefix: str = "storeflow"
    shared_subscription: bool = True
    smoothing_window_s: float = 1.0
    serial_readers: int = 2
    agent_uplink: tuple[str, int] | None = None  # where the agent connects, if not ``uplink`` (a proxy)
    startup_s: float = 15.0                    # simulated time starts this long after start() (wall s)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    devices: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    clock: SharedClock | None = None

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start ``storeflow <argv>`` as a child process logging to ``<workdir>/<name>.log``."""
        logf = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "storeflow.cli", *argv], env=env,
                                            stdout=logf, stderr=logf, start_new_session=True)

    def env(self) -> dict[str, str]:
        return dict(os.environ, STOREFLOW_DATABASE_URL=self.db_url,
                    STOREFLOW_MQTT_URL=f"mqtt://{self.uplink[0]}:{self.uplink[1]}",
                    STOREFLOW_TOPIC_PREFIX=self.topic_prefix, STOREFLOW_INGEST_METRICS_PORT="0")

    def check_children(self) -> None:
        """RuntimeError naming the child that died, with the end of its log."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{name} exited with {p.returncode}: {' | '.join(tail)} "
                                   f"(log: {self.workdir / (name + '.log')})")

    def start(self, conn: Any) -> None:
        """Import the tag/member master data, then start ingest, the devices and the edge agent."""
        from ingest.files import import_file

        self.workdir.mkdir(parents=True, exist_ok=True)
        _write_dimensions(self.sim, self.workdir)
        for kind in ("members", "tags"):
            import_file(conn, kind, self.workdir / f"{kind}.csv", progress=False)
        env = self.env()
        argv = ["ingest", "run", "--client-id", f"storeflow-pipeline-{os.getpid()}-{id(self) % 100000}"]
        self.spawn("ingest", argv + ([] if self.shared_subscription else ["--no-shared"]), env)
        # Simulated time starts a little later so the agent and ingest are subscribed before the
        # first read; MQTT devices publish only once they are (a message nobody subscribed to is gone).
        self.clock = SharedClock(self.sim.start_us, self.speed, anchor_s=time.time() + self.startup_s)
        config = self._start_devices()
        (self.workdir / "edge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.spawn("edge", ["edge", "run", str(self.workdir / "edge.yaml")], env)
        self._wait_ready(config, timeout_s=90.0)
        for t in self.threads:
            t.start()

    def _wait_ready(self, config: dict[str, Any], timeout_s: float) -> None:
        """Until ingest is subscribed and the agent reports every driver and its uplink connected."""
        import json

        import paho.mqtt.client as mqtt

        ready = threading.Event()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            try:
                h = json.loads(msg.payload)
            except ValueError:
                return
            devices = h.get("devices", {})
            if (h.get("uplink", {}).get("connected") and len(devices) == len(config["readers"]) + len(config["doors"])
                    and all(d.get("connected", True) for d in devices.values())):
                ready.set()

        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pipeline-watch-{os.getpid()}")
        watcher.on_message = on_message
        watcher.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"{self.topic_prefix}/{config['store']}/{config['agent']}/health", qos=0)
        watcher.connect(self.uplink[0], self.uplink[1])
        watcher.loop_start()
        try:
            deadline = time.monotonic() + timeout_s
            ingest_log = self.workdir / "ingest.log"
            while time.monotonic() < deadline:
                self.check_children()
                ingest_up = ingest_log.exists() and "MQTT connected" in ingest_log.read_text(errors="replace")
                if ingest_up and ready.is_set():
                    time.sleep(0.5)  # the drivers' SUBACKs follow their CONNACKs
                    return
                time.sleep(0.2)
            raise RuntimeError(f"the edge agent or ingest did not come up in {timeout_s:g} s; see {self.workdir}")
        finally:
            watcher.loop_stop()
            watcher.disconnect()

    def _start_devices(self) -> dict[str, Any]:
        from simulators import devices as dev

        layout, sim, clock = self.sim.layout, self.sim, self.clock
        assert clock is not None
        readers, doors = _assign_protocols(layout, self.serial_readers)
        fan = _FanOut(sim.read_chunks(), "reader", len(layout.readers), self.stop_event)
        door_fan = _FanOut(iter([sim.door_counts]), "door", len(layout.doors), self.stop_event)
        self.threads += [fan.thread, door_fan.thread]
        epcs = list(sim.tags["epc"])
        host, port = self.source
        device_prefix = f"{self.topic_prefix}-devices"
        edge_readers, edge_doors = [], []
        for r in readers:
            if r["protocol"] in ("impinj-r2000", "chafon-288m"):
                d = dev.SerialReaderDevice(r["protocol"], fan.stream(r["index"]), epcs, reader_index=r["index"])
                d.clock = clock
                d.start()
                edge_readers.append({"reader": r["reader"], "protocol": r["protocol"], "serial": {"port": d.port},
                                     "options": {"antennas": r["ports"], "cycle_s": 0.05}})
            else:
                topic = f"{device_prefix}/{r['protocol']}/{r['reader']}"
                d = dev.MqttReaderDevice(r["protocol"], fan.stream(r["index"]), epcs, host=host, port=port,
                                         topic=topic, reader_index=r["index"], batch=20)
                d.clock = clock
                self.threads.append(threading.Thread(target=d.run, name=f"dev-{r['reader']}", daemon=True))
                edge_readers.append({"reader": r["reader"], "protocol": r["protocol"], "mqtt": {"topic": topic}})
            self.devices.append(d)
        for dd in doors:
            if dd["protocol"] == "terabee-evo":
                d = dev.SerialDoorDevice(door_fan.stream(dd["index"]), door_index=dd["index"])
                d.clock = clock
                # its first frame is the counter's baseline: send it once the agent has the port open
                self.threads.append(threading.Thread(target=d.start, name=f"dev-{dd['door']}", daemon=True))
                edge_doors.append({"door": dd["door"], "protocol": "terabee-evo", "serial": {"port": d.port}})
            else:
                topic = f"{device_prefix}/{dd['protocol']}/{dd['door']}"
                d = dev.MqttDoorDevice(dd["protocol"], door_fan.stream(dd["index"]), host=host, port=port,
                                       topic=topic, door_index=dd["index"])
                d.clock = clock
                self.threads.append(threading.Thread(target=d.run, name=f"dev-{dd['door']}", daemon=True))
                edge_doors.append({"door": dd["door"], "protocol": dd["protocol"], "mqtt": {"topic": topic}})
            self.devices.append(d)
        return {
            "agent": f"{layout.store}-box1", "store": layout.store,
            "readers": edge_readers, "doors": edge_doors,
            "source_broker": {"host": host, "port": port},
            "uplink": {"host": (self.agent_uplink or self.uplink)[0], "port": (self.agent_uplink or self.uplink)[1],
                       "topic_prefix": self.topic_prefix,
                       "reconnect_max_s": 2},
            "spool": {"dir": str(self.workdir / "spool"), "max_mb": 512, "sync": "normal"},
            "smoothing": {"window_s": self.smoothing_window_s},
            "batch": {"max_reads": 5000, "max_delay_s": 0.5},
            "clock": {"max_skew_s": 300, "simulated": clock.as_config()},
            "health_interval_s": max(1.0, self.speed * 0.25),  # about 4 health messages per wall second
        }

    def now_us(self) -> int:
        """The pipeline's simulated now (epoch µs)."""
        assert self.clock is not None
        return int(self.clock.now())

    def import_purchases(self, conn: Any, now_us: int) -> int:
        """Feed the point-of-sale purchases made by ``now_us`` (idempotent); returns how many are in."""
        from ingest.files import import_file

        conn.commit()  # the import commits block by block on an idle connection
        p = self.sim.purchases
        due = p[p["ts_us"] <= now_us]
        path = self.workdir / "purchases_due.csv"
        with path.open("w", encoding="utf-8") as f:
            f.write("ts,member,zone,amount,receipt\n")
            for r in due:
                f.write(f"{int(r['ts_us'])},{r['member']},{r['zone']},{float(r['amount']):.2f},{r['receipt']}\n")
        import_file(conn, "purchases", path, self.sim.layout.store, progress=False)
        return len(due)

    def stop(self) -> None:
        """Stop the devices, then the agent (SIGTERM: it flushes to its spool), then ingest."""
        self.stop_event.set()
        for d in self.devices:
            try:
                d.stop()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        for name in ("edge", "ingest"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


def _demo_start_us(tz: str, hour: int) -> int:
    """Today at ``hour`` local time (the store opens), as epoch µs."""
    zone = ZoneInfo(tz)
    today = datetime.now(zone).date()
    return int(datetime.combine(today, dtime(hour), zone).timestamp() * 1e6)


def clear_replayed_window(conn: Any, store: str, from_us: int, to_us: int) -> int:
    """Delete ``store``'s data in ``[from_us, to_us)`` (epoch µs): reads, door counts, purchases and the
    analysis results of that window, with the visit rollups of the days it touches rebuilt.

    The demo replays the same simulated day (same seed, same opening time) each time it starts; a new
    edge agent sends its reads under new message ids, so a second run on one day would store every read
    again and the positions would see them twice. Returns the number of reads deleted. Commits.
    """
    from analytics.rollups import from_unix_us, rebuild_visit_rollups
    from storeflow.contract import BadInput
    from storeflow.db import store_id

    try:
        sid = store_id(conn, store)
    except BadInput:  # not imported yet: no earlier run stored anything for it
        return 0
    lo, hi = from_unix_us(from_us), from_unix_us(to_us)
    with conn.transaction():
        n = conn.execute("DELETE FROM tag_reads WHERE store_id = %s AND ts >= %s AND ts < %s", (sid, lo, hi)).rowcount
        for table, col in (("door_counts", "ts"), ("purchases", "ts"), ("visits", "start_ts"), ("trips", "start_ts"),
                           ("heatmap_cells", "bucket")):
            conn.execute(f"DELETE FROM {table} WHERE store_id = %s AND {col} >= %s AND {col} < %s", (sid, lo, hi))
        rebuild_visit_rollups(conn, sid, lo, hi)
    conn.commit()
    return n


def _assign_protocols(layout: Any, serial_readers: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Which simulated protocol each reader and door speaks: the first ``serial_readers`` readers on
    serial lines (R2000, Chafon alternately), the rest network readers (Impinj IoT / Zebra
    alternately); the first door a serial Terabee counter, the others Irisys / Milesight."""
    readers = []
    for i, r in enumerate(layout.readers):
        if i < serial_readers:
            proto = "impinj-r2000" if i % 2 == 0 else "chafon-288m"
        else:
            proto = "impinj-iot" if i % 2 == 0 else "zebra-iot"
        readers.append({"index": i, "reader": r.reader, "protocol": proto, "ports": [a.port for a in r.antennas]})
    doors = []
    for i, d in enumerate(layout.doors):
        proto = "terabee-evo" if i == 0 else ("irisys" if i % 2 else "milesight")
        doors.append({"index": i, "door": d.door, "protocol": proto})
    return readers, doors


def run_demo(args: argparse.Namespace) -> int:
    """Start everything, show progress, stop cleanly on Ctrl-C (or after --duration seconds)."""
    from analytics.job import analyze
    from api.auth import create_token
    from simulators import sample_layout_path, simulate
    from storeflow.broker import start_embedded_broker, wait_for_port
    from storeflow.db import connect, has_timescaledb, resolve_url
    from storeflow.layout import load_layout
    from storeflow.settings import get_settings
    from storeflow.store import upsert_layout

    s = get_settings()
    workdir = Path(s.data_dir) / "demo" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    say = print
    broker = None
    pipeline: Pipeline | None = None
    serve: subprocess.Popen[bytes] | None = None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        db_url = resolve_url(s, args.database_url)
        conn = connect(db_url)
        say(f"database: {'TimescaleDB' if has_timescaledb(conn) else 'PostgreSQL (plain tables, no TimescaleDB)'} "
            f"at {_safe_url(db_url)}")
        if s.mqtt_url:
            u = urlparse(s.mqtt_url)
            host, port, shared = u.hostname or "127.0.0.1", u.port or 1883, True
            say(f"broker: {host}:{port}")
        else:
            broker = start_embedded_broker(workdir / "broker")
            host, port, shared = broker.host, broker.port, broker.shared
            say(f"broker: embedded {broker.kind} on {host}:{port}")

        layout = load_layout(sample_layout_path(args.store))
        upsert_layout(conn, layout)
        conn.commit()
        start_us = _demo_start_us(layout.timezone, args.open_hour)
        tz = ZoneInfo(layout.timezone)
        say(f"store: {layout.name} ({layout.store}): {len(layout.counters)} counters, {len(layout.readers)} readers, "
            f"{len(layout.doors)} doors; {args.shoppers} shoppers over {args.hours:g} h from "
            f"{datetime.fromtimestamp(start_us / 1e6, tz):%Y-%m-%d %H:%M} store time, {args.speed:g}x faster")
        sim = simulate(layout, shoppers=args.shoppers, hours=args.hours, seed=args.seed, scenario=args.scenario,
                       start_us=start_us)
        replayed = clear_replayed_window(conn, layout.store, start_us, sim.end_us + 3_600_000_000)
        if replayed:
            say(f"removed {replayed:,} reads an earlier demo run stored for this simulated day (it is replayed)")
        pipeline = Pipeline(sim, db_url, (host, port), (host, port), workdir, speed=args.speed,
                            topic_prefix=s.topic_prefix, shared_subscription=shared)
        pipeline.start(conn)
        say("devices -> edge agent -> broker -> ingest: running "
            f"({min(pipeline.serial_readers, len(layout.readers))} "
            f"serial readers on ptys, the rest over MQTT)")

        _, token = create_token(conn, "admin", None, name="demo")
        api_port = args.port or s.api_port
        logf = open(workdir / "serve.log", "ab")  # noqa: SIM115 - owned by the child
        serve = subprocess.Popen([sys.executable, "-m", "storeflow.cli", "serve", "--host", "127.0.0.1",
                                  "--port", str(api_port)], env=pipeline.env(), stdout=logf, stderr=logf,
                                 start_new_session=True)
        if not wait_for_port("127.0.0.1", api_port, 60):
            raise RuntimeError(f"the dashboard did not start on port {api_port}; see {workdir / 'serve.log'}")
        say(f"dashboard: http://127.0.0.1:{api_port}/login?token={token}")
        say(f"logs and files: {workdir}   (Ctrl-C stops everything)")

        end_us = sim.end_us
        t0 = time.time()
        next_analysis = t0 + args.analyze_every
        finished = False
        first_analysis = True
        while not pipeline.stop_event.wait(1.0):
            pipeline.check_children()
            if serve.poll() is not None:
                raise RuntimeError(f"the dashboard stopped; see {workdir / 'serve.log'}")
            now = min(pipeline.now_us(), end_us + 120_000_000)
            if time.time() >= next_analysis and not finished:
                pipeline.import_purchases(conn, now)
                to_us = now - 30_000_000  # leave half a minute for reads in flight
                if to_us > start_us:
                    if first_analysis:
                        say("analysing the first minutes (the first run on a machine compiles the numba kernels: "
                            "about four minutes on 2 cores; later runs reuse them)")
                        first_analysis = False
                    res = analyze(conn, layout.store, start_us, to_us, refit=True)
                    conn.commit()
                    stored = conn.execute("SELECT count(*) FROM tag_reads").fetchone()[0]
                    conn.commit()
                    say(f"[{datetime.fromtimestamp(now / 1e6, tz):%H:%M} store time | {time.time() - t0:4.0f} s] "
                        f"reads stored {stored:,} | visits {res.visits:,} | pass-bys {res.passbys:,} | "
                        f"trips {res.trips:,}")
                finished = now >= end_us + 120_000_000
                if finished:
                    say("the simulated day is over; the dashboard keeps running (Ctrl-C stops everything)")
                next_analysis = time.time() + args.analyze_every
            if args.duration and time.time() - t0 >= args.duration:
                break
    except KeyboardInterrupt:
        say("stopping…")
    finally:
        if pipeline is not None:
            pipeline.stop()
        if serve is not None and serve.poll() is None:
            serve.terminate()
            serve.wait(10)
        if broker is not None:
            broker.stop()
    say("stopped")
    return 0


def _write_dimensions(sim: Any, workdir: Path) -> None:
    """The chain's tag and member master data (tags.csv, members.csv) as a retailer would export it."""
    import csv

    with (workdir / "tags.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["epc", "member", "kind"])
        for t in sim.tags[sim.tags["kind"] != ""]:
            w.writerow([t["epc"], t["member"], t["kind"]])
    with (workdir / "members.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["member", "tier", "joined"])
        w.writerows(sim.members.tolist())


def _safe_url(url: str) -> str:
    u = urlparse(url)
    if u.password:
        return url.replace(f":{u.password}@", ":***@")
    return url


def register(sub: argparse._SubParsersAction) -> None:
    """Add `storeflow demo` to the parser."""
    p = sub.add_parser("demo", help="run a simulated store through the whole pipeline, with the dashboard")
    add_db_arg(p)
    p.add_argument("--store", default="department", choices=("department", "boutique"), help="sample store")
    p.add_argument("--shoppers", type=int, default=600, help="shoppers arriving over the simulated period")
    p.add_argument("--hours", type=float, default=4.0, help="simulated hours")
    p.add_argument("--speed", type=float, default=20.0, help="simulated seconds per wall-clock second")
    p.add_argument("--scenario", default="easy", choices=("easy", "hard"), help="RF conditions")
    p.add_argument("--seed", type=int, default=1, help="simulation seed")
    p.add_argument("--open-hour", type=int, default=10, help="the simulated day starts at this local hour")
    p.add_argument("--port", type=int, default=None, help="dashboard port (default STOREFLOW_API_PORT)")
    p.add_argument("--analyze-every", type=float, default=20.0, help="seconds between analysis runs")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    p.set_defaults(func=run_demo)
