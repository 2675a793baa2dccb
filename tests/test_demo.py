"""`storeflow demo` on the real services for a short while: it starts, data flows, the dashboard answers,
analysis runs more than once, and Ctrl-C (SIGINT) stops every part."""

from __future__ import annotations

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
