"""Uplink options and limits: TLS + username/password against a private Mosquitto, a refused login,
a full spool while the uplink is down, and the `storeflow edge` command line."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent
from edge.clock import now_us
from edge.config import parse_config
from edge.readers.base import TagRead
from storeflow.cli import main as storeflow_main
from storeflow.wire import decode_batch
from test_edge_e2e import MOSQUITTO, RUN_AS, _free_port, wait_for
from test_edge_plugin import ManualDriver

pytestmark = pytest.mark.mqtt


def _agent(cfg) -> tuple[Agent, ManualDriver]:
    drv = ManualDriver("R1")
    agent = Agent(cfg, drivers=[(cfg.readers[0], drv)])
    agent.start()
    return agent, drv


def _reader() -> list[dict]:
    return [{"reader": "R1", "protocol": "test_edge_plugin:make_manual"}]


@pytest.fixture
def tls_broker(tmp_path: Path):
    """A private Mosquitto with a TLS listener (self-signed cert for 127.0.0.1) and a password file."""
    for tool in ("openssl", "mosquitto_passwd"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is needed for the TLS test (apt-get install openssl mosquitto)", pytrace=False)
    d = tmp_path / "tls"
    d.mkdir()
    d.chmod(0o777)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(d / "passwd"), "box-1", "s3cret"], check=True,
                   capture_output=True)
    for f in d.iterdir():
        f.chmod(0o644)
    port = _free_port()
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {d}/cert.pem\ncertfile {d}/cert.pem\nkeyfile {d}/key.pem\n"
        f"allow_anonymous false\npassword_file {d}/passwd\nlog_dest stdout\n{RUN_AS}")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(d / "mosquitto.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if not wait_for(lambda: _connectable(port) or proc.poll() is not None, 10) or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"TLS mosquitto did not start: {proc.communicate()[0].decode(errors='replace')[-500:]}")
    yield port, d / "cert.pem"
    proc.terminate()
    proc.wait(10)


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_tls_with_password_from_env(tmp_path, tls_broker, unique_prefix, monkeypatch):
    port, ca = tls_broker
    got: list = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    sub.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    sub.username_pw_set("box-1", "s3cret")
    sub.on_connect = lambda c, *_: c.subscribe(f"{unique_prefix}/#", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    assert ready.wait(5)
    monkeypatch.setenv("SF_EDGE_TEST_PW", "s3cret")
    cfg = parse_config({"agent": "box-1", "store": "mini-store", "readers": _reader(),
                        "uplink": {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(ca),
                                   "username": "box-1", "password_env": "SF_EDGE_TEST_PW",
                                   "topic_prefix": unique_prefix},
                        "spool": {"dir": str(tmp_path / "spool")}, "batch": {"max_delay_s": 0.05}})
    agent, drv = _agent(cfg)
    try:
        assert agent.uplink.wait_connected(10), agent.uplink.last_error
        drv.emit([TagRead("R1", 1, "AB12CD34", -50.0, now_us())])
        assert wait_for(lambda: any(t.endswith("/reads") for t, _ in got), 5)
        b = decode_batch(next(p for t, p in got if t.endswith("/reads")))
        assert b.epcs == ["AB12CD34"] and b.agent == "box-1"
    finally:
        agent.stop()
        sub.disconnect()
        sub.loop_stop()


def test_refused_login_keeps_reads_in_the_spool(tmp_path, tls_broker, unique_prefix):
    port, ca = tls_broker
    cfg = parse_config({"agent": "box-1", "store": "mini-store", "readers": _reader(),
                        "uplink": {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(ca),
                                   "username": "box-1", "password": "wrong", "topic_prefix": unique_prefix},
                        "spool": {"dir": str(tmp_path / "spool")}, "batch": {"max_delay_s": 0.05}})
    agent, drv = _agent(cfg)
    try:
        drv.emit([TagRead("R1", 1, f"AB12CD{i:02X}", -50.0, now_us()) for i in range(10)])
        assert wait_for(lambda: agent.uplink.last_error is not None, 10)
        assert "refused" in agent.uplink.last_error and not agent.uplink.connected
        assert wait_for(lambda: agent.health()["spool"]["records"] == 10, 3)
    finally:
        agent.stop(publish_grace_s=0)
    from edge.spool import Spool
    sp = Spool(tmp_path / "spool", 2**20)
    assert sp.stats().records == 10  # still there for the next start
    sp.close()


def test_full_spool_drops_oldest_loudly(tmp_path, caplog):
    dead = _free_port()  # nothing listens: the uplink stays down
    cfg = parse_config({"agent": "box-1", "store": "mini-store", "readers": _reader(),
                        "uplink": {"host": "127.0.0.1", "port": dead},
                        "spool": {"dir": str(tmp_path / "spool"), "max_mb": 0.05, "sync": "normal"},
                        "batch": {"max_reads": 100, "max_delay_s": 0.02}})
    agent, drv = _agent(cfg)
    t = now_us()
    try:
        with caplog.at_level(logging.ERROR, logger="storeflow.edge.spool"):
            for k in range(40):
                drv.emit([TagRead("R1", 1, f"E2{k:02X}{i:08X}", -50.0, t + i) for i in range(100)])
            assert wait_for(lambda: (lambda h: h["records"] + h["dropped_records"] == 4000)(agent.health()["spool"]), 5)
        h = agent.health()["spool"]
        assert h["dropped_records"] > 0
        assert h["bytes"] <= h["max_bytes"] == int(0.05 * 2**20)
        assert h["records"] + h["dropped_records"] == 4000
        full = [r for r in caplog.records if "SPOOL FULL" in r.getMessage()]
        assert len(full) == 1, "loud, but not one line per dropped batch"
    finally:
        agent.stop(publish_grace_s=0)


def test_cli_check_and_bad_config_exit_2(tmp_path, capsys):
    good = tmp_path / "edge.yaml"
    good.write_text(yaml.safe_dump({"agent": "box-1", "store": "mini-store", "readers": _reader(),
                                    "uplink": {"host": "127.0.0.1"}, "spool": {"dir": "spool"}}))
    assert storeflow_main(["edge", "check", str(good)]) == 0
    assert "ok (agent box-1, store mini-store, 1 reader(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"agent": "box-1", "store": "mini-store", "uplink": {"host": "h", "port": 0},
                                   "spool": {"dir": "s"}}))
    assert storeflow_main(["edge", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "uplink.port" in err and str(bad) in err


def test_health_message_is_published(tmp_path, mqtt_broker, unique_prefix):
    host, port = mqtt_broker
    msgs: list = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe(f"{unique_prefix}/+/+/health")
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda c, u, m: msgs.append(json.loads(m.payload))
    sub.connect(host, port)
    sub.loop_start()
    assert ready.wait(5)
    cfg = parse_config({"agent": "box-1", "store": "mini-store", "readers": _reader(),
                        "uplink": {"host": host, "port": port, "topic_prefix": unique_prefix},
                        "spool": {"dir": str(tmp_path / "spool")}, "health_interval_s": 0.2})
    agent, drv = _agent(cfg)
    try:
        drv.emit([TagRead("R1", 1, "AB12CD34", -50.0, None)])
        assert wait_for(lambda: any(m["devices"]["R1"]["accepted"] == 1 for m in msgs), 5)
        m = msgs[-1]
        assert m["devices"]["R1"]["agent_clock"] == 1 and m["devices"]["R1"]["connected"] is True
        assert m["uplink"]["connected"] and m["spool"]["max_bytes"] > 0 and m["publish_lag_s"] >= 0
        assert m["stream"] == agent.spool.stream
    finally:
        agent.stop()
        sub.publish(agent.uplink.status_topic, b"", qos=1, retain=True).wait_for_publish(5)
        sub.disconnect()
        sub.loop_stop()
