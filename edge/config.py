"""The edge agent's YAML config: one file per in-store box (see docs/edge-config.example.yaml).

:func:`load_config` / :func:`parse_config` return a validated :class:`EdgeConfig` or raise
:class:`~storeflow.contract.BadInput` whose message names the offending field, e.g.
``readers[1].serial.baud: must be greater than 0`` or ``readers[2] (reader 'R3'): duplicate reader id``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storeflow.contract import STORE_ID_RE, BadInput

__all__ = [
    "EdgeConfig", "ReaderConfig", "DoorConfig", "SerialPort", "MqttSource", "BrokerConfig", "UplinkConfig",
    "SpoolConfig", "SmoothingConfig", "BatchConfig", "ClockConfig", "load_config", "parse_config",
]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")   # the wire format's agent/stream id
_DEVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # reader / door id as the layout spells it


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SerialPort(_Model):
    """A serial line (pyserial URL or device path)."""

    port: str = Field(min_length=1, description="device path (/dev/ttyUSB0, COM3) or pyserial URL")
    baud: int | None = Field(None, gt=0, le=4_000_000, description="bits/s; default: the protocol's")


class BrokerConfig(_Model):
    """An MQTT broker connection."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int | None = Field(None, ge=1, le=65535, description="default 1883, or 8883 with TLS")
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA bundle for TLS (system CAs when unset)")
    insecure: bool = Field(False, description="TLS without hostname check (lab use only)")
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(None, description="take the password from this environment variable")
    client_id: str | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)

    @model_validator(mode="after")
    def _password(self) -> BrokerConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to (1883, or 8883 with TLS, when unset)."""
        return self.port or (8883 if self.tls else 1883)

    def effective_password(self) -> str | None:
        """The password, read from ``password_env`` when that is set."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise BadInput(f"password_env: environment variable {self.password_env} is not set")
            return value
        return self.password


class MqttSource(_Model):
    """A device that publishes to an in-store MQTT broker."""

    topic: str = Field(min_length=1, description="topic (filter) the device publishes on")
    broker: BrokerConfig | None = Field(None, description="default: the config's source_broker")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if "\x00" in v or len(v.encode()) > 65535:
            raise ValueError("is not a valid MQTT topic")
        return v


class _Device(_Model):
    protocol: str = Field(min_length=1, description="protocol name from edge.readers, or 'module:factory'")
    serial: SerialPort | None = None
    mqtt: MqttSource | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="protocol-specific driver options")

    @model_validator(mode="after")
    def _one_transport(self) -> _Device:
        if self.serial is not None and self.mqtt is not None:
            raise ValueError("give serial or mqtt, not both")
        return self


class ReaderConfig(_Device):
    """One RFID reader."""

    reader: str = Field(description="reader id, as in the store layout")
    antennas: dict[int, int] = Field(
        default_factory=dict,
        description="antenna port reported by the reader -> layout antenna port; unmapped ports pass through",
    )

    @field_validator("reader")
    @classmethod
    def _reader(cls, v: str) -> str:
        if not _DEVICE_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a reader id (letters, digits, _.:- ; at most 64)")
        return v

    @field_validator("antennas")
    @classmethod
    def _antennas(cls, v: dict[int, int]) -> dict[int, int]:
        for k, p in v.items():
            if not 1 <= k <= 65535 or not 1 <= p <= 65535:
                raise ValueError(f"{k}: {p} is not a port mapping (ports 1..65535)")
        return v


class DoorConfig(_Device):
    """One door / people counter."""

    door: str = Field(description="door id, as in the store layout")

    @field_validator("door")
    @classmethod
    def _door(cls, v: str) -> str:
        if not _DEVICE_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a door id (letters, digits, _.:- ; at most 64)")
        return v


class UplinkConfig(BrokerConfig):
    """The broker the agent publishes to (StoreFlow's ingest side)."""

    topic_prefix: str = Field("storeflow", min_length=1)
    inflight: int = Field(16, ge=1, le=1000, description="QoS 1 batches awaiting PUBACK at a time")
    reconnect_max_s: float = Field(30.0, ge=1, le=3600, description="cap of the reconnect backoff (s); "
                                   "each agent randomises it by +-25% so a chain does not reconnect at once")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if any(c in v for c in "/+#\x00"):
            raise ValueError(f"{v!r} must be one topic level (no / + #)")
        return v


class SpoolConfig(_Model):
    """The durable local spool (SQLite, WAL)."""

    dir: Path
    max_mb: float = Field(1024.0, gt=0, description="size limit (MiB); oldest batches are dropped beyond it")
    sync: Literal["full", "normal"] = Field(
        "full", description="full: fsync every batch (survives power loss); normal: survives process crashes"
    )


class SmoothingConfig(_Model):
    """Per (reader, antenna, tag) aggregation."""

    window_s: float = Field(0.0, ge=0, le=60, description="0 = off; reads of one tag on one antenna "
                                                          "within this window become one aggregate")


class BatchConfig(_Model):
    """Bounds of one published batch."""

    max_reads: int = Field(5000, ge=1, le=60000, description="records per batch")
    max_delay_s: float = Field(1.0, gt=0, le=600, description="oldest record waits at most this long (s)")


class SimulatedClock(_Model):
    """An accelerated clock shared with simulated devices (demo and tests only, never in a store)."""

    start_us: int = Field(..., ge=0, description="simulated time (epoch µs) at wall time anchor_s")
    anchor_s: float = Field(..., ge=0, description="wall-clock time (epoch s) at which simulated time was start_us")
    speed: float = Field(1.0, gt=0, le=10000, description="simulated seconds per wall-clock second")

    def now_us(self) -> int:
        import time

        return int(self.start_us + (time.time() - self.anchor_s) * 1e6 * self.speed)


class ClockConfig(_Model):
    """When to distrust a device's clock."""

    max_skew_s: float = Field(300.0, gt=0, description="device time further than this from the agent's "
                                                       "clock is replaced by the receive time (s)")
    simulated: SimulatedClock | None = Field(None, description="demo/test only: run the agent on a simulated, "
                                                               "accelerated clock shared with simulated devices")


class EdgeConfig(_Model):
    """The whole agent config."""

    agent: str
    store: str
    readers: list[ReaderConfig] = Field(default_factory=list)
    doors: list[DoorConfig] = Field(default_factory=list)
    source_broker: BrokerConfig = Field(default_factory=BrokerConfig,
                                        description="in-store broker that MQTT readers publish to")
    uplink: UplinkConfig
    spool: SpoolConfig
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    health_interval_s: float = Field(30.0, gt=0, le=86400)

    @field_validator("agent")
    @classmethod
    def _agent(cls, v: str) -> str:
        if not _ID_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an agent id (letter/digit first, then letters, digits, _.- ; at most 64)")
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if not STORE_ID_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a store id ([a-z0-9][a-z0-9-]{{0,39}})")
        return v


def _loc(loc: tuple[int | str, ...], data: Any) -> str:
    """``readers[1] (reader 'R2').serial.port`` from a pydantic error location."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
            if isinstance(node, dict):
                for key in ("reader", "door"):
                    if isinstance(node.get(key), str):
                        out += f" ({key} {node[key]!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "config"


def parse_config(data: Any, source: str = "config") -> EdgeConfig:
    """Validate a parsed YAML/JSON document; :class:`BadInput` names the first problem and its field."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: top level must be a mapping, not {type(data).__name__}")
    try:
        cfg = EdgeConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise BadInput(f"{source}: {_loc(tuple(err['loc']), data)}: {msg}{more}") from None
    _check_cross(cfg, source)
    return cfg


def _check_cross(cfg: EdgeConfig, source: str) -> None:
    from edge.drivers import check_device  # late: the registry imports the reader modules

    seen: set[str] = set()
    for i, r in enumerate(cfg.readers):
        where = f"{source}: readers[{i}] (reader {r.reader!r})"
        if r.reader in seen:
            raise BadInput(f"{where}.reader: duplicate reader id")
        seen.add(r.reader)
        problem = check_device(r, "reader")
        if problem:
            raise BadInput(f"{where}.{problem[0]}: {problem[1]}")
    seen = set()
    for i, d in enumerate(cfg.doors):
        where = f"{source}: doors[{i}] (door {d.door!r})"
        if d.door in seen:
            raise BadInput(f"{where}.door: duplicate door id")
        seen.add(d.door)
        problem = check_device(d, "door")
        if problem:
            raise BadInput(f"{where}.{problem[0]}: {problem[1]}")


def load_config(path: str | Path) -> EdgeConfig:
    """Read and validate a YAML (or JSON) config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"{p}: cannot read config ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise BadInput(f"{p}: config is not UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{p}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    cfg = parse_config(data, str(p))
    if not cfg.spool.dir.is_absolute():  # relative to the config file, so the agent's cwd does not matter
        cfg = cfg.model_copy(update={"spool": cfg.spool.model_copy(update={"dir": p.parent / cfg.spool.dir})})
    return cfg
