"""The uplink: one paho-mqtt client to the StoreFlow broker, QoS 1 with PUBACK tracking.

paho runs the network loop in its own thread and reconnects on its own (capped exponential backoff
with a random start and cap per agent, so a chain's boxes do not all return in the same second after
a broker outage).
Messages that were in flight when the connection dropped stay in paho's session and are re-sent on
reconnect with the same message id, so the agent only tracks ``mid -> seq`` and learns of PUBACKs
through :meth:`Uplink.take_acks` (called from the agent loop; the callback only queues).
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import UplinkConfig
from storeflow.wire import topic

__all__ = ["Uplink"]

log = logging.getLogger("storeflow.edge.uplink")


class Uplink:
    """Connection to the uplink broker with a retained online status and an offline last will."""

    def __init__(self, cfg: UplinkConfig, store: str, agent: str, status_extra: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.store, self.agent = store, agent
        self.status_topic = topic(cfg.topic_prefix, store, agent, "status")
        self._status_extra = status_extra or {}
        self._acks: deque[int] = deque()
        self._connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None
        self._stopping = False
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"storeflow-edge-{agent}",
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(max(cfg.inflight, 1) + 4)  # never queue inside paho: the spool is the queue
        # random start and cap: after a broker outage a chain's agents do not come back in lockstep
        max_delay = max(1.0, cfg.reconnect_max_s * random.uniform(0.75, 1.25))
        c.reconnect_delay_set(min_delay=min(random.uniform(0.5, 2.0), max_delay), max_delay=max_delay)
        c.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        if cfg.username is not None:
            c.username_pw_set(cfg.username, cfg.effective_password())
        if cfg.tls:
            c.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
            if cfg.insecure:
                c.tls_insecure_set(True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c

    def _status(self, state: str) -> bytes:
        return json.dumps({"state": state, "agent": self.agent, "store": self.store, **self._status_extra},
                          separators=(",", ":")).encode()

    # paho callbacks (network thread) -------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"connect refused: {reason}"
            log.warning("uplink %s:%s refused the connection: %s", self.cfg.host, self.cfg.effective_port, reason)
            return
        self.connects += 1
        log.info("uplink connected to %s:%s", self.cfg.host, self.cfg.effective_port)
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            self.disconnects += 1
            log.warning("uplink to %s:%s lost (%s); reconnecting, reads go to the spool",
                        self.cfg.host, self.cfg.effective_port, reason)
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acks.append(mid)

    # agent side -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (returns at once; reconnects forever)."""
        self._client.connect_async(self.cfg.host, self.cfg.effective_port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; its mid (QoS 1: a PUBACK will show up in :meth:`take_acks`), or None."""
        info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.last_error = f"publish failed: {mqtt.error_string(info.rc)}"
            return None
        return info.mid

    def take_acks(self) -> list[int]:
        """Message ids acknowledged since the last call."""
        out = []
        while self._acks:
            out.append(self._acks.popleft())
        return out

    def stop(self, timeout_s: float = 2.0) -> None:
        """Publish the retained offline status (a clean exit sends no will), then disconnect."""
        self._stopping = True
        try:
            if self.connected:
                info = self._client.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
                info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            pass
        self._client.disconnect()
        self._client.loop_stop()
