"""From config entries to running drivers: the protocol registry of ``edge.readers`` or a plugin.

``protocol`` is either a name from the registry in :mod:`edge.readers` or ``package.module:factory``
for a site-specific driver; a plugin factory is called as ``factory(device_config, edge_config)`` and
returns an object with the :class:`edge.readers.base.Driver` interface.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from edge.readers.base import Driver

__all__ = ["known_protocol", "make_driver", "registry_protocols"]


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


def make_driver(device: Any, config: Any) -> Driver:
    """Build the driver of one ``readers[]``/``doors[]`` entry."""
    if ":" in device.protocol:
        return _plugin(device.protocol)(device, config)
    return registry_protocols()[device.protocol](device, config)
