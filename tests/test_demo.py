"""`storeflow demo` on the real services for a short while: it starts, data flows, the dashboard answers,
analysis runs more than once, and Ctrl-C (SIGINT) stops every part."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from storeflow.broker import free_port

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]


def test_demo_runs_and_stops_cleanly(db_url: str, mqtt_broker: tuple[str, int], unique_prefix: str,
                                     tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, STOREFLOW_DATA_DIR=str(tmp_path / "data"), STOREFLOW_TOPIC_PREFIX=unique_prefix,
               STOREFLOW_MQTT_URL=f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow.cli", "demo", "--database-url", db_url, "--store", "boutique",
         "--shoppers", "40", "--hours", "0.5", "--speed", "40", "--analyze-every", "8", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if sum(1 for x in lines if x.startswith("[")) >= 2:
                break
        progress = [x for x in lines if x.startswith("[")]
        assert len(progress) >= 2, "\n".join(lines[-20:])
        # the wait for the first figures (numba compiling on a new machine) is announced once, before them
        first = [i for i, x in enumerate(lines) if x.startswith("analysing the first minutes")]
        assert len(first) == 1 and first[0] < lines.index(progress[0]), "\n".join(lines[-20:])
        login = next(x for x in lines if x.startswith("dashboard: "))
        token = login.split("token=")[1]
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/stores/sample-boutique/counters",
                      params={"from": "2000-01-01", "to": "2100-01-01"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and any(c["visits"] > 0 for c in r.json()), r.text[:300]
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(*) FROM tag_reads").fetchone()[0] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    lines += out.splitlines()
    assert proc.returncode == 0, "\n".join(lines[-20:])
    assert lines[-1] == "stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


@pytest.mark.db
def test_a_second_demo_run_on_one_day_replaces_the_first_runs_window(db: psycopg.Connection,
                                                                    mini_layout_path: Path) -> None:
    """The demo replays the same simulated day: what an earlier run stored in the window goes, nothing else."""
    from analytics.rollups import from_unix_us
    from storeflow.demo import clear_replayed_window
    from storeflow.layout import load_layout
    from storeflow.store import upsert_layout

    layout = load_layout(mini_layout_path)
    sid = upsert_layout(db, layout)
    other = upsert_layout(db, dataclasses.replace(layout, store="other-store"))
    db.commit()
    t0 = 1_780_000_000_000_000  # window [t0, t0 + 1 h)
    inside, before, after = t0 + 60_000_000, t0 - 60_000_000, t0 + 3_600_000_000
    for s, ts in ((sid, inside), (sid, inside + 1), (sid, before), (sid, after), (other, inside)):
        db.execute("INSERT INTO tag_reads (ts, store_id, antenna_id, tag_id, rssi_cdbm) VALUES (%s, %s, 1, 1, -6000)",
                   (from_unix_us(ts), s))
        db.execute("INSERT INTO visits VALUES (%s, 1, 1, %s, %s, 20, false, true, %s, %s)",
                   (s, from_unix_us(ts), from_unix_us(ts + 20_000_000), from_unix_us(ts), from_unix_us(ts + 60_000_000)))
    db.commit()

    assert clear_replayed_window(db, layout.store, t0, t0 + 3_600_000_000) == 2

    def left(table: str, col: str) -> set[tuple[int, int]]:
        rows = db.execute(f"SELECT store_id, {col} FROM {table}").fetchall()
        return {(r[0], int((r[1] - from_unix_us(0)).total_seconds() * 1e6)) for r in rows}

    kept = {(sid, before), (sid, after), (other, inside)}
    assert left("tag_reads", "ts") == kept
    assert left("visits", "start_ts") == kept
    assert clear_replayed_window(db, "no-such-store", t0, t0 + 1) == 0
