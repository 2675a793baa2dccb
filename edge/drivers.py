"""From config entries to running drivers: the protocol registry of ``edge.readers`` or a plugin.

``protocol`` is either a name from the registry in :mod:`edge.readers` or ``package.module:factory``
for a site-specific driver; a plugin factory is called as ``factory(device_config, edge_config)`` and
returns an object with the :class:`edge.readers.base.Driver` interface.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from edge.readers.base import Driver

__all__ = ["known_protocol", "check_device", "make_driver", "registry_protocols"]


def registry_protocols() -> dict[str, Any]:
    """Protocol name -> driver factory, from edge.readers (empty while no registry is installed)."""
    try:
        mod = importlib.import_module("edge.readers")
    except ImportError:
        return {}
    for name in ("DRIVERS", "REGISTRY", "PROTOCOLS"):
        reg = getattr(mod, name, None)
        if isinstance(reg, dict):
            return reg
    return {}


def _plugin(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise LookupError(f"cannot import driver module {module!r} ({e})") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise LookupError(f"module {module!r} has no driver factory {attr!r}")
    if not callable(obj):
        raise LookupError(f"{spec!r} is not callable")
    return obj


def known_protocol(protocol: str, kind: Literal["reader", "door"]) -> str | None:
    """None when ``protocol`` names a driver we can build, else what is wrong with it."""
    if ":" in protocol:
        try:
            _plugin(protocol)
        except LookupError as e:
            return str(e)
        return None
    reg = registry_protocols()
    if protocol not in reg:
        known = ", ".join(sorted(reg)) or "none installed"
        return f"unknown protocol {protocol!r} (known: {known}; or module:factory)"
    return None


def check_device(device: Any, kind: Literal["reader", "door"]) -> tuple[str, str] | None:
    """``(field, problem)`` when a config entry cannot be built into a driver, else None."""
    problem = known_protocol(device.protocol, kind)
    if problem:
        return "protocol", problem
    if ":" in device.protocol:
        return None
    spec = registry_protocols()[device.protocol]
    spec_kind = getattr(spec, "kind", kind)
    if spec_kind != kind:
        return "protocol", f"{device.protocol!r} is a {spec_kind} protocol; it belongs under {spec_kind}s:"
    transport = getattr(spec, "transport", None)
    if transport == "serial" and device.serial is None:
        return "serial", f"protocol {device.protocol} needs a serial: section (port, baud)"
    if transport == "mqtt" and device.mqtt is None:
        return "mqtt", f"protocol {device.protocol} needs an mqtt: section (topic)"
    allowed = getattr(spec, "options", None)
    if allowed is not None:
        unknown = sorted(set(device.options) - set(allowed))
        if unknown:
            return "options", (f"unknown option(s) {', '.join(unknown)} for {device.protocol}; "
                               f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    return None


def make_driver(device: Any, config: Any) -> Driver:
    """Build the driver of one ``readers[]``/``doors[]`` entry."""
    if ":" in device.protocol:
        return _plugin(device.protocol)(device, config)
    return registry_protocols()[device.protocol](device, config)
