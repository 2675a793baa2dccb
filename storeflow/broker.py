"""An embedded MQTT broker for the demo: a private Mosquitto when it is installed, else amqtt (pip).

Mosquitto speaks MQTT 5 (shared subscriptions); amqtt only MQTT 3.1.1, so with it ingest runs as a
single subscriber (`shared` is False in the returned handle).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EmbeddedBroker", "start_embedded_broker", "free_port", "wait_for_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 15.0) -> bool:
    """True once something accepts connections on host:port (polls every 0.1 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class EmbeddedBroker:
    """A running broker process."""

    kind: str            # "mosquitto" | "amqtt"
    host: str
    port: int
    shared: bool         # supports MQTT 5 shared subscriptions
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_embedded_broker(state_dir: Path, port: int | None = None) -> EmbeddedBroker:
    """Start a private broker on 127.0.0.1 with its state under ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = open(state_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child process
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if mosquitto:
        conf = state_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {state_dir}/\n"
            # ingest acknowledges after its database commit, so it needs a large in-flight window
            "max_inflight_messages 0\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
            # started as root it would drop to the mosquitto user, which cannot save sessions into a
            # private (0700) directory of ours: it runs as whoever started it
            + (f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else "")
        )
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log, stderr=log)
        kind, shared = "mosquitto", True
    else:
        conf = state_dir / "amqtt.yaml"
        conf.write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        exe = Path(sys.executable).with_name("amqtt")
        proc = subprocess.Popen([str(exe), "-c", str(conf)], stdout=log, stderr=log)
        kind, shared = "amqtt", False
    broker = EmbeddedBroker(kind, "127.0.0.1", port, shared, proc)
    if not wait_for_port("127.0.0.1", port):
        broker.stop()
        raise RuntimeError(f"the embedded {kind} broker did not start; see {state_dir / 'broker.log'}")
    return broker
