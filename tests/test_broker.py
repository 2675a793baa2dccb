"""The demo's embedded broker: a private Mosquitto (or amqtt) that carries QoS 1 messages."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from storeflow import broker as broker_mod
from storeflow.broker import start_embedded_broker


def _round_trip(host: str, port: int, n: int = 50) -> list[bytes]:
    got: list[bytes] = []
    done = threading.Event()

    def on_message(c, u, m):  # type: ignore[no-untyped-def]
        got.append(m.payload)
        if len(got) == n:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe("t/+/reads", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect(host, port)
    pub.loop_start()
    import time

    time.sleep(0.3)
    for i in range(n):
        pub.publish("t/a/reads", i.to_bytes(2, "big"), qos=1).wait_for_publish(5)
    done.wait(10)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return got


def test_embedded_mosquitto_carries_messages(tmp_path: Path) -> None:
    b = start_embedded_broker(tmp_path / "broker")
    try:
        assert b.kind == "mosquitto" and b.shared
        assert _round_trip(b.host, b.port) == [i.to_bytes(2, "big") for i in range(50)]
    finally:
        b.stop()
    assert b.process.poll() is not None


def test_amqtt_fallback_when_no_mosquitto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(broker_mod, "Path", _NoSbinPath)
    b = start_embedded_broker(tmp_path / "broker")
    try:
        assert b.kind == "amqtt" and not b.shared
        assert len(_round_trip(b.host, b.port)) == 50
    finally:
        b.stop()


class _NoSbinPath(type(Path())):  # type: ignore[misc]
    def exists(self, *a, **k) -> bool:  # type: ignore[no-untyped-def]
        return False if str(self) == "/usr/sbin/mosquitto" else super().exists(*a, **k)
