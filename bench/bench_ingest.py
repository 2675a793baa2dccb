"""Ingest throughput: simulated agents -> MQTT -> `storeflow ingest run` -> TimescaleDB, against the
same rows loaded by a bare psycopg binary COPY (the ceiling) and by executemany INSERTs.

Everything runs on this machine: a private Mosquitto (storeflow.broker, large queue), the shared
PostgreSQL (a throw-away database), one ingest process, and publisher processes that encode wire
batches (storeflow.wire.encode_batch) at a fixed rate, as edge agents do.

    .venv/bin/python bench/bench_ingest.py [--seconds 20] [--rate 150000] [--batch 1000]

Reported: sustained reads/s (all reads / (last commit - first publish)), the same rows by bare
binary COPY and by executemany INSERT (a subset, extrapolated), the ratios, and publish-to-commit
latency per batch (ledger committed_at - the batch's sent_us; same clock, same machine).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.copybin import TAG_READS_COLUMNS, tag_reads_copy_buffer
from ingest.metrics import parse_text
from storeflow.broker import free_port, start_embedded_broker
from storeflow.db import migrate
from storeflow.layout import load_layout
from storeflow.settings import Settings
from storeflow.store import load_store_dims, upsert_layout
from storeflow.wire import READ_DTYPE, Batch, encode_batch, topic

LAYOUT = ROOT / "simulators" / "stores" / "department.yaml"
PREFIX = "bench"


def make_streams(
    n_agents: int, n_batches: int, batch: int, antennas: list[tuple[str, int]], n_tags: int, seed: int = 1
) -> list[list[np.ndarray]]:
    """Per agent, its batches of READ_DTYPE records (EPC/antenna fields index the global tables)."""
    rng = np.random.default_rng(seed)
    t0 = int(time.time() * 1e6) - 3_600_000_000
    out = []
    for a in range(n_agents):
        batches = []
        for s in range(n_batches):
            rec = np.zeros(batch, dtype=READ_DTYPE)
            rec["ts_us"] = t0 + (s * batch + np.arange(batch)) * 1000 + a
            rec["antenna"] = rng.integers(0, len(antennas), batch)
            # The tags near one agent's readers during one batch: a few hundred, not the whole store.
            present = rng.choice(n_tags, size=min(n_tags, 200), replace=False)
            rec["epc"] = present[rng.integers(0, len(present), batch)]
            rec["rssi_cdbm"] = rng.integers(-9000, -3000, batch)
            rec["count"] = rng.integers(1, 4, batch)
            batches.append(rec)
        out.append(batches)
    return out


def to_wire(
    store: str, agent: str, seq: int, rec: np.ndarray, antennas: list[tuple[str, int]], epcs: list[str]
) -> tuple[bytes, int]:
    """(payload, sent_us): a wire batch with per-batch lookup tables, as an agent builds it."""
    ant_u, ant_i = np.unique(rec["antenna"], return_inverse=True)
    epc_u, epc_i = np.unique(rec["epc"], return_inverse=True)
    r = rec.copy()
    r["antenna"], r["epc"] = ant_i, epc_i
    sent_us = int(time.time() * 1e6)
    return encode_batch(
        Batch(
            kind="reads",
            store=store,
            agent=agent,
            stream="bench",
            seq=seq,
            sent_us=sent_us,
            records=r,
            antennas=[antennas[i] for i in ant_u],
            epcs=[epcs[i] for i in epc_u],
        )
    ), sent_us


def publisher(
    idx: int,
    agents: list[int],
    streams: list[list[np.ndarray]],
    store: str,
    port: int,
    antennas: list[tuple[str, int]],
    epcs: list[str],
    rate: float,
    start_at: float,
    out: mp.Queue,
) -> None:
    """Publish the given agents' batches round-robin at ``rate`` reads/s (0: as fast as possible)."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{idx}-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    order = [(a, s) for s in range(len(streams[agents[0]])) for a in agents]
    batch = len(streams[agents[0]][0])
    interval = batch / rate if rate else 0.0
    sent: list[tuple[str, int, int]] = []
    infos = []
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.monotonic()
    for i, (a, s) in enumerate(order):
        if interval:
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        payload, sent_us = to_wire(store, f"agent{a:03d}", s, streams[a][s], antennas, epcs)
        infos.append(c.publish(topic(PREFIX, store, f"agent{a:03d}", "reads"), payload, qos=1))
        sent.append((f"agent{a:03d}", s, sent_us))
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    out.put(sent)


def resolved_columns(
    streams: list[list[np.ndarray]], store_id: int, ant_ids: np.ndarray, tag_ids: np.ndarray
) -> list[np.ndarray]:
    # In publication order (batch s of every agent, then s + 1), as the rows reach ingest: the same
    # rows in agent order would scatter every transaction over the whole time range and its indexes.
    rec = np.concatenate([agent[s] for s in range(len(streams[0])) for agent in streams])
    return [
        rec["ts_us"],
        np.full(len(rec), store_id, np.int32),
        ant_ids[rec["antenna"]],
        tag_ids[rec["epc"]],
        rec["rssi_cdbm"],
        rec["count"],
        rec["flags"],
    ]


def bare_copy(url: str, cols: list[np.ndarray], chunk: int) -> float:
    """Seconds to load all rows with binary COPY, ``chunk`` rows per transaction."""
    with psycopg.connect(url) as c:
        t = time.perf_counter()
        for i in range(0, len(cols[0]), chunk):
            with c.cursor().copy(
                f"COPY tag_reads ({', '.join(TAG_READS_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.write(tag_reads_copy_buffer(*(col[i : i + chunk] for col in cols)))
            c.commit()
        return time.perf_counter() - t


def executemany_insert(url: str, cols: list[np.ndarray], n: int) -> float:
    """Seconds to INSERT the first ``n`` rows with cursor.executemany (one transaction)."""
    rows = list(zip(*(col[:n].tolist() for col in cols[1:])))
    ts = cols[0][:n].tolist()
    params = [(t,) + r for t, r in zip(ts, rows)]
    with psycopg.connect(url) as c:
        t = time.perf_counter()
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, read_count, flags) "
                "VALUES (timestamptz 'epoch' + %s * interval '1 microsecond', %s, %s, %s, %s, %s, %s)",
                params,
            )
        c.commit()
        return time.perf_counter() - t


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return parse_text(r.read().decode())
    except OSError:
        return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--admin-url",
        default=os.environ.get(
            "STOREFLOW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="publishing time at --rate (s)")
    ap.add_argument(
        "--rate", type=float, default=150_000, help="offered load (reads/s); 0 = as fast as possible"
    )
    ap.add_argument("--total", type=int, default=0, help="reads in all (default: rate * seconds)")
    ap.add_argument("--batch", type=int, default=1000, help="reads per wire batch")
    ap.add_argument("--agents", type=int, default=40)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--tags", type=int, default=20_000, help="distinct EPCs")
    ap.add_argument("--insert-rows", type=int, default=30_000, help="rows for the executemany baseline")
    ap.add_argument("--copy-chunk", type=int, default=200_000, help="rows per COPY transaction (baseline)")
    args = ap.parse_args()

    total = args.total or int(args.rate * args.seconds)
    n_batches = max(1, total // (args.batch * args.agents))
    total = n_batches * args.batch * args.agents
    dbname = f"sf_bench_ingest_{os.getpid()}"
    params = conninfo_to_dict(args.admin_url)
    url = make_conninfo(**{**params, "dbname": dbname})  # type: ignore[arg-type]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-ingest-"))  # kept: it holds the logs
    broker = ingest = None
    try:
        with psycopg.connect(url) as c:
            migrate(c, Settings(timescaledb="require", database_url=url))
            upsert_layout(c, load_layout(LAYOUT))
            dims = load_store_dims(c, load_layout(LAYOUT).store)
        store = dims.layout.store
        antennas = sorted(dims.antenna_ids)
        ant_ids = np.array([dims.antenna_ids[a] for a in antennas], np.int64)
        epcs = [f"E2801170{i:016X}" for i in range(args.tags)]
        offered_txt = f"{args.rate:,.0f} reads/s" if args.rate else "as fast as possible"
        print(
            f"data: {total:,} reads = {args.agents} agents x {n_batches} batches x {args.batch} reads; "
            f"{len(antennas)} antennas, {args.tags:,} EPCs; offered {offered_txt}"
        )
        streams = make_streams(args.agents, n_batches, args.batch, antennas, args.tags)

        # --- baselines on the same rows --------------------------------------------------------
        with psycopg.connect(url) as c:
            c.execute("INSERT INTO tags (epc) SELECT unnest(%s::text[])", (epcs,))
            tag_ids = np.array(
                [
                    r[0]
                    for r in c.execute(
                        "SELECT tag_id FROM tags ORDER BY array_position(%s::text[], epc)", (epcs,)
                    )
                ],
                np.int64,
            )
        cols = resolved_columns(streams, dims.store_id, ant_ids, tag_ids)
        copy_s = bare_copy(url, cols, args.copy_chunk)
        copy_before = total / copy_s
        print(
            f"bare binary COPY       : {copy_before:12,.0f} reads/s  ({total:,} rows in {copy_s:.2f} s, "
            f"{args.copy_chunk:,} rows per transaction; run before ingest)"
        )
        with psycopg.connect(url) as c:
            c.execute("TRUNCATE tag_reads")
        n_ins = min(args.insert_rows, total)
        ins_s = executemany_insert(url, cols, n_ins)
        ins_rate = n_ins / ins_s
        print(
            f"executemany INSERT     : {ins_rate:12,.0f} reads/s  ({n_ins:,} rows in {ins_s:.2f} s; "
            f"extrapolated to all rows: {total / ins_rate:.0f} s)"
        )
        with psycopg.connect(url) as c:
            c.execute("TRUNCATE tag_reads")
            c.execute("TRUNCATE tags")  # ingest registers the EPCs itself, as in production

        # --- the service ---------------------------------------------------------------------
        broker = start_embedded_broker(tmp / "broker")
        mport = free_port()
        env = {
            **os.environ,
            "STOREFLOW_DATABASE_URL": url,
            "STOREFLOW_TOPIC_PREFIX": PREFIX,
            "STOREFLOW_MQTT_URL": broker.url,
            "STOREFLOW_INGEST_METRICS_PORT": str(mport),
            "STOREFLOW_INGEST_CLIENT_ID": f"bench-ingest-{os.getpid()}",
            "STOREFLOW_DATA_DIR": str(tmp / "data"),
            "STOREFLOW_INGEST_SESSION_EXPIRY_S": "60",
            "STOREFLOW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        }
        log_file = open(tmp / "ingest.log", "ab")  # noqa: SIM115 - the child writes to it
        ingest = subprocess.Popen(
            [sys.executable, "-m", "storeflow.cli", "ingest", "run"], env=env, stderr=log_file
        )
        deadline = time.monotonic() + 30
        while scrape(mport).get("storeflow_ingest_mqtt_connected") != 1.0:
            if time.monotonic() > deadline or ingest.poll() is not None:
                raise SystemExit(f"ingest did not start; see {tmp / 'ingest.log'}")
            time.sleep(0.1)
        time.sleep(0.5)

        ctx = mp.get_context("fork")
        q: mp.Queue = ctx.Queue()
        start_at = time.time() + 1.0
        share = [list(range(p, args.agents, args.publishers)) for p in range(args.publishers)]
        procs = [
            ctx.Process(
                target=publisher,
                args=(
                    i,
                    share[i],
                    streams,
                    store,
                    broker.port,
                    antennas,
                    epcs,
                    args.rate * len(share[i]) / args.agents,
                    start_at,
                    q,
                ),
            )
            for i in range(args.publishers)
        ]
        for p in procs:
            p.start()
        sent: dict[tuple[str, int], int] = {}
        for _ in procs:
            for agent, seq, sent_us in q.get(timeout=600):
                sent[(agent, seq)] = sent_us
        for p in procs:
            p.join()
        n_msgs = args.agents * n_batches
        deadline = time.monotonic() + 600
        with psycopg.connect(url, autocommit=True) as c:
            count_sql = "SELECT count(*) FROM ingest_ledger"
            while c.execute(count_sql).fetchone()[0] < n_msgs:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise SystemExit("ingest did not finish within 10 minutes")
                time.sleep(0.2)
            ledger = c.execute(
                "SELECT agent, seq, (extract(epoch FROM committed_at) * 1e6)::bigint FROM ingest_ledger"
            ).fetchall()
            stored = c.execute("SELECT count(*) FROM tag_reads").fetchone()[0]  # type: ignore[index]
        m = scrape(mport)
        try:
            import psutil

            cpu = psutil.Process(ingest.pid).cpu_times()
            ingest_cpu_s: float | None = cpu.user + cpu.system
        except Exception:  # noqa: BLE001 - informative only
            ingest_cpu_s = None
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(30)
        # The machine is shared: run the ceiling again right after, and compare with the mean of both.
        with psycopg.connect(url) as c:
            c.execute("TRUNCATE tag_reads")
        copy_after = total / bare_copy(url, cols, args.copy_chunk)
        copy_rate = (copy_before + copy_after) / 2
        print(
            f"bare binary COPY       : {copy_after:12,.0f} reads/s  (same rows, run after ingest; "
            f"ceiling = mean {copy_rate:,.0f} reads/s)"
        )
        lat = np.array([(cu - sent[(a, s)]) / 1e6 for a, s, cu in ledger])
        first_sent = min(sent.values()) / 1e6
        last_commit = max(cu for _, _, cu in ledger) / 1e6
        span = last_commit - first_sent
        rate = total / span
        offered = total / ((max(sent.values()) - min(sent.values())) / 1e6 + args.batch / max(args.rate, 1))
        print(
            f"ingest via MQTT        : {rate:12,.0f} reads/s  ({total:,} reads, first publish -> last commit "
            f"{span:.2f} s; publishers achieved {offered:,.0f} reads/s offered)"
        )
        commits = sorted(cu for _, _, cu in ledger)
        # Steady state: batches committed after the first second of commits, over the time they took.
        t_start = commits[0] + 1_000_000
        later = [cu for cu in commits if cu > t_start]
        if len(later) > 1 and commits[-1] > t_start:
            steady = len(later) * args.batch / ((commits[-1] - t_start) / 1e6)
            print(f"ingest steady state    : {steady:12,.0f} reads/s  (commits after the first second)")
        print(
            f"stored rows            : {stored:,} (expected {total:,}); duplicates skipped "
            f"{m.get('storeflow_ingest_messages_duplicate_total', 0):.0f}, rejects "
            f"{m.get('storeflow_ingest_messages_rejected_total', 0):.0f}, commits "
            f"{m.get('storeflow_ingest_commits_total', 0):.0f}"
        )
        print(
            f"ingest / bare COPY     : {rate / copy_rate:6.1%}"
            + (
                "  (ingest kept up with the offered load: this ratio is not a ceiling; raise --rate)"
                if rate > 0.97 * offered
                else ""
            )
        )
        print(f"ingest / executemany   : {rate / ins_rate:6.1f} x")
        print(
            f"publish->commit latency: p50 {np.percentile(lat, 50):.3f} s, "
            f"p99 {np.percentile(lat, 99):.3f} s, "
            f"max {lat.max():.3f} s over {len(lat)} batches"
        )
        if ingest_cpu_s is not None:
            print(f"ingest process CPU     : {ingest_cpu_s:.1f} s for {span:.1f} s of wall time")
        print(f"ingest log: {tmp / 'ingest.log'}")
        if stored != total:
            print("MISMATCH: stored rows differ from published reads", file=sys.stderr)
            return 1
        return 0
    finally:
        if ingest is not None and ingest.poll() is None:
            ingest.send_signal(signal.SIGTERM)
            try:
                ingest.wait(30)
            except subprocess.TimeoutExpired:
                ingest.kill()
        if broker is not None:
            broker.stop()
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
