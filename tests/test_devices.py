"""Simulated devices: byte-exact replies to host commands, seeded noise, pacing, the CLI."""

from __future__ import annotations

import os
import select
import time

import numpy as np
import pytest

from edge.readers import chafon_288m as cf
from edge.readers import impinj_r2000 as r2k
from simulators.devices import (
    SIM_DOOR_DTYPE, SIM_READ_DTYPE, MqttReaderDevice, Noise, SerialReaderDevice, SimClock, synthetic_reads,
)
from storeflow.cli import build_parser

EPCS = ["E2801160600002054CC2096F", "300833B2DDD9014000000001"]


def _reads(rows: list[tuple[int, int, int, int, int]]) -> list[np.ndarray]:
    return [np.array(rows, dtype=SIM_READ_DTYPE)]


def _talk(dev: SerialReaderDevice, cmd: bytes, want: int, timeout_s: float = 3.0) -> bytes:
    """Write a host command on the pty slave and read ``want`` bytes of reply."""
    fd = os.open(dev.port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, cmd)
        out = b""
        t = time.monotonic()
        while len(out) < want and time.monotonic() - t < timeout_s:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                out += os.read(fd, 4096)
        return out
    finally:
        os.close(fd)


def test_sim_dtypes() -> None:
    assert SIM_READ_DTYPE.names == ("ts_us", "reader", "port", "tag", "rssi_cdbm")
    assert SIM_DOOR_DTYPE.names == ("ts_us", "door", "entries", "exits")
    try:
        from simulators.rf import SIM_READ_DTYPE as RF_DTYPE
    except ImportError:
        return
    assert RF_DTYPE == SIM_READ_DTYPE


def test_r2000_device_replies_byte_exact() -> None:
    rows = [(1_000, 0, 2, 1, -5540), (2_000, 0, 1, 0, -6000), (3_000, 1, 2, 0, -4000)]
    with SerialReaderDevice("impinj-r2000", _reads(rows), EPCS, address=1) as dev:
        assert _talk(dev, r2k.cmd_set_work_antenna(2, addr=1), 6) == r2k.encode_status(0x74, 0x10, addr=1)
        expected = r2k.encode_tag(2, EPCS[1], -55, addr=1) + r2k.encode_round_end(2, 1, 1, addr=1)
        assert _talk(dev, r2k.cmd_real_time_inventory(1, addr=1), len(expected)) == expected
        assert dev.sent == [(2, EPCS[1], -55.0)]           # reader 1's read is not this device's


def test_chafon_device_replies_byte_exact() -> None:
    rows = [(1_000, 0, 3, 0, -5000), (1_500, 0, 3, 1, -6100)]
    with SerialReaderDevice("chafon-288m", _reads(rows), EPCS) as dev:
        expected = b"".join(cf.encode_inventory(3, [(EPCS[0], -50), (EPCS[1], -61)]))
        assert _talk(dev, cf.cmd_inventory(3), len(expected)) == expected
        empty = b"".join(cf.encode_inventory(1, []))
        assert _talk(dev, cf.cmd_inventory(1), len(empty)) == empty
        assert dev.done()


def test_noise_is_seeded_and_reported() -> None:
    frame = bytes(range(200))
    a = [Noise(seed=4, flip_p=0.01, drop_p=0.01, split_p=0.5).apply(frame) for _ in range(1)]
    b = [Noise(seed=4, flip_p=0.01, drop_p=0.01, split_p=0.5).apply(frame) for _ in range(1)]
    assert a == b
    n = Noise(seed=1, flip_p=0.02)
    results = [n.apply(frame) for _ in range(50)]
    assert any(d for _, d in results) and all((b"".join(p) != frame) == d for p, d in results)
    clean = Noise(seed=1, split_p=1.0).apply(frame)
    assert len(clean[0]) == 2 and b"".join(clean[0]) == frame and not clean[1]


def test_sim_clock_pacing() -> None:
    import threading

    c = SimClock(speed=10)
    stop = threading.Event()
    t = time.monotonic()
    c.wait_until(1_000_000, stop)
    assert c.wait_until(3_000_000, stop)                  # 2 s of sim time at 10x = 0.2 s
    assert 0.15 <= time.monotonic() - t < 1.0
    with pytest.raises(ValueError):
        SimClock(speed=0)


@pytest.mark.mqtt
def test_mqtt_device_real_time_speed(mqtt_broker: tuple[str, int], unique_prefix: str) -> None:
    host, port = mqtt_broker
    rows = [(i * 100_000, 0, 1, i % 2, -5000) for i in range(11)]     # 1 s of reads
    dev = MqttReaderDevice("impinj-iot", _reads(rows), EPCS, host=host, port=port, topic=f"{unique_prefix}/r",
                           speed=5)
    t = time.monotonic()
    assert dev.run() == 11
    assert 0.15 <= time.monotonic() - t < 2.0                          # ~0.2 s at 5x, plus publish latency


def test_synthetic_reads_are_ordered_and_seeded() -> None:
    a = np.concatenate(list(synthetic_reads(3, 4, EPCS, seconds=2, reads_per_s=1000, seed=3, chunk=300)))
    b = np.concatenate(list(synthetic_reads(3, 4, EPCS, seconds=2, reads_per_s=1000, seed=3)))
    assert np.array_equal(a, b) and np.all(np.diff(a["ts_us"]) >= 0) and set(np.unique(a["port"])) == {1, 2, 3, 4}


def test_devices_cli_is_registered() -> None:
    p = build_parser()
    args = p.parse_args(["devices", "serial", "--protocol", "chafon-288m", "--drop", "0.01", "--speed", "10"])
    assert args.protocol == "chafon-288m" and args.drop == 0.01 and callable(args.func)
    args = p.parse_args(["devices", "doors", "--protocol", "terabee-evo"])
    assert args.protocol == "terabee-evo"
