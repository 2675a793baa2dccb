"""Benchmark: importing a tag-reads CSV (default 10 M rows) into TimescaleDB.

    .venv/bin/python bench/bench_import.py [--rows 10000000] [--insert-rows 100000] [--naive-rows N]

Generates the file first (not timed), then, each in its own child process so peak RSS is its own:

* ``storeflow``   - the real code path (``ingest.files.import_file``: blocks of whole lines, pyarrow
                    column parsing, numpy-encoded binary COPY, ledger per block);
* ``naive-copy``  - the obvious alternative: ``csv.reader`` + the same per-value contract parsers +
                    ``COPY ... FROM STDIN`` text rows via psycopg's ``write_row``;
* ``executemany`` - plain ``executemany`` INSERTs, on a subset (``--insert-rows``) and extrapolated.

Prints rows/s, peak RSS and the ratios. Needs the real PostgreSQL + TimescaleDB (scripts/services.sh).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

LAYOUT = ROOT / "tests" / "data" / "mini_store.yaml"
STORE = "mini-store"


class _PeakRss:
    """Peak resident memory of this process, sampled every 10 ms in a thread (MiB).

    Not ru_maxrss: on Linux that survives fork+exec, so a child would inherit the parent's peak.
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start_mb = self.peak_mb = self._proc.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
            time.sleep(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def _alt_rows(path: Path, limit: int | None, antennas: dict[tuple[str, int], int]):  # type: ignore[no-untyped-def]
    """The obvious per-row parse: csv.reader and the contract's value parsers."""
    from storeflow.contract import BadInput, parse_epc, parse_rssi_dbm, parse_ts_us

    with path.open(newline="", encoding="utf-8") as f:
        rd = csv.reader(f)
        idx = {n.strip().lower(): i for i, n in enumerate(next(rd))}
        its, ird, ian, iep, irs, ico = (idx[c] for c in ("ts", "reader", "antenna", "epc", "rssi", "count"))
        for n, row in enumerate(rd):
            if limit is not None and n >= limit:
                return
            try:
                ts = parse_ts_us(row[its])
                ant = antennas[(row[ird], int(row[ian]))]
                epc = parse_epc(row[iep])
                rssi = round(parse_rssi_dbm(row[irs]) * 100)
                cnt = int(row[ico] or 1)
            except (BadInput, KeyError, ValueError, IndexError):
                continue
            yield ts, ant, epc, rssi, cnt


def _tag_id(conn: psycopg.Connection, cache: dict[str, int], epc: str) -> int:
    tid = cache.get(epc)
    if tid is None:
        row = conn.execute("INSERT INTO tags (epc) VALUES (%s) ON CONFLICT (epc) DO UPDATE SET epc = EXCLUDED.epc "
                           "RETURNING tag_id", (epc,)).fetchone()
        assert row is not None
        tid = cache[epc] = int(row[0])
    return tid


def child(method: str, url: str, path: Path, limit: int | None) -> dict[str, float]:
    """Run one method in this process; returns rows, seconds, peak RSS."""
    from datetime import datetime, timedelta, timezone

    from storeflow.store import load_store_dims

    rss = _PeakRss()
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    with psycopg.connect(url) as conn:
        dims = load_store_dims(conn, STORE)
        conn.commit()
        t0 = time.perf_counter()
        if method == "storeflow":
            from ingest.files import import_file

            res = import_file(conn, "reads", path, STORE, progress=False)
            rows = res.imported
        else:
            cache: dict[str, int] = {}
            rows = 0
            if method == "naive-copy":
                with conn.cursor() as cur, cur.copy("COPY tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, "
                                                    "read_count) FROM STDIN") as cp:
                    tconn = psycopg.connect(url)  # new tags registered on the side (no queries during COPY)
                    for ts, ant, epc, rssi, cnt in _alt_rows(path, limit, dims.antenna_ids):
                        cp.write_row((epoch + timedelta(microseconds=ts), dims.store_id, ant,
                                      _tag_id(tconn, cache, epc), rssi, cnt))
                        rows += 1
                    tconn.commit()
                    tconn.close()
            else:
                batch: list[tuple] = []
                with conn.cursor() as cur:
                    for ts, ant, epc, rssi, cnt in _alt_rows(path, limit, dims.antenna_ids):
                        batch.append((epoch + timedelta(microseconds=ts), dims.store_id, ant,
                                      _tag_id(conn, cache, epc), rssi, cnt))
                        if len(batch) == 10_000:
                            cur.executemany("INSERT INTO tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, "
                                            "read_count) VALUES (%s, %s, %s, %s, %s, %s)", batch)
                            rows += len(batch)
                            batch = []
                    if batch:
                        cur.executemany("INSERT INTO tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm, "
                                        "read_count) VALUES (%s, %s, %s, %s, %s, %s)", batch)
                        rows += len(batch)
            conn.commit()
        seconds = time.perf_counter() - t0
        stored = conn.execute("SELECT count(*) FROM tag_reads").fetchone()
    assert stored is not None and stored[0] == rows, (stored, rows)
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": rss.stop(), "base_rss_mb": rss.start_mb}


def _db_url(admin: str, name: str) -> str:
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows in the generated file")
    ap.add_argument("--insert-rows", type=int, default=100_000, help="rows loaded with executemany (extrapolated)")
    ap.add_argument("--naive-rows", type=int, default=None, help="rows for naive csv+COPY (default: all)")
    ap.add_argument("--epoch", action="store_true", help="timestamps as epoch µs instead of ISO 8601")
    ap.add_argument("--admin-url", default=os.environ.get("STOREFLOW_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--child", nargs=4, metavar=("METHOD", "URL", "FILE", "LIMIT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, url, file, limit = args.child
        print(json.dumps(child(method, url, Path(file), None if limit == "-" else int(limit))))
        return 0

    from ingest.files_gen import write_reads_csv
    from storeflow.db import migrate
    from storeflow.layout import load_layout
    from storeflow.settings import Settings
    from storeflow.store import upsert_layout

    name = f"sf_bench_import_{os.getpid()}"
    url = _db_url(args.admin_url, name)
    with psycopg.connect(args.admin_url, autocommit=True) as a:
        a.execute(f'CREATE DATABASE "{name}"')
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-import-"))
    try:
        layout = load_layout(LAYOUT)
        with psycopg.connect(url) as conn:
            migrate(conn, Settings(timescaledb="require", database_url=url))
            upsert_layout(conn, layout)
            conn.commit()
        path = tmp / "reads.csv"
        antennas = [(r.reader, a.port) for r in layout.readers for a in r.antennas]
        t = time.perf_counter()
        size = write_reads_csv(path, args.rows, antennas, n_tags=20_000, iso=not args.epoch)
        print(f"generated {args.rows:,} rows ({size / 2**20:,.0f} MiB, "
              f"{'epoch µs' if args.epoch else 'ISO 8601 +08:00'} timestamps, 20,000 tags) "
              f"in {time.perf_counter() - t:.0f} s (not timed)", flush=True)
        with path.open() as f:
            print("  e.g. " + f.readlines(200)[1].strip(), flush=True)

        results: dict[str, dict[str, float]] = {}
        plan = [("storeflow", None), ("executemany", args.insert_rows), ("naive-copy", args.naive_rows)]
        for method, limit in plan:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE tag_reads, import_ledger, rejects, tags")
                conn.execute("CHECKPOINT")
            out = subprocess.run([sys.executable, __file__, "--child", method, url, str(path),
                                  "-" if limit is None else str(limit)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[method] = r
            print(f"{method:>12}: {r['rows']:>11,.0f} rows in {r['seconds']:7.1f} s = "
                  f"{r['rows'] / r['seconds']:>10,.0f} rows/s; peak RSS {r['peak_rss_mb']:,.0f} MiB "
                  f"(interpreter + libraries before the import: {r['base_rss_mb']:,.0f} MiB)"
                  + (f"  [subset of {limit:,} rows, extrapolated]" if limit and limit < args.rows else ""),
                  flush=True)
        ours = results["storeflow"]["rows"] / results["storeflow"]["seconds"]
        print(f"storeflow import of {args.rows:,} rows: {ours:,.0f} rows/s, "
              f"peak RSS {results['storeflow']['peak_rss_mb']:,.0f} MiB for a {size / 2**20:,.0f} MiB file")
        for alt in ("naive-copy", "executemany"):
            rate = results[alt]["rows"] / results[alt]["seconds"]
            print(f"  vs {alt}: {rate:,.0f} rows/s -> storeflow is {ours / rate:.1f}x faster"
                  + (f"; the full file would take ~{args.rows / rate / 60:,.0f} min" if alt == "executemany" else ""))
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as a:
            a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
