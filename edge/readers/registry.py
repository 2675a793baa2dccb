"""The protocol registry: config protocol name -> how to build its parser and driver.

``PROTOCOLS[name]`` is a :class:`ProtocolSpec`. The agent calls it with a config entry
(``spec(device, config)``, see :meth:`ProtocolSpec.__call__`); tests and tools call
:func:`build_driver` with plain arguments. Unknown options are an error naming the option and the
allowed ones, so a typo in the YAML fails at start-up, not silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.readers import chafon_288m, impinj_iot, impinj_r2000, irisys, milesight, terabee_evo, zebra_iot
from edge.readers.base import Driver, Parser
from edge.readers.transports import MqttDriver, SerialDriver

__all__ = ["ProtocolSpec", "PROTOCOLS", "build_driver", "build_parser"]

_SERIAL_DRIVER_OPTIONS = frozenset({"cycle_s", "round_timeout_s", "backoff_max_s"})
_MQTT_DRIVER_OPTIONS = frozenset({"qos"})


@dataclass(frozen=True)
class ProtocolSpec:
    """How one protocol is built: parser factory and options, transport, default baud rate, poller."""

    name: str
    kind: Literal["reader", "door"]
    transport: Literal["serial", "mqtt"]
    parser: Callable[..., Parser]                 # parser(device_id, **parser_options)
    parser_options: frozenset[str] = frozenset()
    baudrate: int | None = None
    poller: Callable[..., Any] | None = None      # poller(**poll_options) -> object with .steps
    poll_options: frozenset[str] = frozenset()
    source: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> frozenset[str]:
        """Every option name this protocol accepts."""
        drv = _SERIAL_DRIVER_OPTIONS if self.transport == "serial" else _MQTT_DRIVER_OPTIONS
        return self.parser_options | self.poll_options | drv

    def _split(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise ValueError(f"protocol {self.name}: unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(self.options)) or 'none'}")
        opts = {**self.defaults, **options}
        pick = lambda keys: {k: v for k, v in opts.items() if k in keys}  # noqa: E731
        drv = _SERIAL_DRIVER_OPTIONS if self.transport == "serial" else _MQTT_DRIVER_OPTIONS
        return pick(self.parser_options), pick(self.poll_options), pick(drv)

    def make_parser(self, device_id: str, options: Mapping[str, Any] | None = None) -> Parser:
        """A parser for one device (reader or door id) with the protocol's parser options."""
        parser_opts, _, _ = self._split(options or {})
        return self.parser(device_id, **parser_opts)

    def build(self, device_id: str, *, port: str | None = None, baudrate: int | None = None,
              topic: str | None = None, broker: Mapping[str, Any] | None = None,
              options: Mapping[str, Any] | None = None) -> Driver:
        """A driver for one device: ``port`` for serial protocols, ``topic`` (+ ``broker``) for MQTT ones.

        ``broker`` keys: host, port, tls, ca_file, insecure, username, password, client_id, keepalive_s.
        """
        parser_opts, poll_opts, drv_opts = self._split(options or {})
        parser = self.parser(device_id, **parser_opts)
        if self.transport == "serial":
            if not port:
                raise ValueError(f"protocol {self.name} needs a serial port")
            poller = self.poller(**poll_opts) if self.poller is not None else None
            return SerialDriver(device_id, port, parser, baudrate or self.baudrate or 115200, poller=poller,
                                **drv_opts)
        if not topic:
            raise ValueError(f"protocol {self.name} needs an MQTT topic")
        return MqttDriver(device_id, topic, parser, **dict(broker or {}), **drv_opts)

    def __call__(self, device: Any, config: Any) -> Driver:
        """Build from the agent's config entry (``edge.config.ReaderConfig``/``DoorConfig``).

        Serial: ``device.serial.port`` / ``.baud``. MQTT: ``device.mqtt.topic`` on ``device.mqtt.broker``
        or ``config.source_broker``. ``device.options`` are the protocol options; for polled readers
        without an ``antennas`` option the keys of ``device.antennas`` (reader ports) are polled.
        """
        device_id = getattr(device, "reader", None) or getattr(device, "door")
        options = dict(getattr(device, "options", None) or {})
        mapped = getattr(device, "antennas", None)
        if "antennas" in self.poll_options and "antennas" not in options and mapped:
            options["antennas"] = sorted(mapped)
        if self.transport == "serial":
            if device.serial is None:
                raise ValueError(f"{device_id}: protocol {self.name} needs a serial: section")
            return self.build(device_id, port=device.serial.port, baudrate=device.serial.baud, options=options)
        if device.mqtt is None:
            raise ValueError(f"{device_id}: protocol {self.name} needs an mqtt: section")
        b = device.mqtt.broker or config.source_broker
        broker = {"host": b.host, "port": b.effective_port, "tls": b.tls,
                  "ca_file": str(b.ca_file) if b.ca_file else None, "insecure": b.insecure,
                  "username": b.username, "password": b.effective_password(), "keepalive_s": b.keepalive_s}
        if b.client_id:
            broker["client_id"] = f"{b.client_id}-{device_id}"
        return self.build(device_id, topic=device.mqtt.topic, broker=broker, options=options)


PROTOCOLS: dict[str, ProtocolSpec] = {
    "impinj-r2000": ProtocolSpec(
        "impinj-r2000", "reader", "serial", impinj_r2000.R2000Parser, frozenset({"variant"}),
        impinj_r2000.BAUDRATE, impinj_r2000.R2000Poller, frozenset({"antennas", "repeat", "address"}),
        "Impinj Indy R2000 CMD protocol V3.7"),
    "chafon-288m": ProtocolSpec(
        "chafon-288m", "reader", "serial", chafon_288m.ChafonParser, frozenset({"variant"}),
        chafon_288m.BAUDRATE, chafon_288m.ChafonPoller,
        frozenset({"antennas", "scan_time_100ms", "q_value", "address"}), "Chafon UHFReader288M"),
    "impinj-iot": ProtocolSpec(
        "impinj-iot", "reader", "mqtt", impinj_iot.ImpinjIotParser, source="Impinj IoT device interface"),
    "zebra-iot": ProtocolSpec(
        "zebra-iot", "reader", "mqtt", zebra_iot.ZebraIotParser, source="Zebra IoT Connector"),
    "irisys": ProtocolSpec(
        "irisys", "door", "mqtt", irisys.IrisysParser, frozenset({"in_registers", "out_registers"}),
        source="Irisys Vector MQTT count registers"),
    "milesight": ProtocolSpec(
        "milesight", "door", "mqtt", milesight.MilesightParser, frozenset({"line"}),
        source="Milesight VS121-P/VS125 line-crossing reports"),
    "terabee-evo": ProtocolSpec(
        "terabee-evo", "door", "serial", terabee_evo.TerabeeParser, frozenset({"variant", "swap"}),
        terabee_evo.BAUDRATE, source="Terabee TeraRanger Evo People Counter"),
}


def build_parser(protocol: str, device_id: str, **options: Any) -> Parser:
    """A parser for ``protocol`` (KeyError-free: ValueError naming the known protocols)."""
    return _spec(protocol).make_parser(device_id, options)


def build_driver(protocol: str, device_id: str, *, port: str | None = None, baudrate: int | None = None,
                 topic: str | None = None, broker: Mapping[str, Any] | None = None, **options: Any) -> Driver:
    """A driver for ``protocol``; see :meth:`ProtocolSpec.build`."""
    return _spec(protocol).build(device_id, port=port, baudrate=baudrate, topic=topic, broker=broker,
                                 options=options)


def _spec(protocol: str) -> ProtocolSpec:
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(PROTOCOLS))}") from None
